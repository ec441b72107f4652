"""``/dashboard``, its assets, and the API docs (``/docs``, ``/redoc``) from local files.

None of these is in the OpenAPI schema (they are pages, not API operations), and none needs a
token: the pages hold no data. The dashboard asks the API for everything it shows, with the
token the user signs in with, so the API's access rules and audit trail decide what it sees.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from app.dashboard.headers import inline_script_hashes

STATIC = Path(__file__).resolve().parent / "static"
DASHBOARD = "/dashboard"
ASSETS = "/dashboard/assets"  # STATIC, as files
DOCS = "/docs"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
REDOC = "/redoc"
# Every path these pages answer under: BrowserPageHeaders gives them the security headers.
PAGE_PREFIXES = (DASHBOARD, DOCS, REDOC)

# The API docs need more than the dashboard: Swagger UI starts from an inline script (allowed
# by its hash only) and both set styles inline; ReDoc searches in a worker made from a blob.
_DOCS_CSP = (
    "default-src 'none'; script-src 'self'{scripts}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "form-action 'none'; frame-ancestors 'none'; object-src 'none'; base-uri 'none'"
)

router = APIRouter(include_in_schema=False)


@cache
def _dashboard_html() -> str:
    return (STATIC / "index.html").read_text(encoding="utf-8")


@router.get(DASHBOARD)
async def dashboard() -> HTMLResponse:
    """The dashboard's single page; its modules draw each view from the API."""
    return HTMLResponse(_dashboard_html())


def _root(request: Request) -> str:
    # Behind a proxy that mounts the service under a prefix (uvicorn --root-path).
    return str(request.scope.get("root_path", "")).rstrip("/")


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    hashes = inline_script_hashes(bytes(page.body).decode())
    page.headers["Content-Security-Policy"] = _DOCS_CSP.format(
        scripts=f" {hashes}" if hashes else ""
    )
    return page


@router.get(DOCS)
async def swagger_ui(request: Request) -> HTMLResponse:
    app: FastAPI = request.app
    root = _root(request)
    vendor = f"{root}{ASSETS}/vendor/swagger-ui"
    return _with_policy(
        get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{vendor}/swagger-ui-bundle.js",
            swagger_css_url=f"{vendor}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.svg",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT}",
            # No validator badge: it would send the schema's URL to validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )
    )


@router.get(OAUTH2_REDIRECT)
async def swagger_ui_redirect() -> HTMLResponse:
    return _with_policy(get_swagger_ui_oauth2_redirect_html())


@router.get(REDOC)
async def redoc(request: Request) -> HTMLResponse:
    app: FastAPI = request.app
    root = _root(request)
    return _with_policy(
        get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/vendor/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.svg",
            with_google_fonts=False,
        )
    )


def install_pages(app: FastAPI) -> None:
    """The dashboard, its assets and the API docs. The app must be created with
    ``docs_url=None, redoc_url=None`` (FastAPI's own pages load their scripts from a CDN)."""
    app.include_router(router)
    app.mount(ASSETS, StaticFiles(directory=STATIC), name="dashboard-assets")
