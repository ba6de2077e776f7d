"""Staged MERGE loads: replace documents' rows in warehouses that want MERGE rather than
DELETE + INSERT (Snowflake, BigQuery, Redshift), with the same path runnable on PostgreSQL ≥ 15 and
DuckDB ≥ 1.4 so its semantics are tested against real databases. What differs per database (stage
DDL and schema, MERGE form, transactions, statement limits) is data in :mod:`.dialects`.

What one load does, per target table (``documents``, ``pages``, ``blocks``, ``table_cells``, …):

1. **Stage.** A staging table shaped like the target, named ``_deepocr_stage_<uuid hex>_<n>``
   (:attr:`.Dialect.stage_ddl`: a session temporary table; on BigQuery, whose DB-API runs each
   statement as its own job without a session, a permanent table that expires after ``ttl_hours``,
   so a crashed load leaves nothing that outlives it). The new rows go in as multi-row
   ``INSERT … VALUES`` statements built by SQLAlchemy, in chunks bounded by the database's bind
   parameters and payload bytes. Each warehouse has a faster native bulk path that is **not** used
   here because it needs more than a SQLAlchemy connection: Snowflake ``PUT`` + ``COPY INTO``, a
   BigQuery load job, Redshift ``COPY`` from S3. A caller that has one passes ``bulk=`` (a function
   filling the stage; e.g. the warehouse's PostgreSQL ``COPY``).

2. **Apply**, in one transaction for all tables of the load:

   * Rows of the replaced documents that are not in the new load must disappear. BigQuery does it
     inside the MERGE: ``WHEN NOT MATCHED BY SOURCE AND tgt.doc_id IN (…) THEN DELETE``. Elsewhere
     a ``DELETE FROM target WHERE doc_id IN (…) AND NOT EXISTS (matching key in stage)`` runs first,
     in the same transaction. The documents are named by their ids (validated, rendered as the
     dialect's string literals), not by ``SELECT doc_id FROM stage``: a document whose new load has
     no rows in a table (no tables on any page) must still lose its old rows there.
   * ``MERGE``: keys in ``ON``, ``WHEN MATCHED THEN UPDATE SET`` every non-key column,
     ``WHEN NOT MATCHED THEN INSERT`` all columns.
   * Transactions: where DDL is transactional, stage + apply + drop run inside the caller's
     transaction. Snowflake commits any open transaction on DDL, so stage DDL happens before the
     apply statements and the stage is dropped only after the caller committed. BigQuery's DB-API
     has no transactions: the apply statements are sent as **one** script ``BEGIN TRANSACTION;
     MERGE …; COMMIT TRANSACTION;``, so readers see all tables change at once.

3. **Drop** the stages (``DROP TABLE IF EXISTS``).

Redshift MERGE restrictions honoured here: the source must be a table, the target takes no alias,
both ``WHEN`` clauses are required, and a target row must not match several source rows — keys are
checked unique client-side before staging (``REMOVE DUPLICATES`` would hide them instead).

The statements themselves are built by the pure functions of :mod:`.merge_sql` (re-exported here);
values are bound parameters except the document ids in the apply statements. Nothing here logs or
raises with row values (document text): table names, counts, reason codes.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.records import DocumentResult
from airflow_provider_deepocr.core.warehouse.dialects import merge_dialect
from airflow_provider_deepocr.core.warehouse.merge_sql import (
    MAX_SCOPE_IDS,
    SCOPE_ID_RE,
    _by_source,
    _check_columns,
    apply_statements,
    check_dialect,
    check_scope_ids,
    chunk_rows,
    delete_stale_sql,
    drop_stage_sql,
    merge_sql,
    new_stage_name,
    stage_ddl,
    stage_inserts,
    stage_table,
    warehouse_ddl,
)
from airflow_provider_deepocr.core.warehouse.rows import DocRows, Row, duplicate_keys, new_rows
from airflow_provider_deepocr.core.warehouse.schema import KEYS, check_identifier

__all__ = [
    "MAX_SCOPE_IDS",
    "SCOPE_ID_RE",
    "StagedMerge",
    "TableLoad",
    "apply_statements",
    "check_dialect",
    "check_scope_ids",
    "chunk_rows",
    "delete_stale_sql",
    "drop_stage_sql",
    "merge_sql",
    "new_stage_name",
    "stage_ddl",
    "stage_inserts",
    "stage_table",
    "staged_replace",
    "staged_replace_many",
    "warehouse_ddl",
]

log = logging.getLogger(__name__)

BulkFill = Callable[[sa.Connection, sa.Table, tuple[str, ...], Sequence[Row]], bool]


# --------------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableLoad:
    """The new rows of one target table for the documents being replaced.

    ``rows`` are tuples in ``columns`` order (or mappings, turned into such tuples); ``key_cols``
    identify a row; ``scope_col`` (default ``doc_id``) says which document a row belongs to.
    """

    table: sa.Table
    key_cols: tuple[str, ...]
    columns: tuple[str, ...]
    rows: Sequence[Row]
    scope_col: str = "doc_id"
    #: False: a MERGE only (upsert by key): rows of the documents that the load lacks stay, and rows
    #: may belong to documents outside the load (the ``sources`` table: every URI ever seen)
    replace_scope: bool = True
    same_cols: tuple[str, ...] = ()  # see merge_sql's keep_when_same
    keep_when_same: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        table: sa.Table,
        key_cols: Sequence[str],
        rows: Sequence[Row] | Sequence[Mapping[str, Any]],
        *,
        columns: Sequence[str] | None = None,
        scope_col: str = "doc_id",
    ) -> TableLoad:
        """Build from tuples (with ``columns``) or mappings (columns from the first row, or all of
        the table's columns when there are no rows)."""
        if columns is None:
            if rows and isinstance(rows[0], Mapping):
                columns = tuple(rows[0].keys())  # type: ignore[union-attr]
            elif rows:
                raise errors.ConfigError(f"{table.name}: tuple rows need columns=")
            else:
                columns = tuple(c.name for c in table.columns)
        cols = tuple(columns)
        if rows and isinstance(rows[0], Mapping):
            rows = [tuple(r[c] for c in cols) for r in rows]  # type: ignore[index]
        return cls(table, tuple(key_cols), cols, rows, scope_col)  # type: ignore[arg-type]


def _upsert_only(load: TableLoad, same_cols: tuple[str, ...], keep_when_same: tuple[str, ...]) -> TableLoad:
    return dataclasses.replace(load, replace_scope=False, same_cols=same_cols, keep_when_same=keep_when_same)


def _check_rows(load: TableLoad, ids: set[str]) -> None:
    cols = load.columns
    if load.scope_col not in cols:
        raise errors.ConfigError(f"{load.table.name}: the scope column {load.scope_col!r} is not loaded")
    bad = next((r for r in load.rows if len(r) != len(cols)), None)
    if bad is not None:
        raise errors.DeepOcrError(
            errors.LOAD_ERROR, f"{load.table.name}: a row has {len(bad)} values, not {len(cols)}"
        )
    si = cols.index(load.scope_col)
    outside = sum(r[si] not in ids for r in load.rows) if load.replace_scope else 0
    if outside:
        raise errors.DeepOcrError(
            errors.LOAD_ERROR, f"{load.table.name}: {outside} row(s) belong to no document of this load"
        )
    dup = duplicate_keys(cols, load.key_cols, load.rows)
    if dup:  # a MERGE source must not match one target row twice (an error on every warehouse)
        raise errors.DeepOcrError(
            errors.LOAD_ERROR,
            f"{load.table.name}: {dup} duplicate key(s) on ({', '.join(load.key_cols)})",
        )


class StagedMerge:
    """Replace documents' rows in several tables through staging tables and MERGE.

    Phases, to be called in order on one connection (see the module doc for the transactions)::

        sm = StagedMerge(conn, loads, doc_ids)
        sm.stage()      # create + fill the stages (Snowflake/BigQuery: before the write transaction)
        try:
            sm.apply()  # stale DELETE + MERGE per table (BigQuery: one transaction script)
            ...         # the caller's other writes, then conn.commit()
        finally:
            sm.drop()   # Snowflake/BigQuery: after the commit (DDL would commit on Snowflake)

    On PostgreSQL, Redshift and DuckDB every phase belongs to the caller's transaction, so a
    rollback undoes the stages too.
    """

    def __init__(
        self,
        conn: sa.Connection,
        loads: Sequence[TableLoad],
        scope_ids: Sequence[str],
        *,
        delete_by_source: bool | None = None,
        ttl_hours: int = 6,
        bulk: BulkFill | None = None,
        max_params: int | None = None,
        max_bytes: int | None = None,
        max_rows: int = 1000,
    ) -> None:
        self.conn = conn
        self.db = merge_dialect(conn)
        self.dialect = self.db.name
        self.ids = check_scope_ids(scope_ids)
        idset = set(self.ids)
        names = [ld.table.name for ld in loads]
        if len(set(names)) != len(names):
            raise errors.ConfigError("a staged load lists the same table twice")
        for ld in loads:
            _check_columns(ld.table, ld.key_cols, ld.columns)
            check_identifier(ld.scope_col, "column name")
            _check_rows(ld, idset)
        self.loads = list(loads)
        self.delete_by_source = delete_by_source
        self.ttl_hours = ttl_hours
        self.bulk = bulk
        self.chunking = {
            "max_params": self.db.max_params if max_params is None else max_params,
            "max_bytes": self.db.max_bytes if max_bytes is None else max_bytes,
            "max_rows": max_rows,
        }
        self.stages = [stage_table(conn, ld.table, new_stage_name(i)) for i, ld in enumerate(self.loads)]
        self._created: list[sa.Table] = []

    def stage(self) -> None:
        """Create every staging table, then fill each with its load's rows."""
        conn = self.conn
        for ld, st in zip(self.loads, self.stages, strict=True):
            conn.exec_driver_sql(stage_ddl(conn, ld.table, st, ttl_hours=self.ttl_hours))
            self._created.append(st)
        for ld, st in zip(self.loads, self.stages, strict=True):
            if not ld.rows:
                continue
            if self.bulk is not None and self.bulk(conn, st, ld.columns, ld.rows):
                continue
            for stmt in stage_inserts(st, ld.columns, ld.rows, **self.chunking):
                conn.execute(stmt)
        if self.db.ddl_commits:
            conn.commit()  # the stage rows are session-private; the apply gets a fresh transaction
        log.info(
            "merge: staged %d table(s), %d row(s) for %d document(s) on %s",
            len(self.loads),
            sum(len(ld.rows) for ld in self.loads),
            len(self.ids),
            self.dialect,
        )

    def statements(self) -> list[str]:
        """The apply phase as SQL text (what :meth:`apply` executes)."""
        by_source = _by_source(self.db, self.delete_by_source)
        out: list[str] = []
        for ld, st in zip(self.loads, self.stages, strict=True):
            if not by_source and ld.replace_scope:
                out.append(
                    delete_stale_sql(self.conn, ld.table, st, ld.key_cols, self.ids, scope_col=ld.scope_col)
                )
            out.append(
                merge_sql(
                    self.conn,
                    ld.table,
                    st,
                    ld.key_cols,
                    ld.columns,
                    scope_ids=self.ids,
                    scope_col=ld.scope_col,
                    delete_by_source=by_source and ld.replace_scope,
                    same_cols=ld.same_cols,
                    keep_when_same=ld.keep_when_same,
                )
            )
        return apply_statements(self.conn, out)

    def apply(self) -> dict[str, int]:
        """Run the stale-row deletes and MERGEs; returns rows loaded per table name. The caller
        commits (BigQuery's script commits itself)."""
        if not self._created:
            raise errors.ConfigError("StagedMerge.apply() before stage()")
        for sql in self.statements():
            self.conn.exec_driver_sql(sql)
        return {ld.table.name: len(ld.rows) for ld in self.loads}

    def drop(self) -> None:
        """Drop the staging tables created so far (idempotent)."""
        while self._created:
            st = self._created.pop()
            self.conn.exec_driver_sql(drop_stage_sql(self.conn, st))
        if self.db.ddl_commits:
            self.conn.commit()


def staged_replace_many(
    conn: sa.Connection, loads: Sequence[TableLoad], scope_ids: Sequence[str], **options: Any
) -> dict[str, int]:
    """Replace the rows of documents ``scope_ids`` in every table of ``loads`` and commit.

    Stage, apply, commit, drop, on ``conn`` (which must not hold an uncommitted transaction the
    caller still wants to roll back: this function commits). On failure the transaction is rolled
    back and a :class:`~errors.DeepOcrError` (``load_error``) carries only the exception class and
    SQLSTATE, never driver text (which quotes row values). ``options`` go to :class:`StagedMerge`.
    Returns rows loaded per table name.
    """
    sm = StagedMerge(conn, loads, scope_ids, **options)
    try:
        try:
            sm.stage()
            counts = sm.apply()
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            try:
                sm.drop()
                conn.commit()
            except Exception:  # a failed drop leaves a temp/expiring table: not worth failing for
                conn.rollback()
                log.warning("merge: could not drop staging tables on %s", sm.dialect)
    except errors.DeepOcrError:
        raise
    except Exception as exc:
        raise errors.DeepOcrError(
            errors.LOAD_ERROR, f"staged merge of {len(sm.ids)} document(s): {errors.describe(exc)}"
        ) from None
    return counts


def staged_replace(
    conn: sa.Connection,
    table: sa.Table,
    key_cols: Sequence[str],
    doc_ids: Sequence[str],
    rows: Sequence[Row] | Sequence[Mapping[str, Any]],
    *,
    columns: Sequence[str] | None = None,
    scope_col: str = "doc_id",
    **options: Any,
) -> int:
    """One table: replace the rows of documents ``doc_ids`` in ``table`` by ``rows`` (tuples in
    ``columns`` order, or mappings) through a staged MERGE, and commit. Returns the rows loaded.
    See :func:`staged_replace_many`."""
    load = TableLoad.of(table, key_cols, rows, columns=columns, scope_col=scope_col)
    return staged_replace_many(conn, [load], doc_ids, **options)[table.name]


def merge_documents(
    conn: sa.Connection,
    tables: Mapping[str, sa.Table],
    todo: list[tuple[DocumentResult, DocRows]],
    vrows: list[dict[str, Any]],
    run_id: str,
    now: datetime,
    bulk: BulkFill | None = None,
    sources: Sequence[Mapping[str, Any]] = (),
) -> StagedMerge:
    """``load_method="merge"``: documents, pages, blocks, cells, their validation results and the
    ledger rows through one :class:`StagedMerge`, staged and applied, so on every warehouse the
    content and the ledger change together (BigQuery: one transaction script). The caller drops its
    stages (after the commit where DDL commits). Racing loaders end with one copy: MERGE matches rows
    by key, PostgreSQL takes advisory locks, Redshift ``LOCK``s the tables, Snowflake serialises DML
    on a table, BigQuery aborts the later of two conflicting transactions (the task's retry then
    finds the document loaded). A failed stage or apply drops its stages where no rollback does
    (Snowflake, BigQuery).

    ``sources`` (rows of the ``sources`` table, see ``sources.source_rows``) are upserted by URI in
    the same MERGE script: a URI seen again unchanged keeps its row, so a rerun leaves the table as
    it was, and two racing loaders leave one row per URI even on BigQuery, whose DB-API has no
    transaction for a separate read-then-insert."""
    loads = [
        TableLoad(tables[name], KEYS[name], columns, rows)
        for name, columns, rows in new_rows(todo, vrows, run_id, now)
    ]
    if sources:
        loads.append(_sources_upsert(tables, sources))
    return _staged(conn, loads, [r.doc_id for r, _ in todo], bulk)


def merge_sources(
    conn: sa.Connection,
    tables: Mapping[str, sa.Table],
    sources: Sequence[Mapping[str, Any]],
    bulk: BulkFill | None = None,
) -> StagedMerge:
    """The ``sources`` rows alone upserted by URI through a :class:`StagedMerge`, as
    :func:`merge_documents` upserts them beside the documents: for a load whose documents were all
    loaded earlier (a URI seen again, or a new one for the same bytes), so that two racing loaders
    leave one row per URI on BigQuery too. The caller drops the stages after the commit."""
    ids = sorted({str(r["doc_id"]) for r in sources})
    return _staged(conn, [_sources_upsert(tables, sources)], ids, bulk)


def _sources_upsert(tables: Mapping[str, sa.Table], sources: Sequence[Mapping[str, Any]]) -> TableLoad:
    """A URI seen again with the same document, size and version keeps its row and first sighting."""
    upsert = TableLoad.of(tables["sources"], KEYS["sources"], list(sources))
    return _upsert_only(upsert, ("doc_id", "source_size", "source_version"), ("seen_at", "run_id"))


def _staged(
    conn: sa.Connection, loads: list[TableLoad], ids: Sequence[str], bulk: BulkFill | None
) -> StagedMerge:
    """Stage and apply ``loads``; a failure drops the stages where no rollback does."""
    sm = StagedMerge(conn, loads, ids, bulk=bulk)
    try:
        sm.stage()  # Snowflake: DDL commits, so this comes before any other write
        sm.apply()
    except BaseException:
        if not sm.db.transactional_ddl:  # no rollback takes the stages: drop them here
            conn.rollback()  # first: a DROP commits on Snowflake
            with suppress(Exception):
                sm.drop()
        raise
    return sm
