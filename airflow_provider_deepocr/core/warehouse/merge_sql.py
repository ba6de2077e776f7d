"""The SQL text of a staged MERGE (see :mod:`.merge`): pure functions compiled per dialect, no
connection. Identifiers pass :func:`~.schema.check_identifier` and are quoted with the dialect's
``identifier_preparer``; the document ids written into the apply statements must match
:data:`SCOPE_ID_RE` before they are rendered as literals.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence

import sqlalchemy as sa

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.warehouse.bulk import STAGE_PREFIX
from airflow_provider_deepocr.core.warehouse.dialects import Dialect, dialect_of, merge_dialect
from airflow_provider_deepocr.core.warehouse.rows import Row
from airflow_provider_deepocr.core.warehouse.schema import check_identifier

#: Document ids (the replace scope) are rendered as literals only when they match this.
SCOPE_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
#: At most this many document ids per load (they are written into the apply statements).
MAX_SCOPE_IDS = 5000

AnyDialect = sa.Dialect | sa.Connection | sa.Engine


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def _sa(obj: AnyDialect) -> sa.Dialect:
    return obj if isinstance(obj, sa.Dialect) else obj.dialect


def check_dialect(dialect: AnyDialect) -> str:
    """The dialect's name when staged MERGE supports it; :class:`~errors.ConfigError` otherwise."""
    return merge_dialect(dialect).name


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
    check_identifier(target.name, "table name")
    if target.schema is not None:
        check_identifier(target.schema, "schema")
    for c in cols:
        check_identifier(c, "column name")
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
    return check_identifier(f"{STAGE_PREFIX}{uuid.uuid4().hex}_{int(n)}", "stage name")


def stage_table(dialect: AnyDialect, target: sa.Table, name: str) -> sa.Table:
    """The staging table for ``target`` as a :class:`sqlalchemy.Table` (same column names and types,
    no constraints), in the schema where the dialect creates it: the target's schema on Snowflake
    and BigQuery, the session's temporary schema elsewhere."""
    d = merge_dialect(dialect)
    check_identifier(name, "stage name")
    schema = target.schema if d.stage_in_target_schema else None
    return sa.Table(name, sa.MetaData(), *(sa.Column(c.name, c.type) for c in target.columns), schema=schema)


def stage_ddl(dialect: AnyDialect, target: sa.Table, stage: sa.Table, *, ttl_hours: int = 6) -> str:
    """``CREATE`` statement of the staging table ``stage`` shaped like ``target`` (see module doc)."""
    d = merge_dialect(dialect)
    _check_table(target)
    check_identifier(stage.name, "stage name")
    if "{hours}" in d.stage_ddl and not 1 <= int(ttl_hours) <= 24 * 7:
        raise errors.ConfigError("stage ttl_hours must be between 1 and 168")
    fmt = _sa(dialect).identifier_preparer.format_table
    return d.stage_create(fmt(stage), fmt(target), ttl_hours)


def drop_stage_sql(dialect: AnyDialect, stage: sa.Table) -> str:
    """``DROP TABLE IF EXISTS`` of a staging table."""
    merge_dialect(dialect)
    check_identifier(stage.name, "stage name")
    if not stage.name.startswith(STAGE_PREFIX):  # never drop anything but our own stages
        raise errors.ConfigError(f"refusing to drop {stage.name!r}: not a staging table")
    return f"DROP TABLE IF EXISTS {_sa(dialect).identifier_preparer.format_table(stage)}"


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
        check_identifier(c, "column name")
    for chunk in chunk_rows(rows, len(cols), **chunking):
        yield stage.insert().values([dict(zip(cols, r, strict=True)) for r in chunk])


def _literal_ids(dialect: sa.Dialect, scope_ids: Sequence[str]) -> str:
    lit = sa.String().literal_processor(dialect)
    assert lit is not None
    return ", ".join(lit(i) for i in check_scope_ids(scope_ids))


