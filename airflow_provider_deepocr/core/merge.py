"""Staged MERGE loads: replace documents' rows in warehouses that want MERGE rather than
DELETE + INSERT (Snowflake, BigQuery, Redshift), with the same path runnable on PostgreSQL ≥ 15 and
DuckDB ≥ 1.4 so its semantics are tested against real databases.

What one load does, per target table (``documents``, ``pages``, ``blocks``, ``table_cells``, …):

1. **Stage.** A staging table shaped like the target, named ``_deepocr_stage_<uuid hex>_<n>``:

   * Snowflake: ``CREATE TEMPORARY TABLE stage LIKE target`` (session-scoped, in the target's schema).
   * BigQuery: temporary tables exist only inside one multi-statement query or a session, and the
     DB-API behind ``sqlalchemy-bigquery`` runs each statement as its own query job without a session.
     So the stage is a *permanent* table ``CREATE TABLE dataset._deepocr_stage_… LIKE target
     OPTIONS (expiration_timestamp = now + ttl_hours)``: a crashed load leaves nothing that outlives
     the expiration, and a normal load drops it at the end.
   * Redshift / PostgreSQL: ``CREATE TEMP TABLE stage (LIKE target)``; DuckDB (no ``LIKE``):
     ``CREATE TEMPORARY TABLE stage AS SELECT * FROM target LIMIT 0``.

   The new rows go into the stage as multi-row ``INSERT … VALUES`` statements built by SQLAlchemy,
   in chunks bounded by bind-parameter count and payload bytes (BigQuery allows 10,000 query
   parameters; Snowflake binds client-side into the statement text, whose size is limited).
   Each warehouse has a faster native bulk path that is **not** used here because it needs more than
   a SQLAlchemy connection: Snowflake ``PUT`` + ``COPY INTO`` / ``write_pandas`` (an internal stage
   and the connector's pandas extra), a BigQuery load job (``google-cloud-bigquery``
   ``load_table_from_*``, a client object and no DB-API), Redshift ``COPY`` from S3 (a bucket and an
   IAM role). A caller that has one passes ``bulk=`` (a function filling the stage; e.g. the
   warehouse's PostgreSQL ``COPY``).

2. **Apply**, in one transaction for all tables of the load:

   * Rows of the replaced documents that are not in the new load must disappear. BigQuery does it
     inside the MERGE: ``WHEN NOT MATCHED BY SOURCE AND tgt.doc_id IN (…) THEN DELETE``. Snowflake
     and Redshift have no ``NOT MATCHED BY SOURCE`` clause, so there (and on PostgreSQL 15 and
     DuckDB) a ``DELETE FROM target WHERE doc_id IN (…) AND NOT EXISTS (matching key in stage)``
     runs first, in the same transaction. The documents are named by their ids (validated, rendered
     as the dialect's string literals), not by ``SELECT doc_id FROM stage``: a document whose new
     load has no rows in a table (no tables on any page) must still lose its old rows there.
   * ``MERGE``: keys in ``ON``, ``WHEN MATCHED THEN UPDATE SET`` every non-key column,
     ``WHEN NOT MATCHED THEN INSERT`` all columns.
   * Transactions: PostgreSQL, Redshift and DuckDB have transactional DDL, so stage + apply +
     drop run inside the caller's transaction. Snowflake commits any open transaction on DDL, so
     stage DDL happens before the apply statements and the stage is dropped only after the caller
     committed. BigQuery's DB-API has no transactions: the apply statements are sent as **one**
     script ``BEGIN TRANSACTION; MERGE …; MERGE …; COMMIT TRANSACTION;`` (a multi-statement
     transaction must sit in a single query), so readers see all tables change at once.

3. **Drop** the stages (``DROP TABLE IF EXISTS``).

Redshift MERGE restrictions honoured here: the source must be a table (not a view or subquery),
the target takes no alias (columns are referenced through the target's own name), both ``WHEN``
clauses are required, and a target row must not match several source rows — keys are checked
unique client-side before staging. ``REMOVE DUPLICATES`` (simplified mode) is not used: it needs
source and target with identical column lists and would hide duplicate keys instead of rejecting
them.

Identifiers pass :func:`airflow_provider_deepocr.core.warehouse.check_identifier` and are quoted
with the dialect's ``identifier_preparer``; values are bound parameters except the document ids in
the apply statements, which must match :data:`SCOPE_ID_RE` before they are rendered as literals.
Nothing here logs or raises with row values (document text): table names, counts, reason codes.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import sqlalchemy as sa

from airflow_provider_deepocr.core import errors

log = logging.getLogger(__name__)

#: Dialects with a staged-MERGE implementation (SQLAlchemy ``dialect.name``).
SUPPORTED_DIALECTS = ("snowflake", "bigquery", "redshift", "postgresql", "duckdb")
#: Dialects whose DDL is not part of the caller's transaction (Snowflake autocommits DDL; BigQuery
#: has no DB-API transactions).
NON_TRANSACTIONAL_DDL = frozenset({"snowflake", "bigquery"})
#: Dialects without secondary indexes on ordinary tables (``CREATE INDEX`` would fail).
NO_INDEX_DIALECTS = frozenset({"snowflake", "bigquery", "redshift"})

#: Document ids (the replace scope) are rendered as literals only when they match this.
SCOPE_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
STAGE_PREFIX = "_deepocr_stage_"
#: At most this many document ids per load (they are written into the apply statements).
MAX_SCOPE_IDS = 5000

Row = Sequence[Any]
BulkFill = Callable[[sa.Connection, sa.Table, tuple[str, ...], Sequence[Row]], bool]


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def _ident(value: str, what: str) -> str:
    # imported here: warehouse imports this module, so a top-level import would be circular
    from airflow_provider_deepocr.core.warehouse import check_identifier

    return check_identifier(value, what)


def _dialect(obj: sa.Dialect | sa.Connection | sa.Engine) -> sa.Dialect:
    return obj if isinstance(obj, sa.Dialect) else obj.dialect


def check_dialect(dialect: sa.Dialect | sa.Connection | sa.Engine) -> str:
    """The dialect's name when staged MERGE supports it; :class:`~errors.ConfigError` otherwise."""
    name = _dialect(dialect).name
    if name not in SUPPORTED_DIALECTS:
        raise errors.ConfigError(
            f"staged MERGE is not supported on {name!r} (supported: {', '.join(SUPPORTED_DIALECTS)})"
        )
    return name


