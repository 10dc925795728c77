"""The HTML report in a real headless Chromium (Debian's, driven by Playwright): load, screenshot,
check the elements a reviewer relies on. Skips when Chromium or Playwright is absent."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest
from test_api_support import AUTH, Server, make_remote, wait_done

import rules
from api.db import Audit, init_db, make_engine
from auditor.models import (
    AuditReport,
    Condition,
    Confidence,
    Finding,
    Location,
    RecordAudit,
    SeedRun,
    Severity,
    Significance,
    SignificanceRow,
    Verdict,
)

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = [pytest.mark.browser, pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")]

LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    bare = make_remote(root, 2, flagged={1})
    with Server(root / "data") as srv, httpx.Client(base_url=srv.url, headers=AUTH, timeout=30) as client:
        r = client.post("/v1/audits", json={"repo": str(bare), "ref": "rec-1", "base": "main"})
        assert r.status_code == 202, r.text
        body = wait_done(client, r.json()["id"])
        assert body["status"] == "done", body
        yield srv, body


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        yield b
        b.close()


def crafted_report() -> AuditReport:
    """A report with every element the page shows: seeds (one over the byte limit), significance,
    findings with code excerpts and an evidence path."""
    rule_id = next(iter(rules.catalog()))
    runs = [SeedRun(log_file=f"train_seed{s}.log", seed=s, val_bpb=1.0812 + 0.0003 * k, val_loss=2.5 + k / 100,
                    artifact_bytes=b, line=88) for k, (s, b) in enumerate([(1, 15_912_345), (2, 15_990_001),
                                                                         (3, 16_004_200)])]
    snippet = "for chunk in val_tokens.split(2048):\n    loss = model(chunk).mean()"
    findings = [
        Finding(rule_id=rule_id, condition=Condition.C3, severity=Severity.ERROR, confidence=Confidence.STRONG,
                message="the model is updated on validation tokens before they are scored",
                location=Location(file="train_gpt.py", line=41, snippet=snippet, wrapper="lzma(raw)+b85"),
                path=[Location(file="train_gpt.py", line=12, snippet="val_tokens = load_val()", role="source"),
                      Location(file="train_gpt.py", line=41, snippet="loss.backward()", role="sink")]),
        Finding(rule_id=rule_id, condition=Condition.LIMIT, severity=Severity.WARNING,
                confidence=Confidence.PROOF, message="seed 3 artifact is 4,200 bytes over the limit"),
    ]
    sig = Significance(baseline="2026-04-01_Previous", rows=[SignificanceRow(
        policy="readme", baseline="2026-04-01_Previous", unit="nats/token", n_candidate=3, n_baseline=3,
        mean_candidate=1.0815, mean_baseline=1.0850, delta=0.0035, margin=0.005, t_stat=-2.1, p_value=0.048,
        alpha=0.01, significant=False, note="needs 0.005 nats at p < 0.01")])
    rec = RecordAudit(path="records/track_10min_16mb/2026-05-02_Crafted", name="2026-05-02_Crafted",
                      track="track_10min_16mb", verdict=Verdict.FAIL, findings=findings, runs=runs,
                      significance=sig, claimed={"val_bpb": 1.0815})
    return AuditReport(tool_version="test", generated_at="2026-05-02T00:00:00+00:00", verdict=Verdict.FAIL,
                       records=[rec])


def _insert_done_audit(srv: Server, report: AuditReport) -> str:
    engine = make_engine(f"sqlite:///{srv.data_dir / 'pgolf.db'}")
    with init_db(engine)() as s:
        job = Audit(idem_key=uuid.uuid4().hex, kind="upload", upload_name="crafted.zip", options_json="{}",
                    status="done", attempts=1, verdict=report.verdict.value,
                    report_json=report.model_dump_json(), upload_sha256="0" * 64)
        s.add(job)
        s.commit()
        audit_id = job.id
    engine.dispose()
    return audit_id


def test_real_audit_page_loads_with_the_api_verdict(audited, browser, tmp_path):
    srv, body = audited
    report = body["report"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    assert page.goto(f"{srv.url}/audits/{body['id']}").status == 200
    shot = Path(os.environ.get("PGOLF_SCREENSHOT_DIR", tmp_path)) / "audit-real.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank canvas
    assert page.locator("#verdict").inner_text().strip() == report["verdict"]
    assert body["source"]["commit"][:12] in page.locator("#summary").inner_text()
    for rec in report["records"]:
        assert rec["name"] in page.locator("#headline").inner_text()
    assert page.locator("table.runs tbody tr").count() == sum(len(r["runs"]) for r in report["records"])
    assert page.locator("article.finding").count() == (
        sum(len(r["findings"]) for r in report["records"]) + len(report["findings"]))
    assert "pgolf audit" in page.locator("#comment").input_value()  # the Markdown comment to paste
    page.close()


def test_report_page_shows_verdict_seeds_bytes_significance_and_findings(audited, browser, tmp_path):
    srv, _ = audited
    report = crafted_report()
    audit_id = _insert_done_audit(srv, report)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    assert page.goto(f"{srv.url}/audits/{audit_id}").status == 200
    shot = Path(os.environ.get("PGOLF_SCREENSHOT_DIR", tmp_path)) / "audit-report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # Summary header: verdict, BPB and bytes per seed, significance.
    assert page.locator("#verdict").inner_text().strip() == "FAIL"
    headline = page.locator("#headline").inner_text()
    for run in report.records[0].runs:
        assert f"{run.seed}: {run.val_bpb:.5f}" in headline
        assert f"{run.seed}: {run.artifact_bytes:,}" in headline
    assert "not significant" in headline and "p=0.0480" in headline
    assert page.locator("#headline .seedvals span.over").count() == 1  # the one seed over 16,000,000

    # Per-seed table and the chart with the 16,000,000 line inside the bar tracks.
    rows = page.locator("table.runs tbody tr")
    assert rows.count() == 3
    assert "-4,200" in rows.nth(2).inner_text()  # margin to the limit, negative when over
    assert page.locator(".bytes-chart .bar").count() == 3
    assert page.locator(".bytes-chart .bar.over").count() == 1
    assert "16,000,000" in page.locator(".bytes-chart").inner_text()
    limit_box = page.locator(".bytes-chart .limit").first.bounding_box()
    track_box = page.locator(".bytes-chart .bar-track").first.bounding_box()
    assert track_box["x"] < limit_box["x"] < track_box["x"] + track_box["width"]
    over_bar = page.locator(".bytes-chart .bar.over").bounding_box()
    assert over_bar["x"] + over_bar["width"] > limit_box["x"]  # the bar over the limit crosses the line
    sig = page.locator("table.significance").inner_text()
    assert "2026-04-01_Previous" in sig and "0.0480" in sig and "needs 0.005 nats" in sig

    # Findings: severity first, code excerpt numbered from the finding's line, evidence path, rule link.
    cards = page.locator("article.finding")
    assert cards.count() == 2
    first = cards.first
    assert "ERROR" in first.locator("header").inner_text().upper()
    assert [n.strip() for n in first.locator(":scope > pre.code .ln").all_inner_texts()] == ["41", "42"]
    assert "val_tokens.split(2048)" in first.locator(":scope > pre.code").inner_text()
    assert "lzma(raw)+b85" in first.locator("header").inner_text()
    evidence = first.locator("ol.evidence li")
    assert evidence.count() == 2 and "source" in evidence.first.inner_text()
    link = first.locator("a.rule-link")
    rule_id = link.inner_text().strip()
    link.click()
    page.wait_for_load_state()
    assert page.url.endswith(f"/rules/{rule_id}")
    assert rule_id in page.locator("#rule-title").inner_text()
    assert page.locator("article.doc h2").count() >= 1
    page.close()


def test_pending_and_failed_pages_render(audited, browser):
    srv, _ = audited
    with httpx.Client(base_url=srv.url, headers=AUTH, timeout=30) as client:
        r = client.post("/v1/audits/upload", files={"file": ("bad.zip", b"PK\x03\x04" + b"\0" * 64)})
        assert r.status_code == 202, r.text
        failed = wait_done(client, r.json()["id"])
    assert failed["status"] == "failed"
    page = browser.new_page()
    page.goto(f"{srv.url}/audits/{failed['id']}")
    assert page.locator("#status").inner_text() == "failed"
    assert "archive rejected" in page.locator("#error").inner_text()
    page.goto(f"{srv.url}/")
    assert page.locator(f'a[href="/audits/{failed["id"]}"]').count() == 1
    page.close()
