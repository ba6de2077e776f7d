"""The review app inside the Airflow 3 api-server: a plugin with a ``fastapi_apps`` entry and a
navigation link (``external_views``), registered through the provider's ``airflow.plugins`` entry
point.

Airflow does not authenticate plugin apps, so this one does it itself, with Airflow's auth manager:
every route depends on :func:`airflow_user`, which reads the caller's Airflow JWT (the UI's cookie
or an ``Authorization: Bearer`` header) and asks the auth manager whether the user may see the
``DeepOCR review`` custom view (GET) or act on it (POST). No token: 401; not allowed: 403.

Configuration (``airflow.cfg`` section ``[deepocr]`` or ``AIRFLOW__DEEPOCR__…``): ``review_warehouse``
(SQLAlchemy URL), ``review_work_dir`` (the pipeline's work area), ``review_schema`` and
``review_table_prefix`` (default ``deepocr_``; the load task's ``table_prefix``, e.g. ``records_``
for the hospital DAG). Each run id links to the DAG run's page in Airflow's UI.
"""

# No ``from __future__ import annotations``: FastAPI reads the dependency annotations at run time.
import secrets
from typing import Any

from airflow.plugins_manager import AirflowPlugin
from fastapi import Request

URL_PREFIX = "/deepocr-review"
RESOURCE_NAME = "DeepOCR review"


async def airflow_user(request: Request) -> str:
    """The Airflow user's name, when the auth manager lets them use the review page."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import resolve_user_from_token
    from fastapi import HTTPException

    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    user = await resolve_user_from_token(token)  # 401 without a token, 403 for a bad one
    method = "GET" if request.method in ("GET", "HEAD") else "POST"
    if not get_auth_manager().is_authorized_custom_view(
        method=method, resource_name=RESOURCE_NAME, user=user
    ):
        raise HTTPException(status_code=403, detail="not allowed to review documents")
    return user.get_name()


def build_app() -> Any:
    """The review app for the api-server, configured from ``[deepocr]``."""
    from airflow.configuration import conf
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    from airflow_provider_deepocr.review.app import ReviewSettings, create_app

    url = conf.get("deepocr", "review_warehouse", fallback=None)
    work_dir = conf.get("deepocr", "review_work_dir", fallback=None)
    if not url or not work_dir:
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

        @app.get("/")
        def not_configured() -> PlainTextResponse:
            return PlainTextResponse("set [deepocr] review_warehouse and review_work_dir\n", status_code=503)

        return app
    settings = ReviewSettings(
        url,
        work_dir,
        schema=conf.get("deepocr", "review_schema", fallback=None) or None,
        prefix=conf.get("deepocr", "review_table_prefix", fallback="deepocr_"),
    )
    return create_app(
        settings, user_dependency=airflow_user, csrf_secret=_csrf_secret(conf), run_link=airflow_run_link
    )


def airflow_run_link(base: str, dag_id: str, run_id: str) -> str | None:
    """The DAG run's page in Airflow's UI (``…/dags/<dag_id>/runs/<run_id>``), next to this app
    (``base`` is its mount path, :data:`URL_PREFIX` under the api-server's base URL); none for a
    run the CLI made (DAG ``cli``)."""
    from urllib.parse import quote

    if not dag_id or not run_id or dag_id == "cli":
        return None
    ui = base[: -len(URL_PREFIX)] if base.endswith(URL_PREFIX) else base.rsplit("/", 1)[0]
    return f"{ui}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe=':+')}"


def _csrf_secret(conf: Any) -> str:
    """The form-token secret, the same in every api-server worker process (a form served by one
    worker is posted to another): derived from ``[api_auth] jwt_secret``, which Airflow requires to
    be shared; a random one where that is unset (one process only)."""
    import hashlib
    import hmac

    jwt_secret = conf.get("api_auth", "jwt_secret", fallback="") or ""
    if not jwt_secret:
        return secrets.token_urlsafe(32)
    return hmac.new(jwt_secret.encode(), b"deepocr-review-csrf", hashlib.sha256).hexdigest()


class DeepOcrReviewPlugin(AirflowPlugin):
    """``DeepOCR review`` in the Airflow UI's navigation, served by the api-server."""

    name = "deepocr_review"
    fastapi_apps = [{"app": build_app(), "url_prefix": URL_PREFIX, "name": "DeepOCR review"}]
    external_views = [
        {
            "name": "DeepOCR review",
            "href": URL_PREFIX.lstrip("/") + "/",
            "destination": "nav",
            "category": "browse",
            "url_route": "deepocr-review",
        }
    ]
