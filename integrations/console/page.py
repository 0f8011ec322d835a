"""The counsellor console's pages: GET /console serves static/index.html, GET /console/supervisor the
supervisor view (static/supervisor.html), /console/static/<name> their scripts and style sheets. No words
live here: every visible text is in the static files.

Only the files named in SERVED are served (no directory is exposed, so no path can reach further), and
every answer carries a strict Content-Security-Policy: a page loads nothing but its own scripts and
style sheets, runs no inline script or style, and talks only to this origin (the JSON API and the
/console/ws feed). STATIC is what the console's page loads, SUPERVISOR_STATIC what the supervisor
view adds to the two files it shares with it (SHARED: console.css, and api.js, the JSON API client both
pages' scripts use).
"""

from __future__ import annotations

from pathlib import Path

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, file, json

STATIC_DIR = Path(__file__).with_name("static")
PAGE = STATIC_DIR / "index.html"
SUPERVISOR_PAGE = STATIC_DIR / "supervisor.html"
# What each page loads: both load SHARED; the console adds console.js, the supervisor view SUPERVISOR_STATIC.
SHARED: dict[str, str] = {
    "api.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
STATIC: dict[str, str] = {**SHARED, "console.js": "text/javascript; charset=utf-8"}
SUPERVISOR_STATIC: dict[str, str] = {
    "supervisor.js": "text/javascript; charset=utf-8",
    "supervisor.css": "text/css; charset=utf-8",
}
SERVED: dict[str, str] = {**STATIC, **SUPERVISOR_STATIC}
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

console_page = Blueprint("console_page")


def _secured(response: HTTPResponse) -> HTTPResponse:
    response.headers.update(SECURITY_HEADERS)
    return response


@console_page.get("/console")
async def page(_: Request) -> HTTPResponse:
    return _secured(await file(PAGE, mime_type="text/html; charset=utf-8", no_store=True))


@console_page.get("/console/supervisor")
async def supervisor_page(_: Request) -> HTTPResponse:
    """The supervisor view. Served to anyone, like /console: it holds no data, and every figure it shows
    comes from /console/api/supervision, which only supervisors and admins may read."""
    return _secured(await file(SUPERVISOR_PAGE, mime_type="text/html; charset=utf-8", no_store=True))


@console_page.get("/console/static/<name:str>")
async def static(request: Request, name: str) -> HTTPResponse:
    """A file from SERVED by its exact name; anything else (another file, a path) is 404. Sent with
    no-cache and Last-Modified: the browser revalidates (304), so a new script reaches every counsellor
    on their next load."""
    mime_type = SERVED.get(name)
    if mime_type is None:
        return _secured(json({"error": "not_found"}, status=404))
    return _secured(await file(STATIC_DIR / name, request_headers=request.headers, mime_type=mime_type))