def check_scope_ids(scope_ids: Sequence[str]) -> list[str]:
    """The document ids of a load, deduplicated and sorted; each must match :data:`SCOPE_ID_RE`."""
    if isinstance(scope_ids, str):
        raise errors.ConfigError("scope ids must be a sequence of ids, not one string")
    ids = sorted(set(scope_ids))
    if not ids:
        raise errors.ConfigError("a staged replace needs at least one document id")
    if len(ids) > MAX_SCOPE_IDS:
        raise errors.ConfigError(f"too many documents in one staged load ({len(ids)} > {MAX_SCOPE_IDS})")
    for i in ids:
        if not isinstance(i, str) or not SCOPE_ID_RE.match(i):
            raise errors.ConfigError(
                f"invalid document id for a staged replace: must match {SCOPE_ID_RE.pattern}"
            )
    return ids


def _check_table(target: sa.Table, *cols: str) -> None:
    _ident(target.name, "table name")
    if target.schema is not None:
        _ident(target.schema, "schema")
    for c in cols:
        _ident(c, "column name")
        if c not in target.c:
            raise errors.ConfigError(f"{target.name}: no column {c!r}")


def _check_columns(target: sa.Table, key_cols: Sequence[str], cols: Sequence[str]) -> None:
    _check_table(target, *key_cols, *cols)
    if not key_cols:
        raise errors.ConfigError(f"{target.name}: a MERGE needs key columns")
    missing = [k for k in key_cols if k not in cols]
    if missing:
        raise errors.ConfigError(
            f"{target.name}: key column(s) {', '.join(missing)} not among the loaded columns"
        )
    if len(set(cols)) != len(cols):
        raise errors.ConfigError(f"{target.name}: a column is listed twice")


