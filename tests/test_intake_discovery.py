"""Record-folder discovery, file classification, HYG001 (required files) and HYG009 (unsafe paths)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from auditor import intake
from auditor.errors import InputError
from auditor.intake import (
    classify,
    discover_records,
    required_files_findings,
    safe_relpath,
    scan_record,
    unsafe_path_findings,
)
from auditor.models import Severity

FIXTURES = Path(__file__).resolve().parents[1] / "rules" / "fixtures" / "HYG001"
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "records"

LOG = "final_int8_zlib_roundtrip val_loss:2.0672 val_bpb:1.2244\n"


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def full_record(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        "README.md": "# r\n",
        "submission.json": "{}\n",
        "train_gpt.py": "x = 1\n",
        "train.log": LOG,
        **(extra or {}),
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository shaped like parameter-golf, with the odd layouts records-format.md §1 lists."""
    root = tmp_path / "repo"
    r10 = "records/track_10min_16mb/"
    rn = "records/track_non_record_16mb/"
    write(
        root,
        {
            "README.md": "# repo\n",
            "train_gpt.py": "print('root script, not a record')\n",
            "data/cached_challenge_fineweb.py": "x = 1\n",
            r10 + "2026-03-19_int6_STE QAT_ MLP_bigram _U_Net/train.log": LOG,  # spaces, only a log
            r10 + "2026-03-19_smeargate/train_gpt_v5.py": "x = 1\n",
            r10 + "2026-03-19_smeargate/train.log": LOG,
            r10 + "2026-03-19_smeargate/README.md": "# r\n",
            r10 + "2026-04-10_VarLen/logs/train0.txt": LOG,  # logs in a sub-folder
            r10 + "2026-04-10_VarLen/requirements.txt": "brotli\n",
            r10 + "2026-04-10_VarLen/train_gpt.py": "x = 1\n",
            r10 + "2026-04-23_CaseOps/ttt_pr1767/seed_42.log": LOG,
            r10 + "2026-04-23_CaseOps/ttt_pr1767/seed_42_result.json": "{}\n",
            r10 + "2026-04-23_CaseOps/tokenizers/caseops.model": "bin",
            r10 + "2026-04-23_CaseOps/submission.json": "{}\n",
            r10 + "2026-04-09_A2/ngram/fused_expert_kernel.cpp": "int main(){}\n",
            r10 + "2026-04-09_A2/ngram_tilt.py": "x = 1\n",
            r10 + "2026-04-09_A2/train_gpt.py": "x = 1\n",
            r10 + "README_track.md": "a file directly in the track folder is not a record\n",
            rn + "2026-03-29_LLaDA/README.md": "# r\n",  # no log, no train_gpt.py
            rn + "2026-03-29_LLaDA/train_mdlm.py": "x = 1\n",
        },
    )
    (root / r10 / "2026-05-01_Empty").mkdir()  # an immediate child of a track is a record, even empty
    return root


def rels(records) -> list[str]:
    return [r.rel for r in records]


EXPECTED = [
    "records/track_10min_16mb/2026-03-19_int6_STE QAT_ MLP_bigram _U_Net",
    "records/track_10min_16mb/2026-03-19_smeargate",
    "records/track_10min_16mb/2026-04-09_A2",
    "records/track_10min_16mb/2026-04-10_VarLen",
    "records/track_10min_16mb/2026-04-23_CaseOps",
    "records/track_10min_16mb/2026-05-01_Empty",
    "records/track_non_record_16mb/2026-03-29_LLaDA",
]


def test_repo_root_finds_every_record_and_not_the_root(repo: Path) -> None:
    found = discover_records(repo)
    assert rels(found) == EXPECTED
    assert [r.track for r in found] == ["track_10min_16mb"] * 6 + ["track_non_record_16mb"]
    assert all(r.root.is_absolute() and r.root.is_dir() for r in found)
    assert found[0].name == "2026-03-19_int6_STE QAT_ MLP_bigram _U_Net"


