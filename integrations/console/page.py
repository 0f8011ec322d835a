"""The counsellor console's page: GET /console serves static/index.html, /console/static/<name> its script
and style sheet. No words live here: every visible text is in the static files.

Only the files named in STATIC are served (no directory is exposed, so no path can reach further), and
every answer carries a strict Content-Security-Policy: the page loads nothing but its own script and
style sheet, runs no inline script or style, and talks only to this origin (the JSON API and the
/console/ws feed).
"""

from __future__ import annotations

from pathlib import Path

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, file, json

STATIC_DIR = Path(__file__).with_name("static")
PAGE = STATIC_DIR / "index.html"
STATIC: dict[str, str] = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
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


@console_page.get("/console/static/<name:str>")
async def static(request: Request, name: str) -> HTTPResponse:
    """A file from STATIC by its exact name; anything else (another file, a path) is 404. Sent with
    no-cache and Last-Modified: the browser revalidates (304), so a new script reaches every counsellor
    on their next load."""
    mime_type = STATIC.get(name)
    if mime_type is None:
        return _secured(json({"error": "not_found"}, status=404))
    return _secured(await file(STATIC_DIR / name, request_headers=request.headers, mime_type=mime_type))
