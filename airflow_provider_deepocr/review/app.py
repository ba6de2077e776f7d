"""The review web app (FastAPI): a queue of quarantined and flagged documents, each document's pages
with their boxes, and the approve / reject / re-OCR actions (:mod:`airflow_provider_deepocr.core.review`).

One app, two ways in, by the ``auth`` object given to :func:`create_app`:

- standalone (``deepocr review``): :class:`TokenAuth`, a secret token on every request (a
  ``?token=`` link sets an HttpOnly cookie once; ``Authorization: Bearer`` works too);
- inside the Airflow api-server (:mod:`.plugin`): Airflow's auth manager decides who may see it.

Actions are POSTs carrying a form token derived from the user (``csrf``), so no GET and no
cross-site form changes anything. Page images are rendered on demand from the source at the page's
recorded DPI and sent with ``Cache-Control: no-store``: nothing is cached on disk. Nothing here logs
document text or images (ids and decisions only).
"""

# No ``from __future__ import annotations``: FastAPI reads endpoint annotations at run time.
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

log = logging.getLogger(__name__)

DOC_ID_RE = re.compile(r"^[0-9a-f]{64}$")
COOKIE = "deepocr_review"


@dataclass
class TokenAuth:
    """Standalone access: one secret token (printed at start or read from ``--token-file``)."""

    token: str
    reviewer: str = "standalone"

    @staticmethod
    def new(reviewer: str = "standalone") -> "TokenAuth":
        return TokenAuth(secrets.token_urlsafe(32), reviewer)

    def matches(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(str(presented).encode(), self.token.encode())


def form_token(secret: str, user: str) -> str:
    """The form token of ``user``: an HMAC of the user under the app's secret, so a token served
    to one reviewer is refused for another (and cannot be made without the secret)."""
    return hmac.new(secret.encode(), f"csrf:{user}".encode(), hashlib.sha256).hexdigest()


def form_token_ok(secret: str, user: str, presented: str) -> bool:
    """Whether ``presented`` is ``user``'s form token; compared in constant time."""
    return hmac.compare_digest(presented.encode(), form_token(secret, user).encode())


class ReviewSettings:
    """Where the app finds the warehouse and the work area."""

    def __init__(
        self,
        warehouse_url: str,
        work_dir: str,
        schema: str | None = None,
        prefix: str = "deepocr_",
        s3_client: Any = None,
    ) -> None:
        self.warehouse_url = warehouse_url
        self.work_dir = work_dir
        self.schema = schema
        self.prefix = prefix
        self.s3_client = s3_client
        self._wh: Any = None
        self._work: Any = None

    def warehouse(self) -> Any:
        from airflow_provider_deepocr.core.warehouse import Warehouse

        if self._wh is None:
            self._wh = Warehouse(self.warehouse_url, schema=self.schema, prefix=self.prefix, must_exist=True)
            self._wh.create()  # the reviews table on a warehouse made before it existed
        return self._wh

    def work(self) -> Any:
        from airflow_provider_deepocr.core.sources import WorkArea, storage_for

        if self._work is None:
            self._work = WorkArea(self.work_dir, storage_for(self.work_dir, s3_client=self.s3_client))
        return self._work


def render_page(settings: ReviewSettings, result: Any, page_no: int) -> Any:
    """Render one page of a document from its source at the page's recorded DPI (a PIL image)."""
    from airflow_provider_deepocr.core import errors
    from airflow_provider_deepocr.core.render import RenderLimits, render_pages
    from airflow_provider_deepocr.core.sources import read_document, storage_for

    page = next((p for p in result.pages if p.page_no == page_no), None)
    if page is None:
        raise errors.DeepOcrError(errors.READ_ERROR, f"no page {page_no}")
    doc = read_document(result.ref, storage_for(result.ref.uri, s3_client=settings.s3_client))
    if doc.doc_id != result.doc_id:
        raise errors.DeepOcrError(errors.SOURCE_CHANGED, "the source no longer holds this document")
    # the recorded size: a page downscaled at OCR time renders to the same size again
    limits = RenderLimits(max_pixels=max(page.width * page.height, 1), max_pages=max(result.page_count, 1))
    for item in render_pages(doc, dpi=page.dpi, limits=limits, pages=[page_no]):
        if isinstance(item, errors.PageError):
            raise item
        return item.image
    raise errors.DeepOcrError(errors.READ_ERROR, f"no page {page_no}")


def create_app(
    settings: ReviewSettings,
    auth: TokenAuth | None = None,
    user_dependency: Callable[..., Any] | None = None,
    csrf_secret: str | None = None,
    run_link: Callable[[str, str, str], str | None] | None = None,
) -> Any:
    """The review app. Standalone: ``auth`` (a :class:`TokenAuth`). In Airflow: ``user_dependency``
    (a FastAPI dependency returning the reviewer's name, raising 401/403 itself) and
    ``csrf_secret``. ``run_link(base, dag_id, run_id)``: the address of a run (the plugin's link
    to the DAG run in Airflow's UI); none standalone."""
    from fastapi import Depends, FastAPI, Form, HTTPException, Request
    from fastapi.responses import HTMLResponse, RedirectResponse, Response
    from starlette.concurrency import run_in_threadpool

    from airflow_provider_deepocr.core import errors
    from airflow_provider_deepocr.core import review as rv
    from airflow_provider_deepocr.review import docpage
    from airflow_provider_deepocr.review import pages as pg

    if (auth is None) == (user_dependency is None):
        raise ValueError("give exactly one of auth (standalone) or user_dependency (Airflow)")
    secret = auth.token if auth is not None else (csrf_secret or secrets.token_urlsafe(32))

    def csrf_of(user: str) -> str:
        return form_token(secret, user)

    if auth is not None:

        def standalone_user(request: Request) -> str:
            bearer = request.headers.get("authorization", "")
            presented = bearer[7:] if bearer.lower().startswith("bearer ") else request.cookies.get(COOKIE)
            if not auth.matches(presented):
                raise HTTPException(
                    status_code=401, detail="a token is needed", headers={"WWW-Authenticate": "Bearer"}
                )
            return auth.reviewer

        get_user: Callable[..., Any] = standalone_user
    else:
        assert user_dependency is not None
        get_user = user_dependency

    app = FastAPI(title="deepocr review", docs_url=None, redoc_url=None, openapi_url=None)

    if auth is not None:

        @app.middleware("http")
        async def token_link(request: Request, call_next: Any) -> Any:
            """``?token=…`` once: set the HttpOnly cookie and drop the token from the address."""
            presented = request.query_params.get("token")
            if presented is None:
                return await call_next(request)
            if not auth.matches(presented):
                return Response("a valid token is needed\n", status_code=401, media_type="text/plain")
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            resp = RedirectResponse(target, status_code=303)
            resp.set_cookie(COOKIE, auth.token, httponly=True, samesite="strict", path="/")
            return resp

    @app.middleware("http")
    async def no_store(request: Request, call_next: Any) -> Any:
        resp = await call_next(request)
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        return resp

    def base_of(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def check_doc(doc_id: str) -> str:
        if not DOC_ID_RE.match(doc_id):
            raise HTTPException(status_code=404, detail="no such document")
        return doc_id

    def item_and_result(doc_id: str) -> tuple[Any, Any]:
        wh, work = settings.warehouse(), settings.work()
        item = rv.find_item(wh, doc_id)
        if item is None:
            raise HTTPException(status_code=404, detail="no such document in the review queue")
        try:
            result = rv.load_result(work, item.config_fingerprint, doc_id)
        except errors.DeepOcrError:
            raise HTTPException(status_code=404, detail="the work area holds no records for it") from None
        return item, result

    @app.get("/", response_class=HTMLResponse)
    def queue(
        request: Request,
        user: str = Depends(get_user),
        reason: str | None = None,
        run: str | None = None,
        dag: str | None = None,
        reviewed: int = 0,
    ) -> HTMLResponse:
        items = rv.review_queue(
            settings.warehouse(),
            reason=reason or None,
            run_id=run or None,
            dag_id=dag or None,
            include_reviewed=bool(reviewed),
        )
        base = base_of(request)
        links = (lambda dag, run: run_link(base, dag, run)) if run_link else None
        filters = (
            f'<form method="get" action="{pg.esc(base)}/">'
            f'reason <input name="reason" value="{pg.esc(reason or "")}" size="14"> '
            f'run <input name="run" value="{pg.esc(run or "")}" size="22"> '
            f'DAG <input name="dag" value="{pg.esc(dag or "")}" size="16"> '
            f'<label><input type="checkbox" name="reviewed" value="1"{" checked" if reviewed else ""}> '
            "reviewed too</label> <button>filter</button></form>"
        )
        body = (
            f"<h1>Review queue</h1><p>{len(items)} documents, newest first. Reviewer: {pg.esc(user)}</p>"
            f"{filters}<table class='queue'><thead><tr><th>document</th><th>status</th><th>reasons</th>"
            "<th>flagged pages</th><th>run</th><th>DAG</th><th>when (UTC)</th><th>last decision</th></tr>"
            f"</thead><tbody>{pg.queue_rows(items, base, links)}</tbody></table>"
        )
        return HTMLResponse(pg.queue_layout("deepocr review", body))

    def document_page(
        request: Request, doc_id: str, user: str, page: int = 1, done: str = "", refused: str = ""
    ) -> str:
        item, result = item_and_result(doc_id)
        base = base_of(request)
        token = csrf_of(user)
        flash = f'<p class="flash">decision recorded: {pg.esc(done)}</p>' if done else ""
        if refused:
            flash += f'<p class="refused" id="refused">refused: {pg.esc(refused)}</p>'
        offered = rv.allowed_decisions(item, result)
        actions = "".join(docpage.action_form(base, doc_id, token, d) for d in offered)
        for d in rv.DECISIONS:
            why_not = rv.refusal(item, result, d) if d not in offered else None
            if why_not is not None:
                actions += f'<p class="unoffered" id="no-{d}">{d} is not offered: {pg.esc(why_not[1])}</p>'
        reasons, failed = rv.document_reasons(settings.warehouse(), doc_id)
        body = docpage.document_body(
            base=base,
            item=item,
            result=result,
            page_no=page,
            reasons=reasons,
            failed=failed,
            neighbours=rv.neighbours(settings.warehouse(), doc_id),
            actions=actions,
            run_link=lambda dag, run: run_link(base, dag, run) if run_link else None,
            flash=flash,
        )
        return docpage.layout(f"review {doc_id[:12]}", body)

    @app.get("/doc/{doc_id}", response_class=HTMLResponse)
    def document(
        request: Request, doc_id: str, user: str = Depends(get_user), done: str = "", page: int = 1
    ) -> HTMLResponse:
        check_doc(doc_id)
        return HTMLResponse(document_page(request, doc_id, user, page=page, done=done))

    @app.get("/doc/{doc_id}/page/{page_no}.png")
    def page_image(doc_id: str, page_no: int, user: str = Depends(get_user)) -> Response:
        check_doc(doc_id)
        _, result = item_and_result(doc_id)
        try:
            image = render_page(settings, result, page_no)
        except errors.DeepOcrError as exc:
            log.warning("review: cannot render page %d of %s: %s", page_no, doc_id[:12], exc.reason)
            raise HTTPException(status_code=409, detail=exc.reason) from None
        return Response(pg.png_bytes(image), media_type="image/png")

    @app.post("/doc/{doc_id}/decide")
    async def decide(
        request: Request,
        doc_id: str,
        user: str = Depends(get_user),
        decision: str = Form(...),
        csrf: str = Form(""),
        note: str = Form(""),
        engine: str = Form(""),
    ) -> Response:
        check_doc(doc_id)
        if not form_token_ok(secret, user, csrf):
            raise HTTPException(status_code=403, detail="the form token is missing or wrong")
        try:
            await run_in_threadpool(
                rv.decide,
                settings.warehouse(),
                settings.work(),
                doc_id,
                decision,
                user,
                note,
                engine or None,
                True,  # offered_only: refuse what the page does not offer
            )
        except errors.ConfigError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        except errors.DeepOcrError as exc:
            if exc.reason in (errors.NOTHING_TO_APPROVE, errors.ALREADY_LOADED):
                why = f"{decision}: {exc.detail} ({exc.reason})"
                html = await run_in_threadpool(document_page, request, doc_id, user, 1, "", why)
                return HTMLResponse(html, status_code=409)
            raise HTTPException(status_code=409, detail=exc.reason) from None
        return RedirectResponse(f"{base_of(request)}/doc/{doc_id}?done={decision}", status_code=303)

    return app


def serve(settings: ReviewSettings, auth: TokenAuth, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run the standalone app with uvicorn."""
    import uvicorn

    uvicorn.run(create_app(settings, auth=auth), host=host, port=port, log_level="info", access_log=False)
