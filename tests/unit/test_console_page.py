"""The counsellor console's page through the real app: served with a strict Content-Security-Policy, no
inline script or style, only its static files (no path leads anywhere else), every control a browser
test will drive has its id, and every API path the script calls is a route of the app. The checks the
supervisor's page shares (`test_console_supervision.py`) are the helpers here."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from sanic import Sanic

from integrations.console.page import STATIC, STATIC_DIR, console_page
from tests.unit.console_client import console_app

PAGE_SOURCE = Path(__file__).resolve().parents[2] / "integrations" / "console" / "page.py"
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")  # Chinese characters and punctuation
HTML = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
SCRIPT = (STATIC_DIR / "console.js").read_text(encoding="utf-8")
API_CLIENT = (STATIC_DIR / "api.js").read_text(encoding="utf-8")  # the JSON API client both pages load

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
    app = console_app(sqlite_url, "page")
    if "console_page" not in app.blueprints:  # until app.py registers it
        app.blueprint(console_page)
    return app


class Tags(HTMLParser):
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


def parse(html: str) -> Tags:
    tags = Tags()
    tags.feed(html)
    return tags


def assert_served_as_a_page(response: Any) -> None:
    assert response.status == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "no-store" in response.headers["cache-control"]
    assert "unsafe" not in response.headers["content-security-policy"]


def assert_no_inline_code(page: Tags) -> None:
    """No inline script bodies, <style> elements, style attributes or inline event handlers."""
    assert "".join(page.script_text).strip() == ""
    assert not [tag for tag, _ in page.tags if tag == "style"]
    for tag, attrs in page.tags:
        assert "style" not in attrs, tag
        assert not [name for name in attrs if name.startswith("on")], tag


def resources(page: Tags) -> list[str | None]:
    """What the page loads: every script's and link's address."""
    return [attrs.get("src") or attrs.get("href") for tag, attrs in page.tags if tag in ("script", "link")]


def unique_test_ids(page: Tags) -> list[str]:
    """The page's data-testids, each once and the same as its element's id (so either finds it)."""
    found = [attrs["data-testid"] for _, attrs in page.tags if attrs.get("data-testid")]
    assert len(found) == len(set(found)), "a data-testid occurs twice"
    for _, attrs in page.tags:
        if attrs.get("data-testid"):
            assert attrs.get("id") == attrs["data-testid"]
    return found


async def get_static(app: Sanic, name: str, content_type: str) -> Any:
    """One of the static files as the app serves it: with its type, not to be sniffed, byte for byte."""
    _, response = await app.asgi_client.get(f"/console/static/{name}")
    assert response.status == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.body == (STATIC_DIR / name).read_bytes()
    return response


def api_calls(script: str) -> list[tuple[str, str]]:
    """(method, path) of every API call in the script's API table; there are no others."""
    called = re.findall(r'\[\s*"(GET|POST)"\s*,\s*"(/console/api/[^"]*)"\s*\]', script)
    assert script.count("/console/api/") == len(called), "an API path outside the API table"
    return called


def is_route(app: Sanic, method: str, path: str, *, websocket: bool = False) -> bool:
    """Whether `path` (`{id}` standing for an id) is a route of the app for `method`."""
    concrete = path.replace("{id}", "12")
    for route in app.router.routes:
        parts = [r"[^/]+" if part.startswith("<") else re.escape(part) for part in route.path.split("/")]
        if (
            re.fullmatch("/" + "/".join(parts), concrete)
            and method in route.methods
            and route.extra.websocket == websocket
        ):
            return True
    return False


def assert_writes_no_markup(script: str) -> None:
    for risky in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert risky not in script, risky
    assert ".style" not in script and 'setAttribute("style"' not in script


async def test_the_page_is_served_with_a_strict_policy_and_no_inline_script_or_style(app: Sanic) -> None:
    _, response = await app.asgi_client.get("/console")
    assert_served_as_a_page(response)
    policy = response.headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["style-src"] == ["'self'"]
    assert response.headers["x-content-type-options"] == "nosniff"

    page = parse(response.body.decode("utf-8"))
    assert_no_inline_code(page)
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert scripts and all(attrs.get("src") for attrs in scripts)
    # nothing from elsewhere: every resource is one of the static files
    assert sorted(resources(page)) == sorted(f"/console/static/{name}" for name in STATIC)
    # the shared API client runs before the console's script, which uses it
    srcs = [attrs["src"] for attrs in scripts]
    assert srcs == ["/console/static/api.js", "/console/static/console.js"]


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("api.js", "text/javascript; charset=utf-8"),
        ("console.js", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
    ],
)
async def test_the_scripts_and_style_sheet_are_served_with_their_types(
    app: Sanic, name: str, content_type: str
) -> None:
    response = await get_static(app, name, content_type)
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
        "/console/static/api.js%00.py",
        "/console/static/",
    ],
)
async def test_no_path_leads_out_of_the_static_files(app: Sanic, path: str) -> None:
    _, response = await app.asgi_client.get(path)
    assert response.status in (400, 404)
    assert b"Blueprint" not in response.body and b"<html" not in response.body


def test_every_control_a_browser_test_drives_has_its_id() -> None:
    test_ids = unique_test_ids(parse(HTML))
    for control in CONTROLS:
        assert control in test_ids or f'"{control}"' in SCRIPT, control
    for prefix in MADE_BY_THE_SCRIPT:
        assert f"`{prefix}${{" in SCRIPT, prefix
    assert 'node.setAttribute("data-testid", o.id)' in SCRIPT  # what el() does with every id it is given


def test_the_outcome_list_offers_exactly_the_closing_codes() -> None:
    page = parse(HTML)
    offered, select = [], None
    for tag, attrs in page.tags:  # an option belongs to the last <select> opened before it
        if tag == "select":
            select = attrs.get("id")
        elif tag == "option" and select == "case-outcome" and attrs.get("value"):
            offered.append(attrs["value"])
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
    called = api_calls(SCRIPT)
    assert len(called) >= 11
    for method, path in called:
        assert is_route(app, method, path), f"{method} {path} is not a route"
    feed = re.search(r'FEED_PATH = "([^"]+)"', SCRIPT)
    assert feed is not None
    assert is_route(app, "GET", feed.group(1), websocket=True), "the live feed is not a websocket route"


def test_the_script_writes_no_markup_and_loads_nothing_from_elsewhere() -> None:
    assert_writes_no_markup(SCRIPT)
    assert_writes_no_markup(API_CLIENT)
    assert not re.search(
        r"https?://", SCRIPT + API_CLIENT + HTML + (STATIC_DIR / "console.css").read_text(encoding="utf-8")
    )
    assert "@import" not in (STATIC_DIR / "console.css").read_text(encoding="utf-8")


def test_python_holds_none_of_the_pages_words() -> None:
    assert not CJK.search(PAGE_SOURCE.read_text(encoding="utf-8"))


def test_the_shared_api_client_holds_no_words_and_names_no_api_path() -> None:
    """api.js is the same for both pages: the words are each page's, and so is the table of paths."""
    assert not CJK.search(API_CLIENT), "a word in api.js: it belongs to the page that shows it"
    assert "/console/api/" not in API_CLIENT
    assert "window.XinqiaoApi" in API_CLIENT
