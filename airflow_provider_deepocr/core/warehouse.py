"""The warehouse stage: typed records -> SQL rows, one transaction per document.

SQLAlchemy Core only (no ORM), so the same code loads SQLite (the embedded default), PostgreSQL
and DuckDB. Every table name is ``{prefix}<name>`` in an optional schema; both are checked
against a strict identifier pattern before they reach SQL.

Exactly-once rules (see ARCHITECTURE.md, "Loads are idempotent"):

* A document is keyed by its content id (``doc_id``, the sha256 of its bytes). Loading it
  deletes every row it had before (pages, blocks, table cells, failures, validation results)
  and inserts the new ones in **one** transaction; readers see the old copy or the new one,
  never half of either.
* ``{prefix}load_ledger`` holds one row per document: which config fingerprint is live, the
  run that wrote it and a content hash of everything that was written. Reloading a document
  whose fingerprint and content hash are unchanged is a no-op (rows, ``loaded_at`` and
  ``run_id`` stay exactly as the first load left them), so rerunning a batch leaves the
  warehouse byte-for-byte as running it once. Pass ``force=True`` to rewrite anyway.
* Concurrent loaders of the same document serialise on a per-document lock taken at the start
  of the transaction: ``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN IMMEDIATE`` (a database
  write lock) on SQLite, a process-local lock on DuckDB (DuckDB is single-writer per file).
* Quarantine (validation failed) removes the document's main-table rows as well, so the tables
  always reflect the latest run's verdict for the latest config, and writes the reason to
  ``{prefix}failures`` plus the per-expectation results to ``{prefix}validation_results``.
* Document-level failures (``record_failures``) never delete loaded rows: a transient read
  error must not wipe good data. A later successful load removes the document's old failure
  rows (by ``doc_id``, and by ``source_uri`` for failures recorded before the file was hashed).

Timestamps are UTC. ``failures.recorded_at`` is the time the failure was last observed.
Nothing here logs or raises with document text: only ids, counts and reason codes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from airflow_provider_deepocr.core import errors, merge
from airflow_provider_deepocr.core.records import DocumentResult, Failure

log = logging.getLogger(__name__)

IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

TABLES = (
    "documents",
    "pages",
    "blocks",
    "table_cells",
    "failures",
    "load_ledger",
    "validation_results",
)
# Warehouses loaded through staging tables and MERGE (no COPY from the client, no cheap DELETE).
MERGE_DIALECTS = frozenset({"snowflake", "bigquery", "redshift"})

# Tables holding a loaded document's content (deleted on reload / quarantine).
CONTENT_TABLES = ("table_cells", "blocks", "pages", "documents")

SQLITE_BUSY_TIMEOUT_MS = 60_000


# --------------------------------------------------------------------------------------------
# Row building (shared with core.validate so validation sees exactly what gets loaded)
# --------------------------------------------------------------------------------------------


def clean_text(value: str | None) -> str | None:
    """Model text made storable everywhere: NUL removed (PostgreSQL text cannot hold it) and
    lone surrogates (undecodable model bytes) replaced, so UTF-8 encoding cannot fail."""
    if value is None:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _flags(flags: Iterable[str]) -> str:
    return ",".join(flags)


def document_row(result: DocumentResult) -> dict[str, Any]:
    """The ``documents`` row, without ``loaded_at``/``run_id`` (set at load time)."""
    return {
        "doc_id": result.doc_id,
        "source_uri": result.ref.uri,
        "source_version": result.ref.version,
        "media_type": result.media_type,
        "page_count": result.page_count,
        "config_fingerprint": result.config_fingerprint,
    }


Row = tuple[Any, ...]

# Column order of the tuples the row builders make (the loader names the columns it writes, so
# this order need not match the table's).
PAGE_COLUMNS: tuple[str, ...] = (
    "doc_id",
    "page_no",
    "source_uri",
    "width",
    "height",
    "dpi",
    "engine",
    "model",
    "revision",
    "prompt",
    "mode",
    "finish_reason",
    "attempts",
    "prompt_tokens",
    "output_tokens",
    "seconds",
    "flags",
    "markdown",
    "config_fingerprint",
)
BLOCK_COLUMNS: tuple[str, ...] = (
    "doc_id",
    "page_no",
    "block_no",
    "label",
    "kind",
    "x0",
    "y0",
    "x1",
    "y1",
    "px_x0",
    "px_y0",
    "px_x1",
    "px_y1",
    "text",
    "raw",
    "flags",
    "engine",
    "model",
    "config_fingerprint",
)
CELL_COLUMNS: tuple[str, ...] = (
    "doc_id",
    "page_no",
    "block_no",
    "row_no",
    "col_no",
    "rowspan",
    "colspan",
    "is_header",
    "text",
    "caption",
)
VALIDATION_COLUMNS: tuple[str, ...] = ("doc_id", "table_name", "expectation", "success", "observed", "run_id")
KEYS: dict[str, tuple[str, ...]] = {
    "documents": ("doc_id",),
    "load_ledger": ("doc_id",),
    "validation_results": ("doc_id", "table_name", "expectation"),
    "pages": ("doc_id", "page_no"),
    "blocks": ("doc_id", "page_no", "block_no"),
    "table_cells": ("doc_id", "page_no", "block_no", "row_no", "col_no"),
}


def page_tuples(result: DocumentResult) -> list[Row]:
    """One row per page, in :data:`PAGE_COLUMNS` order."""
    return [
        (
            result.doc_id,
            p.page_no,
            p.source_uri,
            p.width,
            p.height,
            p.dpi,
            p.engine,
            p.model,
            p.revision,
            p.prompt,
            p.mode,
            p.finish_reason,
            p.attempts,
            p.prompt_tokens,
            p.output_tokens,
            float(p.seconds),
            _flags(p.flags),
            clean_text(p.markdown),
            p.config_fingerprint or result.config_fingerprint,
        )
        for p in result.pages
    ]


def block_tuples(result: DocumentResult) -> list[Row]:
    """One row per layout block, in :data:`BLOCK_COLUMNS` order; ``block_no`` is the block's
    reading-order index on its page. (Tuples: the bulk loaders write them as they are, and a
    tuple costs a third of a dict to build.)"""
    rows: list[Row] = []
    append = rows.append
    doc_id = result.doc_id
    no_box = (None, None, None, None)
    for p in result.pages:
        fp = p.config_fingerprint or result.config_fingerprint
        page_no, engine, model = p.page_no, p.engine, p.model
        for b in p.parsed.blocks:
            bb = b.bbox
            px = b.bbox_px
            x0, y0, x1, y1 = no_box if bb is None else (int(bb[0]), int(bb[1]), int(bb[2]), int(bb[3]))
            if px is None:
                px0 = py0 = px1 = py1 = None
            else:
                px0, py0, px1, py1 = float(px[0]), float(px[1]), float(px[2]), float(px[3])
            append(
                (
                    doc_id,
                    page_no,
                    b.index,
                    clean_text(b.label),
                    b.kind,
                    x0,
                    y0,
                    x1,
                    y1,
                    px0,
                    py0,
                    px1,
                    py1,
                    clean_text(b.text),
                    clean_text(b.raw),
                    ",".join(b.flags),
                    engine,
                    model,
                    fp,
                )
            )
    return rows


def cell_tuples(result: DocumentResult) -> list[Row]:
    """One row per table cell, in :data:`CELL_COLUMNS` order; ``block_no`` is the index of the
    table's block on its page."""
    rows: list[Row] = []
    doc_id = result.doc_id
    for p in result.pages:
        for t in p.parsed.tables:
            caption = clean_text(t.caption)
            rows.extend(
                (
                    doc_id,
                    p.page_no,
                    t.block_index,
                    c.row,
                    c.col,
                    c.rowspan,
                    c.colspan,
                    bool(c.is_header),
                    clean_text(c.text),
                    caption,
                )
                for c in t.cells
            )
    return rows


