"""Report formats (auditor/report): JSON round-trip + schema, SARIF 2.1.0 validity, Markdown, text."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest

import rules
from auditor.errors import ExitCode, PgolfError
from auditor.findings import DOCS_BASE_URL, rule_reference
from auditor.models import (
    AuditReport,
    Condition,
    Confidence,
    Finding,
    Location,
    PRScope,
    RecordAudit,
    SeedRun,
    Severity,
    Verdict,
)
from auditor.report import FORMATS, json_schema, render, sarif, text
from auditor.report import markdown as md
from auditor.report.common import file_path, repo_relative
from auditor.significance import assess, leaderboard_baseline

ROOT = Path(__file__).resolve().parents[1]
SARIF_SCHEMA = json.loads((ROOT / "tests" / "fixtures" / "sarif-schema-2.1.0.json").read_text())
RECORD = "records/track_10min_16mb/2026-04-10_Ünïcode_Test"
WRAPPER = "train_gpt.py: lzma(raw)+b85"
HUGE = "very long explanation " * 5_000  # 110,000 characters


def make_finding(
    rule_id,
    severity,
    message,
    *,
    condition=Condition.C2,
    confidence=Confidence.STRONG,
    location=None,
    path=None,
    data=None,
    origin="static",
    reachability=None,
):
    return Finding(
        rule_id=rule_id,
        condition=condition,
        severity=severity,
        confidence=confidence,
        message=message,
        location=location,
        path=path or [],
        data=data or {},
        reachability=reachability,
        reference=rule_reference(rule_id),
        origin=origin,
    )


def sample_report(verdict=Verdict.FAIL, extra_findings=0) -> AuditReport:
    runs = [
        SeedRun(
            log_file="train_seed42.log",
            seed=42,
            val_loss=2.78458595,
            val_bpb=1.0780,
            line=41,
            artifact_bytes=15_991_930,
            seed_source="log",
            label="quantized_sliding_window",
        ),
        SeedRun(
            log_file="train_seed314.log",
            seed=314,
            val_loss=2.78587751,
            val_bpb=1.0785,
            line=41,
            artifact_bytes=16_000_413,
            seed_source="log",
            label="quantized_sliding_window",
        ),
        SeedRun(
            log_file="train_seed999.log",
            seed=999,
            val_loss=2.78510258,
            val_bpb=1.0782,
            line=41,
            artifact_bytes=15_990_000,
            seed_source="log",
            label="quantized_sliding_window",
        ),
        SeedRun(
            log_file="train.log",
            seed=42,
            val_loss=2.78458595,
            val_bpb=1.0780,
            line=41,
            artifact_bytes=15_991_930,
            duplicate_of="train_seed42.log",
        ),
    ]
    sig = assess(
        runs,
        leaderboard_baseline("2026-04-10"),
        claim_location=Location(file="submission.json", line=8, snippet='"val_bpb": 1.07823333,'),
    )
    wrapped = Location(
        file="train_gpt.py",
        line=321,
        snippet="    p = full[key] / ctx[key]\n    nll -= log(p)",
        wrapper=WRAPPER,
        wrapper_line=2,
    )
    findings = [
        make_finding(
            "C2X01",
            Severity.ERROR,
            "the cache probability is computed only for the realized token; "
            "ctx_counts is indexed with `tgt` — ünïcödé ✓, <script>alert(1)</script> @maintainer | pipes |",
            location=wrapped,
            path=[
                Location(
                    file="train_gpt.py", line=300, snippet="tgt = val_np[jv]", wrapper=WRAPPER, role="source"
                ),
                Location(
                    file="train_gpt.py",
                    line=310,
                    snippet="key = (h ^ (tgt * P)) & mask",
                    wrapper=WRAPPER,
                    role="via",
                ),
                wrapped.model_copy(update={"role": "sink"}),
            ],
            data={"order": 7, "nan": float("nan")},
        ),
        make_finding(
            "LIMX01",
            Severity.ERROR,
            "artifact 16,000,413 bytes > 16,000,000 (seed 314)",
            condition=Condition.LIMIT,
            confidence=Confidence.PROOF,
            origin="log",
            location=Location(
                file="train_seed314.log",
                line=39,
                snippet="Total submission size quantized+brotli: 16000413 bytes",
            ),
        ),
        make_finding(
            "HYGX01",
            Severity.WARNING,
            HUGE,
            condition=Condition.HYGIENE,
            location=Location(file="README.md", line=None),
        ),
        make_finding("HYGX02", Severity.INFO, "no location at all", condition=Condition.HYGIENE),
        make_finding(
            "HYGX03",
            Severity.INFO,
            "code with ``` fences inside",
            condition=Condition.HYGIENE,
            location=Location(file="notes.md", line=2, snippet="```python\nprint('x')\n```"),
        ),
        *sig.findings,
    ]
    findings += [
        make_finding(
            "C3X01",
            Severity.WARNING,
            f"extra finding {i}: " + "x" * 600,
            condition=Condition.C3,
            location=Location(file="train_gpt.py", line=1000 + i, snippet=f"step({i})", wrapper=WRAPPER),
        )
        for i in range(extra_findings)
    ]
    record = RecordAudit(
        path=RECORD,
        name="Ünïcode test",
        track="track_10min_16mb",
        verdict=verdict,
        findings=findings,
        runs=runs,
        claimed={"val_bpb": 1.07823333, "date": "2026-04-10"},
        significance=sig.significance,
        sources=[{"file": "train_gpt.py", "chain": "lzma(raw)+b85", "bytes": 48_583, "entry": True}],
        files=["README.md", "submission.json", "train_gpt.py", "train_seed42.log"],
    )
    second = RecordAudit(
        path="records/track_non_record_16mb/2026-04-11_Other",
        name="Other",
        track="track_non_record_16mb",
        verdict=Verdict.ERROR,
        error="log unreadable: bad UTF-8",
    )
    return AuditReport(
        tool_version="0.1.0",
        generated_at="2026-05-03T10:00:00Z",
        verdict=verdict,
        records=[record, second],
        pr=PRScope(
            repo="openai/parameter-golf",
            ref="refs/pull/9999/head",
            base="main",
            commit="a" * 40,
            added_records=[RECORD],
            outside_changes=["README.md"],
        ),
        findings=[
            make_finding(
                "HYGX04",
                Severity.WARNING,
                "PR changes files outside its record folder",
                condition=Condition.HYGIENE,
                location=Location(file="README.md", line=12),
            )
        ],
        options={"root": "/tmp/checkout"},
    )


# --- JSON ------------------------------------------------------------------------------------------


def test_json_round_trips_through_the_model():
    report = sample_report()
    out = render(report, "json")
    data = json.loads(out)
    assert data["schema_version"] == report.schema_version
    assert data["records"][0]["findings"][0]["data"]["nan"] is None  # NaN is not JSON
    back = AuditReport.model_validate_json(out)
    expected = json.loads(json.dumps(report.model_dump(mode="json"), default=str).replace("NaN", "null"))
    assert back.model_dump(mode="json") == expected
    assert back.records[0].significance == report.records[0].significance
    assert "ünïcödé" in out  # UTF-8, not \u escapes


def test_json_report_validates_against_its_schema():
    data = json.loads(render(sample_report(), "json"))
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(data)
    broken = copy.deepcopy(data)
    broken["records"][0]["findings"][0]["severity"] = "catastrophic"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(broken)


def test_committed_schema_is_current():
    committed = json.loads((ROOT / "docs" / "report-schema.json").read_text())
    assert committed == json_schema(), "run auditor.report.json_report.write_json_schema()"


def test_schema_doc_mentions_every_field():
    doc = (ROOT / "docs" / "report-schema.md").read_text()
    for definition in json_schema()["$defs"].values():
        for field in definition.get("properties", {}):
            assert f"`{field}`" in doc, field
    for field in json_schema()["properties"]:
        assert f"`{field}`" in doc, field


# --- SARIF -----------------------------------------------------------------------------------------


def sarif_of(report):
    return json.loads(render(report, "sarif"))


def test_sarif_validates_against_the_official_schema():
    log = sarif_of(sample_report())
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(log)
    assert log["version"] == "2.1.0" and "sarif-schema-2.1.0" in log["$schema"]
    # the validator really checks: a result without a message is rejected
    broken = copy.deepcopy(log)
    del broken["runs"][0]["results"][0]["message"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(SARIF_SCHEMA).validate(broken)


def test_sarif_rules_are_exactly_the_used_ones():
    report = sample_report()
    run = sarif_of(report)["runs"][0]
    used = {f.rule_id for r in report.records for f in r.findings} | {f.rule_id for f in report.findings}
    descriptors = run["tool"]["driver"]["rules"]
    assert {d["id"] for d in descriptors} == used
    assert len(descriptors) == len(used)
    for result in run["results"]:
        assert descriptors[result["ruleIndex"]]["id"] == result["ruleId"]
    catalog = rules.catalog()
    for d in descriptors:
        props = d["properties"]
        assert re.fullmatch(r"\d+\.\d", props["security-severity"])
        assert props["precision"] in {"very-high", "high", "medium", "low"}
        assert d["defaultConfiguration"]["level"] in {"error", "warning", "note"}
        if d["id"] in catalog:
            rule = catalog[d["id"]]
            assert (
                d["name"] == rule.name and d["help"]["markdown"] == rule.doc
                    and ("helpUri" in d) == (DOCS_BASE_URL is not None)
            )
            assert d["fullDescription"]["text"] and d["shortDescription"]["text"] == rule.summary
            assert ("security" in props["tags"]) == (rule.condition.value in {"C1", "C2", "C3", "C4"})


def test_sarif_locations_and_wrapped_code():
    run = sarif_of(sample_report())["runs"][0]
    results = run["results"]
    for result in results:
        uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert not uri.startswith("/") and "\\" not in uri
        assert result["locations"][0]["physicalLocation"]["region"]["startLine"] >= 1
    wrapped = next(r for r in results if r["ruleId"] == "C2X01")
    loc = wrapped["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == f"{RECORD}/train_gpt.py"
    assert loc["region"] == {"startLine": 2}  # the wrapper line holding the payload (321 is in the payload)
    assert wrapped["properties"]["pgolf/payloadLine"] == 321
    related = wrapped["relatedLocations"][0]
    assert "decoded payload line 321" in related["message"]["text"] and "full[key]" in related["message"]["text"]
    assert wrapped["properties"]["pgolf/wrapper"] == WRAPPER
    assert "line 321 of the decoded payload" in wrapped["message"]["text"]
    flow = wrapped["codeFlows"][0]["threadFlows"][0]["locations"]
    assert [step["properties"]["pgolf/payloadLine"] for step in flow] == [300, 310, 321]
    assert "source" in flow[0]["location"]["message"]["text"]
    plain = next(r for r in results if r["ruleId"] == "LIMX01")
    region = plain["locations"][0]["physicalLocation"]["region"]
    assert region["startLine"] == 39 and "16000413" in region["snippet"]["text"]
    assert plain["level"] == "error" and "codeFlows" not in plain
    locationless = next(r for r in results if r["ruleId"] == "HYGX02")
    assert locationless["properties"]["pgolf/folderFinding"] is True
    assert (
        locationless["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == f"{RECORD}/README.md"
    )
    top = next(r for r in results if r["ruleId"] == "HYGX04")
    assert top["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "README.md"
    huge = next(r for r in results if r["ruleId"] == "HYGX01")
    assert len(huge["message"]["text"]) <= sarif.MAX_MESSAGE
    assert huge["properties"]["pgolf/lineUnknown"] is True
    prints = [r["partialFingerprints"]["pgolfFindingHash/v1"] for r in results]
    assert len(prints) == len(set(prints))
    # no machine path anywhere: %SRCROOT% is resolved by the consumer
    assert "uri" not in run["originalUriBaseIds"]["%SRCROOT%"]
    assert "/tmp/checkout" not in json.dumps(run)


def _one_record(path: str, findings, *, track=None, claimed=None, files=("README.md", "train_gpt.py")):
    record = RecordAudit(path=path, name=Path(path).name, track=track, verdict=Verdict.NEEDS_REVIEW,
                         findings=findings, claimed=claimed or {}, files=list(files))
    return AuditReport(tool_version="0.1.0", generated_at="2026-05-03T10:00:00Z", verdict=Verdict.NEEDS_REVIEW,
                       records=[record], options={"root": "/home/someone/work"})


@pytest.mark.parametrize(
    ("path", "track", "claimed", "expected"),
    [
        ("records/track_10min_16mb/2026-05-01_X", "track_10min_16mb", None, "records/track_10min_16mb/2026-05-01_X"),
        ("/home/someone/work/records/track_10min_16mb/2026-05-01_X", None, None,
         "records/track_10min_16mb/2026-05-01_X"),
        ("2026-05-01_X", None, {"track": "non_record_16mb"}, "records/track_non_record_16mb/2026-05-01_X"),
        ("/home/someone/2026-05-01_X", None, None, "records/track_10min_16mb/2026-05-01_X"),
    ],
)
def test_sarif_uris_are_repository_relative_in_every_mode(path, track, claimed, expected):
    f = make_finding("C3X01", Severity.WARNING, "m", condition=Condition.C3,
                     location=Location(file="train_gpt.py", line=3, snippet="x"))
    log = sarif_of(_one_record(path, [f], track=track, claimed=claimed))
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(log)
    uri = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == f"{expected}/train_gpt.py"
    assert "/home/someone" not in json.dumps(log)


def test_sarif_folder_findings_point_at_a_file_the_folder_has():
    missing_readme = make_finding("HYGX01", Severity.ERROR, "README.md is missing", condition=Condition.HYGIENE,
                                  location=Location(file=".", role="folder", snippet="folder holds: x"))
    report = _one_record("records/track_10min_16mb/2026-05-01_X", [missing_readme],
                         files=("submission.json", "train_gpt.py"))
    result = sarif_of(report)["runs"][0]["results"][0]
    loc = result["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == "records/track_10min_16mb/2026-05-01_X/submission.json"
    assert loc["region"]["startLine"] == 1 and result["properties"]["pgolf/folderFinding"] is True
    # an empty folder has nothing to point at: a run-level notification, not a result on "."
    empty = sarif_of(_one_record("records/track_10min_16mb/2026-05-01_X", [missing_readme], files=()))
    run = empty["runs"][0]
    assert run["results"] == []
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert any("README.md is missing" in n["message"]["text"] for n in notes)
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(empty)


def test_sarif_rule_level_matches_its_results():
    # a rule declared error but reported as a note for this record (e.g. a downgraded finding)
    rule_id = next(r.id for r in rules.catalog().values() if r.severity is Severity.ERROR)
    f = make_finding(rule_id, Severity.INFO, "downgraded", location=Location(file="train_gpt.py", line=1))
    run = sarif_of(_one_record("records/track_10min_16mb/2026-05-01_X", [f]))["runs"][0]
    assert run["tool"]["driver"]["rules"][0]["defaultConfiguration"]["level"] == "note"
    assert run["results"][0]["level"] == "note"


def test_sarif_fingerprint_survives_a_line_shift():
    report = sample_report()
    moved = report.model_copy(deep=True)
    moved.records[0].findings[1].location.line += 7
    first = {r["ruleId"]: r["partialFingerprints"] for r in sarif_of(report)["runs"][0]["results"]}
    second = {r["ruleId"]: r["partialFingerprints"] for r in sarif_of(moved)["runs"][0]["results"]}
    assert first["LIMX01"] == second["LIMX01"]


def test_sarif_invocation_reflects_errors():
    ok = sarif_of(sample_report(Verdict.FAIL))["runs"][0]["invocations"][0]
    assert ok["executionSuccessful"] is True
    assert "log unreadable" in ok["toolExecutionNotifications"][0]["message"]["text"]
    failed = sarif_of(sample_report(Verdict.ERROR))["runs"][0]["invocations"][0]
    assert failed["executionSuccessful"] is False


def test_sarif_empty_report_is_valid():
    report = AuditReport(tool_version="0.1.0", generated_at="2026-05-03T10:00:00Z", verdict=Verdict.PASS)
    log = sarif_of(report)
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(log)
    assert log["runs"][0]["results"] == [] and log["runs"][0]["tool"]["driver"]["rules"] == []


@pytest.mark.parametrize(
    ("record", "file", "expected"),
    [
        ("records/track_10min_16mb/X", "train_gpt.py", "records/track_10min_16mb/X/train_gpt.py"),
        ("/home/u/pg/records/track_10min_16mb/X", "logs/a.txt", "records/track_10min_16mb/X/logs/a.txt"),
        ("C:\\pg\\records\\track_10min_16mb\\X", "train_gpt.py", "records/track_10min_16mb/X/train_gpt.py"),
        (
            "records/track_10min_16mb/X",
            "records/track_10min_16mb/X/README.md",
            "records/track_10min_16mb/X/README.md",
        ),
        ("/tmp/checkout/sub/X", "./train_gpt.py", "sub/X/train_gpt.py"),
        ("/elsewhere/X", "/elsewhere/X/submission.json", "X/submission.json"),
        (None, "./README.md", "README.md"),
    ],
)
def test_repository_relative_paths(record, file, expected):
    assert file_path(record, file, {"root": "/tmp/checkout"}) == expected


def test_repo_relative_keeps_dot_names():
    assert repo_relative(".hidden/records_x") == ".hidden/records_x"


# --- Markdown --------------------------------------------------------------------------------------


def test_markdown_has_the_key_elements():
    out = render(sample_report(), "markdown")
    assert out.startswith("## pgolf audit: `FAIL`")
    assert "**Verdict: `FAIL`**" in out
    assert not re.search(
        "[\U0001f300-\U0001faff\u2600-\u27bf]", out.split("\n", 3)[2]
    )  # emoji-free badge line
    for value in ("1.07800000", "1.07850000", "1.07820000", "1.07823333"):  # per seed and mean
        assert value in out
    assert "seeds 42, 314, 999" in out
    assert "16,000,413" in out and "413 OVER" in out and "8,070 under" in out
    assert "duplicate of `train_seed42.log`" in out
    assert (
        "`train_gpt.py:321` (line in the decoded payload; wrapper chain: `train_gpt.py: lzma(raw)+b85`)"
        in out
    )
    assert "```python\n      p = full[key] / ctx[key]" in out
    assert "1. source: `train_gpt.py:300`" in out
    assert "#### Decisive findings" in out and "<details><summary>Other findings (" in out
    # code containing ``` gets a longer fence
    assert md.fenced("```python\nprint('x')\n```", "markdown").startswith("````markdown\n```python")
    # significance: both policies x both units
    for policy in ("readme", "frontier"):
        for unit in ("nats/token", "nats/byte"):
            assert f"| {policy} | {unit} |" in out
    assert "Significance vs PR #1493" in out


def test_markdown_comment_for_a_nine_folder_pr_leads_with_verdicts_and_stays_short():
    base = sample_report(extra_findings=30)
    records = []
    for i in range(9):
        rec = base.records[0].model_copy(deep=True)
        rec.path = f"records/track_10min_16mb/2026-03-2{i}_Run{i}"
        rec.name = f"2026-03-2{i}_Run{i}"
        records.append(rec)
    report = base.model_copy(update={
        "records": records,
        "pr": PRScope(repo="/work/.mirror/openai+parameter-golf/repo", ref="refs/pull/909/head",
                      base="main", commit="0123456789abcdef0123456789abcdef01234567"),
    })
    out = render(report, "markdown")
    lines = out.splitlines()
    assert len(lines) <= md.MAX_LINES and len(out) <= md.GITHUB_COMMENT_LIMIT
    assert "/work/.mirror" not in out and "Audited PR #909 at `0123456789ab`." in out
    # the per-folder verdict table comes first, naming each folder's decisive finding
    table = next(i for i, line in enumerate(lines) if line.startswith("| Record | Verdict"))
    assert table < 12 and sum(line.startswith("| `2026-03-2") for line in lines) == 9
    assert all("`C2X01` `train_gpt.py:321`" in line for line in lines if line.startswith("| `2026-03-2"))
    assert "full report" in out


def test_pr_label_never_shows_a_local_path():
    assert md.pr_label(PRScope(repo="https://github.com/openai/parameter-golf.git", ref="refs/pull/7/head")) == (
        "openai/parameter-golf#7"
    )
    assert md.pr_label(PRScope(repo="openai/parameter-golf", ref="pull/8/head")) == "openai/parameter-golf#8"
    assert md.pr_label(PRScope(repo="/srv/mirror", ref="refs/pull/9/head")) == "PR #9"
    assert md.pr_label(PRScope(repo="/srv/mirror", ref="feature")) == "ref feature"


def test_markdown_escapes_untrusted_text():
    out = render(sample_report(), "markdown")
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "@maintainer" not in out and "&#64;maintainer" in out
    assert "ünïcödé ✓" in out
    assert md.code("a`b") == "``a`b``"
    assert md.cell("a|b\nc") == "a\\|b<br>c"
    assert md.code_cell("x|y") == "`x\\|y`"


def test_markdown_stays_under_the_comment_limit():
    out = render(sample_report(extra_findings=400), "markdown")
    assert len(out) <= md.GITHUB_COMMENT_LIMIT and out.count("\n") <= md.MAX_LINES
    assert "further findings are in the full report" in out
    assert "#### Decisive findings" in out and "C2X01" in out  # the errors survive the cut
    no_findings = render(sample_report(), "markdown", limit=3_500)  # only the summaries fit
    assert len(no_findings) <= 3_500 and "1.07823333" in no_findings and "C2X01" in no_findings
    tiny = render(sample_report(), "markdown", limit=1_200)  # not even those: cut at a heading
    assert len(tiny) <= 1_200 and tiny.startswith("## pgolf audit: `FAIL`")
    # the huge message is clipped even when everything fits
    assert len(render(sample_report(), "markdown")) < 20_000


# --- text ------------------------------------------------------------------------------------------


def test_text_report_content():
    out = render(sample_report(), "text", color=False, width=120)
    assert "verdict: FAIL" in out
    assert "\x1b[" not in out
    for value in ("15,991,930", "16,000,413", "15,990,000", "413 OVER", "1.07823333"):
        assert value in out
    assert "train_gpt.py:321 (line in the decoded payload of train_gpt.py: lzma(raw)+b85)" in out
    assert "source: train_gpt.py:300" in out
    assert "Errors (2)" in out and "Warnings" in out and "Info (2)" in out
    assert "Significance vs PR #1493" in out and "frontier" in out and "nats/byte" in out
    assert "<script>alert(1)</script>" in out  # rich markup in messages is not interpreted
    assert "more characters" in out  # the huge message is clipped
    assert "audit error: log unreadable" in out


def test_text_color_only_when_asked(monkeypatch):
    assert "\x1b[" in render(sample_report(), "text", color=True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert text.use_color() is False

    class Tty:
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR")
    assert text.use_color(Tty()) is True
    assert "\x1b[" not in render(sample_report(), "text")  # pytest's stdout is not a TTY


def test_every_format_renders_and_unknown_fails():
    report = sample_report()
    for fmt in FORMATS:
        assert render(report, fmt).strip()
    assert render(report, "md") == render(report, "markdown")
    with pytest.raises(PgolfError) as info:
        render(report, "pdf")
    assert info.value.exit_code == ExitCode.USAGE


def test_rule_links_never_point_at_an_unowned_url():
    """Without PGOLF_DOCS_URL a finding names the repository-relative doc, and the comment and SARIF
    formats drop the link rather than invent one."""
    import auditor.findings as findings_mod

    assert findings_mod.rule_reference("C101") == (
        "rules/docs/C101.md" if DOCS_BASE_URL is None else findings_mod.rule_reference("C101")
    )
    if DOCS_BASE_URL is None:
        report = sample_report()
        md = render(report, "markdown")
        assert "](rules/docs/" not in md and "pgolf-dev" not in md
        sarif = json.loads(render(report, "sarif"))
        driver = sarif["runs"][0]["tool"]["driver"]
        assert "informationUri" not in driver and all("helpUri" not in r for r in driver["rules"])
        assert "pgolf rules C101" in render(report, "text") or "C101" not in render(report, "text")
