"""Git intake: shallow fetch of a ref, checkout, PR scope (HYG002), limits and errors.

Every repository is built here in a temporary folder with ``git init``; "remotes" are bare
repositories reached through file:// URLs, and PR heads are published as refs/pull/N/head.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from auditor.errors import InputError
from auditor.intake import checkout_git, pr_ref, unsafe_path_findings
from auditor.models import Severity

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")

NEW = "records/track_10min_16mb/2026-05-01_MyRun"
OLD = "records/track_10min_16mb/2026-03-17_NaiveBaseline"
LOG = "final_int8_zlib_roundtrip val_loss:2.0672 val_bpb:1.2244\n"

ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def git(cwd: Path, *args: str) -> str:
    res = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    return res.stdout.strip()


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def set_tree(repo: Path, tree: Path | dict[str, str]) -> None:
    """Make the work tree of ``repo`` exactly ``tree`` (a folder or a dict of files)."""
    for child in repo.iterdir():
        if child.name != ".git":
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    if isinstance(tree, Path):
        shutil.copytree(tree, repo, dirs_exist_ok=True, symlinks=True)
    else:
        write(repo, tree)


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def publish(src: Path, dest: Path) -> str:
    """A bare copy of ``src`` with every branch; returns its file:// URL."""
    git(src.parent, "clone", "-q", "--bare", str(src), str(dest))
    return dest.as_uri()


def base_tree() -> dict[str, str]:
    return {
        "README.md": "# Parameter Golf\n",
        "train_gpt.py": "print('baseline')\n",
        f"{OLD}/README.md": "# baseline\n",
        f"{OLD}/submission.json": "{}\n",
        f"{OLD}/train_gpt.py": "print('baseline')\n",
        f"{OLD}/train.log": LOG,
    }


def new_record(folder: str = NEW) -> dict[str, str]:
    return {
        f"{folder}/README.md": "# run\n",
        f"{folder}/submission.json": "{}\n",
        f"{folder}/train_gpt.py": "print('run')\n",
        f"{folder}/train_seed1.log": LOG,
    }


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path / "work"


def make_pr_repo(
    tmp_path: Path, base: Path | dict[str, str], head: Path | dict[str, str], number: int = 7
) -> tuple[str, str]:
    """main = base; branch pr = head, published as refs/pull/<number>/head. Returns (url, head sha)."""
    src = tmp_path / "src"
    src.mkdir()
    git(src, "init", "-q")
    set_tree(src, base)
    commit(src, "base")
    git(src, "checkout", "-q", "-b", "pr")
    set_tree(src, head)
    sha = commit(src, "submission")
    git(src, "checkout", "-q", "main")
    url = publish(src, tmp_path / "remote.git")
    git(tmp_path / "remote.git", "update-ref", f"refs/pull/{number}/head", sha)
    git(tmp_path / "remote.git", "branch", "-q", "-D", "pr")  # reachable only as the PR ref, like GitHub
    return url, sha


# ---------------------------------------------------------------------------------------------
# HYG002 scenarios (the rule's fixtures: a base tree and the tree at the PR head)


def _moved(files: dict[str, str], old: str, new: str) -> dict[str, str]:
    return {k.replace(old, new): v for k, v in files.items()}