# --------------------------------------------------------------------------------------------
# Pure statement builders
# --------------------------------------------------------------------------------------------


def new_stage_name(n: int = 0) -> str:
    """A fresh staging-table name, ``_deepocr_stage_<32 hex>_<n>`` (passes ``check_identifier``)."""
    return _ident(f"{STAGE_PREFIX}{uuid.uuid4().hex}_{int(n)}", "stage name")


def stage_table(dialect: sa.Dialect | sa.Connection | sa.Engine, target: sa.Table, name: str) -> sa.Table:
    """The staging table for ``target`` as a :class:`sqlalchemy.Table` (same column names and types,
    no constraints), in the schema where the dialect creates it: the target's schema on Snowflake
    and BigQuery, the session's temporary schema elsewhere."""
    d = check_dialect(dialect)
    _ident(name, "stage name")
    schema = target.schema if d in ("snowflake", "bigquery") else None
    return sa.Table(name, sa.MetaData(), *(sa.Column(c.name, c.type) for c in target.columns), schema=schema)


def stage_ddl(
    dialect: sa.Dialect | sa.Connection | sa.Engine, target: sa.Table, stage: sa.Table, *, ttl_hours: int = 6
) -> str:
    """``CREATE`` statement of the staging table ``stage`` shaped like ``target`` (see module doc)."""
    d = check_dialect(dialect)
    dia = _dialect(dialect)
    _check_table(target)
    _ident(stage.name, "stage name")
    prep = dia.identifier_preparer
    tgt, stg = prep.format_table(target), prep.format_table(stage)
    if d == "snowflake":
        return f"CREATE TEMPORARY TABLE {stg} LIKE {tgt}"
    if d == "bigquery":
        hours = int(ttl_hours)
        if not 1 <= hours <= 24 * 7:
            raise errors.ConfigError("stage ttl_hours must be between 1 and 168")
        return (
            f"CREATE TABLE {stg} LIKE {tgt} OPTIONS ("
            f"expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL {hours} HOUR))"
        )
    if d in ("redshift", "postgresql"):
        return f"CREATE TEMPORARY TABLE {stg} (LIKE {tgt})"
    return f"CREATE TEMPORARY TABLE {stg} AS SELECT * FROM {tgt} LIMIT 0"  # duckdb


def drop_stage_sql(dialect: sa.Dialect | sa.Connection | sa.Engine, stage: sa.Table) -> str:
    """``DROP TABLE IF EXISTS`` of a staging table."""
    check_dialect(dialect)
    _ident(stage.name, "stage name")
    if not stage.name.startswith(STAGE_PREFIX):  # never drop anything but our own stages
        raise errors.ConfigError(f"refusing to drop {stage.name!r}: not a staging table")
    return f"DROP TABLE IF EXISTS {_dialect(dialect).identifier_preparer.format_table(stage)}"


def _estimate_bytes(row: Row) -> int:
    n = 0
    for v in row:
        n += len(v) * 4 if isinstance(v, str) else len(v) if isinstance(v, bytes | bytearray) else 16
    return n + 8


