"""The counsellor console's page through the real app: served with a strict Content-Security-Policy, no
inline script or style, only its two static files (no path leads anywhere else), every control a browser
test will drive has its id, and every API path the script calls is a route of the app."""

from __future__ import annotations

import re
import uuid
from html.parser import HTMLParser
from pathlib import Path

import pytest
from sanic import Sanic

from integrations.console.page import STATIC, STATIC_DIR, console_page
from integrations.gateway.app import create_app
from tests.unit.apps import gateway_settings
from tests.unit.fakes import FakeEngine

PAGE_SOURCE = Path(__file__).resolve().parents[2] / "integrations" / "console" / "page.py"
HTML = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
SCRIPT = (STATIC_DIR / "console.js").read_text(encoding="utf-8")

CONTROLS = [
    "login-handle",
    "login-password",
    "login-submit",
    "queue",
    "red-alert",
    "red-alert-ack",
    "case-view",
    "case-claim",
    "case-release",
    "case-close",
    "case-outcome",
    "message-input",
    "message-send",
    "note-input",
    "note-save",
    "history",
]
MADE_BY_THE_SCRIPT = ["queue-item-", "history-item-", "quick-reply-"]  # followed by a case, message, index
OUTCOMES = [
    "resolved",
    "referred_school",
    "referred_district",
    "referred_hospital",
    "emergency_services",
    "other",
]


@pytest.fixture
def app(sqlite_url: str) -> Sanic:
    """The gateway as the other console tests build it; these requests never reach the store."""
    app = create_app(
        gateway_settings(sqlite_url),
        engine=FakeEngine(),
        actions_up=lambda: True,
        name=f"page_{uuid.uuid4().hex[:8]}",
    )
    if "console_page" not in app.blueprints:  # until app.py registers it
        app.blueprint(console_page)
    return app


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text.append(data)


def _parse(html: str) -> _Tags:
    tags = _Tags()
    tags.feed(html)
    return tags


async def test_the_page_is_served_with_a_strict_policy_and_no_inline_script_or_style(app: Sanic) -> None:
    _, response = await app.asgi_client.get("/console")
    assert response.status == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert "unsafe" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "no-store" in response.headers["cache-control"]

    page = _parse(response.body.decode("utf-8"))
    assert "".join(page.script_text).strip() == ""  # no inline script bodies
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert scripts and all(attrs.get("src") for attrs in scripts)
    assert not [tag for tag, _ in page.tags if tag == "style"]
    for tag, attrs in page.tags:
        assert "style" not in attrs, tag
        assert not [name for name in attrs if name.startswith("on")], tag  # no inline event handlers
    # nothing from elsewhere: every resource is one of the two static files
    resources = [
        attrs.get("src") or attrs.get("href") for tag, attrs in page.tags if tag in ("script", "link")
    ]
    assert sorted(resources) == sorted(f"/console/static/{name}" for name in STATIC)


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("console.js", "text/javascript; charset=utf-8"), ("console.css", "text/css; charset=utf-8")],
)
async def test_the_script_and_style_sheet_are_served_with_their_types(
    app: Sanic, name: str, content_type: str
) -> None:
    _, response = await app.asgi_client.get(f"/console/static/{name}")
    assert response.status == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.body == (STATIC_DIR / name).read_bytes()
    # revalidated, not refetched: a changed file reaches every counsellor on their next load
    _, again = await app.asgi_client.get(
        f"/console/static/{name}", headers={"If-Modified-Since": response.headers["last-modified"]}
    )
    assert again.status == 304


@pytest.mark.parametrize(
    "path",
    [
        "/console/static/../page.py",
        "/console/static/..%2fpage.py",
        "/console/static/..%2Fpage.py",
        "/console/static/%2e%2e%2fpage.py",
        "/console/static/%2e%2e/page.py",
        "/console/static/..%5cpage.py",
        "/console/static/%2e%2e%2f%2e%2e%2fgateway%2fapp.py",
        "/console/static/index.html",  # in the folder, but not one of the served files
        "/console/static/console.js%00.py",
        "/console/static/",
    ],
)
async def test_no_path_leads_out_of_the_two_static_files(app: Sanic, path: str) -> None:
    _, response = await app.asgi_client.get(path)
    assert response.status in (400, 404)
    assert b"Blueprint" not in response.body and b"<html" not in response.body


def test_every_control_a_browser_test_drives_has_its_id() -> None:
    page = _parse(HTML)
    test_ids = [attrs["data-testid"] for _, attrs in page.tags if attrs.get("data-testid")]
    assert len(test_ids) == len(set(test_ids)), "a data-testid occurs twice"
    for _, attrs in page.tags:  # the same name as id, so either finds it
        if attrs.get("data-testid"):
            assert attrs.get("id") == attrs["data-testid"]
    for control in CONTROLS:
        assert control in test_ids or f'"{control}"' in SCRIPT, control
    for prefix in MADE_BY_THE_SCRIPT:
        assert f"`{prefix}${{" in SCRIPT, prefix
    assert 'node.setAttribute("data-testid", o.id)' in SCRIPT  # what el() does with every id it is given


def test_the_outcome_list_offers_exactly_the_closing_codes() -> None:
    page = _parse(HTML)
    offered = [attrs["value"] for tag, attrs in page.tags if tag == "option" and attrs.get("value")]
    assert offered == OUTCOMES


def test_the_api_errors_have_their_words() -> None:
    for words in (
        "账号或密码不对",
        "尝试次数太多，请 15 分钟后再试",
        "另一位老师正在对话",
        "你没有查看这个个案的权限",
    ):
        assert words in SCRIPT
    for code in (
        "bad_credentials",
        "locked",
        "rate_limited",
        "held_by_another",
        "forbidden",
        "signed_out",
        "csrf",
    ):
        assert re.search(rf"\b{code}: \"", SCRIPT), code


def test_every_api_path_the_script_calls_is_a_route_of_the_app(app: Sanic) -> None:
    called = re.findall(r'\[\s*"(GET|POST)"\s*,\s*"(/console/api/[^"]*)"\s*\]', SCRIPT)
    assert len(called) >= 11
    assert SCRIPT.count("/console/api/") == len(called), "an API path outside the API table"

    def pattern(route_path: str) -> re.Pattern[str]:
        parts = [r"[^/]+" if part.startswith("<") else re.escape(part) for part in route_path.split("/")]
        return re.compile("/" + "/".join(parts))

    routes = [(pattern(route.path), route.methods, route.extra.websocket) for route in app.router.routes]
    for method, path in called:
        concrete = path.replace("{id}", "12")
        assert any(p.fullmatch(concrete) and method in methods and not ws for p, methods, ws in routes), (
            f"{method} {path} is not a route"
        )
    feed = re.search(r'FEED_PATH = "([^"]+)"', SCRIPT)
    assert feed is not None
    assert any(p.fullmatch(feed.group(1)) and ws for p, _, ws in routes), (
        "the live feed is not a websocket route"
    )


def test_the_script_writes_no_markup_and_loads_nothing_from_elsewhere() -> None:
    for risky in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert risky not in SCRIPT, risky
    assert ".style" not in SCRIPT and 'setAttribute("style"' not in SCRIPT
    assert not re.search(
        r"https?://", SCRIPT + HTML + (STATIC_DIR / "console.css").read_text(encoding="utf-8")
    )
    assert "@import" not in (STATIC_DIR / "console.css").read_text(encoding="utf-8")


def test_python_holds_none_of_the_pages_words() -> None:
    assert not re.search(
        r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]", PAGE_SOURCE.read_text(encoding="utf-8")
    )
