"""The service end to end: a real uvicorn on loopback, a real SQLite file, local bare git repos as
the PR remotes. Checks the verdict equals the CLI's, idempotency, uploads, reports, rules, auth,
limits and metrics."""

from __future__ import annotations

import io
import json
import re
import sqlite3
import tarfile
import zipfile

import httpx
import pytest
from test_api_support import (
    AUTH,
    TOKEN,
    Server,
    cli_json,
    commit_of,
    make_remote,
    record_files,
    record_name,
    wait_done,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    bare = make_remote(root, 4, flagged={1}, pulls={42: 2})
    srv = Server(root / "data", upstream=bare).start()
    client = httpx.Client(base_url=srv.url, headers=AUTH, timeout=60)
    yield {"srv": srv, "bare": bare, "client": client, "root": root}
    client.close()
    srv.stop()


def _strip_volatile(report: dict) -> dict:
    out = json.loads(json.dumps(report))
    out.pop("generated_at", None)
    return out


def zip_record(index: int, *, wrap: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in record_files(index).items():
            zf.writestr(f"{wrap}/{name}" if wrap else name, text)
    return buf.getvalue()


def test_health_and_openapi(env):
    c = env["client"]
    health = c.get("/healthz").json()
    assert health["status"] == "ok" and health["database"] == "ok"
    schema = c.get("/openapi.json").json()
    for path in ("/v1/audits", "/v1/audits/upload", "/v1/audits/{audit_id}", "/v1/audits/{audit_id}/report.{fmt}",
                 "/v1/rules", "/v1/rules/{rule_id}", "/healthz"):
        assert path in schema["paths"], path


def test_git_branch_verdict_matches_the_cli(env):
    c, bare = env["client"], env["bare"]
    r = c.post("/v1/audits", json={"repo": str(bare), "ref": "rec-1", "base": "main"})
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/v1/audits/{r.json()['id']}"
    body = wait_done(c, r.json()["id"])
    assert body["status"] == "done", body
    assert body["source"]["commit"] == commit_of(bare, "rec-1")
    assert body["source"]["base_commit"] == commit_of(bare, "main")
    assert body["verdict"] == body["report"]["verdict"]
    assert body["report"]["schema_version"]
    assert [r["name"] for r in body["report"]["records"]] == [record_name(1)]

    # The same audit through the CLI gives the same report, field for field (but the timestamp).
    expected = cli_json(["--git", str(bare), "--ref", "rec-1", "--base", "main"])
    assert _strip_volatile(body["report"]) == _strip_volatile(expected)

    raw = c.get(f"/v1/audits/{body['id']}/report.json")
    assert raw.headers["content-type"].startswith("application/json")
    assert raw.json() == body["report"]


def test_same_commit_and_options_is_the_same_audit(env):
    c, bare = env["client"], env["bare"]
    first = c.post("/v1/audits", json={"repo": str(bare), "ref": "rec-0"})
    done = wait_done(c, first.json()["id"])
    again = c.post("/v1/audits", json={"repo": str(bare), "ref": "rec-0"})
    assert again.status_code == 200 and again.json()["id"] == done["id"]
    # The same commit named by its SHA is still the same audit.
    by_sha = c.post("/v1/audits", json={"repo": str(bare), "ref": commit_of(bare, "rec-0")})
    assert by_sha.json()["id"] == done["id"]
    # Different options are a different audit.
    other = c.post("/v1/audits", json={"repo": str(bare), "ref": "rec-0", "options": {"policy": "readme"}})
    assert other.status_code == 202 and other.json()["id"] != done["id"]
    assert other.json()["options"]["policy"] == "readme"
    assert wait_done(c, other.json()["id"])["status"] == "done"


def test_pr_number_resolves_against_the_upstream(env):
    c, bare = env["client"], env["bare"]
    r = c.post("/v1/audits", json={"pr": 42})
    assert r.status_code == 202, r.text
    body = wait_done(c, r.json()["id"])
    assert body["source"]["kind"] == "pr" and body["source"]["ref"] == "refs/pull/42/head"
    assert body["source"]["commit"] == commit_of(bare, "rec-2")
    assert body["status"] == "done" and body["report"]["records"][0]["name"] == record_name(2)


def test_bad_refs_and_repositories_are_clear_422s(env):
    c, bare = env["client"], env["bare"]
    cases = [
        ({"repo": str(bare), "ref": "no-such-branch"}, "does not exist"),
        ({"pr": 999999}, "does not exist"),
        ({"repo": str(bare), "ref": "--upload-pack=evil"}, "not a valid git ref"),
        ({"repo": "https://example.com/x/y.git", "ref": "main"}, "not allowed"),
        ({"repo": "https://user:secret@github.com/x/y.git", "ref": "main"}, "credentials"),
        ({"repo": "ext::sh%20-c%20evil", "ref": "main"}, "https"),
        ({"repo": "ssh://git@github.com/x/y.git", "ref": "main"}, "https"),
        ({"repo": str(bare), "ref": "rec-0", "options": {"baseline": "../../etc/passwd"}}, "baseline"),
        ({"repo": str(bare), "ref": "rec-0", "options": {"rerun": True}}, "worker queue"),
        ({"repo": str(bare)}, "either"),
        ({"ref": "main", "pr": 3}, "either"),
    ]
    for body, message in cases:
        r = c.post("/v1/audits", json=body)
        assert r.status_code == 422, (body, r.text)
        assert message in r.text, (body, r.text)


def test_auth_is_required_for_posts_only(env):
    srv, bare = env["srv"], env["bare"]
    body = {"repo": str(bare), "ref": "rec-3"}
    assert httpx.post(srv.url + "/v1/audits", json=body).status_code == 401
    bad = httpx.post(srv.url + "/v1/audits", json=body, headers={"Authorization": "Bearer wrong-token-123456"})
    assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
    assert httpx.get(srv.url + "/v1/rules").status_code == 200  # reads are open


def test_upload_zip_and_tar_gz(env):
    c = env["client"]
    r = c.post("/v1/audits/upload", files={"file": ("rec.zip", zip_record(7, wrap=record_name(7)))})
    assert r.status_code == 202, r.text
    body = wait_done(c, r.json()["id"])
    assert body["status"] == "done", body
    assert body["source"]["kind"] == "upload" and body["source"]["upload_name"] == "rec.zip"
    assert [rec["name"] for rec in body["report"]["records"]] == [record_name(7)]

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, text in record_files(8).items():
            data = text.encode()
            info = tarfile.TarInfo(f"{record_name(8)}/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    r2 = c.post("/v1/audits/upload", files={"file": ("rec.tar.gz", buf.getvalue())},
                data={"options": json.dumps({"policy": "frontier"})})
    assert r2.status_code == 202, r2.text
    body2 = wait_done(c, r2.json()["id"])
    assert body2["status"] == "done" and body2["options"]["policy"] == "frontier"
    # The same bytes and options again: the same audit.
    again = c.post("/v1/audits/upload", files={"file": ("other-name.tar.gz", buf.getvalue())},
                   data={"options": json.dumps({"policy": "frontier"})})
    assert again.status_code == 200 and again.json()["id"] == body2["id"]


def test_the_same_record_in_new_bytes_is_answered_from_the_result_cache(env):
    """Two uploads that differ as archives (zip, then tar.gz) but hold the same record: two audits,
    the second answered from the workers' shared cache (no new entry), with the same report."""
    c, data = env["client"], env["srv"].data_dir
    entries = lambda: sorted((data / "cache").glob("results/*/*/*.json"))
    first = wait_done(c, c.post("/v1/audits/upload", files={"file": ("a.zip", zip_record(9, wrap=record_name(9)))},
                                data={"options": json.dumps({"policy": "readme"})}).json()["id"])
    assert first["status"] == "done", first
    cached = entries()
    assert cached, "the worker wrote no cache entry"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, text in record_files(9).items():
            info = tarfile.TarInfo(f"{record_name(9)}/{name}")
            info.size = len(text.encode())
            tf.addfile(info, io.BytesIO(text.encode()))
    r = c.post("/v1/audits/upload", files={"file": ("b.tar.gz", buf.getvalue())},
               data={"options": json.dumps({"policy": "readme"})})
    assert r.status_code == 202 and r.json()["id"] != first["id"]  # other bytes: another audit
    second = wait_done(c, r.json()["id"])
    assert second["status"] == "done" and entries() == cached  # answered from the cache
    assert _strip_volatile(second["report"]) == _strip_volatile(first["report"])


def test_markup_in_file_names_and_log_lines_is_escaped_in_every_report(env):
    """A hostile upload: a log named like a tag, a final-metric label and a README line that are
    markup. The HTML page and the Markdown comment show them as text, never as markup."""
    c = env["client"]
    payload = '<script>alert("pgolf")</script>'
    files = record_files(11)
    log = files.pop("train_seed1.log")
    files['`<img src=x onerror=alert(1)>`.log'] = log  # backticks: try to leave the code span.replace("final_int8_zlib_roundtrip", f"final_{payload}")
    files["README.md"] = files["README.md"] + f"\n{payload}\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(f"rec/{name}", text)
    body = wait_done(c, c.post("/v1/audits/upload", files={"file": ("x.zip", buf.getvalue())}).json()["id"])
    assert body["status"] == "done", body
    page = c.get(f"/audits/{body['id']}").text
    report_html = c.get(f"/v1/audits/{body['id']}/report.html").text
    for text in (page, report_html):
        assert "<script>alert" not in text and "<img src=x" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page or "&lt;img" in report_html  # shown, escaped
    md = c.get(f"/v1/audits/{body['id']}/report.md").text
    # in the Markdown comment a file name is a code span (rendered as text); nowhere else
    prose = re.sub(r"(`+)(.+?)\1", "", md)
    assert "<script" not in prose and "<img" not in prose, prose


def test_hostile_uploads(env):
    c = env["client"]
    assert c.post("/v1/audits/upload", files={"file": ("x.zip", b"not an archive")}).status_code == 422
    bad_options = c.post("/v1/audits/upload", files={"file": ("r.zip", zip_record(9))}, data={"options": "{nope"})
    assert bad_options.status_code == 422
    # Traversal is only found when the archive is opened, in a worker: the job fails with the reason.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../escape.py", "print('x')")
    r = c.post("/v1/audits/upload", files={"file": ("evil.zip", buf.getvalue())})
    assert r.status_code == 202
    body = wait_done(c, r.json()["id"])
    assert body["status"] == "failed" and "escape" in body["error"] and "archive rejected" in body["error"]
    assert not (env["root"] / "escape.py").exists()
    # Asking again for a failed audit retries it (same id), and it fails again for the same reason.
    again = c.post("/v1/audits/upload", files={"file": ("evil.zip", buf.getvalue())})
    assert again.status_code == 202 and again.json()["id"] == body["id"] and again.json()["error"] is None
    body = wait_done(c, body["id"])
    assert body["status"] == "failed" and "archive rejected" in body["error"] and body["attempts"] == 1
    # A report of a failed audit is a 409 that says why.
    rep = c.get(f"/v1/audits/{body['id']}/report.md")
    assert rep.status_code == 409 and "archive rejected" in rep.json()["detail"]


def test_body_limits(env):
    c = env["client"]
    assert c.post("/v1/audits", content=b"{" + b" " * 200_000 + b"}",
                  headers={"content-type": "application/json"}).status_code == 413
    big = b"\0" * (33 * 1024 * 1024)
    assert c.post("/v1/audits/upload", files={"file": ("big.zip", big)}).status_code == 413

    # A chunked body without Content-Length is counted while it streams.
    def chunks():
        for _ in range(100):
            yield b" " * 4096

    r = c.post("/v1/audits", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_reports_in_every_format(env):
    c, bare = env["client"], env["bare"]
    body = wait_done(c, c.post("/v1/audits", json={"repo": str(bare), "ref": "rec-1", "base": "main"}).json()["id"])
    md = c.get(f"/v1/audits/{body['id']}/report.md")
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert body["verdict"] in md.text
    sarif = c.get(f"/v1/audits/{body['id']}/report.sarif")
    assert sarif.headers["content-type"].startswith("application/sarif+json")
    assert sarif.json()["version"] == "2.1.0"
    page = c.get(f"/v1/audits/{body['id']}/report.html")
    assert page.status_code == 200 and body["verdict"] in page.text and "16,000,000" in page.text
    assert c.get(f"/v1/audits/{body['id']}/report.pdf").status_code == 422
    assert c.get("/v1/audits/nope/report.md").status_code == 404
    listing = c.get("/v1/audits", params={"status": "done", "limit": 5}).json()["audits"]
    assert 1 <= len(listing) <= 5 and all(a["status"] == "done" for a in listing)


def test_rules(env):
    import rules

    c = env["client"]
    listed = c.get("/v1/rules").json()["rules"]
    assert [r["id"] for r in listed] == list(rules.catalog())
    some = listed[0]["id"]
    one = c.get(f"/v1/rules/{some}").json()
    assert one["doc"] == rules.get(some).doc and one["html_url"] == f"/rules/{some}"
    assert c.get("/v1/rules/NOPE999").status_code == 404
    page = c.get(f"/rules/{some}")
    assert page.status_code == 200 and rules.get(some).name in page.text


def test_metrics_and_no_secrets_in_logs(env):
    c, srv = env["client"], env["srv"]
    text = c.get("/metrics").text
    assert 'pgolf_jobs{status="done"}' in text
    assert 'pgolf_http_requests_total{method="POST",route="/v1/audits"' in text
    assert "pgolf_audit_duration_seconds_count" in text
    done = next(line for line in text.splitlines() if line.startswith('pgolf_jobs{status="done"}'))
    assert float(done.split()[-1]) >= 1
    logs = srv.logs()
    assert TOKEN not in logs and "secret@" not in logs and "Bearer" not in logs


def test_job_rows_are_in_the_sqlite_file(env):
    db = env["srv"].data_dir / "pgolf.db"
    with sqlite3.connect(db) as con:
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
        states = dict(con.execute("SELECT status, count(*) FROM audits GROUP BY status").fetchall())
    assert mode == "wal"
    assert states.get("done", 0) >= 4 and not states.get("queued") and not states.get("running")
