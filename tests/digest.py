"""The tests' oracle for "the warehouse holds exactly this": a content hash of every table.

Counts alone cannot tell a rerun that left the warehouse alone from one that rewrote every
document (same number of rows, new ``run_id`` and ``loaded_at``), nor a load that wrote another
loader's rows. :func:`table_digest` reads each table straight from the database (its own catalog,
not the loader's metadata), rows ordered by primary key, and hashes them.

It takes a SQLAlchemy URL, engine or connection and a table prefix, so any test (a pipeline, a
CLI run, a cluster of workers) can compare the warehouse before and after a rerun, or against a
reference load of the same documents under another prefix in the same database::

    before = table_digest(pg_url, "deepocr_")
    ...  # rerun
    assert table_digest(pg_url, "deepocr_") == before
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import NamedTuple

import sqlalchemy as sa


class TableDigest(NamedTuple):
    """sha256 (hex) and row count per table, keyed by the table's name without the prefix."""

    hashes: dict[str, str]
    counts: dict[str, int]


def _catalog(conn: sa.Connection, prefix: str, schema: str | None) -> dict[str, tuple[list[str], list[str]]]:
    """(columns in table order, primary-key columns in key order) of every table named
    ``prefix*``."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    if conn.dialect.name == "sqlite":
        if schema is not None:
            raise ValueError("SQLite has no schemas")
        names = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").scalars()
        for name in sorted(n for n in names if n.startswith(prefix)):
            info = conn.exec_driver_sql(f'PRAGMA table_info("{name}")').all()  # cid, name, type, …, pk
            key = [r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
            out[name] = ([r[1] for r in sorted(info, key=lambda r: r[0])], key)
        return out
    if conn.dialect.name == "bigquery":  # INFORMATION_SCHEMA per dataset, no current_schema()
        dataset = schema or conn.engine.url.database
        info, where, params = f"`{dataset}`.INFORMATION_SCHEMA", "TRUE", {}
        key_where = where
    else:  # Snowflake stores unquoted names upper-case: names compare case-insensitively
        info, where = "information_schema", "lower(table_schema) = lower(COALESCE(:s, current_schema()))"
        key_where = where.replace("(table_schema)", "(c.table_schema)")
        params = {"s": schema}
    cols = conn.execute(
        sa.text(
            f"SELECT table_name, column_name FROM {info}.columns WHERE {where} "
            "ORDER BY table_name, ordinal_position"
        ),
        params,
    ).all()
    # BigQuery's keys are unenforced metadata and bqemulator has no TABLE_CONSTRAINTS view:
    # its rows are ordered by every column (still a total order)
    keys = (
        []
        if conn.dialect.name == "bigquery"
        else conn.execute(
            sa.text(
                f"SELECT k.table_name, k.column_name FROM {info}.table_constraints c "
                f"JOIN {info}.key_column_usage k ON k.constraint_name = c.constraint_name "
                "AND k.table_schema = c.table_schema AND k.table_name = c.table_name "
                f"WHERE c.constraint_type = 'PRIMARY KEY' AND {key_where} "
                "ORDER BY k.table_name, k.ordinal_position"
            ),
            params,
        ).all()
    )
    for table, column in cols:
        if table.lower().startswith(prefix.lower()):
            out.setdefault(table, ([], []))[0].append(column)
    for table, column in keys:
        if table in out:
            out[table][1].append(column)
    return out


def _digest(conn: sa.Connection, prefix: str, schema: str | None, skip: set[str]) -> TableDigest:
    hashes: dict[str, str] = {}
    counts: dict[str, int] = {}
    for name, (columns, key) in sorted(_catalog(conn, prefix, schema).items()):
        short = name[len(prefix) :].lower()
        keep = [c for c in columns if c.lower() not in skip and f"{short}.{c.lower()}" not in skip]
        t = sa.table(name, *(sa.column(c) for c in columns), schema=schema)
        order = [t.c[c] for c in (key or columns)]  # no key: every column, still a total order
        h = hashlib.sha256()
        n = 0
        for row in conn.execute(sa.select(*(t.c[c] for c in keep)).order_by(*order)):
            h.update(repr(tuple(row)).encode())
            h.update(b"\n")
            n += 1
        hashes[short], counts[short] = h.hexdigest(), n
    return TableDigest(hashes, counts)


def table_digest(
    target: str | sa.URL | sa.Engine | sa.Connection,
    prefix: str = "deepocr_",
    *,
    schema: str | None = None,
    skip: Iterable[str] = (),
) -> TableDigest:
    """Hash every table named ``prefix*`` (in ``schema``, else the default one), rows ordered by
    primary key.

    ``target``: a URL (an engine is made and disposed), an engine, or a connection (read inside
    its current transaction, e.g. one that holds a lock the others wait on). ``skip``: columns
    left out of the hashes, as ``column`` (every table) or ``table.column`` (short table name),
    for values that legitimately differ between the two states compared (``loaded_at`` when
    comparing with a reference load made at another time). Returns :class:`TableDigest`; two
    digests are equal when every table has the same rows with the same values.
    """
    skipped = set(skip)
    if isinstance(target, sa.Connection):
        return _digest(target, prefix, schema, skipped)
    engine = target if isinstance(target, sa.Engine) else sa.create_engine(target)
    try:
        with engine.connect() as conn:
            return _digest(conn, prefix, schema, skipped)
    finally:
        if engine is not target:
            engine.dispose()
