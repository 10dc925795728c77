"""API tokens, per-token rate limits and request body limits.

Tokens are compared by their SHA-256 (constant time); the plain token is never stored or logged.
The rate limit is a token bucket per caller, in memory: exact for one node, per node with several.
"""

from __future__ import annotations

import hmac
import threading
import time

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.settings import Settings


class TokenBucket:
    def __init__(self, per_minute: int, burst: int):
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 if the call may proceed, else seconds until it may."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


def caller_for_post(request: Request) -> str:
    """FastAPI dependency for every POST: the token's name (401/403/429 otherwise)."""
    settings: Settings = request.app.state.settings
    name = _authenticate(request, settings)
    wait = request.app.state.rate_limiter.take(name)
    if wait > 0:
        request.app.state.metrics.rate_limited.inc()
        raise HTTPException(
            status_code=429,
            detail=f"rate limit of {settings.rate_limit_per_minute} submissions per minute reached",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    return name


def _authenticate(request: Request, settings: Settings) -> str:
    if not settings.auth_required:
        return f"anonymous@{request.client.host if request.client else 'unknown'}"
    if not settings.token_hashes:
        raise HTTPException(503, detail="submissions are disabled: no API tokens are configured "
                                        "(set PGOLF_API_TOKENS or start with --no-auth)")
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, detail="an API token is required: Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})
    digest = Settings.hash_token(token.strip())
    for name, expected in settings.token_hashes.items():
        if hmac.compare_digest(digest, expected):
            return name
    raise HTTPException(401, detail="unknown API token", headers={"WWW-Authenticate": "Bearer"})


class BodyTooLarge(HTTPException):
    """An HTTPException so FastAPI's body parsing passes it on as a 413 instead of a generic 400."""

    def __init__(self, limit: int):
        super().__init__(413, detail=f"request body over {limit:,} bytes")


class BodyLimitMiddleware:
    """Refuse request bodies over the limit (413), by Content-Length and while streaming."""

    def __init__(self, app: ASGIApp, default_limit: int, upload_limit: int, upload_path: str):
        self.app = app
        self.default_limit = default_limit
        self.upload_limit = upload_limit
        self.upload_path = upload_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Multipart overhead (boundaries, the options field) gets a little room above the file limit.
        limit = self.upload_limit + 64 * 1024 if scope["path"] == self.upload_path else self.default_limit
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_error(send, 400, "invalid Content-Length")
                    return
                if declared > limit:
                    await _send_error(send, 413, f"request body over {limit:,} bytes")
                    return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _send_error(send, 413, f"request body over {limit:,} bytes")


async def _send_error(send: Send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
