"""Failure rows in the warehouse: written idempotently (one row per ``failure_id``) and removed
when a document they belong to loads or is quarantined again."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from airflow_provider_deepocr.core.records import DocumentResult, Failure
from airflow_provider_deepocr.core.warehouse.rows import DocRows, chunks, failure_id, failure_row


def doc_failures(
    failures: sa.Table, doc_ids: Collection[str], source_uris: Collection[str]
) -> sa.ColumnElement[bool]:
    """Failure rows that belong to documents: by id, or by URI when they were never hashed.

    Two flat ``IN`` lists (one per index: ``doc_id`` and ``source_uri``), not one ``OR`` term per
    document: SQLite refuses an expression tree deeper than 1,000, which 500 documents' terms were.
    """
    f = failures
    return sa.or_(
        f.c.doc_id.in_(sorted(set(doc_ids))),
        sa.and_(f.c.doc_id.is_(None), f.c.source_uri.in_(sorted(set(source_uris)))),
    )


def failures_delete(
    failures: sa.Table, docs: Sequence[DocumentResult], keep: Collection[str] = ()
) -> sa.Delete:
    """The statement deleting the failure rows of ``docs`` (at most 500), but those in ``keep``."""
    stale = doc_failures(failures, [r.doc_id for r in docs], [r.ref.uri for r in docs])
    if keep:
        stale = sa.and_(stale, failures.c.failure_id.not_in(sorted(keep)))
    return failures.delete().where(stale)


def delete_failures_of(
    conn: sa.Connection, failures: sa.Table, docs: Sequence[DocumentResult], keep: Collection[str] = ()
) -> None:
    """Delete the failure rows that belong to ``docs``, except those whose id is in ``keep``."""
    for chunk in chunks(docs, 500):
        conn.execute(failures_delete(failures, chunk, keep))


def insert_failures(conn: sa.Connection, failures: sa.Table, rows: list[dict[str, Any]]) -> int:
    """Write failure rows, replacing rows with the same id; returns the distinct rows written."""
    uniq = list({r["failure_id"]: r for r in rows}.values())
    if not uniq:
        return 0
    ids = [r["failure_id"] for r in uniq]
    for chunk in chunks(ids, 500):
        conn.execute(failures.delete().where(failures.c.failure_id.in_(chunk)))
    conn.execute(failures.insert(), uniq)
    return len(uniq)


def failure_rows_of(
    todo: Sequence[tuple[DocumentResult, DocRows]], run_id: str, now: datetime
) -> list[dict[str, Any]]:
    """The failure rows the loaded documents carry (their page-level failures)."""
    return [
        failure_row(fl, run_id=run_id, config_fingerprint=r.config_fingerprint, doc_id=r.doc_id, now=now)
        for r, rows in todo
        for fl in rows.failures
    ]


def own_failure_id(f: Failure, doc_id: str | None) -> str:
    """The id of ``f`` as a row of document ``doc_id`` (its own doc id wins when it has one)."""
    return failure_id(
        f.source_uri, f.doc_id if f.doc_id is not None else doc_id, f.page_no, f.reason, f.stage
    )


def quarantine_rows(
    result: DocumentResult, reason: str, detail: str, run_id: str, stage: str
) -> list[dict[str, Any]]:
    """The failure rows of a quarantined document: the verdict first, then its page failures."""
    now = datetime.now(UTC)
    main = Failure(
        source_uri=result.ref.uri,
        reason=reason,
        detail=detail,
        doc_id=result.doc_id,
        page_no=None,
        stage=stage,
    )
    fp = result.config_fingerprint
    return [
        failure_row(f, run_id=run_id, config_fingerprint=fp, doc_id=result.doc_id, now=now)
        for f in [main, *result.failures]
    ]