@pytest.mark.parametrize("sub", ["records", "records/track_10min_16mb", "."])
def test_rel_is_relative_to_the_repo_root_whatever_is_given(repo: Path, sub: str) -> None:
    found = discover_records(repo / sub)
    expected = EXPECTED if sub != "records/track_10min_16mb" else EXPECTED[:6]
    assert rels(found) == expected


def test_single_record_folder(repo: Path) -> None:
    found = discover_records(repo / "records/track_10min_16mb/2026-04-23_CaseOps")
    assert rels(found) == ["records/track_10min_16mb/2026-04-23_CaseOps"]
    assert found[0].track == "track_10min_16mb"


def test_nested_folders_belong_to_their_record(repo: Path) -> None:
    by_rel = {r.rel: r for r in discover_records(repo)}
    caseops = by_rel["records/track_10min_16mb/2026-04-23_CaseOps"]
    kinds = {f.rel: f.kind for f in caseops.files}
    assert kinds == {
        "submission.json": "json",
        "tokenizers/caseops.model": "tokenizer",
        "ttt_pr1767/seed_42.log": "log",
        "ttt_pr1767/seed_42_result.json": "json",
    }
    assert [f.rel for f in caseops.logs] == ["ttt_pr1767/seed_42.log"]
    varlen = by_rel["records/track_10min_16mb/2026-04-10_VarLen"]
    assert [f.rel for f in varlen.logs] == ["logs/train0.txt"]  # requirements.txt is not a log
    a2 = by_rel["records/track_10min_16mb/2026-04-09_A2"]
    assert {f.rel for f in a2.scripts} == {"ngram_tilt.py", "train_gpt.py"}
    assert a2.entry_script.rel == "train_gpt.py"
    assert a2.entry("ngram/fused_expert_kernel.cpp").kind == "other"


