"""HTTP routers: validation and mapping only (the work lives in api.jobs, api.reproductions, api.tasks)."""

from __future__ import annotations

from fastapi import HTTPException, Request


def load_or_404(request: Request, model, key: str, what: str):
    """The row ``key`` of ``model`` (ids are short: a longer key cannot exist), else a 404."""
    with request.app.state.sessions() as s:
        row = s.get(model, key[:64])
    if row is None:
        raise HTTPException(404, detail=f"no {what} {key!r}")
    return row
