"""The "Pattern detections" page and its JSON API: a FastAPI app the Airflow plugin mounts.

Routes, relative to where the app is mounted (``/patternflow`` in the api-server):

- ``GET /`` the page (a static shell: it holds no data, and loads it with the routes below);
- ``GET /api/stream`` the stream view as JSON (``stream_view.build_view``);
- ``GET /api/stream/html`` the same view rendered as the page's sections (``view_html``);
- ``GET /icon.svg``, ``GET /icon-dark.svg`` the navigation icon, for light and dark.

The data routes run ``authorize`` first: in the api-server, Airflow's own check that the caller
may read DAG ``pattern_detection`` (its session cookie or a Bearer token), since the view shows
customer and merchant ids. The page is open: it shows nothing until the data routes answer.

This module knows nothing of Airflow: the plugin hands it a ``source`` (the store and settings,
through the ``aws_default`` connection) and the ``authorize`` dependency.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, Response

from patternflow.engine.store import ObjectStore
from patternflow.pipeline.settings import PipelineSettings
from patternflow.web.stream_view import RowCounts, build_view
from patternflow.web.view_html import render_sections, stylesheet

log = logging.getLogger(__name__)

Source = Callable[[], tuple[ObjectStore, PipelineSettings]]
REFRESH_SECONDS = 2.0
"""How often the page reloads the view while the stream runs (every 30 s once it is finished)."""

ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="{colour}" stroke-width="2" '
    'stroke-linecap="round" stroke-linejoin="round"><path d="M3 3v18h18"/><path d="M7 15l4-5 3 3 5-7"/></svg>'
)
"""The navigation icon: a line chart, drawn in the UI's foreground colour."""


def page() -> str:
    """The page, its stylesheet and script inlined (one request, and nothing to resolve behind a proxy)."""
    web = resources.files("patternflow.web").joinpath("assets")
    script = web.joinpath("page.js").read_text().replace("__REFRESH_MS__", str(int(REFRESH_SECONDS * 1000)))
    return web.joinpath("page.html").read_text().replace("/*STYLE*/", stylesheet()).replace("/*SCRIPT*/", script)


def create_app(source: Source, authorize: Callable[..., Any] | None = None) -> FastAPI:
    """The app; ``authorize`` (a FastAPI dependency) guards the data routes, None leaves them open."""
    app = FastAPI(
        title="patternflow: pattern detections",
        description="The stream's progress, per-chunk lag, detections per pattern and detection files, read from S3.",
        version="1",
    )
    row_counts = RowCounts()  # kept across requests: each detection file is read once
    guarded = [Depends(authorize)] if authorize is not None else []
    html = page()

    def view() -> dict:
        try:
            store, settings = source()
            return build_view(store, settings, row_counts)
        except Exception as exc:  # S3 down, a bad connection or setting: say so, the page retries
            log.warning("cannot read the stream: %s", exc)
            raise HTTPException(503, f"cannot read the stream: {type(exc).__name__}: {exc}") from None

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard_page() -> HTMLResponse:
        return HTMLResponse(html)

    @app.get("/icon.svg", include_in_schema=False)
    def icon() -> Response:
        return Response(ICON.format(colour="#1e293b"), media_type="image/svg+xml")

    @app.get("/icon-dark.svg", include_in_schema=False)
    def icon_dark() -> Response:
        return Response(ICON.format(colour="#e2e8f0"), media_type="image/svg+xml")

    @app.get("/api/stream", dependencies=guarded, summary="The stream view: progress, chunks, detections, files")
    def stream() -> JSONResponse:
        return JSONResponse(view(), headers={"Cache-Control": "no-store"})

    @app.get("/api/stream/html", dependencies=guarded, response_class=HTMLResponse, summary="The stream view as the page's HTML")
    def stream_html() -> HTMLResponse:
        current = view()
        headers = {"Cache-Control": "no-store", "X-Stream-Finished": str(current["progress"]["finished"]).lower()}
        return HTMLResponse(render_sections(current), headers=headers)

    return app