def test_records_outside_the_track_layout_use_the_heuristic(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write(
        root,
        {
            "records/records/track_10min_16mb/A/train.log": LOG,  # seen in PRs
            "records/phase3/exp1/submission.json": "{}\n",
            "records/phase3/exp1/logs/x.log": LOG,  # belongs to exp1
            "records/phase3/notes/plan.md": "not a record\n",
            "records/notes.md": "file directly under records/\n",
        },
    )
    assert rels(discover_records(root)) == ["records/phase3/exp1", "records/records/track_10min_16mb/A"]


def test_heuristic_search_outside_any_records_tree(tmp_path: Path) -> None:
    write(
        tmp_path / "subs",
        {
            "A/submission.json": "{}\n",
            "B/README.md": "# b\n",
            "B/train_log_1.txt": LOG,  # README + a .txt log
            "C/README.md": "# just a readme\n",
            "deep/er/D/train_x.py": "x = 1\n",
            ".hidden/E/train.log": LOG,  # dot folders are not searched
        },
    )
    found = discover_records(tmp_path / "subs")
    assert rels(found) == ["A", "B", "deep/er/D"]
    assert all(r.track is None for r in found)
    single = discover_records(tmp_path / "subs" / "A")
    assert rels(single) == ["A"]


def test_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        discover_records(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        discover_records(tmp_path / "file.txt")
    write(tmp_path / "empty", {"notes/readme.md": "nothing\n"})
    with pytest.raises(InputError, match="no record folders"):
        discover_records(tmp_path / "empty")
    (tmp_path / "repo2" / "records" / "track_10min_16mb").mkdir(parents=True)
    with pytest.raises(InputError, match="no record folders"):
        discover_records(tmp_path / "repo2")


def test_discovery_is_deterministic(repo: Path) -> None:
    a = [(r.rel, [(f.rel, f.size, f.kind) for f in r.files]) for r in discover_records(repo)]
    b = [(r.rel, [(f.rel, f.size, f.kind) for f in r.files]) for r in discover_records(repo)]
    assert a == b


# ---------------------------------------------------------------------------------------------
# File kinds and entry scripts


@pytest.mark.parametrize(
    ("rel", "kind"),
    [
        ("train_gpt.py", "script"),
        ("ngram/helper.py", "script"),
        ("train.log", "log"),
        ("train_seed42.log", "log"),
        ("ternary_log_1337.txt", "log"),
        ("logs/train0.txt", "log"),
        ("requirements.txt", "other"),
        ("submission.json", "json"),
        ("submission_binary.json", "json"),
        ("ttt_pr1767/seed_1_result.json", "json"),
        ("README.md", "readme"),
        ("docs/README.md", "other"),
        ("RESULTS.md", "other"),
        ("fineweb_8192_bpe.model", "tokenizer"),
        ("fineweb_8192_bpe.vocab", "tokenizer"),
        ("results.tsv", "other"),
        ("run.sh", "other"),
    ],
)
def test_classify(rel: str, kind: str) -> None:
    assert classify(rel) == kind


@pytest.mark.parametrize(
    ("names", "entry"),
    [
        (["train_gpt.py", "train_gpt_human.py", "train_gpt_decode.py"], "train_gpt.py"),
        (["train_gpt_hnet.py", "train_gpt_hnet_byte.py"], "train_gpt_hnet.py"),
        (
            [
                "train_gpt_cuda_xnor_eggroll_full.py",
                "train_gpt_cuda_xnor.py",
                "train_gpt_cuda_xnor_eggroll_lora.py",
            ],
            "train_gpt_cuda_xnor.py",
        ),
        (["train_jepa_ssm.py", "transpile_to_bytes.py"], "train_jepa_ssm.py"),
        (["train_mdlm.py", "train_gpt_legendre.py"], "train_gpt_legendre.py"),
        (["model.py"], None),
    ],
)
def test_entry_script_heuristic(tmp_path: Path, names: list[str], entry: str | None) -> None:
    write(tmp_path / "r", {n: "x = 1\n" for n in names} | {"train.log": LOG})
    rec = scan_record(tmp_path / "r")
    assert (rec.entry_script.rel if rec.entry_script else None) == entry


def test_submission_json_and_readme_properties(tmp_path: Path) -> None:
    write(tmp_path / "r", {"submission_ternary.json": "{}", "readme.md": "# r\n", "train.log": LOG})
    rec = scan_record(tmp_path / "r")
    assert rec.submission_json.rel == "submission_ternary.json"
    assert rec.readme.rel == "readme.md"
    write(tmp_path / "r", {"submission.json": "{}"})
    assert scan_record(tmp_path / "r").submission_json.rel == "submission.json"


# ---------------------------------------------------------------------------------------------
# HYG001


def _hyg001(rec) -> list:
    return [f for f in required_files_findings(rec) if f.rule_id == "HYG001"]


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.iterdir()))
def test_hyg001_fixtures(fixture: str) -> None:
    found = discover_records(FIXTURES / fixture)
    assert len(found) == 1
    findings = _hyg001(found[0])
    if fixture.startswith("flag_"):
        assert findings, f"{fixture} should raise HYG001"
        assert all(f.message and f.location is not None and f.location.file for f in findings)
    else:
        assert findings == [], [f.message for f in findings]


def _messages(rec) -> dict[str, Severity]:
    return {f.message: f.severity for f in _hyg001(rec)}


def test_hyg001_details() -> None:
    only_log = discover_records(FIXTURES / "flag_only_log")[0]
    severities = sorted(f.severity.value for f in _hyg001(only_log))
    assert severities == ["error", "error", "error"]  # README, submission.json, no script at all

    empty = _hyg001(discover_records(FIXTURES / "flag_empty_train_gpt")[0])
    assert [(f.severity, f.location.file) for f in empty] == [(Severity.ERROR, "train_gpt.py")]

    other = _hyg001(discover_records(FIXTURES / "flag_other_entry_script")[0])
    assert [f.severity for f in other] == [Severity.WARNING]
    assert other[0].data["entry_script"] == "train_gpt_v5.py"
    assert other[0].confidence.value == "heuristic"

    variant = _hyg001(discover_records(FIXTURES / "flag_submission_variant_json")[0])
    assert [f.severity for f in variant] == [Severity.INFO]

    no_log = _hyg001(discover_records(FIXTURES / "flag_no_log")[0])
    assert [(f.severity, f.data.get("missing")) for f in no_log] == [(Severity.ERROR, "train log")]