SCENARIOS = {
    "pass_one_new_record": (base_tree(), base_tree() | new_record()),
    "pass_new_non_record_with_logs_dir": (
        base_tree(),
        base_tree()
        | _moved(
            new_record("records/track_non_record_16mb/2026-05-01_Study"), "train_seed1.log", "logs/s1.txt"
        ),
    ),
    "flag_edits_root_script": (
        base_tree(),
        base_tree() | new_record() | {"train_gpt.py": "print('tuned')\n"},
    ),
    "flag_two_new_records": (base_tree(), base_tree() | new_record() | new_record(NEW + "_again")),
    "flag_modifies_existing_record": (
        base_tree(),
        base_tree() | new_record() | {f"{OLD}/README.md": "# baseline, edited\n"},
    ),
    "flag_no_new_record": (
        base_tree(),
        {k: v for k, v in base_tree().items() if not k.endswith("train.log")},
    ),
    "flag_outside_track_folder": (
        base_tree(),
        base_tree() | _moved(new_record(), "records/track_10min_16mb/", "records/phase3/"),
    ),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_hyg002_scenarios(tmp_path: Path, work: Path, scenario: str) -> None:
    base, head = SCENARIOS[scenario]
    url, sha = make_pr_repo(tmp_path, base, head)
    with checkout_git(url, pr_ref(7), "main", work) as co:
        assert co.commit == sha and co.merge_base_found
        findings = [f for f in co.scope_findings() if f.rule_id == "HYG002"]
        if scenario.startswith("flag_"):
            assert any(f.severity == Severity.ERROR for f in findings), scenario
            assert all(f.message for f in findings)
        else:
            assert findings == [], [f.message for f in findings]
            assert co.outside_changes == [] and len(co.added_records) == 1
            assert [r.rel for r in co.records] == co.added_records


def test_new_folder_outside_the_tracks_is_still_audited(tmp_path: Path, work: Path) -> None:
    url, _sha = make_pr_repo(tmp_path, *SCENARIOS["flag_outside_track_folder"])
    with checkout_git(url, pr_ref(7), "main", work) as co:
        assert co.added_records == ["records/phase3/2026-05-01_MyRun"]
        assert [r.rel for r in co.records] == co.added_records
        assert len(co.outside_changes) == 4
        messages = [f.message for f in co.scope_findings()]
        assert any("adds no new record folder" in m for m in messages)
        assert any("outside its record folder" in m for m in messages)


def test_clean_pr_scope_and_checkout(tmp_path: Path, work: Path) -> None:
    url, sha = make_pr_repo(tmp_path, base_tree(), base_tree() | new_record())
    with checkout_git(url, pr_ref(7), "main", work) as co:
        assert co.commit == sha and co.base_commit == co.base_tip and co.merge_base_found
        assert co.added_records == [NEW]
        assert co.changed_files == sorted(new_record())
        assert {s for s, _p in co.changes} == {"A"}
        assert co.outside_changes == [] and co.touched_records == []
        assert co.scope_findings() == []
        assert (co.path / NEW / "train_gpt.py").read_text() == "print('run')\n"
        assert not (co.path / ".git").exists()
        assert co.path.is_relative_to(work)
        (rec,) = co.records
        assert rec.rel == NEW and rec.track == "track_10min_16mb"
        assert co.pr_scope().added_records == [NEW]
        tmpdir = co.tmpdir
    assert not tmpdir.exists()  # the context manager cleaned up


def test_pr_that_edits_root_files_and_another_record(tmp_path: Path, work: Path) -> None:
    head = (
        base_tree()
        | new_record()
        | {
            "train_gpt.py": "print('tuned')\n",
            "data/new.py": "x = 1\n",
            f"{OLD}/README.md": "# baseline, edited\n",
        }
    )
    url, _sha = make_pr_repo(tmp_path, base_tree(), head)
    with checkout_git(url, pr_ref(7), "main", work) as co:
        assert co.added_records == [NEW]
        assert co.outside_changes == ["data/new.py", f"{OLD}/README.md", "train_gpt.py"]
        assert co.touched_records == [OLD]
        msgs = {f.message.split(":")[0].split(" (")[0]: f for f in co.scope_findings()}
        assert all(f.severity == Severity.ERROR and f.confidence.value == "proof" for f in msgs.values())
        assert len(msgs) == 2
        outside = next(f for f in co.scope_findings() if "outside its record folder" in f.message)
        assert outside.data["files"] == ["data/new.py", "train_gpt.py"]
        assert "modified" in outside.message and "added" in outside.message


def test_pr_that_adds_two_records(tmp_path: Path, work: Path) -> None:
    other = "records/track_non_record_16mb/2026-05-02_Other"
    url, _sha = make_pr_repo(tmp_path, base_tree(), base_tree() | new_record() | new_record(other))
    with checkout_git(url, pr_ref(7), "main", work) as co:
        assert co.added_records == [NEW, other]
        assert co.outside_changes == [NEW + "/", other + "/"]
        (f,) = co.scope_findings()
        assert f.severity == Severity.ERROR and f.data["folders"] == [NEW, other]


def test_pr_that_deletes_from_an_existing_record_only(tmp_path: Path, work: Path) -> None:
    head = {k: v for k, v in base_tree().items() if not k.endswith("train.log")}
    url, _sha = make_pr_repo(tmp_path, base_tree(), head)
    with checkout_git(url, pr_ref(7), "main", work) as co:
        assert co.added_records == [] and co.records == []
        assert co.changes == [("D", f"{OLD}/train.log")]
        messages = [f.message for f in co.scope_findings()]
        assert any("adds no new record folder" in m for m in messages)
        assert any("changes the existing record" in m and "deleted" in m for m in messages)


def test_unofficial_track_is_a_warning(tmp_path: Path, work: Path) -> None:
    folder = "records/track_1h_64mb/2026-05-01_X"
    url, _sha = make_pr_repo(tmp_path, base_tree(), base_tree() | new_record(folder))
    with checkout_git(url, pr_ref(7), "main", work) as co:
        assert co.added_records == [folder]
        assert [f.severity for f in co.scope_findings()] == [Severity.WARNING]


def test_symlink_in_pr_is_checked_out_as_a_link(tmp_path: Path, work: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    git(src, "init", "-q")
    set_tree(src, base_tree())
    commit(src, "base")
    write(src, new_record())
    os.remove(src / NEW / "train_gpt.py")
    (src / NEW / "train_gpt.py").symlink_to("../../../train_gpt.py")
    (src / NEW / "passwd").symlink_to("/etc/passwd")
    sha = commit(src, "pr")
    with checkout_git(str(src), sha, None, work) as co:
        rec = next(r for r in co.records if r.rel == NEW)
        link = rec.entry("train_gpt.py")
        assert link.is_symlink and link.symlink_escapes
        assert (co.path / NEW / "passwd").is_symlink()
        assert {f.location.file for f in unsafe_path_findings(rec) if f.severity == Severity.ERROR} == {
            "train_gpt.py",
            "passwd",
        }


# ---------------------------------------------------------------------------------------------
# Ref kinds, no base


def test_without_base_every_record_is_audited(tmp_path: Path, work: Path) -> None:
    url, _sha = make_pr_repo(tmp_path, base_tree(), base_tree() | new_record())
    with checkout_git(url, pr_ref(7), None, work) as co:
        assert co.added_records == [OLD, NEW]
        assert [r.rel for r in co.records] == [OLD, NEW]
        assert co.changed_files == [] and co.outside_changes == []
        assert co.scope_findings() == []
        assert co.depth_fetched == 1


def test_branch_tag_sha_and_local_path(tmp_path: Path, work: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    git(src, "init", "-q")
    set_tree(src, base_tree())
    first = commit(src, "one")
    git(src, "tag", "-a", "-m", "annotated", "v1")
    set_tree(src, base_tree() | new_record())
    second = commit(src, "two")
    git(src, "branch", "feature/x")
    for repo in (str(src), src.as_uri()):
        for ref, sha in [
            ("main", second),
            ("feature/x", second),
            ("v1", first),
            ("refs/tags/v1", first),
            (first, first),
            (second[:12], second) if repo == str(src) else (second, second),
        ]:
            with checkout_git(repo, ref, None, work) as co:
                assert co.commit == sha, (repo, ref)
                assert (co.path / NEW).exists() == (sha == second)


def test_short_sha_needs_a_local_repository(tmp_path: Path, work: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    git(src, "init", "-q")
    set_tree(src, base_tree())
    sha = commit(src, "one")
    with pytest.raises(InputError, match=f"git ref '{sha[:10]}' not found"):
        checkout_git(src.as_uri(), sha[:10], None, work)


# ---------------------------------------------------------------------------------------------
# Shallow history with --base


def test_shallow_fetch_deepens_until_the_merge_base(tmp_path: Path, work: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    git(src, "init", "-q")
    shas = []
    for i in range(40):
        set_tree(src, base_tree() | {"CHANGELOG.md": f"{i}\n"})
        shas.append(commit(src, f"main {i}"))
    fork = shas[10]
    git(src, "checkout", "-q", "-b", "pr", fork)
    set_tree(src, base_tree() | {"CHANGELOG.md": "10\n"} | new_record())
    commit(src, "pr 1")
    write(src, {f"{NEW}/train_seed2.log": LOG})
    head = commit(src, "pr 2")
    git(src, "checkout", "-q", "main")
    url = publish(src, tmp_path / "remote.git")
    git(tmp_path / "remote.git", "update-ref", "refs/pull/3/head", head)

    with checkout_git(url, pr_ref(3), "main", work, initial_depth=2) as co:
        assert co.merge_base_found and co.base_commit == fork and co.base_tip == shas[-1]
        assert 2 < co.depth_fetched < 41
        shallow = git(co.tmpdir / "git", "rev-parse", "--is-shallow-repository")
        assert shallow == "true"
        assert (
            co.added_records == [NEW] and co.outside_changes == []
        )  # main's later CHANGELOG edits are not the PR's
        assert co.scope_findings() == []

    # With too little history allowed the merge base is not reached: trees are compared directly.
    with checkout_git(url, pr_ref(3), "main", work, initial_depth=2, max_history=4) as co:
        assert not co.merge_base_found and co.base_commit == shas[-1]
        assert co.outside_changes == ["CHANGELOG.md"]
        findings = co.scope_findings()
        assert {f.severity for f in findings} == {Severity.INFO, Severity.WARNING}
        assert all(f.confidence.value == "heuristic" for f in findings if f.severity == Severity.WARNING)


def test_unrelated_histories_fall_back_to_a_tree_diff(tmp_path: Path, work: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    git(src, "init", "-q")
    set_tree(src, base_tree())
    commit(src, "main")
    git(src, "checkout", "-q", "--orphan", "other")
    set_tree(src, base_tree() | new_record())
    commit(src, "unrelated")
    with checkout_git(str(src), "other", "main", work) as co:
        assert not co.merge_base_found
        assert co.added_records == [NEW] and co.outside_changes == []
        assert any("unrelated histories" in n for n in co.notes)
        assert [f.severity for f in co.scope_findings()] == [Severity.INFO]


# ---------------------------------------------------------------------------------------------
# Errors and limits


def test_missing_ref(tmp_path: Path, work: Path) -> None:
    url, _sha = make_pr_repo(tmp_path, base_tree(), base_tree() | new_record())
    with pytest.raises(InputError, match=r"git ref 'refs/pull/99/head' not found in file://"):
        checkout_git(url, pr_ref(99), None, work)
    with pytest.raises(InputError, match="git ref 'no-such-branch' not found"):
        checkout_git(url, pr_ref(7), "no-such-branch", work)
    with pytest.raises(InputError, match="not found"):
        checkout_git(url, "f" * 40, None, work)
    assert list(work.iterdir()) == []  # nothing left behind


@pytest.mark.parametrize(
    ("repo", "message"),
    [
        ("file:///nonexistent/pgolf/repo.git", "cannot fetch from git repository"),
        ("/nonexistent/pgolf/repo", "git repository not found"),
        ("ext::sh -c touch% /tmp/pwned", "git repository not found"),
        ("foo://example.com/x.git", "unsupported git URL scheme"),
        ("--upload-pack=touch /tmp/x", "bad git repository"),
    ],
)
def test_bad_repository(work: Path, repo: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        checkout_git(repo, "main", None, work)


def test_not_a_repository(tmp_path: Path, work: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="cannot fetch"):
        checkout_git(str(tmp_path / "plain"), "main", None, work)


@pytest.mark.parametrize("ref", ["-x", "a..b", "a b", "a:b", "main^", "x~1", "ref*", "a\nb", ""])
def test_bad_refs(work: Path, tmp_path: Path, ref: str) -> None:
    with pytest.raises(InputError, match="bad git ref"):
        checkout_git(str(tmp_path), ref, None, work)


def test_pr_ref() -> None:
    assert pr_ref(123) == "refs/pull/123/head"
    for bad in (0, -1, True, "12"):
        with pytest.raises(InputError):
            pr_ref(bad)  # type: ignore[arg-type]


def test_size_limits(tmp_path: Path, work: Path) -> None:
    big = os.urandom(150_000).hex()  # 300 KB of text that compresses to ~half
    url, _sha = make_pr_repo(tmp_path, base_tree(), base_tree() | new_record() | {f"{NEW}/blob.txt": big})
    # The tree check: the download fits within 2x the limit, the checked-out tree does not.
    with pytest.raises(InputError, match="more than 250,000 bytes"):
        checkout_git(url, pr_ref(7), None, work, max_bytes=250_000)
    # The download guard: the fetched objects alone exceed 2x the limit.
    with pytest.raises(InputError, match="exceeds 40,000 bytes"):
        checkout_git(url, pr_ref(7), None, work, max_bytes=20_000)
    with pytest.raises(InputError, match="more than 3 files"):
        checkout_git(url, pr_ref(7), None, work, max_files=3)
    assert list(work.iterdir()) == []
    with checkout_git(url, pr_ref(7), None, work, max_bytes=1_000_000) as co:
        assert co.tree_bytes > 300_000


def test_timeout_is_an_input_error(tmp_path: Path, work: Path) -> None:
    url, _sha = make_pr_repo(tmp_path, base_tree(), base_tree() | new_record())
    with pytest.raises(InputError, match="timed out"):
        checkout_git(url, pr_ref(7), None, work, timeout_s=1e-6)


def test_git_missing(tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(InputError, match="git is not installed"):
        checkout_git(str(tmp_path), "main", None, work)


def test_pr_identical_to_its_base(tmp_path: Path, work: Path) -> None:
    url, _sha = make_pr_repo(tmp_path, base_tree(), base_tree())
    with checkout_git(url, pr_ref(7), "main", work) as co:
        assert co.changed_files == [] and co.added_records == []
        (f,) = co.scope_findings()
        assert "changes nothing" in f.message and f.severity == Severity.ERROR


def test_hooks_never_run(tmp_path: Path, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A template dir (e.g. a user's init.templateDir) could install hooks into the private repo;
    fetch runs the reference-transaction hook, so hooks must be switched off."""
    url, _sha = make_pr_repo(tmp_path, base_tree(), base_tree() | new_record())
    marker = tmp_path / "hook-ran"
    hook = tmp_path / "template" / "hooks" / "reference-transaction"
    hook.parent.mkdir(parents=True)
    hook.write_text(f"#!/bin/sh\ntouch '{marker}'\n")
    hook.chmod(0o755)
    monkeypatch.setenv("GIT_TEMPLATE_DIR", str(tmp_path / "template"))
    with checkout_git(url, pr_ref(7), "main", work) as co:
        assert (co.tmpdir / "git" / "hooks" / "reference-transaction").exists()  # installed...
    assert not marker.exists()  # ...but never run


def test_a_base_history_the_source_cannot_pack_falls_back_to_a_local_merge_base(tmp_path: Path, work: Path) -> None:
    """A partial mirror (objects missing from main's later history, as in a blob-filtered clone)
    cannot serve a shallow fetch of main ("pack-objects died"); in a local repository the merge
    base is computed where the history is and only that commit is fetched."""
    src = tmp_path / "src"
    src.mkdir()
    git(src, "init", "-q")
    set_tree(src, base_tree())
    fork = commit(src, "base")
    set_tree(src, base_tree() | {"big.bin": "x" * 5000})
    commit(src, "main adds a large file")
    set_tree(src, base_tree() | {"CHANGELOG.md": "later\n"})
    commit(src, "main removes it")
    git(src, "checkout", "-q", "-b", "pr", fork)
    set_tree(src, base_tree() | new_record())
    head = commit(src, "submission")
    git(src, "checkout", "-q", "main")
    blob = git(src, "rev-parse", "HEAD~1:big.bin")
    (src / ".git" / "objects" / blob[:2] / blob[2:]).unlink()  # the mirror lacks this object

    with checkout_git(str(src), head, "main", work) as co:
        assert co.merge_base_found and co.base_commit == fork
        assert co.added_records == [NEW] and co.outside_changes == []
        assert any("computed in the source repository" in n for n in co.notes)
        assert co.records and co.records[0].opened  # the PR's first commit dates the submission


def test_a_tree_of_300k_entries_is_refused_while_it_is_listed(tmp_path: Path, work: Path) -> None:
    """A flood of tree entries (here 300,000 names for one empty blob: cheap to make, costly to
    check out) is refused from the streamed listing, before any of it is written to disk."""
    import subprocess
    import time

    repo = tmp_path / "flood.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    git = ["git", "--git-dir", str(repo)]
    blob = subprocess.run([*git, "hash-object", "-w", "--stdin"], input=b"", capture_output=True,
                          check=True).stdout.decode().strip()
    listing = "".join(f"100644 blob {blob}\tf{i:06d}\n" for i in range(300_000)).encode()
    tree = subprocess.run([*git, "mktree"], input=listing, capture_output=True, check=True).stdout.decode().strip()
    commit = subprocess.run([*git, "-c", "user.name=t", "-c", "user.email=t@t", "commit-tree", tree, "-m", "flood"],
                            capture_output=True, check=True).stdout.decode().strip()
    subprocess.run([*git, "update-ref", "refs/heads/flood", commit], check=True)
    t0 = time.monotonic()
    with pytest.raises(InputError, match="more than 50,000 files"):
        checkout_git(f"file://{repo}", "flood", None, work)
    assert time.monotonic() - t0 < 30
    assert list(work.iterdir()) == []