def _as_dicts(columns: tuple[str, ...], rows: list[Row]) -> list[dict[str, Any]]:
    return [dict(zip(columns, r, strict=True)) for r in rows]


def page_rows(result: DocumentResult) -> list[dict[str, Any]]:
    """One row per page as a dict of warehouse column names."""
    return _as_dicts(PAGE_COLUMNS, page_tuples(result))


def block_rows(result: DocumentResult) -> list[dict[str, Any]]:
    """One row per layout block as a dict of warehouse column names."""
    return _as_dicts(BLOCK_COLUMNS, block_tuples(result))


def cell_rows(result: DocumentResult) -> list[dict[str, Any]]:
    """One row per table cell as a dict of warehouse column names."""
    return _as_dicts(CELL_COLUMNS, cell_tuples(result))


def failure_id(source_uri: str, doc_id: str | None, page_no: int | None, reason: str, stage: str) -> str:
    """Deterministic id of a failure: the same failure observed twice is one row."""
    blob = json.dumps([source_uri, doc_id, page_no, reason, stage], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def failure_row(
    f: Failure, *, run_id: str, config_fingerprint: str, doc_id: str | None = None, now: datetime
) -> dict[str, Any]:
    d = f.doc_id if f.doc_id is not None else doc_id
    return {
        "failure_id": failure_id(f.source_uri, d, f.page_no, f.reason, f.stage),
        "source_uri": f.source_uri,
        "doc_id": d,
        "page_no": f.page_no,
        "stage": f.stage,
        "reason": f.reason,
        "detail": f.detail,
        "config_fingerprint": config_fingerprint,
        "run_id": run_id,
        "recorded_at": now,
    }


def _live_columns(conn: sa.Connection, table: sa.Table) -> set[str]:
    """Column names of the table as it exists (information_schema; SQLite's PRAGMA).

    Not ``sa.inspect``: duckdb-engine's inspector queries catalog tables DuckDB 2 lacks.
    """
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(
            f"PRAGMA table_info({conn.dialect.identifier_preparer.quote(table.name)})"
        )
        return {r[1] for r in rows}
    return {
        str(r[0]).lower() for r in conn.execute(*_live_columns_query(conn.dialect, table, conn.engine.url))
    }


def _live_columns_query(dialect: sa.Dialect, table: sa.Table, url: sa.URL) -> tuple[Any, dict[str, Any]]:
    """The information_schema query for :func:`_live_columns`. Names compare case-insensitively
    (Snowflake stores unquoted names in upper case); BigQuery keeps INFORMATION_SCHEMA per dataset
    (the schema, else the URL's ``bigquery://project/dataset``)."""
    if dialect.name == "bigquery":
        dataset = table.schema or url.database
        if not dataset:
            raise errors.ConfigError("BigQuery needs a dataset: schema= or a bigquery://project/dataset URL")
        ds = dialect.identifier_preparer.quote(check_identifier(dataset, "schema"))
        return sa.text(f"SELECT column_name FROM {ds}.INFORMATION_SCHEMA.COLUMNS WHERE table_name = :t"), {
            "t": table.name
        }
    stmt = sa.text(
        "SELECT column_name FROM information_schema.columns "
        "WHERE lower(table_name) = lower(:t) AND lower(table_schema) = lower(COALESCE(:s, current_schema()))"
    )
    return stmt, {"t": table.name, "s": table.schema}


def _chunks(items: Sequence[Any], n: int) -> list[Sequence[Any]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def _content_hash(*parts: Any) -> str:
    """A hash of the rows about to be written (their column order is fixed by the row builders).

    Pickle (protocol 5) is the cheapest stable serialisation of these plain tuples of str, int,
    float and None; if its bytes ever changed between Python versions the only effect would be one
    unnecessary rewrite of an unchanged document.
    """
    import pickle

    h = hashlib.sha256()
    for part in parts:
        h.update(pickle.dumps(part, protocol=5))
        h.update(b"\x1e")
    return h.hexdigest()


def _block_count(results: Sequence[DocumentResult]) -> int:
    """How many block rows these results make (0 for a malformed one: building its rows raises)."""
    try:
        return sum(len(p.parsed.blocks) for r in results for p in r.pages)
    except (TypeError, AttributeError):
        return 0


def _check_unique(table: str, columns: tuple[str, ...], rows: Sequence[Row], doc_id: str) -> None:
    key = KEYS[table]
    dup = len(rows) - len(set(map(itemgetter(*(columns.index(c) for c in key)), rows)))
    if dup:
        raise errors.DeepOcrError(
            errors.LOAD_ERROR, f"doc {doc_id}: {dup} duplicate key(s) in {table} on ({', '.join(key)})"
        )


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


def check_identifier(value: str, what: str) -> str:
    if not isinstance(value, str) or not IDENT_RE.match(value):
        raise errors.ConfigError(f"invalid {what}: must match {IDENT_RE.pattern}")
    return value


def build_metadata(prefix: str, schema: str | None) -> sa.MetaData:
    """All tables of one warehouse (names ``{prefix}<table>``)."""
    md = sa.MetaData(schema=schema)
    doc_id = sa.String(64)
    fp = sa.String(64)
    ts = sa.TIMESTAMP(timezone=True)  # BigQuery: TIMESTAMP (its DATETIME has no time zone)

    sa.Table(
        f"{prefix}documents",
        md,
        sa.Column("doc_id", doc_id, primary_key=True),
        sa.Column("source_uri", sa.Text, nullable=False),
        sa.Column("source_version", sa.Text),
        sa.Column("media_type", sa.Text),
        sa.Column("page_count", sa.Integer, nullable=False),
        sa.Column("config_fingerprint", fp, nullable=False),
        sa.Column("loaded_at", ts, nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
    )
    sa.Table(
        f"{prefix}pages",
        md,
        sa.Column("doc_id", doc_id, primary_key=True),
        sa.Column("page_no", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("source_uri", sa.Text),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("dpi", sa.Integer),
        sa.Column("engine", sa.Text),
        sa.Column("model", sa.Text),
        sa.Column("revision", sa.Text),
        sa.Column("prompt", sa.Text),
        sa.Column("mode", sa.Text),
        sa.Column("finish_reason", sa.Text),
        sa.Column("attempts", sa.Integer),
        sa.Column("prompt_tokens", sa.Integer),
        sa.Column("output_tokens", sa.Integer),
        sa.Column("seconds", sa.Double),
        sa.Column("flags", sa.Text),
        sa.Column("markdown", sa.Text),
        sa.Column("config_fingerprint", fp),
    )
    sa.Table(
        f"{prefix}blocks",
        md,
        sa.Column("doc_id", doc_id, primary_key=True),
        sa.Column("page_no", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("block_no", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("label", sa.Text),
        sa.Column("kind", sa.Text),
        *(sa.Column(c, sa.Integer) for c in ("x0", "y0", "x1", "y1")),
        *(sa.Column(c, sa.Double) for c in ("px_x0", "px_y0", "px_x1", "px_y1")),
        sa.Column("text", sa.Text),
        sa.Column("raw", sa.Text),
        sa.Column("flags", sa.Text),
        sa.Column("engine", sa.Text),
        sa.Column("model", sa.Text),
        sa.Column("config_fingerprint", fp),
    )
    sa.Table(
        f"{prefix}table_cells",
        md,
        sa.Column("doc_id", doc_id, primary_key=True),
        sa.Column("page_no", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("block_no", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("row_no", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("col_no", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("rowspan", sa.Integer),
        sa.Column("colspan", sa.Integer),
        sa.Column("is_header", sa.Boolean),
        sa.Column("text", sa.Text),
        sa.Column("caption", sa.Text),
    )
    sa.Table(
        f"{prefix}failures",
        md,
        sa.Column("failure_id", sa.String(64), primary_key=True),
        sa.Column("source_uri", sa.Text, nullable=False),
        sa.Column("doc_id", doc_id),
        sa.Column("page_no", sa.Integer),
        sa.Column("stage", sa.Text),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("config_fingerprint", fp),
        sa.Column("run_id", sa.Text),
        sa.Column("recorded_at", ts, nullable=False),
        sa.Index(f"{prefix}failures_doc_idx", "doc_id"),
    )
    sa.Table(
        f"{prefix}load_ledger",
        md,
        sa.Column("doc_id", doc_id, primary_key=True),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("config_fingerprint", fp, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("pages", sa.Integer, nullable=False),
        sa.Column("blocks", sa.Integer, nullable=False),
        sa.Column("cells", sa.Integer, nullable=False),
        sa.Column("loaded_at", ts, nullable=False),
    )
    sa.Table(
        f"{prefix}validation_results",
        md,
        sa.Column("doc_id", doc_id, primary_key=True),
        sa.Column("table_name", sa.String(64), primary_key=True),
        sa.Column("expectation", sa.String(512), primary_key=True),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("observed", sa.Text),
        sa.Column("run_id", sa.Text),
    )
    return md


# --------------------------------------------------------------------------------------------
# Dialect-specific bits (kept small and in one place)
# --------------------------------------------------------------------------------------------

_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def _process_lock(key: str) -> threading.Lock:
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(key, threading.Lock())


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
    finally:
        cur.close()


def make_engine(url: str) -> sa.Engine:
    """An engine for a URL, with the embedded-database settings this loader relies on."""
    try:
        engine = sa.create_engine(url)
    except Exception as exc:  # bad URL / missing driver: a configuration problem
        raise errors.ConfigError(f"cannot create engine: {type(exc).__name__}") from exc
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def _begin_write(conn: sa.Connection, lock_keys: Sequence[str]) -> None:
    """Start the write transaction and take the locks for ``lock_keys``, per dialect."""
    name = conn.dialect.name
    if name == "sqlite":
        # pysqlite's legacy transaction control begins lazily and DEFERRED; a deferred
        # transaction that reads and then writes can fail with SQLITE_BUSY on the upgrade.
        # BEGIN IMMEDIATE takes the write lock up front (waiting up to busy_timeout).
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        dbapi = conn.connection.driver_connection
        if dbapi is not None and not dbapi.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif name == "postgresql":
        # sorted, so two writers needing the same keys cannot deadlock; released at commit. One
        # statement: unnest yields the keys in array order, and each row takes its lock in turn.
        conn.execute(
            sa.text(
                "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(CAST(:keys AS text[])) AS k"
            ),
            {"keys": sorted(set(lock_keys))},
        )
    elif name == "duckdb":
        # serialised by the process lock in Warehouse._write (single writer per file); the
        # first statement opens the transaction the bulk path's raw connection then joins.
        conn.exec_driver_sql("SELECT 1")


def _copy_rows(conn: sa.Connection, table: sa.Table, columns: tuple[str, ...], rows: Iterable[Row]) -> bool:
    """Bulk path inside the current transaction; False (``rows`` untouched) when the dialect has
    none."""
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        _pg_copy(conn, table, columns, rows)
        return True
    if conn.dialect.name == "duckdb":
        _duckdb_bulk(conn, table, columns, rows)
        return True
    return False


def _pg_copy(conn: sa.Connection, table: sa.Table, columns: tuple[str, ...], rows: Iterable[Row]) -> None:
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


def _duckdb_bulk(conn: sa.Connection, table: sa.Table, columns: tuple[str, ...], rows: Iterable[Row]) -> None:
    """DuckDB: register the rows as a DataFrame and ``INSERT ... SELECT`` (executemany is slow)."""
    import uuid

    import pandas as pd

    frame = pd.DataFrame.from_records(list(rows), columns=list(columns))
    prep = conn.dialect.identifier_preparer
    name = f"{merge.STAGE_PREFIX}{uuid.uuid4().hex}"
    col_sql = ", ".join(prep.quote(c) for c in columns)
    target = prep.format_table(table)
    raw = conn.connection.driver_connection
    raw.register(name, frame)  # type: ignore[union-attr]
    try:
        raw.execute(f"INSERT INTO {target} ({col_sql}) SELECT {col_sql} FROM {name}")  # type: ignore[union-attr]
    finally:
        raw.unregister(name)  # type: ignore[union-attr]


def _insert_rows(
    conn: sa.Connection,
    table: sa.Table,
    columns: tuple[str, ...],
    rows: Iterable[Row],
    copy_min: int,
    n: int | None = None,
) -> None:
    """Bulk-insert ``rows`` (COPY / DataFrame where the dialect has it and there are at least
    ``copy_min`` of them, executemany otherwise). ``rows`` may be a stream, consumed once, whose
    length ``n`` is given: COPY then sends each row while the next ones are being built."""
    if n is None:
        rows = rows if isinstance(rows, Sequence) else list(rows)
        n = len(rows)
    if n >= copy_min and _copy_rows(conn, table, columns, rows):
        return
    rows = list(rows)  # a stream is drained here even when it turns out empty
    if rows:
        conn.execute(table.insert(), _as_dicts(columns, rows))


# --------------------------------------------------------------------------------------------
# The warehouse
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    doc: dict[str, Any]
    pages: list[Row]  # PAGE_COLUMNS order
    blocks: list[Row]  # BLOCK_COLUMNS order
    cells: list[Row]  # CELL_COLUMNS order
    failures: list[Failure]
    content_hash: str


# What a load returns: rows written per kind, and how many documents were unchanged.
COUNTS = ("documents", "pages", "blocks", "cells", "failures", "validation_results", "unchanged")


def _log_batch(verb: str, counts: dict[str, int], run_id: str) -> None:
    log.info(
        "warehouse: %s %d documents in one transaction, run %s: %d pages, %d blocks (%d unchanged)",
        verb,
        counts["documents"],
        run_id,
        counts["pages"],
        counts["blocks"],
        counts["unchanged"],
    )


class Warehouse:
    """Loads :class:`DocumentResult` objects into SQL tables named ``{prefix}<table>``."""

    def __init__(
        self,
        engine_or_url: sa.Engine | str,
        schema: str | None = None,
        prefix: str = "deepocr_",
        *,
        copy_min_rows: int = 500,
        load_method: str = "auto",
    ) -> None:
        """``load_method``: ``replace`` (delete the documents' rows, then bulk-insert: COPY on
        PostgreSQL, a DataFrame on DuckDB, executemany elsewhere), ``merge`` (staging tables and
        MERGE, :mod:`~airflow_provider_deepocr.core.merge`), or ``auto``: ``merge`` on Snowflake,
        BigQuery and Redshift, ``replace`` everywhere else."""
        self.prefix = check_identifier(prefix, "prefix")
        self.schema = check_identifier(schema, "schema") if schema is not None else None
        if isinstance(engine_or_url, str):
            self.engine = make_engine(engine_or_url)
        elif isinstance(engine_or_url, sa.Engine):
            self.engine = engine_or_url
        else:
            raise errors.ConfigError("engine_or_url must be a SQLAlchemy Engine or a URL string")
        self.dialect = self.engine.dialect.name
        if self.schema is not None and self.dialect == "sqlite":
            raise errors.ConfigError("schema is not supported on SQLite (use prefix)")
        self.copy_min_rows = copy_min_rows
        if load_method == "auto":
            load_method = "merge" if self.dialect in MERGE_DIALECTS else "replace"
        if load_method not in ("replace", "merge"):
            raise errors.ConfigError(f"load_method must be auto, replace or merge, got {load_method!r}")
        if load_method == "merge":
            merge.check_dialect(self.engine.dialect)
        elif self.dialect in MERGE_DIALECTS:
            raise errors.ConfigError(f"{self.dialect} warehouses load through load_method='merge'")
        self.load_method = load_method
        self.metadata = build_metadata(self.prefix, self.schema)
        t = {name: self.metadata.tables[self._qualified(name)] for name in TABLES}
        self.documents, self.pages, self.blocks = t["documents"], t["pages"], t["blocks"]
        self.table_cells, self.failures, self.ledger = t["table_cells"], t["failures"], t["load_ledger"]
        self.validation_results = t["validation_results"]
        self._tables = t
        self._lock_ns = f"deepocr:{self.schema or ''}:{self.prefix}"

    def __repr__(self) -> str:
        return f"Warehouse({self.engine.url.render_as_string(hide_password=True)!r}, prefix={self.prefix!r})"

    def _qualified(self, name: str) -> str:
        full = f"{self.prefix}{name}"
        check_identifier(full, "table name")
        return f"{self.schema}.{full}" if self.schema else full

    def table(self, name: str) -> sa.Table:
        """The :class:`sqlalchemy.Table` for a short name such as ``"pages"``."""
        return self._tables[name]

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def _write(self, *lock_keys: str) -> Iterator[sa.Connection]:
        plock = _process_lock(f"{self.engine.url}|{self._lock_ns}") if self.dialect == "duckdb" else None
        if plock is not None:
            plock.acquire()
        try:
            with self.engine.connect() as conn:
                try:
                    _begin_write(conn, [f"{self._lock_ns}:{k}" for k in lock_keys])
                    yield conn
                    conn.commit()
                except BaseException:
                    conn.rollback()
                    raise
        except errors.DeepOcrError:
            raise
        except Exception as exc:
            # Driver messages quote the offending values (SQLAlchemy adds the bound parameters):
            # that is document text, so it stays out of the error; class and SQLSTATE only.
            what = lock_keys[0] if len(lock_keys) == 1 else f"{len(lock_keys)} keys"
            raise errors.DeepOcrError(errors.LOAD_ERROR, f"{what}: {errors.describe(exc)}") from None
        finally:
            if plock is not None:
                plock.release()

    def create(self) -> list[str]:
        """Create the schema (where supported) and all tables if missing. Idempotent.

        Tables made by an older version get the columns they lack, added as nullable columns
        (``ALTER TABLE … ADD COLUMN``); nothing is ever dropped, renamed or retyped. Returns the
        ``table.column`` names added.
        """
        if self.dialect == "sqlite":
            # WAL lets readers read while a document loads; it must be set outside a transaction
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode = WAL")
        added: list[str] = []
        with self._write("__ddl__") as conn:
            if self.schema is not None:
                conn.execute(sa.schema.CreateSchema(self.schema, if_not_exists=True))
            if self.dialect in MERGE_DIALECTS:
                for ddl in merge.warehouse_ddl(conn, self.metadata):  # no CREATE INDEX there
                    conn.exec_driver_sql(ddl)
            else:
                self.metadata.create_all(conn, checkfirst=True)
            prep = conn.dialect.identifier_preparer
            for table in self._tables.values():
                live = _live_columns(conn, table)
                for col in table.columns:
                    if col.name in live or col.primary_key:
                        continue
                    ddl = (
                        f"ALTER TABLE {prep.format_table(table)} ADD COLUMN {prep.quote(col.name)} "
                        f"{col.type.compile(dialect=conn.dialect)}"
                    )
                    conn.exec_driver_sql(ddl)
                    added.append(f"{table.name}.{col.name}")
        if added:
            log.info("warehouse: added columns %s", ", ".join(added))
        return added

    # -- loading --------------------------------------------------------------------------

    def _prepare(self, result: DocumentResult) -> _Prepared:
        doc = document_row(result)
        pages, blocks, cells = page_tuples(result), block_tuples(result), cell_tuples(result)
        _check_unique("pages", PAGE_COLUMNS, pages, result.doc_id)
        _check_unique("blocks", BLOCK_COLUMNS, blocks, result.doc_id)
        _check_unique("table_cells", CELL_COLUMNS, cells, result.doc_id)
        failures = list(result.failures)
        chash = _content_hash(doc, pages, blocks, cells, [f.to_dict() for f in failures])
        return _Prepared(doc, pages, blocks, cells, failures, chash)

    def _delete_docs(
        self,
        conn: sa.Connection,
        ids: Sequence[str],
        tables: Sequence[str] = (*CONTENT_TABLES, "load_ledger", "validation_results"),
    ) -> None:
        """Delete these documents' rows from ``tables`` (by default all but the failures)."""
        for chunk in _chunks(ids, 1000):
            for name in tables:
                t = self._tables[name]
                conn.execute(t.delete().where(t.c.doc_id.in_(chunk)))

    def _delete_failures_of(
        self, conn: sa.Connection, docs: Sequence[DocumentResult], keep: Collection[str] = ()
    ) -> None:
        """Delete the failure rows that belong to ``docs``, except those whose id is in ``keep``."""
        f = self.failures
        for chunk in _chunks(docs, 500):
            stale = sa.or_(*(self._doc_failures(r.doc_id, r.ref.uri) for r in chunk))
            if keep:
                stale = sa.and_(stale, f.c.failure_id.not_in(sorted(keep)))
            conn.execute(f.delete().where(stale))

    def _doc_failures(self, doc_id: str, source_uri: str) -> sa.ColumnElement[bool]:
        """Failure rows that belong to a document: by id, or by URI when it was never hashed."""
        f = self.failures
        return sa.or_(f.c.doc_id == doc_id, sa.and_(f.c.doc_id.is_(None), f.c.source_uri == source_uri))

    def _insert_failures(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> int:
        uniq = list({r["failure_id"]: r for r in rows}.values())
        if not uniq:
            return 0
        f = self.failures
        ids = [r["failure_id"] for r in uniq]
        for i in range(0, len(ids), 500):
            conn.execute(f.delete().where(f.c.failure_id.in_(ids[i : i + 500])))
        conn.execute(f.insert(), uniq)
        return len(uniq)

    @staticmethod
    def _validation_rows(doc_id: str, rows: Sequence[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
        """One warehouse row per expectation result of one document (a repeated expectation is
        kept, numbered ``#2``, ``#3`` …; observed values as JSON text)."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for r in rows:
            table_name = str(r["table_name"])
            base = str(r["expectation"])[:480]
            name, n = base, 1
            while (table_name, name) in out:  # same expectation twice: keep both, numbered
                n += 1
                name = f"{base}#{n}"
            observed = r.get("observed")
            if observed is not None and not isinstance(observed, str):
                observed = json.dumps(observed, sort_keys=True, default=str)
            out[(table_name, name)] = {
                "doc_id": doc_id,
                "table_name": table_name,
                "expectation": name,
                "success": bool(r["success"]),
                "observed": observed,
                "run_id": run_id,
            }
        return list(out.values())

    def _validation_rows_of(
        self,
        docs: Sequence[DocumentResult],
        validation_rows: Mapping[str, list[dict[str, Any]]] | None,
        run_id: str,
    ) -> list[dict[str, Any]]:
        """:meth:`_validation_rows` of each of ``docs`` (doc id → its expectation results)."""
        by_doc = validation_rows or {}
        return [
            row for r in docs for row in self._validation_rows(r.doc_id, by_doc.get(r.doc_id) or [], run_id)
        ]

    def _prepared(self, result: DocumentResult) -> _Prepared:
        try:
            return self._prepare(result)
        except (TypeError, ValueError, IndexError, AttributeError) as exc:
            # the message would quote the bad value, which may be document text
            raise errors.DeepOcrError(
                errors.LOAD_ERROR, f"doc {result.doc_id}: malformed record ({type(exc).__name__})"
            ) from None

    def load_document(
        self,
        result: DocumentResult,
        run_id: str,
        *,
        validation_rows: list[dict[str, Any]] | None = None,
        force: bool = False,
    ) -> dict[str, int]:
        """Replace everything the warehouse holds for ``result.doc_id`` in one transaction.

        Returns row counts written: ``documents``, ``pages``, ``blocks``, ``cells``,
        ``failures`` (page-level failures carried by the result), ``validation_results`` and
        ``unchanged`` (1 when the ledger already held this exact content under this config,
        in which case nothing was rewritten).
        """
        preps: dict[str, _Prepared] = {}
        counts = self._load(
            [result],
            preps,
            run_id,
            force=force,
            validation_rows=None if validation_rows is None else {result.doc_id: validation_rows},
        )
        prep = preps[result.doc_id]
        return {
            **counts,
            "documents": 1,
            "pages": len(prep.pages),
            "blocks": len(prep.blocks),
            "cells": len(prep.cells),
        }

    def load_documents(
        self,
        results: Sequence[DocumentResult],
        run_id: str,
        *,
        force: bool = False,
        validation_rows: Mapping[str, list[dict[str, Any]]] | None = None,
    ) -> dict[str, int]:
        """Load several whole documents in ONE transaction: the bulk path for big batches.

        Same semantics as :meth:`load_document` for each document (its previous rows replaced,
        unchanged content skipped unless ``force``), but one set of deletes, one COPY per table
        and one commit for the batch, so readers see all of these documents or none of them.
        A failure rolls back the whole batch; the caller then retries document by document to
        isolate the bad one (``stage_load`` does). ``validation_rows`` (doc id → that document's
        expectation results) replaces the documents' rows in the validation results table, for
        unchanged documents too.
        """
        if not results:
            return dict.fromkeys(COUNTS, 0)
        if len({r.doc_id for r in results}) != len(results):
            raise errors.DeepOcrError(errors.LOAD_ERROR, "a batch lists the same document twice")
        return self._load(list(results), {}, run_id, force=force, validation_rows=validation_rows)

    def _prep(self, result: DocumentResult, preps: dict[str, _Prepared]) -> _Prepared:
        """``result``'s rows, built once per load (kept in ``preps``)."""
        p = preps.get(result.doc_id)
        if p is None:
            p = preps[result.doc_id] = self._prepared(result)
        return p

    def _load(
        self,
        results: list[DocumentResult],
        preps: dict[str, _Prepared],
        run_id: str,
        *,
        force: bool,
        validation_rows: Mapping[str, list[dict[str, Any]]] | None,
    ) -> dict[str, int]:
        """One transaction for these documents: the changed ones (all of them under ``force``)
        are written by :meth:`_replace_rows` or :meth:`_merge_rows` (``load_method``), the
        unchanged ones only get their stale failures dropped and their validation results
        refreshed. Rows are built into ``preps`` (doc id → :class:`_Prepared`) as they are
        needed: up front only for documents the ledger holds under the same config (their
        content hash decides whether they changed); the others' rows are built while the
        replace path streams them to the database."""
        merging = self.load_method == "merge"
        counts = dict.fromkeys(COUNTS, 0)
        ids = [r.doc_id for r in results]
        sm: Any = None  # the StagedMerge whose stages still exist
        with self._write(*sorted(ids)) as conn:
            try:
                if self.dialect == "redshift":
                    prep_ = conn.dialect.identifier_preparer
                    tables = ", ".join(prep_.format_table(t) for t in self._tables.values())
                    conn.exec_driver_sql(f"LOCK {tables}")
                prev = self._ledger_state(conn, ids)
                changed: list[DocumentResult] = []
                same: list[DocumentResult] = []
                for r in results:
                    live = prev.get(r.doc_id)
                    if force or live is None or live[0] != r.config_fingerprint:
                        changed.append(r)
                    elif live[1] == self._prep(r, preps).content_hash:
                        same.append(r)
                    else:
                        changed.append(r)
                now = datetime.now(UTC)
                if changed:
                    vrows = self._validation_rows_of(changed, validation_rows, run_id)
                    if merging:
                        sm = self._merge_rows(
                            conn, [(r, self._prep(r, preps)) for r in changed], vrows, run_id, now
                        )
                    else:
                        self._replace_rows(conn, changed, preps, vrows, run_id, now)
                    todo = [(r, preps[r.doc_id]) for r in changed]
                    self._delete_failures_of(conn, changed)
                    counts["failures"] += self._insert_failures(conn, self._failure_rows(todo, run_id, now))
                    counts["validation_results"] += len(vrows)
                    counts.update(
                        documents=len(todo),
                        pages=sum(len(p.pages) for _, p in todo),
                        blocks=sum(len(p.blocks) for _, p in todo),
                        cells=sum(len(p.cells) for _, p in todo),
                    )
                if same:
                    # failures recorded since their load (a transient read error, say) are stale
                    # now; each result's own are kept
                    keep = [{self._fid(f, r.doc_id) for f in preps[r.doc_id].failures} for r in same]
                    self._delete_failures_of(conn, same, keep=set().union(*keep))
                    counts["unchanged"] = len(same)
                    counts["failures"] += sum(map(len, keep))
                    if validation_rows is not None:
                        self._delete_docs(conn, [r.doc_id for r in same], ("validation_results",))
                        rows = self._validation_rows_of(same, validation_rows, run_id)
                        if rows:
                            conn.execute(self.validation_results.insert(), rows)
                        counts["validation_results"] += len(rows)
                if sm is not None:
                    if self.dialect in merge.NON_TRANSACTIONAL_DDL:
                        conn.commit()  # Snowflake: a DROP would commit anyway; keep it after the writes
                    sm.drop()
                    sm = None
            except BaseException:
                if sm is not None and self.dialect in merge.NON_TRANSACTIONAL_DDL:
                    conn.rollback()
                    with suppress(Exception):
                        sm.drop()  # temporary (Snowflake) or expiring (BigQuery) anyway
                raise
        _log_batch("merged" if merging else "loaded", counts, run_id)
        return counts

    def _replace_rows(
        self,
        conn: sa.Connection,
        todo: list[DocumentResult],
        preps: dict[str, _Prepared],
        vrows: list[dict[str, Any]],
        run_id: str,
        now: datetime,
    ) -> None:
        """``load_method="replace"``: delete the documents' rows, then bulk-insert the new ones
        (COPY on PostgreSQL, a DataFrame on DuckDB, executemany elsewhere).

        Blocks, the bulk of the rows, go first, streamed: each document's rows are built (and
        checked and hashed) just before they are sent, so on PostgreSQL the client builds while
        the server inserts what it has already received, instead of the two taking turns. Every
        document is prepared by the end of this call."""
        self._delete_docs(conn, [r.doc_id for r in todo])
        blocks = (row for r in todo for row in self._prep(r, preps).blocks)
        _insert_rows(conn, self.blocks, BLOCK_COLUMNS, blocks, self.copy_min_rows, n=_block_count(todo))
        done = [(r, self._prep(r, preps)) for r in todo]
        for name, columns, rows in self._new_rows(done, vrows, run_id, now, skip="blocks"):
            _insert_rows(conn, self._tables[name], columns, rows, self.copy_min_rows)

    def _merge_rows(
        self,
        conn: sa.Connection,
        todo: list[tuple[DocumentResult, _Prepared]],
        vrows: list[dict[str, Any]],
        run_id: str,
        now: datetime,
    ) -> Any:
        """``load_method="merge"``: documents, pages, blocks, cells, their validation results and
        the ledger rows through one :class:`~airflow_provider_deepocr.core.merge.StagedMerge`, so
        on every warehouse the content and the ledger change together (BigQuery: one transaction
        script); the caller drops its stages (after the commit where DDL commits). Racing loaders
        end with one copy: MERGE matches rows by key, PostgreSQL takes advisory locks, Redshift
        ``LOCK``s the tables, Snowflake serialises DML on a table, BigQuery aborts the later of
        two conflicting transactions (the task's retry then finds the document loaded)."""
        loads = [
            merge.TableLoad(self._tables[name], KEYS[name], columns, rows)
            for name, columns, rows in self._new_rows(todo, vrows, run_id, now)
        ]
        sm = merge.StagedMerge(conn, loads, [r.doc_id for r, _ in todo], bulk=self._bulk_fill)
        sm.stage()  # Snowflake: DDL commits, so this comes before any other write
        sm.apply()
        return sm

    @staticmethod
    def _failure_rows(
        todo: Sequence[tuple[DocumentResult, _Prepared]], run_id: str, now: datetime
    ) -> list[dict[str, Any]]:
        return [
            failure_row(fl, run_id=run_id, config_fingerprint=r.config_fingerprint, doc_id=r.doc_id, now=now)
            for r, p in todo
            for fl in p.failures
        ]

    def _new_rows(
        self,
        todo: list[tuple[DocumentResult, _Prepared]],
        vrows: list[dict[str, Any]],
        run_id: str,
        now: datetime,
        skip: str | None = None,
    ) -> Iterator[tuple[str, tuple[str, ...], list[Row]]]:
        """(table, columns, rows) of everything a load of ``todo`` writes, in the order written:
        documents, pages, blocks, cells, validation results, then the ledger (``skip``: a table
        already written, whose rows are not gathered again)."""
        yield (
            "documents",
            (*todo[0][1].doc, "loaded_at", "run_id"),
            [(*p.doc.values(), now, run_id) for _, p in todo],
        )
        yield "pages", PAGE_COLUMNS, [x for _, p in todo for x in p.pages]
        if skip != "blocks":
            yield "blocks", BLOCK_COLUMNS, [x for _, p in todo for x in p.blocks]
        yield "table_cells", CELL_COLUMNS, [x for _, p in todo for x in p.cells]
        yield (
            "validation_results",
            VALIDATION_COLUMNS,
            [tuple(v[c] for c in VALIDATION_COLUMNS) for v in vrows],
        )
        ledger = [self._ledger_row(r, p, run_id, now) for r, p in todo]
        yield "load_ledger", tuple(ledger[0]), [tuple(d.values()) for d in ledger]

    def _bulk_fill(
        self, conn: sa.Connection, stage: sa.Table, columns: tuple[str, ...], rows: Sequence[Row]
    ) -> bool:
        """Fill a merge stage with the dialect's bulk path where there is one (PostgreSQL COPY,
        DuckDB DataFrame); False lets the merge insert in chunks."""
        return len(rows) >= self.copy_min_rows and _copy_rows(conn, stage, columns, rows)

    def _ledger_state(self, conn: sa.Connection, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(config fingerprint, content hash) by doc id, for the documents the ledger holds."""
        led = self.ledger
        prev: dict[str, tuple[str, str]] = {}
        for chunk in _chunks(ids, 1000):
            for row in conn.execute(
                sa.select(led.c.doc_id, led.c.config_fingerprint, led.c.content_hash).where(
                    led.c.doc_id.in_(chunk)
                )
            ):
                prev[row.doc_id] = (row.config_fingerprint, row.content_hash)
        return prev

    @staticmethod
    def _ledger_row(result: DocumentResult, prep: _Prepared, run_id: str, now: datetime) -> dict[str, Any]:
        return {
            "doc_id": result.doc_id,
            "run_id": run_id,
            "config_fingerprint": result.config_fingerprint,
            "content_hash": prep.content_hash,
            "pages": len(prep.pages),
            "blocks": len(prep.blocks),
            "cells": len(prep.cells),
            "loaded_at": now,
        }

    @staticmethod
    def _fid(f: Failure, doc_id: str | None) -> str:
        return failure_id(
            f.source_uri, f.doc_id if f.doc_id is not None else doc_id, f.page_no, f.reason, f.stage
        )

    def record_failures(self, failures: list[Failure], run_id: str, config_fingerprint: str) -> int:
        """Record document-level failures (no document rows). Idempotent by ``failure_id``.

        Returns the number of distinct failure rows written. Loaded rows of the same document
        are left alone.
        """
        if not failures:
            return 0
        now = datetime.now(UTC)
        rows = [
            failure_row(f, run_id=run_id, config_fingerprint=config_fingerprint, now=now) for f in failures
        ]
        # the same locks a load/quarantine of those documents takes: no duplicate-key races
        keys = {r["doc_id"] if r["doc_id"] is not None else f"uri:{r['source_uri']}" for r in rows}
        with self._write(*sorted(keys)) as conn:
            n = self._insert_failures(conn, rows)
        log.info("warehouse: recorded %d failure row(s) for run %s", n, run_id)
        return n

    def quarantine(
        self,
        result: DocumentResult,
        reason: str,
        detail: str,
        run_id: str,
        validation_rows: list[dict[str, Any]] | None = None,
        *,
        stage: str = "validate",
    ) -> dict[str, int]:
        """Keep a document out of the main tables: failure row + validation results.

        Any previously loaded copy of the document is removed (the tables reflect the latest
        verdict), and so is its ledger entry, so :meth:`is_loaded` is False afterwards.
        """
        doc_id = result.doc_id
        now = datetime.now(UTC)
        main = Failure(
            source_uri=result.ref.uri,
            reason=reason or errors.VALIDATION_FAILED,
            detail=detail,
            doc_id=doc_id,
            page_no=None,
            stage=stage,
        )
        frows = [
            failure_row(
                f, run_id=run_id, config_fingerprint=result.config_fingerprint, doc_id=doc_id, now=now
            )
            for f in [main, *result.failures]
        ]
        vrows = self._validation_rows(doc_id, validation_rows or [], run_id)
        with self._write(doc_id) as conn:
            self._delete_docs(conn, [doc_id])
            self._delete_failures_of(conn, [result])
            nf = self._insert_failures(conn, frows)
            if vrows:
                conn.execute(self.validation_results.insert(), vrows)
        log.info("warehouse: quarantined doc %s run %s reason %s", doc_id, run_id, main.reason)
        return {"failures": nf, "validation_results": len(vrows)}

    # -- reading --------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Rows per table, keyed by short table name."""
        out: dict[str, int] = {}
        with self.engine.connect() as conn:
            for name, t in self._tables.items():
                out[name] = int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
        return out

    def is_loaded(self, doc_id: str, fingerprint: str) -> bool:
        """True when the ledger says ``doc_id`` is live under config ``fingerprint``."""
        return self.live_fingerprints([doc_id]).get(doc_id) == fingerprint

    def live_fingerprints(self, doc_ids: Sequence[str]) -> dict[str, str]:
        """The config fingerprint the ledger holds live, by doc id, for those of ``doc_ids`` it
        holds (a query per 1,000 ids)."""
        with self.engine.connect() as conn:
            return {doc_id: fp for doc_id, (fp, _) in self._ledger_state(conn, doc_ids).items()}

    def ledger_entry(self, doc_id: str) -> dict[str, Any] | None:
        led = self.ledger
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(led).where(led.c.doc_id == doc_id)).mappings().first()
        return dict(row) if row is not None else None

    def dispose(self) -> None:
        self.engine.dispose()