def test_hyg001_non_record_track_is_softer(tmp_path: Path) -> None:
    write(tmp_path / "records/track_non_record_16mb/X", {"train_gpt.py": "x = 1\n"})
    write(tmp_path / "records/track_10min_16mb/Y", {"train_gpt.py": "x = 1\n"})
    y, x = discover_records(tmp_path)  # sorted: track_10min_16mb first
    assert {f.severity for f in _hyg001(x)} == {Severity.WARNING}
    assert {f.severity for f in _hyg001(y)} == {Severity.ERROR}
    assert len(_hyg001(x)) == len(_hyg001(y)) == 3


# ---------------------------------------------------------------------------------------------
# Symlinks, special files, unreadable folders (HYG009)


def test_symlinks_are_recorded_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, {"secret.txt": "secret\n", "dir/a.log": LOG})
    rec_dir = tmp_path / "records/track_10min_16mb/R"
    write(rec_dir, full_record({"logs/seed1.log": LOG}))
    os.remove(rec_dir / "train_gpt.py")
    (rec_dir / "train_gpt.py").symlink_to(outside / "secret.txt")  # file link leaving the folder
    (rec_dir / "logs_elsewhere").symlink_to(outside / "dir")  # directory link leaving the folder
    (rec_dir / "train_seed2.log").symlink_to("logs/seed1.log")  # link inside the folder
    (rec_dir / "gone.log").symlink_to("nowhere.log")  # dangling
    (rec_dir / "up").symlink_to("..", target_is_directory=True)  # loop back up the tree
    (rec_dir / "loop_a.log").symlink_to("loop_b.log")  # a loop: not "dangling"
    (rec_dir / "loop_b.log").symlink_to("loop_a.log")

    (rec,) = discover_records(tmp_path)
    by = {f.rel: f for f in rec.files}
    assert by["train_gpt.py"].is_symlink and by["train_gpt.py"].symlink_escapes
    assert by["logs_elsewhere"].is_symlink and by["logs_elsewhere"].symlink_escapes
    assert not any(f.rel.startswith("logs_elsewhere/") for f in rec.files)  # not descended
    assert by["train_seed2.log"].is_symlink and not by["train_seed2.log"].symlink_escapes
    assert by["train_seed2.log"].size == len(LOG)  # an in-folder link reads as its target
    assert by["gone.log"].unreadable == "dangling symlink"
    assert by["loop_a.log"].unreadable == by["loop_b.log"].unreadable == "symlink loop"
    assert by["up"].symlink_escapes

    # Escaping links are never offered to later stages.
    assert rec.entry_script is None
    assert "train_gpt.py" not in {f.rel for f in rec.scripts}
    assert {f.rel for f in rec.logs} == {"logs/seed1.log", "train.log", "train_seed2.log"}
    with pytest.raises(InputError, match="leaves the folder"):
        rec.path_of("train_gpt.py")
    assert rec.path_of("train_seed2.log") == rec.root / "train_seed2.log"

    hyg009 = {f.location.file: f.severity for f in unsafe_path_findings(rec)}
    assert hyg009 == {
        "train_gpt.py": Severity.ERROR,
        "logs_elsewhere": Severity.ERROR,
        "up": Severity.ERROR,
        "train_seed2.log": Severity.WARNING,
        "gone.log": Severity.WARNING,
        "loop_a.log": Severity.WARNING,
        "loop_b.log": Severity.WARNING,
    }
    # HYG001 does not count the escaping train_gpt.py as present.
    assert any("train_gpt.py" in f.message for f in _hyg001(rec))


