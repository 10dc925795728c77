"""CLI/service parity over a matrix of PR shapes (a real uvicorn on loopback, real git repos).

Every shape is audited by `pgolf audit --git ... -f json` and by POST /v1/audits; the two reports must
be equal but for the timestamp. A PR that adds no record folder is ERROR in both (fail closed).
"""

from __future__ import annotations

import base64
import io
import json
import lzma
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest
from test_api_support import (
    AUTH,
    REPO_ROOT,
    TRACK,
    Server,
    _git,
    cli_json,
    record_files,
    wait_done,
    write_record,
)

pytestmark = pytest.mark.slow

NON_RECORD = "records/track_non_record_16mb"
# A catalog must-flag script (pre-quant TTT: adapts on the validation tokens before scoring them).
ILLEGAL = (REPO_ROOT / "rules" / "fixtures" / "C301" / "flag_prequant_ttt.py").read_text()


def _illegal(folder: Path, *, wrap: bool = False) -> Path:
    (folder / "train_gpt.py").write_text(_wrap(ILLEGAL) if wrap else ILLEGAL)
    return folder


def _wrap(script: str) -> str:
    """The common lzma+base85 self-extracting wrapper shape."""
    blob = base64.b85encode(lzma.compress(script.encode())).decode()
    return f'import lzma as L,base64 as B\nexec(L.decompress(B.b85decode("{blob}")))\n'


def _branch(work: Path, name: str, base: str, add) -> None:
    _git(work, "checkout", "-q", "-b", name, base)
    add(work)
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", name)


def _wrapped(work: Path) -> None:
    _illegal(write_record(work / TRACK / "2026-05-01_Wrapped", 5), wrap=True)


def _nested(work: Path) -> None:
    folder = write_record(work / TRACK / "2026-05-01_Nested", 6)
    (folder / "extra").mkdir()
    (folder / "extra" / "notes.md").write_text("ablation notes\n")


SHAPES = {
    # branch -> (base, what the branch adds)
    "flagged": ("main", lambda w: _illegal(write_record(w / TRACK / "2026-05-01_Flagged", 1))),
    "non-record": ("main", lambda w: write_record(w / NON_RECORD / "2026-05-01_NonRecord", 2)),
    "space": ("main", lambda w: _illegal(write_record(w / TRACK / "2026-05-01 With Space", 3))),
    "unicode": ("main", lambda w: write_record(w / TRACK / "2026-05-01_Überprüfung_ß", 4)),
    "wrapped": ("main", _wrapped),
    "nested": ("main", _nested),
    "from-empty": ("empty", lambda w: _illegal(write_record(w / TRACK / "2026-05-01_FromEmpty", 7))),
    "no-record": ("main", lambda w: (w / "notes.txt").write_text("nothing to audit\n")),
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    work = root / "work"
    work.mkdir()
    _git(work, "init", "-q", "-b", "empty")
    (work / "README.md").write_text("# upstream\n")
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", "empty upstream")
    # main already holds a merged record, so "base with records" is every shape based on main
    _branch(work, "main", "empty", lambda w: write_record(w / TRACK / "2026-04-01_Merged", 0))
    for name, (base, add) in SHAPES.items():
        _branch(work, name, base, add)
    # its own commit: the service dedupes audits by commit, so a PR head shared with a branch
    # would return the branch's audit
    _branch(work, "pull77", "main", lambda w: _illegal(write_record(w / TRACK / "2026-05-01_Pull77", 8)))
    bare = root / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    _git(bare, "update-ref", "refs/pull/77/head", "refs/heads/pull77")
    srv = Server(root / "data", upstream=bare, workers=2).start()
    client = httpx.Client(base_url=srv.url, headers=AUTH, timeout=60)
    yield {"bare": bare, "client": client, "root": root}
    client.close()
    srv.stop()


def _same(service: dict, cli: dict) -> None:
    service, cli = json.loads(json.dumps(service)), json.loads(json.dumps(cli))
    service.pop("generated_at")
    cli.pop("generated_at")
    assert service == cli


@pytest.mark.parametrize("branch", sorted(SHAPES))
def test_service_report_equals_the_cli_report(env, branch):
    base = SHAPES[branch][0]
    c, bare = env["client"], env["bare"]
    r = c.post("/v1/audits", json={"repo": str(bare), "ref": branch, "base": base})
    assert r.status_code in (200, 202), r.text
    body = wait_done(c, r.json()["id"])
    assert body["status"] == "done", body
    cli = cli_json(["--git", str(bare), "--ref", branch, "--base", base])
    _same(body["report"], cli)
    assert body["verdict"] == cli["verdict"]
    if branch == "no-record":
        assert cli["verdict"] == "ERROR" and cli["records"] == [] and cli["error"]
    else:
        assert len(cli["records"]) == 1, cli["records"]
        assert cli["verdict"] != "ERROR"
    if branch in ("flagged", "space", "wrapped", "from-empty"):
        assert cli["verdict"] == "FAIL"  # the pre-quant TTT script is caught on every shape
        assert any(f["rule_id"] == "C301" for f in cli["records"][0]["findings"])


def test_pr_number_against_the_configured_upstream(env):
    c, bare = env["client"], env["bare"]
    body = wait_done(c, c.post("/v1/audits", json={"pr": 77, "base": "main"}).json()["id"])
    assert body["status"] == "done" and body["source"]["ref"] == "refs/pull/77/head"
    cli = cli_json(["--git", str(bare), "--pr", "77", "--base", "main"])
    _same(body["report"], cli)
    assert cli["verdict"] == "FAIL"


def _findings(report: dict) -> list:
    return sorted(
        (f["rule_id"], f["severity"], (f.get("location") or {}).get("file"), (f.get("location") or {}).get("line"))
        for rec in report["records"]
        for f in rec["findings"]
    )


def test_uploads_match_the_cli_on_the_same_folder(env, tmp_path):
    c = env["client"]
    name = "2026-05-01_Uploaded"
    files = {**record_files(9), "train_gpt.py": ILLEGAL}
    folder = tmp_path / name
    folder.mkdir()
    for fname, text in files.items():
        (folder / fname).write_text(text)
    code = "import sys; from auditor.cli import main; sys.argv = ['pgolf'] + sys.argv[1:]; main()"
    proc = subprocess.run([sys.executable, "-c", code, "audit", str(folder), "-f", "json"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    cli = json.loads(proc.stdout)
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        for fname, text in files.items():
            zf.writestr(f"{name}/{fname}", text)
    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w:gz") as tf:
        for fname, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}/{fname}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    for upload, data in (("rec.zip", zbuf.getvalue()), ("rec.tar.gz", tbuf.getvalue())):
        r = c.post("/v1/audits/upload", files={"file": (upload, data)})
        body = wait_done(c, r.json()["id"])
        assert body["status"] == "done", body
        report = body["report"]
        assert report["verdict"] == cli["verdict"] == "FAIL"
        assert [x["name"] for x in report["records"]] == [x["name"] for x in cli["records"]]
        assert _findings(report) == _findings(cli)
        for key in ("compliance", "eligibility", "runs", "claimed"):
            assert report["records"][0][key] == cli["records"][0][key], key
