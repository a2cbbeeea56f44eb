"""The "Pattern detections" page in the Airflow UI: patternflow's dashboard app, served by the api-server.

``fastapi_apps`` mounts the app (``patternflow.web.dashboard``) at ``/patternflow``; ``external_views``
adds "Pattern detections" to the UI's navigation, which shows the page in the UI's frame at
``/plugin/pattern-detections``. The app reads S3 through the DAGs' own connection and settings
(``patternflow.pipeline.orchestration``), and its data routes ask Airflow whether the caller may read the
``pattern_detection`` DAG.

Every Airflow process imports this module (task processes too, for plugins' macros), and only
the api-server serves requests: so the app, FastAPI and Airflow's API security are loaded on the
first request rather than here, which keeps a second off the start of every task.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

DAG_ID = "pattern_detection"
URL_PREFIX = "/patternflow"


def build_app() -> Any:
    from airflow.api_fastapi.core_api.security import requires_access_dag

    from patternflow.pipeline.orchestration import dashboard_source
    from patternflow.web.dashboard import create_app

    return create_app(dashboard_source, authorize=requires_access_dag(method="GET", param_dag_id=DAG_ID))


class DashboardApp:
    """An ASGI app that builds the dashboard's FastAPI app on its first request."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self.app is None:
            self.app = build_app()
        await self.app(scope, receive, send)

    def __repr__(self) -> str:
        return "patternflow dashboard (patternflow.web.dashboard.create_app)"


class PatternflowDashboard(AirflowPlugin):
    name = "patternflow"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": DashboardApp(), "url_prefix": URL_PREFIX, "name": "patternflow dashboard"},
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Pattern detections",
            "href": URL_PREFIX.lstrip("/") + "/",  # relative: resolved against the UI's base URL
            "icon": URL_PREFIX.lstrip("/") + "/icon.svg",
            "icon_dark_mode": URL_PREFIX.lstrip("/") + "/icon-dark.svg",
            "destination": "nav",
            "url_route": "pattern-detections",
            "nav_top_level": True,
        }
    ]