def test_record_folder_that_is_a_symlink(tmp_path: Path) -> None:
    write(tmp_path / "elsewhere/R", full_record())
    track = tmp_path / "repo/records/track_10min_16mb"
    write(track / "Real", full_record())
    (track / "Linked").symlink_to(tmp_path / "elsewhere/R")
    linked, real = discover_records(tmp_path / "repo")
    assert linked.is_symlink and linked.symlink_escapes and linked.files == []
    assert [f.severity for f in unsafe_path_findings(linked)] == [Severity.ERROR]
    assert required_files_findings(linked) == []  # HYG009 already says why nothing was read
    assert unsafe_path_findings(real) == []


def test_fifo_is_not_opened(tmp_path: Path) -> None:
    write(tmp_path / "r", full_record())
    os.mkfifo(tmp_path / "r" / "pipe.log")
    (tmp_path / "r" / "via_link.log").symlink_to("pipe.log")
    rec = scan_record(tmp_path / "r")
    pipe = rec.entry("pipe.log")
    assert pipe.unreadable == "not a regular file" and not pipe.usable
    assert rec.entry("via_link.log").unreadable == "symlink to a non-regular file"
    assert {f.rel for f in rec.logs} == {"train.log"}
    assert [(f.location.file, f.severity) for f in unsafe_path_findings(rec)] == [
        ("pipe.log", Severity.ERROR),
        ("via_link.log", Severity.WARNING),
    ]


def test_odd_file_names(tmp_path: Path) -> None:
    write(tmp_path / "r", full_record())
    raw = os.path.join(os.fsencode(tmp_path / "r"), b"bad\xffname.log")
    with open(raw, "wb") as fh:
        fh.write(b"x")
    (tmp_path / "r" / "new\nline.log").write_text("x")
    (tmp_path / "r" / "журнал_é.log").write_text(LOG)  # non-ASCII but valid: fine
    rec = scan_record(tmp_path / "r")
    assert rec.entry("журнал_é.log").usable
    problems = {f.unreadable for f in rec.files if f.unreadable}
    assert problems == {"file name is not valid UTF-8", "file name contains control characters"}
    shown = sorted(f.location.file for f in unsafe_path_findings(rec))
    assert shown == ["bad\\xffname.log", "new\\nline.log"]  # printable, encodable for the JSON report