def delete_stale_sql(
    dialect: AnyDialect,
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
    merge_dialect(dialect)
    dia = _sa(dialect)
    if not key_cols:
        raise errors.ConfigError(f"{target.name}: a MERGE needs key columns")
    _check_table(target, *key_cols, scope_col)
    check_identifier(stage.name, "stage name")
    q = dia.identifier_preparer.quote
    tgt, stg = dia.identifier_preparer.format_table(target), dia.identifier_preparer.format_table(stage)
    ref = q(target.name)  # the target's correlation name (DELETE takes no alias on Redshift)
    match = " AND ".join(f"src.{q(k)} = {ref}.{q(k)}" for k in key_cols)
    return (
        f"DELETE FROM {tgt} WHERE {ref}.{q(scope_col)} IN ({_literal_ids(dia, scope_ids)}) "
        f"AND NOT EXISTS (SELECT 1 FROM {stg} AS src WHERE {match})"
    )


def _by_source(d: Dialect, delete_by_source: bool | None) -> bool:
    """Whether stale rows go in the MERGE itself (``WHEN NOT MATCHED BY SOURCE``): by default
    where the dialect says so (BigQuery)."""
    return d.by_source_default if delete_by_source is None else bool(delete_by_source)


def merge_sql(
    dialect: AnyDialect,
    target: sa.Table,
    stage: sa.Table,
    key_cols: Sequence[str],
    cols: Sequence[str],
    *,
    scope_ids: Sequence[str] | None = None,
    scope_col: str = "doc_id",
    delete_by_source: bool | None = None,
    same_cols: Sequence[str] = (),
    keep_when_same: Sequence[str] = (),
) -> str:
    """The ``MERGE`` of ``stage`` into ``target``: keys in ``ON``, every non-key column of ``cols`` in
    ``UPDATE SET``, all of ``cols`` in ``INSERT``.

    ``keep_when_same``: columns that keep the target's value when the matched row equals the new
    one on ``same_cols`` (NULL equal to NULL), e.g. the ``sources`` table's ``seen_at``: a URI seen
    again unchanged keeps when it was first seen so. Written as ``CASE`` in ``SET``, which every
    dialect's MERGE takes (Redshift has no ``WHEN MATCHED AND …``).

    ``delete_by_source`` (default: the dialect's, i.e. BigQuery only) adds ``WHEN NOT MATCHED BY
    SOURCE AND tgt.<scope_col> IN (<scope_ids>) THEN DELETE``, which makes the MERGE a full replace
    of those documents; without it, run :func:`delete_stale_sql` first. Redshift gets its own form
    (no target alias, both WHEN clauses present).
    """
    d = merge_dialect(dialect)
    dia = _sa(dialect)
    cols = list(cols)
    _check_columns(target, key_cols, cols)
    check_identifier(stage.name, "stage name")
    by_source = _by_source(d, delete_by_source)
    if by_source and not d.by_source:  # PostgreSQL has it from 17 only; the builder targets 15
        raise errors.ConfigError(f"{d.name} MERGE has no WHEN NOT MATCHED BY SOURCE clause")
    if by_source:
        _check_table(target, scope_col)
        if scope_ids is None:
            raise errors.ConfigError("WHEN NOT MATCHED BY SOURCE needs the document ids")
    prep = dia.identifier_preparer
    q = prep.quote
    head, t = d.merge_head(prep.format_table(target), prep.format_table(stage))
    non_key = [c for c in cols if c not in key_cols]
    on = " AND ".join(f"{t}.{q(k)} = src.{q(k)}" for k in key_cols)
    parts = [head, f"ON {on}"]
    _check_table(target, *same_cols, *keep_when_same)
    if not set(same_cols) | set(keep_when_same) <= set(cols):
        raise errors.ConfigError(f"{target.name}: compared or kept columns must be loaded columns")
    same = " AND ".join(
        f"({t}.{q(c)} = src.{q(c)} OR ({t}.{q(c)} IS NULL AND src.{q(c)} IS NULL))" for c in same_cols
    )

    def new_value(c: str) -> str:
        if c in keep_when_same and same:
            return f"CASE WHEN {same} THEN {t}.{q(c)} ELSE src.{q(c)} END"
        return f"src.{q(c)}"

    if non_key:
        parts.append("WHEN MATCHED THEN UPDATE SET " + ", ".join(f"{q(c)} = {new_value(c)}" for c in non_key))
    elif d.merge_needs_update:  # both clauses are mandatory there; a no-op update keeps the grammar
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


def apply_statements(dialect: AnyDialect, statements: Sequence[str]) -> list[str]:
    """What to execute for the apply phase: BigQuery gets one multi-statement transaction script
    (``BEGIN TRANSACTION; …; COMMIT TRANSACTION;``); other dialects run the statements as they are
    inside the caller's transaction."""
    return merge_dialect(dialect).apply_script(statements)


def warehouse_ddl(dialect: AnyDialect, metadata: sa.MetaData) -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` for every table of ``metadata`` compiled for ``dialect``, plus
    ``CREATE INDEX`` where the warehouse has secondary indexes (not Snowflake, BigQuery, Redshift,
    where ``metadata.create_all`` would fail on the index)."""
    dia = _sa(dialect)
    out = [
        str(sa.schema.CreateTable(t, if_not_exists=True).compile(dialect=dia)).strip()
        for t in metadata.sorted_tables
    ]
    if dialect_of(dia).indexes:
        out += [
            str(sa.schema.CreateIndex(ix, if_not_exists=True).compile(dialect=dia)).strip()
            for t in metadata.sorted_tables
            for ix in t.indexes
        ]
    return out
