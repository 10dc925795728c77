# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Both create .venv on first use. torch is installed first, pinned to the local CPU wheel, so
# that no later requirement can pull a CUDA build.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pgolf-installed
EXAMPLES := examples/records/track_non_record_16mb

.PHONY: setup demo test bench lint

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# Audit the bundled examples: the clean record must PASS (exit 0), the broken one must FAIL (exit 1).
demo: $(STAMP)
	@$(BIN)/pgolf audit "$(EXAMPLES)/2026-11-01_Reference_TinyCPU_ScoreFirstTTT"; rc=$$?; \
	  echo "exit code $$rc (expected 0: PASS)"; test $$rc -eq 0
	@$(BIN)/pgolf audit "$(EXAMPLES)/2026-11-02_Broken_SLOT"; rc=$$?; \
	  echo "exit code $$rc (expected 1: FAIL)"; test $$rc -eq 1

test: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/audit_tree.py

lint: $(STAMP)
	$(BIN)/ruff check auditor rules api reference_impl tests bench