def chunk_rows(
    rows: Sequence[Row],
    ncols: int,
    *,
    max_params: int = 10_000,
    max_bytes: int = 900_000,
    max_rows: int = 1000,
) -> Iterator[Sequence[Row]]:
    """Split rows for multi-row INSERTs: each chunk has at most ``max_rows`` rows,
    ``max_params`` bound values and (estimated, UTF-8 worst case) ``max_bytes`` of payload; a
    single row over the byte budget still goes alone."""
    per = max(1, min(max_rows, max_params // max(1, ncols)))
    start, size, nbytes = 0, 0, 0
    for i, r in enumerate(rows):
        b = _estimate_bytes(r)
        if size and (size >= per or nbytes + b > max_bytes):
            yield rows[start:i]
            start, size, nbytes = i, 0, 0
        size += 1
        nbytes += b
    if size:
        yield rows[start:]


def stage_inserts(
    stage: sa.Table, columns: Sequence[str], rows: Sequence[Row], **chunking: int
) -> Iterator[sa.Insert]:
    """Multi-row ``INSERT INTO stage (columns) VALUES (…), (…)`` statements (values bound), one
    per chunk of :func:`chunk_rows`. ``rows`` are tuples in ``columns`` order."""
    cols = tuple(columns)
    for c in cols:
        _ident(c, "column name")
    for chunk in chunk_rows(rows, len(cols), **chunking):
        yield stage.insert().values([dict(zip(cols, r, strict=True)) for r in chunk])


def _literal_ids(dialect: sa.Dialect, scope_ids: Sequence[str]) -> str:
    lit = sa.String().literal_processor(dialect)
    assert lit is not None
    return ", ".join(lit(i) for i in check_scope_ids(scope_ids))


def delete_stale_sql(
    dialect: sa.Dialect | sa.Connection | sa.Engine,
    target: sa.Table,
    stage: sa.Table,
    key_cols: Sequence[str],
    scope_ids: Sequence[str],
    *,
    scope_col: str = "doc_id",
) -> str:
    """``DELETE`` of the replaced documents' rows whose key is not in the stage (the part of a
    replace that Snowflake's and Redshift's MERGE cannot express); run before :func:`merge_sql`
    in the same transaction."""
    check_dialect(dialect)
    dia = _dialect(dialect)
    if not key_cols:
        raise errors.ConfigError(f"{target.name}: a MERGE needs key columns")
    _check_table(target, *key_cols, scope_col)
    _ident(stage.name, "stage name")
    q = dia.identifier_preparer.quote
    tgt, stg = dia.identifier_preparer.format_table(target), dia.identifier_preparer.format_table(stage)
    ref = q(target.name)  # the target's correlation name (DELETE takes no alias on Redshift)
    match = " AND ".join(f"src.{q(k)} = {ref}.{q(k)}" for k in key_cols)
    return (
        f"DELETE FROM {tgt} WHERE {ref}.{q(scope_col)} IN ({_literal_ids(dia, scope_ids)}) "
        f"AND NOT EXISTS (SELECT 1 FROM {stg} AS src WHERE {match})"
    )


def _by_source(dialect: str, delete_by_source: bool | None) -> bool:
    """Whether stale rows go in the MERGE itself (``WHEN NOT MATCHED BY SOURCE``): by default
    only on BigQuery."""
    return dialect == "bigquery" if delete_by_source is None else bool(delete_by_source)


def merge_sql(
    dialect: sa.Dialect | sa.Connection | sa.Engine,
    target: sa.Table,
    stage: sa.Table,
    key_cols: Sequence[str],
    cols: Sequence[str],
    *,
    scope_ids: Sequence[str] | None = None,
    scope_col: str = "doc_id",
    delete_by_source: bool | None = None,
) -> str:
    """The ``MERGE`` of ``stage`` into ``target``: keys in ``ON``, every non-key column of ``cols`` in
    ``UPDATE SET``, all of ``cols`` in ``INSERT``.

    ``delete_by_source`` (default: only on BigQuery) adds ``WHEN NOT MATCHED BY SOURCE AND
    tgt.<scope_col> IN (<scope_ids>) THEN DELETE``, which makes the MERGE a full replace of those
    documents; without it, run :func:`delete_stale_sql` first. Redshift gets its own form (no
    target alias, both WHEN clauses present).
    """
    d = check_dialect(dialect)
    dia = _dialect(dialect)
    cols = list(cols)
    _check_columns(target, key_cols, cols)
    _ident(stage.name, "stage name")
    by_source = _by_source(d, delete_by_source)
    if by_source and d in ("snowflake", "redshift", "postgresql"):
        # PostgreSQL has it from 17 only; the builder targets 15
        raise errors.ConfigError(f"{d} MERGE has no WHEN NOT MATCHED BY SOURCE clause")
    if by_source:
        _check_table(target, scope_col)
        if scope_ids is None:
            raise errors.ConfigError("WHEN NOT MATCHED BY SOURCE needs the document ids")
    prep = dia.identifier_preparer
    q = prep.quote
    tgt, stg = prep.format_table(target), prep.format_table(stage)
    non_key = [c for c in cols if c not in key_cols]
    if d == "redshift":  # no alias on the target there
        head, t = f"MERGE INTO {tgt} USING {stg} AS src", tgt
    else:
        head, t = f"MERGE INTO {tgt} AS tgt USING {stg} AS src", "tgt"
    on = " AND ".join(f"{t}.{q(k)} = src.{q(k)}" for k in key_cols)
    parts = [head, f"ON {on}"]
    if non_key:
        parts.append("WHEN MATCHED THEN UPDATE SET " + ", ".join(f"{q(c)} = src.{q(c)}" for c in non_key))
    elif d == "redshift":  # both clauses are mandatory there; a no-op update keeps the grammar
        parts.append(f"WHEN MATCHED THEN UPDATE SET {q(key_cols[0])} = src.{q(key_cols[0])}")
    parts.append(
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(q(c) for c in cols)}) "
        f"VALUES ({', '.join(f'src.{q(c)}' for c in cols)})"
    )
    if by_source:
        assert scope_ids is not None
        ids = _literal_ids(dia, scope_ids)
        parts.append(f"WHEN NOT MATCHED BY SOURCE AND {t}.{q(scope_col)} IN ({ids}) THEN DELETE")
    return "\n".join(parts)


