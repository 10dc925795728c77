"""The HTML report in a real headless Chromium (Debian's, driven by Playwright): load, screenshot,
check the elements a reviewer relies on. Skips when Chromium or Playwright is absent."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from test_api_support import AUTH, Server, make_remote, wait_done

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


def test_report_page_shows_verdict_seeds_bytes_and_findings(audited, browser, tmp_path):
    srv, body = audited
    report = body["report"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    resp = page.goto(f"{srv.url}/audits/{body['id']}")
    assert resp.status == 200
    shot = Path(os.environ.get("PGOLF_SCREENSHOT_DIR", tmp_path)) / "audit-report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank canvas

    # Summary header: the verdict the API returned, in the header box.
    assert page.locator("#verdict").inner_text().strip() == report["verdict"]
    assert body["source"]["commit"][:12] in page.locator("#summary").inner_text()

    # One row per seed with its BPB and artifact bytes; the 16,000,000 line is drawn on the chart.
    runs = report["records"][0]["runs"]
    rows = page.locator("table.runs tbody tr")
    assert rows.count() == len(runs)
    table = page.locator("table.runs").inner_text()
    for run in runs:
        assert f"{run['val_bpb']:.5f}" in table
        assert f"{run['artifact_bytes']:,}" in table
    assert page.locator(".bytes-chart .bar").count() == len(runs)
    assert "16,000,000" in page.locator(".bytes-chart").inner_text()
    limit_box = page.locator(".bytes-chart .limit").first.bounding_box()
    track_box = page.locator(".bytes-chart .bar-track").first.bounding_box()
    assert track_box["x"] < limit_box["x"] < track_box["x"] + track_box["width"]

    # Findings: rule id linking to its doc, and code excerpts with line numbers when the finding has one.
    findings = [f for rec in report["records"] for f in rec["findings"]] + report["findings"]
    cards = page.locator("article.finding")
    assert cards.count() == len(findings)
    with_code = [f for f in findings if (f.get("location") or {}).get("snippet") and f["location"].get("line")]
    if with_code:
        f = with_code[0]
        card = page.locator(f'article.finding[data-rule="{f["rule_id"]}"]').first
        first_line = card.locator("pre.code .ln").first.inner_text().strip()
        assert first_line == str(f["location"]["line"])
    if findings:
        link = cards.first.locator("a.rule-link")
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
