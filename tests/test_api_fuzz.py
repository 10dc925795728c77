"""Fuzz the live API from its own OpenAPI schema (schemathesis, bounded): no input gives a 500."""

from __future__ import annotations

from collections import Counter

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from test_api_support import AUTH, Server, make_remote

pytestmark = pytest.mark.slow
EXAMPLES = 25  # per operation and generation mode: bounded, ~20 s in all


def _fuzz(operation, mode, seen: dict, failures: list):
    """A Hypothesis test over one operation's generated requests (bounded by EXAMPLES)."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        response = case.call(headers=AUTH, timeout=30)
        seen.setdefault(operation.label, Counter())[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(f"{operation.label} [{mode.value}] -> {response.status_code}: "
                            f"{case.as_curl_command()}\n{response.text[:300]}")

    return run


def test_no_input_gives_a_server_error(tmp_path):
    bare = make_remote(tmp_path, 1, pulls={1: 0})
    env = {"PGOLF_RATE_LIMIT_PER_MINUTE": "100000", "PGOLF_RATE_LIMIT_BURST": "10000"}
    with Server(tmp_path / "data", upstream=bare, workers=1, env=env) as srv:
        schema = schemathesis.openapi.from_url(srv.url + "/openapi.json")
        failures: list[str] = []
        unsatisfiable: list[str] = []
        seen: dict[str, Counter] = {}
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 7
        for operation in operations:
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
                try:
                    _fuzz(operation, mode, seen, failures)()
                except Unsatisfiable:
                    # An operation without inputs (GET /v1/rules) has no invalid request to make.
                    assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
                    unsatisfiable.append(operation.label)
        assert "internal error" not in srv.logs()
    assert not failures, "\n\n".join(failures[:5])
    assert len(unsatisfiable) < len(operations)
    # The fuzzer really reached the handlers: accepted and refused submissions both happened.
    posts = seen["POST /v1/audits"]
    assert any(200 <= code < 300 for code in posts) and posts[422] > 0, posts
    assert any(200 <= code < 300 for code in seen["GET /v1/rules/{rule_id}"]) or seen["GET /v1/rules/{rule_id}"][404]
