"""The pieces behind :mod:`.dialects`' fields: the bulk paths (PostgreSQL ``COPY``, a DuckDB
DataFrame insert) and SQLite's per-connection settings. Chosen by a :class:`.dialects.Dialect`,
never called by name elsewhere."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

SQLITE_BUSY_TIMEOUT_MS = 60_000

#: Staging tables (merge stages, DuckDB's registered DataFrames) start with this.
STAGE_PREFIX = "_deepocr_stage_"


def sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
    finally:
        cur.close()


def pg_copy(conn: sa.Connection, table: sa.Table, columns: tuple[str, ...], rows: Iterable[Any]) -> None:
    """PostgreSQL ``COPY ... FROM STDIN`` through psycopg 3 (identifiers quoted by psycopg).

    The row tuples go to psycopg's ``write_row`` as they are (encoded in C with psycopg's binary
    build); encoding COPY text in Python was measured slower.
    """
    from psycopg import sql

    target = sql.Identifier(table.schema, table.name) if table.schema else sql.Identifier(table.name)
    stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(target, sql.SQL(", ").join(map(sql.Identifier, columns)))
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(stmt) as cp:  # type: ignore[union-attr]
        write = cp.write_row
        for r in rows:
            write(r)


def dataframe_insert(
    conn: sa.Connection, table: sa.Table, columns: tuple[str, ...], rows: Iterable[Any]
) -> None:
    """DuckDB: register the rows as a DataFrame and ``INSERT ... SELECT`` (executemany is slow)."""
    import pandas as pd

    frame = pd.DataFrame.from_records(list(rows), columns=list(columns))
    quoter = conn.dialect.identifier_preparer
    name = f"{STAGE_PREFIX}{uuid.uuid4().hex}"
    col_sql = ", ".join(quoter.quote(c) for c in columns)
    target = quoter.format_table(table)
    raw = conn.connection.driver_connection
    raw.register(name, frame)  # type: ignore[union-attr]
    try:
        raw.execute(f"INSERT INTO {target} ({col_sql}) SELECT {col_sql} FROM {name}")  # type: ignore[union-attr]
    finally:
        raw.unregister(name)  # type: ignore[union-attr]
