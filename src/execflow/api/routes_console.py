"""``/console``: the ops console, a static page whose every data call carries an admin key.

Three files shipped as package data (``execflow/api/console/``): no build step. The page
itself holds no data and needs no key; the operator pastes an admin key once (kept in
the tab's ``sessionStorage``) and the script sends it as ``Authorization: Bearer`` on
each call to the operator endpoints. A strict Content-Security-Policy allows only this
origin's script, style and calls: no inline script, no other host.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

__all__ = ["router"]

router = APIRouter(tags=["console"], include_in_schema=False)

_FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _read(name: str) -> bytes:
    return resources.files("execflow.api").joinpath("console", name).read_bytes()


def _file(name: str) -> Response:
    return Response(_read(name), media_type=_FILES[name], headers=_HEADERS)


@router.get("/console")
async def console_root() -> RedirectResponse:
    """The page lives at ``/console/`` so its files resolve relative to it."""
    return RedirectResponse("console/", status_code=308)


@router.get("/console/")
async def console_page() -> Response:
    """The page (no data in it)."""
    return _file("index.html")


@router.get("/console/console.js")
async def console_script() -> Response:
    """The page's script."""
    return _file("console.js")


@router.get("/console/console.css")
async def console_style() -> Response:
    """The page's style sheet."""
    return _file("console.css")
