"""Review of quarantined and flagged documents: the queue, the decisions and their audit trail.

A reviewer looks at a document that was quarantined (its validation failed), or loaded with flagged
pages (``repetition_loop``, ``truncated``, ``downscaled``, ``empty_page`` …), and decides:

- ``approve``: load it as it is, through the normal exactly-once load
  (:meth:`~airflow_provider_deepocr.core.warehouse.Warehouse.load_document`, from the parsed records
  the parse stage left in the work area, ``records/<fingerprint>/<doc_id>.json``);
- ``reject``: keep it out (it is quarantined with reason ``rejected``, whatever a later run says);
- ``reocr``: OCR it again with another engine; the next CLI or DAG run with that engine picks it up,
  runs with other engines leave it alone.

Every decision is a row appended to ``{prefix}reviews`` (who, when, decision, note; never updated)
and a *decision file* in the work area, ``reviews/<doc_id>.json``, which the pipeline reads
(:func:`review_decisions`): ``stage_ocr`` skips documents left for another engine, ``stage_load``
keeps rejected documents out and loads approved ones as they are. Nothing here logs document text.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.records import DocumentResult
from airflow_provider_deepocr.core.vocab import Stage
from airflow_provider_deepocr.core.work_layout import WorkLayout

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.sources import WorkArea
    from airflow_provider_deepocr.core.warehouse import Warehouse

log = logging.getLogger(__name__)

APPROVE, REJECT, REOCR = "approve", "reject", "reocr"
DECISIONS = (APPROVE, REJECT, REOCR)
REOCR_DONE = "reocr_done"  # a re-OCR decision a run with its engine has carried out
# engines a reviewer may send a document to (OcrEngine.name of each)
REOCR_ENGINES = ("deepseek-ocr2", "vllm", "openai-server", "rapidocr")


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands timestamps back without their zone: they are UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass
class QueueItem:
    """One document awaiting review."""

    doc_id: str
    source_uri: str
    status: str  # quarantined | loaded | failed
    config_fingerprint: str
    run_id: str
    when: datetime
    reasons: list[str] = field(default_factory=list)
    flagged_pages: list[int] = field(default_factory=list)
    dag_id: str = ""
    last_decision: str | None = None


def review_queue(
    wh: Warehouse,
    *,
    reason: str | None = None,
    run_id: str | None = None,
    dag_id: str | None = None,
    include_reviewed: bool = False,
    limit: int = 500,
) -> list[QueueItem]:
    """Quarantined documents and documents with flagged pages, newest first.

    A document reviewed after its latest failure or load is left out unless ``include_reviewed``.
    ``reason`` matches a failure reason or a page flag; ``run_id`` and ``dag_id`` the run that
    quarantined or loaded it (the DAG from the ``runs`` table)."""
    import sqlalchemy as sa

    f, p, d = wh.failures, wh.pages, wh.documents
    runs, reviews = wh.table("runs"), wh.table("reviews")
    items: dict[str, QueueItem] = {}
    with wh.engine.connect() as conn:
        loaded = {
            r.doc_id: r
            for r in conn.execute(
                sa.select(d.c.doc_id, d.c.source_uri, d.c.run_id, d.c.loaded_at, d.c.config_fingerprint)
            )
        }
        fq = (
            sa.select(f.c.doc_id, f.c.source_uri, f.c.reason, f.c.page_no, f.c.run_id)
            .add_columns(f.c.recorded_at, f.c.config_fingerprint)
            .where(f.c.doc_id.is_not(None))
            .order_by(f.c.recorded_at.desc())
            .limit(limit * 20)
        )
        for r in conn.execute(fq):
            when = _utc(r.recorded_at)
            assert when is not None
            it = items.get(r.doc_id)
            if it is None:
                status = "loaded" if r.doc_id in loaded else "failed"
                it = items[r.doc_id] = QueueItem(
                    r.doc_id, r.source_uri, status, r.config_fingerprint or "", r.run_id or "", when
                )
            if r.reason in (errors.VALIDATION_FAILED, errors.REJECTED) and r.page_no is None:
                it.status = "quarantined" if r.doc_id not in loaded else it.status
            if r.reason not in it.reasons:
                it.reasons.append(r.reason)
            if r.page_no is not None and r.page_no not in it.flagged_pages:
                it.flagged_pages.append(r.page_no)
        pq = sa.select(p.c.doc_id, p.c.page_no, p.c.flags).where(p.c.flags.is_not(None), p.c.flags != "")
        for r in conn.execute(pq):
            doc = loaded.get(r.doc_id)
            if doc is None:
                continue
            it = items.get(r.doc_id)
            if it is None:
                it = items[r.doc_id] = QueueItem(
                    r.doc_id,
                    doc.source_uri,
                    "loaded",
                    doc.config_fingerprint,
                    doc.run_id,
                    _utc(doc.loaded_at) or datetime.now(UTC),
                )
            for flag in r.flags.split(","):
                if flag and flag not in it.reasons:
                    it.reasons.append(flag)
            if r.page_no not in it.flagged_pages:
                it.flagged_pages.append(r.page_no)
        dags = {r.run_id: r.dag_id for r in conn.execute(sa.select(runs.c.run_id, runs.c.dag_id))}
        last: dict[str, tuple[datetime, str]] = {}
        for r in conn.execute(
            sa.select(reviews.c.doc_id, reviews.c.reviewed_at, reviews.c.decision).order_by(
                reviews.c.reviewed_at
            )
        ):
            when = _utc(r.reviewed_at)
            assert when is not None
            last[r.doc_id] = (when, r.decision)
    out = []
    for it in items.values():
        it.dag_id = dags.get(it.run_id, "")
        it.flagged_pages.sort()
        seen = last.get(it.doc_id)
        if seen is not None:
            it.last_decision = seen[1]
            if seen[0] >= it.when and not include_reviewed:
                continue
        if reason and reason not in it.reasons:
            continue
        if run_id and it.run_id != run_id:
            continue
        if dag_id and it.dag_id != dag_id:
            continue
        out.append(it)
    out.sort(key=lambda i: (i.when, i.doc_id), reverse=True)
    return out[:limit]


def find_item(wh: Warehouse, doc_id: str) -> QueueItem | None:
    """The queue entry of one document, reviewed or not."""
    for it in review_queue(wh, include_reviewed=True, limit=100_000):
        if it.doc_id == doc_id:
            return it
    return None


def records_uri(work: WorkArea, config_fingerprint: str, doc_id: str) -> str:
    """Where the parse stage wrote a document's records (see core.pipeline)."""
    return WorkLayout(work).records(config_fingerprint, doc_id)


