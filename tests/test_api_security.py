"""Tokens, per-token rate limits and body limits, in-process (Starlette's TestClient runs the app's
lifespan, so the job engine is real too)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.security import TokenBucket
from api.settings import Settings, parse_token_lines


def _app(tmp_path, **kw):
    settings = Settings(data_dir=tmp_path, allow_local_repos=True, workers=1, **kw)
    return create_app(settings.with_tokens({"alice": "alice-token-0123456789", "bob": "bob-token-0123456789ab"}))


def test_rate_limit_is_per_token(tmp_path):
    body = {"repo": str(tmp_path / "missing.git"), "ref": "main"}  # a 422, so nothing is queued
    alice = {"Authorization": "Bearer alice-token-0123456789"}
    bob = {"Authorization": "Bearer bob-token-0123456789ab"}
    with TestClient(_app(tmp_path, rate_limit_per_minute=1, rate_limit_burst=2)) as c:
        assert c.post("/v1/audits", json=body, headers=alice).status_code == 422
        assert c.post("/v1/audits", json=body, headers=alice).status_code == 422
        limited = c.post("/v1/audits", json=body, headers=alice)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert c.post("/v1/audits", json=body, headers=bob).status_code == 422  # bob has his own bucket
        assert c.get("/v1/rules").status_code == 200  # reads are not limited
        assert "pgolf_rate_limited_total 1.0" in c.get("/metrics").text


def test_no_tokens_configured_disables_posts(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path, workers=1))) as c:
        r = c.post("/v1/audits", json={"pr": 1}, headers={"Authorization": "Bearer whatever-123456789"})
        assert r.status_code == 503 and "no API tokens" in r.json()["detail"]


def test_no_auth_mode_uses_the_client_address(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path, workers=1, auth_required=False,
                                        allow_local_repos=True))) as c:
        r = c.post("/v1/audits", json={"repo": str(tmp_path / "nope"), "ref": "main"})
        assert r.status_code == 422 and "no repository" in r.json()["detail"]


def test_validation_errors_do_not_echo_the_input(tmp_path):
    with TestClient(_app(tmp_path)) as c:
        r = c.post("/v1/audits", json={"repo": "x", "ref": "y", "unexpected": "sekrit-value"},
                   headers={"Authorization": "Bearer alice-token-0123456789"})
        assert r.status_code == 422 and "sekrit-value" not in r.text


def test_token_bucket_refills():
    bucket = TokenBucket(per_minute=60, burst=1)
    assert bucket.take("k") == 0
    wait = bucket.take("k")
    assert 0 < wait <= 1.0


def test_token_file_lines():
    assert parse_token_lines(["# c", "", "ci: abcdefghijklmnop"]) == {"ci": "abcdefghijklmnop"}
    for bad in (["nocolon"], ["name:short"], [":abcdefghijklmnopq"]):
        with pytest.raises(ValueError):
            parse_token_lines(bad)
    hashed = Settings().with_tokens({"ci": "abcdefghijklmnop"})
    assert "abcdefghijklmnop" not in hashed.model_dump_json()


def test_serve_refuses_bad_settings_without_a_traceback(tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from api.cli import serve

    cli = typer.Typer()
    cli.command()(serve)
    missing = CliRunner().invoke(cli, ["--token-file", str(tmp_path / "missing.txt"), "--data-dir", str(tmp_path)])
    assert missing.exit_code == 2 and "bad service settings" in missing.output
    (tmp_path / "tokens.txt").write_text("ci:short\n")
    short = CliRunner().invoke(cli, ["--token-file", str(tmp_path / "tokens.txt"), "--data-dir", str(tmp_path)])
    assert short.exit_code == 2 and "16+ characters" in short.output
    monkeypatch.setenv("PGOLF_WORKERS", "many")
    bad_env = CliRunner().invoke(cli, ["--data-dir", str(tmp_path)])
    assert bad_env.exit_code == 2 and "workers" in bad_env.output


def test_one_callers_audits_in_flight_are_bounded(tmp_path):
    """Each request within the rate limit, but a third audit while two of alice's are still queued
    or running is refused (429 with Retry-After); bob is not held up by alice's flood."""
    import io
    import zipfile
    from pathlib import Path

    slot = Path(__file__).resolve().parents[1] / "examples" / "records" / "track_non_record_16mb" / "2026-11-02_Broken_SLOT"
    heavy = slot.joinpath("train_gpt.py").read_text() + "".join(
        f"def helper_{i}(x):\n    return x * {i} + 1\n\n" for i in range(60_000))  # seconds to audit

    def upload(tag: str) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in slot.iterdir():
                zf.writestr(f"rec/{f.name}", heavy if f.name == "train_gpt.py" else f.read_text())
            zf.writestr("rec/notes.txt", tag)  # other bytes: another audit
        return buf.getvalue()

    alice = {"Authorization": "Bearer alice-token-0123456789"}
    bob = {"Authorization": "Bearer bob-token-0123456789ab"}
    with TestClient(_app(tmp_path, max_inflight_per_caller=2)) as c:
        for tag in ("a1", "a2"):
            r = c.post("/v1/audits/upload", files={"file": (f"{tag}.zip", upload(tag))}, headers=alice)
            assert r.status_code == 202, r.text
        third = c.post("/v1/audits/upload", files={"file": ("a3.zip", upload("a3"))}, headers=alice)
        assert third.status_code == 429 and "queued or running" in third.json()["detail"]
        assert int(third.headers["retry-after"]) > 0
        assert c.post("/v1/audits/upload", files={"file": ("b1.zip", upload("b1"))}, headers=bob).status_code == 202
