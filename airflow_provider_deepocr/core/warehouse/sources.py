"""The ``{prefix}sources`` table: every source URI a document was seen under, with its size and
version (ETag, version id or mtime) and when. Identical bytes are one document (``doc_id`` is their
sha256) OCR'd and loaded once, but no URI that held them is forgotten, and the incremental listing
skips each URI on its own size and version."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from airflow_provider_deepocr.core.records import DocumentResult
from airflow_provider_deepocr.core.warehouse.rows import chunks


def source_rows(results: Sequence[DocumentResult], run_id: str, now: datetime) -> list[dict[str, Any]]:
    """One row per URI of ``results`` (each result's own, and those it was also seen under)."""
    rows = {
        ref.uri: {
            "source_uri": ref.uri,
            "doc_id": r.doc_id,
            "source_size": ref.size,
            "source_version": ref.version,
            "seen_at": now,
            "run_id": run_id,
        }
        for r in results
        for ref in (r.ref, *r.seen_as)
    }
    return list(rows.values())


def write_sources(
    conn: sa.Connection, table: sa.Table, results: Sequence[DocumentResult], run_id: str, now: datetime
) -> int:
    """Upsert the source rows of ``results`` (by URI) in the caller's transaction. A URI seen again
    with the same document, size and version keeps its row (``seen_at``: when it was first seen so),
    so a rerun leaves the table exactly as it was. Returns the rows written."""
    rows = source_rows(results, run_id, now)
    t = table
    wanted = {r["source_uri"]: (r["doc_id"], r["source_size"], r["source_version"]) for r in rows}
    same: set[str] = set()
    held = sa.select(t.c.source_uri, t.c.doc_id, t.c.source_size, t.c.source_version)
    for chunk in chunks(list(wanted), 500):
        for uri, doc_id, size, version in conn.execute(held.where(t.c.source_uri.in_(chunk))):
            if wanted[uri] == (doc_id, size, version):
                same.add(uri)
    rows = [r for r in rows if r["source_uri"] not in same]
    for chunk in chunks([r["source_uri"] for r in rows], 500):
        conn.execute(table.delete().where(table.c.source_uri.in_(chunk)))
    if rows:
        conn.execute(table.insert(), rows)
    return len(rows)


def record_sources(warehouse: Any, results: Sequence[DocumentResult], run_id: str) -> None:
    """The URIs of documents a load skipped (loaded earlier with this config), upserted by URI in
    ``warehouse`` (a :class:`~.loader.Warehouse`, not imported: loader imports this module), in a
    transaction of their own: where loads merge (Snowflake, BigQuery, Redshift) through a MERGE
    (:func:`~.merge.merge_sources`), so two racing loaders leave one row per URI there too; else
    :func:`write_sources`."""
    now = datetime.now(UTC)
    table = warehouse.table("sources")
    if warehouse.load_method != "merge":
        with warehouse.engine.begin() as conn:
            write_sources(conn, table, results, run_id, now)
        return
    from airflow_provider_deepocr.core.warehouse.merge import merge_sources

    with warehouse._write(*sorted({r.doc_id for r in results})) as conn:
        sm = merge_sources(conn, {"sources": table}, source_rows(results, run_id, now), warehouse._bulk_fill)
        try:  # as the loader ends a staged merge: commit where DDL commits anyway, then drop
            if not warehouse.db.transactional_ddl:
                conn.commit()
            sm.drop()
        except BaseException:
            if not warehouse.db.transactional_ddl:  # no rollback takes the stages: drop them here
                conn.rollback()
                with suppress(Exception):
                    sm.drop()
            raise