def load_result(work: WorkArea, config_fingerprint: str, doc_id: str) -> DocumentResult:
    """The parsed records of a document, as the parse stage left them in the work area."""
    uri = records_uri(work, config_fingerprint, doc_id)
    if not work.exists(uri):
        raise errors.DeepOcrError(
            errors.READ_ERROR, f"no records for document {doc_id[:12]} in the work area"
        )
    return DocumentResult.from_dict(work.read_json(uri))


def decision_uri(work: WorkArea, doc_id: str) -> str:
    return WorkLayout(work).decision(doc_id)


def review_decisions(work: WorkArea, doc_ids: Collection[str] | None = None) -> dict[str, dict[str, Any]]:
    """The latest decision file of every reviewed document, by doc id (what the pipeline honours);
    with ``doc_ids``, only those documents' files are read (one listing, no read for the others)."""
    out: dict[str, dict[str, Any]] = {}
    for uri in WorkLayout(work).decisions():
        name = uri.rsplit("/", 1)[-1]
        if name.endswith(".json") and (doc_ids is None or name[: -len(".json")] in doc_ids):
            d = work.read_json(uri)
            if isinstance(d, dict) and d.get("doc_id"):
                out[d["doc_id"]] = d
    return out


def left_for_other_engines(decisions: dict[str, dict[str, Any]], engine_name: str) -> set[str]:
    """Source URIs of documents a reviewer sent to an engine other than ``engine_name``."""
    return {
        d["source_uri"]
        for d in decisions.values()
        if d.get("decision") == REOCR and d.get("engine") != engine_name and d.get("source_uri")
    }