def test_unreadable_folder_is_recorded_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated with a failing scandir, so it also runs as root (where chmod 000 does not bite)."""
    write(tmp_path / "records/track_10min_16mb/A", full_record({"logs/x.log": LOG}))
    write(tmp_path / "records/track_10min_16mb/B", full_record())
    real_scandir = os.scandir
    blocked = {
        str(tmp_path / "records/track_10min_16mb/A/logs"),
        str(tmp_path / "records/track_10min_16mb/B"),
    }

    def scandir(path):
        if str(path) in blocked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(intake.os, "scandir", scandir)
    a, b = discover_records(tmp_path)
    assert a.entry("logs").unreadable == "cannot list directory: Permission denied"
    assert b.unreadable == "cannot list directory: Permission denied" and b.files == []
    assert [f.severity for f in unsafe_path_findings(a)] == [Severity.WARNING]
    assert [f.severity for f in unsafe_path_findings(b)] == [Severity.ERROR]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads chmod-000 folders; covered by the scandir test")
def test_chmod_000_folder(tmp_path: Path) -> None:
    rec_dir = tmp_path / "records/track_10min_16mb/A"
    write(rec_dir, full_record({"logs/x.log": LOG, "secret.log": LOG}))
    (rec_dir / "logs").chmod(0)
    (rec_dir / "secret.log").chmod(0)
    try:
        (rec,) = discover_records(tmp_path)
        assert rec.entry("logs").unreadable.startswith("cannot list directory")
        assert rec.entry("secret.log").unreadable == "permission denied"
        assert {f.rel for f in rec.logs} == {"train.log"}
    finally:
        (rec_dir / "logs").chmod(0o755)
        (rec_dir / "secret.log").chmod(0o644)


# ---------------------------------------------------------------------------------------------
# Path helpers


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../x", "a/../../x", "a\\b", "C:/x", "a\0b", ".", "./"])
def test_safe_relpath_rejects(bad: str) -> None:
    with pytest.raises(InputError):
        safe_relpath(bad)


def test_safe_relpath_normalizes() -> None:
    assert safe_relpath("./logs//train.log") == "logs/train.log"
    assert safe_relpath("a b/c.txt") == "a b/c.txt"


# ---------------------------------------------------------------------------------------------
# The real corpus (skipped when ../shared is absent)


@pytest.mark.corpus
@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus not present")
def test_corpus_has_60_records() -> None:
    found = discover_records(CORPUS)
    assert len(found) == 60
    tracks = [r.track for r in found]
    assert tracks.count("track_10min_16mb") == 46 and tracks.count("track_non_record_16mb") == 14
    names = {r.name for r in found}
    assert "2026-03-19_int6_STE QAT_ MLP_bigram _U_Net" in names
    assert all(r.rel.startswith("records/track_") for r in found)

    # records-format.md §1.1: README missing once; JSON missing twice; 3 submission_<x>.json.
    missing = {"README.md": 0, "submission.json": 0}
    variants = 0
    for rec in found:
        for f in _hyg001(rec):
            if f.data.get("missing") in missing:
                missing[f.data["missing"]] += 1
            variants += f.data.get("found", "").startswith("submission_")
        assert unsafe_path_findings(rec) == []
    assert missing == {"README.md": 1, "submission.json": 2}
    assert variants == 3
    no_logs = sorted(r.name for r in found if not r.logs)
    assert len(no_logs) == 3 and all(r.track == "track_non_record_16mb" for r in found if not r.logs)


def test_a_flooded_folder_keeps_its_required_files_and_says_it_was_cut(tmp_path: Path, monkeypatch) -> None:
    """More entries than the listing keeps, all sorting before the required files: the required
    files are still found (looked up first, by name), and the cut is its own finding."""
    monkeypatch.setattr(intake, "MAX_FILES_PER_RECORD", 40)
    rec_dir = tmp_path / "records/track_10min_16mb/R"
    write(rec_dir, full_record({"train_seed1.log": LOG}))
    for i in range(120):  # names before README.md / submission.json / train_gpt.py, in every order
        (rec_dir / f"A{i:04d}.bin").write_bytes(b"x")
    (rec_dir / "0dir").mkdir()
    for i in range(30):
        (rec_dir / "0dir" / f"{i}.txt").write_text("x\n")
    (rec,) = discover_records(tmp_path)
    assert rec.submission_json is not None and rec.readme is not None and rec.entry_script is not None
    assert "train_seed1.log" in {f.rel for f in rec.logs}
    assert not _hyg001(rec), [f.message for f in _hyg001(rec)]
    cut = [f for f in unsafe_path_findings(rec) if "more than 40 entries" in f.message]
    assert len(cut) == 1 and cut[0].location.file == "."
    assert len(rec.files) == 41  # the kept entries and the one that says the listing was cut
    rels = [f.rel for f in rec.files[:-1]]
    assert rels == sorted(rels, key=lambda r: r.split("/"))  # the listing order stays by name


def test_many_unreadable_logs_give_a_bounded_number_of_findings(tmp_path: Path) -> None:
    from auditor.parse.logs import MAX_LOG_FINDINGS, parse_log, unreadable_log_findings

    logs = []
    for i in range(MAX_LOG_FINDINGS + 15):
        path = tmp_path / f"empty{i:03d}.log"
        path.write_bytes(b"")
        logs.append(parse_log(path, path.name))
    found = unreadable_log_findings(logs)
    assert len(found) == MAX_LOG_FINDINGS + 1
    assert found[-1].data["more"] == 15 and "15 more logs could not be fully read" in found[-1].message
