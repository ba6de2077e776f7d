"""The load ledger: one row per loaded document, naming the config fingerprint that is live, the
run that wrote it and a hash of everything written. A load compares against it to skip documents
whose content is unchanged, so rerunning a batch leaves the warehouse exactly as running it once."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa

from airflow_provider_deepocr.core.records import DocumentResult
from airflow_provider_deepocr.core.warehouse.rows import DocRows, chunks


def ledger_state(conn: sa.Connection, ledger: sa.Table, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """(config fingerprint, content hash) by doc id, for those of ``ids`` the ledger holds (a
    query per 1,000 ids)."""
    prev: dict[str, tuple[str, str]] = {}
    for chunk in chunks(ids, 1000):
        for row in conn.execute(
            sa.select(ledger.c.doc_id, ledger.c.config_fingerprint, ledger.c.content_hash).where(
                ledger.c.doc_id.in_(chunk)
            )
        ):
            prev[row.doc_id] = (row.config_fingerprint, row.content_hash)
    return prev


def ledger_pages(conn: sa.Connection, ledger: sa.Table, ids: Sequence[str]) -> dict[str, tuple[str, int]]:
    """(config fingerprint, pages loaded) by doc id, for those of ``ids`` the ledger holds."""
    held: dict[str, tuple[str, int]] = {}
    for chunk in chunks(ids, 1000):
        stmt = sa.select(ledger.c.doc_id, ledger.c.config_fingerprint, ledger.c.pages)
        for row in conn.execute(stmt.where(ledger.c.doc_id.in_(chunk))):
            held[row.doc_id] = (row.config_fingerprint, int(row.pages))
    return held


def split_changed(
    results: Sequence[DocumentResult],
    prev: dict[str, tuple[str, str]],
    rows_of: Callable[[DocumentResult], DocRows],
    *,
    force: bool,
) -> tuple[list[DocumentResult], list[DocumentResult]]:
    """(changed, unchanged): a document is unchanged when the ledger holds it under the same config
    with the same content hash (``force``: none is). Rows are built (``rows_of``) only for documents
    whose hash decides, i.e. those the ledger holds under the same config."""
    changed: list[DocumentResult] = []
    same: list[DocumentResult] = []
    for r in results:
        live = prev.get(r.doc_id)
        if force or live is None or live[0] != r.config_fingerprint:
            changed.append(r)
        elif live[1] == rows_of(r).content_hash:
            same.append(r)
        else:
            changed.append(r)
    return changed, same