def mark_reocr_done(work: WorkArea, decisions: dict[str, dict[str, Any]], uris: set[str], engine: str) -> int:
    """Retire the re-OCR decisions for ``engine`` of the documents at ``uris`` (a run OCR'd them)."""
    n = 0
    for d in decisions.values():
        if d.get("decision") == REOCR and d.get("engine") == engine and d.get("source_uri") in uris:
            work.write_json(decision_uri(work, d["doc_id"]), {**d, "decision": REOCR_DONE})
            n += 1
    return n


def decide(
    wh: Warehouse,
    work: WorkArea,
    doc_id: str,
    decision: str,
    reviewer: str,
    note: str = "",
    engine: str | None = None,
    offered_only: bool = False,
) -> dict[str, Any]:
    """Carry out one review decision and append its row to the reviews table; returns that row.

    A rejection of a loaded document removes its rows; an approval of a loaded document writes
    nothing but the review row. ``offered_only`` (the review page): refuse what the page does not
    offer, approving a document the warehouse already holds included."""
    if decision not in DECISIONS:
        raise errors.ConfigError(f"decision must be one of {DECISIONS}, got {decision!r}")
    if decision == REOCR and engine not in REOCR_ENGINES:
        raise errors.ConfigError(f"re-OCR needs an engine, one of {REOCR_ENGINES}")
    item = find_item(wh, doc_id)
    if item is None:
        raise errors.DeepOcrError(errors.READ_ERROR, f"document {doc_id[:12]} is not in the review queue")
    result = load_result(work, item.config_fingerprint, doc_id)
    why_not = refusal(item, result, decision, offered_only)
    if why_not is not None:
        log.info("review: %s of document %s refused (%s)", decision, doc_id[:12], why_not[0])
        raise errors.DeepOcrError(*why_not)
    run_id = item.run_id or "review"
    if decision == APPROVE and item.status != "loaded":
        wh.load_document(result, run_id)
    elif decision == REJECT:
        wh.quarantine(result, errors.REJECTED, "kept out by a reviewer", run_id, stage=Stage.REVIEW.value)
    row = {
        "review_id": uuid.uuid4().hex,
        "doc_id": doc_id,
        "source_uri": item.source_uri,
        "decision": decision,
        "engine": engine if decision == REOCR else None,
        "reviewer": reviewer[:200] or "unknown",
        "note": note[:2000],
        "config_fingerprint": item.config_fingerprint,
        "reviewed_at": (now := datetime.now(UTC)),
    }
    wh.record_review(row)
    if decision == APPROVE:
        resolve_failures(wh, doc_id, "approved", now)
    work.write_json(
        decision_uri(work, doc_id),
        {
            k: row[k]
            for k in ("review_id", "doc_id", "source_uri", "decision", "engine", "config_fingerprint")
        },
    )
    log.info("review: %s document %s (review %s)", decision, doc_id[:12], str(row["review_id"])[:8])
    return row


def refusal(
    item: QueueItem, result: DocumentResult, decision: str, offered_only: bool = True
) -> tuple[str, str] | None:
    """``(reason code, why)`` when ``decision`` cannot be carried out on this document, else None:
    nothing to approve in a document without pages (a corrupt or locked file); and, for what the
    review page offers, no approval of a document the warehouse already holds (a rejection of one
    is offered: it takes the document out, a wrong patient say; its flagged pages go to re-OCR)."""
    if offered_only and decision == APPROVE and item.status == "loaded":
        return errors.ALREADY_LOADED, f"the document is already loaded: {decision} does not apply"
    if decision == APPROVE and (result.page_count <= 0 or not result.pages):
        return (
            errors.NOTHING_TO_APPROVE,
            "the document has no pages to load (it could not be read); reject it or re-OCR it",
        )
    return None


