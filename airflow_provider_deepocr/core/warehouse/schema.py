"""The warehouse's tables: names, keys, columns and identifiers (no database is named here).

Every table is ``{prefix}<name>`` in an optional schema; prefix, schema, table and column names are
checked against :data:`IDENT_RE` before they reach SQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa

from airflow_provider_deepocr.core import errors

IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

TABLES = (
    "documents",
    "pages",
    "blocks",
    "table_cells",
    "failures",
    "load_ledger",
    "validation_results",
    "runs",
    "reviews",
    "sources",
)

# Tables holding a loaded document's content (deleted on reload / quarantine).
CONTENT_TABLES = ("table_cells", "blocks", "pages", "documents")

# The primary key of every table a load writes by key (MERGE ``ON``, duplicate checks).
KEYS: dict[str, tuple[str, ...]] = {
    "documents": ("doc_id",),
    "load_ledger": ("doc_id",),
    "validation_results": ("doc_id", "table_name", "expectation"),
    "pages": ("doc_id", "page_no"),
    "blocks": ("doc_id", "page_no", "block_no"),
    "table_cells": ("doc_id", "page_no", "block_no", "row_no", "col_no"),
    "runs": ("run_id", "dag_id", "shard"),
    "sources": ("source_uri",),
}


def check_identifier(value: str, what: str) -> str:
    """``value`` when it is a safe SQL identifier; :class:`~errors.ConfigError` naming ``what`` otherwise."""
    if not isinstance(value, str) or not IDENT_RE.match(value):
        raise errors.ConfigError(f"invalid {what}: must match {IDENT_RE.pattern}")
    return value


def build_metadata(prefix: str, schema: str | None) -> sa.MetaData:
    """All tables of one warehouse (names ``{prefix}<table>``)."""
    md = sa.MetaData(schema=schema)
    doc_id = sa.String(64)
    fp = sa.String(64)
    ts = sa.TIMESTAMP(timezone=True)  # BigQuery: TIMESTAMP (its DATETIME has no time zone)

    _content_tables(md, prefix, doc_id, fp, ts)
    _record_tables(md, prefix, doc_id, fp, ts)
    return md


def _content_tables(md: sa.MetaData, prefix: str, doc_id: Any, fp: Any, ts: Any) -> None:
    """A loaded document's rows: documents, pages, blocks, table cells."""
    sa.Table(
        f"{prefix}documents",
        md,
        sa.Column("doc_id", doc_id, primary_key=True),
        sa.Column("source_uri", sa.Text, nullable=False),
        sa.Column("source_version", sa.Text),
        sa.Column("source_size", sa.BigInteger),
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
        sa.Column("rotation", sa.Integer),  # added columns stay nullable: add_missing_columns
        sa.Column("coverage", sa.Double),
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


def _record_tables(md: sa.MetaData, prefix: str, doc_id: Any, fp: Any, ts: Any) -> None:
    """What the pipeline records beside the content: failures, ledger, validation results, runs,
    reviews, sources."""
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
        # set when a reviewer's decision settled the failure (core.review): NULL while it stands
        sa.Column("resolved_at", ts),
        sa.Column("resolution", sa.String(32)),
        # a load deletes a document's failure rows by id, and a never-hashed one's (doc_id NULL) by
        # URI (failures.doc_failures): both are searches of this one index, never a scan
        sa.Index(f"{prefix}failures_doc_uri_idx", "doc_id", "source_uri"),
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
    sa.Table(  # one row per run and shard: what it did, on what, at what cost (core.runs)
        f"{prefix}runs",
        md,
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("dag_id", sa.String(250), primary_key=True),
        sa.Column("shard", sa.String(64), primary_key=True),
        sa.Column("task", sa.Text),
        sa.Column("started_at", ts, nullable=False),
        sa.Column("ended_at", ts, nullable=False),
        sa.Column("documents", sa.Integer, nullable=False),
        sa.Column("pages", sa.Integer, nullable=False),
        sa.Column("pages_ocr", sa.Integer),
        sa.Column("failed", sa.Text),
        sa.Column("engine", sa.Text),
        sa.Column("model", sa.Text),
        sa.Column("device", sa.Text),
        sa.Column("config_fingerprint", fp),
        sa.Column("model_load_seconds", sa.Double),
        sa.Column("engine_seconds", sa.Double),
        sa.Column("output_tokens", sa.BigInteger),
        sa.Column("gpu_hour_cost", sa.Double),
        sa.Column("cost", sa.Double),
    )
    sa.Table(  # the review audit trail (core.review): appended to, never updated in place
        f"{prefix}reviews",
        md,
        sa.Column("review_id", sa.String(64), primary_key=True),
        sa.Column("doc_id", doc_id, nullable=False),
        sa.Column("source_uri", sa.Text),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("engine", sa.Text),
        sa.Column("reviewer", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("config_fingerprint", fp),
        sa.Column("reviewed_at", ts, nullable=False),
        sa.Index(f"{prefix}reviews_doc_idx", "doc_id"),
    )
    sa.Table(  # every URI a document was seen under (identical bytes share one doc_id): .sources
        f"{prefix}sources",
        md,
        sa.Column("source_uri", sa.String(2048), primary_key=True),
        sa.Column("doc_id", doc_id, nullable=False),
        sa.Column("source_size", sa.BigInteger),
        sa.Column("source_version", sa.Text),
        sa.Column("seen_at", ts, nullable=False),
        sa.Column("run_id", sa.Text),
        sa.Index(f"{prefix}sources_doc_idx", "doc_id"),
    )


def add_missing_columns(
    conn: sa.Connection,
    tables: Iterable[sa.Table],
    live_columns: Callable[[sa.Connection, sa.Table], set[str]],
) -> list[str]:
    """``ALTER TABLE … ADD COLUMN`` (nullable) for each column of ``tables`` the live table lacks
    (``live_columns`` reads its names); nothing is dropped, renamed or retyped. Returns
    ``table.column`` of those added."""
    quoter = conn.dialect.identifier_preparer
    added: list[str] = []
    for table in tables:
        live = live_columns(conn, table)
        for col in table.columns:
            if col.name in live or col.primary_key:
                continue
            conn.exec_driver_sql(
                f"ALTER TABLE {quoter.format_table(table)} ADD COLUMN {quoter.quote(col.name)} "
                f"{col.type.compile(dialect=conn.dialect)}"
            )
            added.append(f"{table.name}.{col.name}")
    return added


def add_missing_indexes(conn: sa.Connection, tables: Iterable[sa.Table]) -> None:
    """``CREATE INDEX IF NOT EXISTS`` for each index of ``tables``: a table made by an older
    version gets the indexes it lacks (``create_all`` makes them only with a new table)."""
    for table in tables:
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))
