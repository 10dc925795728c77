"""What a submission points at: validating git URLs and refs, and resolving a ref to its commit.

Resolution (``git ls-remote``, no clone) happens in the request so the idempotency key can name the
exact commit; the clone itself happens later, in a worker process, through ``auditor.intake``.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from api.settings import Settings

SHA_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]{0,199}$")


class SourceError(ValueError):
    """A bad repository URL or ref, or a ref that does not exist; the message is for the user."""


def git_env(settings: Settings) -> dict[str, str]:
    """Environment for every git call on untrusted URLs: never prompt, only allowed transports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="/bin/false",
        SSH_ASKPASS="/bin/false",
        GIT_LFS_SKIP_SMUDGE="1",
        GIT_ALLOW_PROTOCOL="https:file" if settings.allow_local_repos else "https",
        GIT_CONFIG_NOSYSTEM="1",
    )
    return env


def check_repo(repo: str, settings: Settings) -> str:
    """The repository URL if it is acceptable, else SourceError saying why."""
    repo = repo.strip()
    if not repo or repo.startswith("-") or any(c in repo for c in "\x00\n\r\t "):
        raise SourceError("the repository URL is empty or has forbidden characters")
    if repo.startswith(("/", "file://")):
        if not settings.allow_local_repos:
            raise SourceError("local repositories are not accepted by this server; give an https URL")
        path = Path(repo.removeprefix("file://"))
        if not path.exists():
            raise SourceError(f"no repository at {path}")
        return repo
    parts = urlsplit(repo)
    if parts.scheme != "https":
        raise SourceError("only https:// git URLs are accepted")
    if parts.username or parts.password:
        raise SourceError("credentials in the repository URL are not accepted")
    host = (parts.hostname or "").lower()
    if host not in settings.allowed_git_hosts:
        allowed = ", ".join(settings.allowed_git_hosts) or "none"
        raise SourceError(f"host {host!r} is not allowed (allowed: {allowed})")
    return repo


def check_ref(ref: str) -> str:
    ref = ref.strip()
    if not REF_RE.match(ref) or ".." in ref or ref.endswith((".lock", "/", ".")) or "//" in ref:
        raise SourceError(f"{ref!r} is not a valid git ref name")
    return ref


def resolve_commit(repo: str, ref: str, settings: Settings) -> str:
    """The commit SHA ``ref`` names in ``repo`` (branch, tag, full ref, or a full SHA as is)."""
    if SHA_RE.match(ref):
        return ref
    try:
        proc = subprocess.run(
            ["git", "ls-remote", "--", repo, ref, f"{ref}^{{}}"],
            capture_output=True,
            check=False,
            text=True,
            timeout=settings.ls_remote_timeout_s,
            env=git_env(settings),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise SourceError(f"git ls-remote timed out on {repo}") from None
    if proc.returncode != 0:
        # git's own message names the problem (unreachable host, not a repository); keep it short.
        detail = (proc.stderr.strip().splitlines() or ["git ls-remote failed"])[-1][:300]
        raise SourceError(f"cannot read {repo}: {detail}")
    refs: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        sha, _, name = line.partition("\t")
        refs[name] = sha
    # Exact full name first, then a branch, then a tag (peeled to its commit).
    for name in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}"):
        peeled = refs.get(f"{name}^{{}}")
        if peeled or name in refs:
            return peeled or refs[name]
    raise SourceError(f"ref {ref!r} does not exist in {repo}")
