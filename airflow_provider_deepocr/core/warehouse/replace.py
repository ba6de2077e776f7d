"""``load_method="replace"``: delete the documents' rows, then bulk-insert the new ones in the same
transaction (the database's bulk path where :class:`~.dialects.Dialect` has one: PostgreSQL COPY, a
DuckDB DataFrame; ``executemany`` elsewhere)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from airflow_provider_deepocr.core.records import DocumentResult
from airflow_provider_deepocr.core.warehouse.dialects import Dialect
from airflow_provider_deepocr.core.warehouse.rows import (
    BLOCK_COLUMNS,
    DocRows,
    Row,
    block_count,
    chunks,
    new_rows,
)
from airflow_provider_deepocr.core.warehouse.schema import CONTENT_TABLES

#: What a reload replaces: every table of a document but its failures.
DOC_TABLES = (*CONTENT_TABLES, "load_ledger", "validation_results")


def delete_docs(
    conn: sa.Connection, tables: Mapping[str, sa.Table], ids: Sequence[str], names: Sequence[str] = DOC_TABLES
) -> None:
    """Delete these documents' rows from the tables ``names`` (by default all but the failures)."""
    for chunk in chunks(ids, 1000):
        for name in names:
            t = tables[name]
            conn.execute(t.delete().where(t.c.doc_id.in_(chunk)))


def insert_rows(
    conn: sa.Connection,
    db: Dialect,
    table: sa.Table,
    columns: tuple[str, ...],
    rows: Iterable[Row],
    copy_min: int,
    n: int | None = None,
) -> None:
    """Bulk-insert ``rows`` (the bulk path where there is one and there are at least ``copy_min``
    of them, executemany otherwise). ``rows`` may be a stream, consumed once, whose length ``n`` is
    given: COPY then sends each row while the next ones are being built."""
    if n is None:
        rows = rows if isinstance(rows, Sequence) else list(rows)
        n = len(rows)
    if n >= copy_min and db.bulk_insert(conn, table, columns, rows):
        return
    rows = list(rows)  # a stream is drained here even when it turns out empty
    if rows:
        conn.execute(table.insert(), [dict(zip(columns, r, strict=True)) for r in rows])


def replace_documents(
    conn: sa.Connection,
    db: Dialect,
    tables: Mapping[str, sa.Table],
    todo: list[DocumentResult],
    rows_of: Callable[[DocumentResult], DocRows],
    vrows: list[dict[str, Any]],
    run_id: str,
    now: datetime,
    copy_min: int,
) -> None:
    """Replace ``todo``'s rows: delete them, then insert the new ones.

    Blocks, the bulk of the rows, go first, streamed: each document's rows are built (and checked
    and hashed, by ``rows_of``) just before they are sent, so on PostgreSQL the client builds while
    the server inserts what it has already received, instead of the two taking turns. Every
    document's rows are built by the end of this call."""
    delete_docs(conn, tables, [r.doc_id for r in todo])
    blocks = (row for r in todo for row in rows_of(r).blocks)
    insert_rows(conn, db, tables["blocks"], BLOCK_COLUMNS, blocks, copy_min, n=block_count(todo))
    done = [(r, rows_of(r)) for r in todo]
    for name, columns, rows in new_rows(done, vrows, run_id, now, skip="blocks"):
        insert_rows(conn, db, tables[name], columns, rows, copy_min)