def allowed_decisions(item: QueueItem, result: DocumentResult) -> list[str]:
    """The decisions the review page offers for this document."""
    return [d for d in DECISIONS if d == REOCR or refusal(item, result, d) is None]


def resolve_failures(wh: Warehouse, doc_id: str, resolution: str, when: datetime | None = None) -> int:
    """Mark the document's standing failure rows resolved (``resolved_at``, ``resolution``): an
    approved document's ``validation_failed`` row stays as history, no longer an open failure."""
    f = wh.failures
    with wh.engine.begin() as conn:
        n = conn.execute(
            f.update()
            .where(f.c.doc_id == doc_id, f.c.resolved_at.is_(None))
            .values(resolved_at=when or datetime.now(UTC), resolution=resolution[:32])
        ).rowcount
    return int(n or 0)


@dataclass
class FailureReason:
    """One failure row of a document, as the review page shows it."""

    reason: str
    detail: str
    page_no: int | None
    stage: str
    run_id: str
    resolved_at: datetime | None = None
    resolution: str | None = None


@dataclass
class FailedExpectation:
    """One failed expectation of a document (``{prefix}validation_results``): which table and column,
    how many rows, and which rows (``(page_no, block_no)``, block -1 for a page row, up to 20)."""

    table: str
    expectation: str
    column: str
    unexpected: int | None
    rows: list[tuple[int, int]] = field(default_factory=list)


def _column_of(expectation: str) -> str:
    inner = expectation.split("#", 1)[0]
    return inner[inner.index("(") + 1 : inner.rindex(")")] if "(" in inner and inner.endswith(")") else ""


def document_reasons(wh: Warehouse, doc_id: str) -> tuple[list[FailureReason], list[FailedExpectation]]:
    """Why a document is in the queue: its failure rows (reason, detail, page) and its failed
    expectations. Read for the reviewer's page only; nothing here is logged."""
    import json

    import sqlalchemy as sa

    f, v = wh.failures, wh.table("validation_results")
    with wh.engine.connect() as conn:
        frows = conn.execute(
            sa.select(f.c.reason, f.c.detail, f.c.page_no, f.c.stage, f.c.run_id)
            .add_columns(f.c.resolved_at, f.c.resolution)
            .where(f.c.doc_id == doc_id)
            .order_by(f.c.page_no.is_not(None), f.c.page_no, f.c.reason)
        ).all()
        vrows = conn.execute(
            sa.select(v.c.table_name, v.c.expectation, v.c.observed)
            .where(v.c.doc_id == doc_id, v.c.success.is_(False))
            .order_by(v.c.table_name, v.c.expectation)
        ).all()
    reasons = [
        FailureReason(r.reason, r.detail or "", r.page_no, r.stage or "", r.run_id or "") for r in frows
    ]
    for fr, r in zip(reasons, frows, strict=True):
        fr.resolved_at, fr.resolution = _utc(r.resolved_at), r.resolution
    failed = []
    for r in vrows:
        try:
            observed = json.loads(r.observed) if r.observed else {}
        except ValueError:
            observed = {}
        observed = observed if isinstance(observed, dict) else {}
        n = observed.get("unexpected_count")
        where = [
            (int(x[0]), int(x[1]))
            for x in observed.get("rows") or []
            if isinstance(x, list) and len(x) == 2 and all(isinstance(i, int) for i in x)
        ]
        failed.append(
            FailedExpectation(
                r.table_name,
                r.expectation,
                _column_of(r.expectation),
                n if isinstance(n, int) else None,
                where,
            )
        )
    return reasons, failed


def neighbours(wh: Warehouse, doc_id: str) -> tuple[str | None, str | None]:
    """The documents before and after this one in the queue (newest first, unreviewed), for the
    review page's previous / next document."""
    ids = [it.doc_id for it in review_queue(wh)]
    if doc_id not in ids:
        return None, ids[0] if ids else None
    i = ids.index(doc_id)
    return (ids[i - 1] if i > 0 else None), (ids[i + 1] if i + 1 < len(ids) else None)
