"""Swagger UI and ReDoc served by the server itself, from the assets `fastapi-offline` ships.

FastAPI's own /docs and /redoc load their JavaScript, CSS and favicon from a CDN, so they are
blank offline; `add_offline_docs` serves the same pages with every asset from this origin.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Final

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL: Final = "/docs"
REDOC_URL: Final = "/redoc"
ASSETS_URL: Final = "/docs-assets"
# The pages may load nothing from elsewhere: ReDoc's sidebar shows Redocly's logo from
# cdn.redoc.ly (no option turns it off), and the browser refuses it. Inline scripts start Swagger
# UI, ReDoc styles itself inline and runs its search in a blob: worker.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)
# The Swagger UI bundle and CSS, ReDoc's standalone script and a favicon, as fastapi-offline's
# package data (its own FastAPIOffline replaces the app's constructor, which ours keeps).
_ASSETS: Final = "static"


def add_offline_docs(app: FastAPI) -> FastAPI:
    """Return `app` with /docs (Swagger UI), its OAuth2 redirect, /redoc and their assets added.

    The app must be built with `docs_url=None, redoc_url=None`, so FastAPI adds no CDN pages.
    """
    directory = str(files("fastapi_offline") / _ASSETS)
    app.mount(ASSETS_URL, StaticFiles(directory=directory), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or f"{DOCS_URL}/oauth2-redirect"
    # Swagger UI would send the schema to validator.swagger.io for its badge off localhost.
    parameters = {**(app.swagger_ui_parameters or {}), "validatorUrl": None}

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        """Return the Swagger UI page, its scripts, styles and favicon from this server."""
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{redirect_url}",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=parameters,
        )
        page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return page

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        """Return the page Swagger UI's OAuth2 login comes back to."""
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        """Return the ReDoc page, its script and favicon from this server, no web fonts."""
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return page

    return app


__all__ = ["ASSETS_URL", "CONTENT_SECURITY_POLICY", "DOCS_URL", "REDOC_URL", "add_offline_docs"]
