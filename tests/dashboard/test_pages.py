"""The dashboard's and the API docs' pages over HTTP (no browser): security headers, no
inline code, local assets only, outside the OpenAPI schema, shipped as package data, and the
vendored libraries as recorded."""

from __future__ import annotations

import base64
import hashlib
import re
import tomllib
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx
import pytest

from app.dashboard.router import STATIC
from tests.support import ROOT

PACKAGE = STATIC.parent
REQUIRED_CSP = [
    "script-src 'self'",
    "connect-src 'self'",
    "frame-ancestors 'none'",
    "object-src 'none'",
    "base-uri 'none'",
]
BROWSER_HEADERS = {
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


class Tags(HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script" and "src" not in dict(attrs)

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_scripts.append(data)


def tags_of(html: str) -> Tags:
    parser = Tags()
    parser.feed(html)
    return parser


def assert_browser_headers(response: httpx.Response) -> None:
    for name, value in BROWSER_HEADERS.items():
        assert response.headers.get(name) == value, (response.url, name)
    policy = response.headers["content-security-policy"]
    for directive in REQUIRED_CSP:
        assert directive in policy, (response.url, directive)


@pytest.mark.parametrize(
    ("path", "status", "media_type"),
    [
        ("/dashboard", 200, "text/html"),
        ("/dashboard/assets/js/main.js", 200, "text/javascript"),
        ("/dashboard/assets/dashboard.css", 200, "text/css"),
        ("/dashboard/assets/vendor/uplot/uPlot.esm.js", 200, "text/javascript"),
        ("/dashboard/assets/no-such-file.js", 404, "application/problem+json"),
    ],
)
async def test_dashboard_pages_and_assets_carry_the_security_headers(
    anonymous: httpx.AsyncClient, path: str, status: int, media_type: str
) -> None:
    response = await anonymous.get(path)
    assert response.status_code == status
    assert response.headers["content-type"].startswith(media_type)
    assert_browser_headers(response)
    policy = response.headers["content-security-policy"]
    # No inline code at all on the dashboard: its scripts and styles are its own files.
    assert "'unsafe-inline'" not in policy
    assert "style-src 'self';" in policy


async def test_the_dashboard_page_holds_no_inline_code_and_loads_only_its_own_files(
    anonymous: httpx.AsyncClient,
) -> None:
    page = tags_of((await anonymous.get("/dashboard")).text)
    assert page.inline_scripts == []
    for tag, attrs in page.tags:
        assert tag != "style"
        assert "style" not in attrs, tag
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        for name in ("src", "href"):
            url = attrs.get(name)
            if url is not None:
                assert not re.match(r"^[a-z]+:|^//", url), f"{tag} {name}={url}: not local"


async def test_every_file_the_dashboard_loads_is_served(anonymous: httpx.AsyncClient) -> None:
    """The page's links and every module's imports, followed from /dashboard: each answers 200
    (a typo in a path would break the page only in a browser)."""
    base = "http://test/dashboard"
    page = tags_of((await anonymous.get("/dashboard")).text)
    pending = [
        urljoin(base, attrs[name] or "")
        for tag, attrs in page.tags
        for name in ("src", "href")
        if tag in ("script", "link", "img") and attrs.get(name)
    ]
    seen: set[str] = set()
    while pending:
        url = pending.pop()
        if url in seen:
            continue
        seen.add(url)
        response = await anonymous.get(url)
        assert response.status_code == 200, url
        if url.endswith(".js"):
            imports = re.findall(
                r'^\s*(?:import|export)[^"\']*?from\s+"([^"]+)"', response.text, re.M
            )
            pending += [urljoin(url, target) for target in imports]
    assert any(url.endswith("/vendor/uplot/uPlot.esm.js") for url in seen)
    assert len([url for url in seen if "/js/views/" in url]) == 4


# Text from the API is set as text, never parsed as markup; styles go through the CSSOM (which
# the CSP allows), never a style attribute; the token lives in sessionStorage only.
FORBIDDEN_IN_MODULES = (
    "innerHTML",
    "outerHTML",
    "insertAdjacentHTML",
    "document.write",
    "eval(",
    "new Function",
    'setAttribute("style"',
    "localStorage",
    "document.cookie",
)


def test_the_dashboard_modules_set_text_never_markup_and_keep_the_token_in_the_tab() -> None:
    modules = sorted((STATIC / "js").rglob("*.js"))
    assert modules
    for module in modules:
        code = module.read_text()
        for forbidden in FORBIDDEN_IN_MODULES:
            assert forbidden not in code, f"{module.name}: {forbidden}"


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
async def test_the_api_docs_load_local_files_and_allow_only_their_own_inline_script(
    anonymous: httpx.AsyncClient, path: str
) -> None:
    response = await anonymous.get(path)
    assert response.status_code == 200
    assert_browser_headers(response)
    page = tags_of(response.text)
    for tag, attrs in page.tags:
        for name in ("src", "href"):
            url = attrs.get(name)
            if url is not None:
                assert not re.match(r"^[a-z]+:|^//", url), f"{path}: {tag} {name}={url}"
    policy = response.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]*)", policy)
    assert script_src is not None
    allowed = set(script_src.group(1).split())
    hashes = {
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in page.inline_scripts
    }
    assert allowed == {"'self'"} | hashes
    if path == "/docs":
        assert "dashboard/assets/vendor/swagger-ui/swagger-ui-bundle.js" in response.text
        assert '"validatorUrl": null' in response.text  # no call to validator.swagger.io
    if path == "/redoc":
        assert "dashboard/assets/vendor/redoc/redoc.standalone.js" in response.text
        assert "fonts.googleapis.com" not in response.text


async def test_a_trailing_slash_finds_the_dashboard(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/dashboard/", follow_redirects=True)
    assert response.status_code == 200
    assert str(response.url).endswith("/dashboard")


async def test_pages_are_not_api_operations(anonymous: httpx.AsyncClient) -> None:
    schema = (await anonymous.get("/openapi.json")).json()
    pages = [p for p in schema["paths"] if p.startswith(("/dashboard", "/docs", "/redoc"))]
    assert pages == []


def test_every_static_file_ships_in_the_package() -> None:
    """pyproject.toml's package-data for app.dashboard covers every file under static/, so a
    wheel (and `pip install .`, the Docker image) carries the whole dashboard."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["app.dashboard"]
    shipped = {path for pattern in patterns for path in PACKAGE.glob(pattern) if path.is_file()}
    files = {path for path in STATIC.rglob("*") if path.is_file()}
    assert files - shipped == set()
    assert (STATIC / "index.html") in shipped


def test_the_vendored_files_are_the_recorded_ones_with_their_licences() -> None:
    vendor = STATIC / "vendor"
    readme = (vendor / "README.md").read_text()
    block = re.search(r"## SHA-256\s+```\n(.*?)```", readme, re.S)
    assert block is not None
    recorded = {}
    for line in block.group(1).splitlines():
        digest, name = line.split("  ", 1)
        recorded[name] = digest
    present = {
        str(path.relative_to(vendor)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in vendor.rglob("*")
        if path.is_file() and path.name != "README.md"
    }
    assert present == recorded
    for library in ("uplot", "swagger-ui", "redoc"):
        assert (vendor / library / "LICENSE").is_file()