def apply_statements(dialect: sa.Dialect | sa.Connection | sa.Engine, statements: Sequence[str]) -> list[str]:
    """What to execute for the apply phase: BigQuery gets one multi-statement transaction script
    (``BEGIN TRANSACTION; …; COMMIT TRANSACTION;``); other dialects run the statements as they are
    inside the caller's transaction."""
    d = check_dialect(dialect)
    if d == "bigquery":
        return ["BEGIN TRANSACTION;\n" + ";\n".join(statements) + ";\nCOMMIT TRANSACTION;"]
    return list(statements)


def warehouse_ddl(dialect: sa.Dialect | sa.Connection | sa.Engine, metadata: sa.MetaData) -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` for every table of ``metadata`` compiled for ``dialect``, plus
    ``CREATE INDEX`` where the warehouse has secondary indexes (not Snowflake, BigQuery, Redshift,
    where ``metadata.create_all`` would fail on the index)."""
    dia = _dialect(dialect)
    out = [
        str(sa.schema.CreateTable(t, if_not_exists=True).compile(dialect=dia)).strip()
        for t in metadata.sorted_tables
    ]
    if dia.name not in NO_INDEX_DIALECTS:
        out += [
            str(sa.schema.CreateIndex(ix, if_not_exists=True).compile(dialect=dia)).strip()
            for t in metadata.sorted_tables
            for ix in t.indexes
        ]
    return out


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
    outside = sum(r[si] not in ids for r in load.rows)
    if outside:
        raise errors.DeepOcrError(
            errors.LOAD_ERROR, f"{load.table.name}: {outside} row(s) belong to no document of this load"
        )
    key = itemgetter(*(cols.index(k) for k in load.key_cols))
    dup = len(load.rows) - len(set(map(key, load.rows)))
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
        max_params: int = 10_000,
        max_bytes: int = 900_000,
        max_rows: int = 1000,
    ) -> None:
        self.conn = conn
        self.dialect = check_dialect(conn)
        self.ids = check_scope_ids(scope_ids)
        idset = set(self.ids)
        names = [ld.table.name for ld in loads]
        if len(set(names)) != len(names):
            raise errors.ConfigError("a staged load lists the same table twice")
        for ld in loads:
            _check_columns(ld.table, ld.key_cols, ld.columns)
            _ident(ld.scope_col, "column name")
            _check_rows(ld, idset)
        self.loads = list(loads)
        self.delete_by_source = delete_by_source
        self.ttl_hours = ttl_hours
        self.bulk = bulk
        self.chunking = {"max_params": max_params, "max_bytes": max_bytes, "max_rows": max_rows}
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
        if self.dialect == "snowflake":
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
        by_source = _by_source(self.dialect, self.delete_by_source)
        out: list[str] = []
        for ld, st in zip(self.loads, self.stages, strict=True):
            if not by_source:
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
                    delete_by_source=by_source,
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
        if self.dialect == "snowflake":
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
