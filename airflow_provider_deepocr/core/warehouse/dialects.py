"""One object per database: what the loader may do there, as data. The only module that names one.

Every choice that differs between databases is a field of :class:`Dialect` (or a method that reads
only those fields): whether DDL joins a transaction, secondary indexes, the staged-MERGE form, how
writers lock, the bulk path, and the limits of one statement. The loader, the replace path and the
staged MERGE ask :func:`dialect_of` and never compare database names. A database SQLAlchemy knows
but this table does not gets :func:`generic` (replace path, ``executemany``, no locks).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.warehouse.bulk import (
    SQLITE_BUSY_TIMEOUT_MS,
    dataframe_insert,
    pg_copy,
    sqlite_on_connect,
)
from airflow_provider_deepocr.core.warehouse.schema import check_identifier

Lock = Literal["advisory", "immediate", "process", "none"]
Bulk = Literal["copy", "dataframe", "none"]
LiveColumns = Literal["pragma", "information_schema", "dataset_information_schema"]


@dataclass(frozen=True)
class Dialect:
    """What one database offers the loader (``name`` is SQLAlchemy's ``dialect.name``)."""

    name: str
    #: ``CREATE``/``DROP`` join the caller's transaction (Snowflake commits on DDL; BigQuery's
    #: DB-API has no transactions).
    transactional_ddl: bool = True
    #: Snowflake: DDL commits any open transaction, so stages are committed before the apply and
    #: dropped after the caller's commit.
    ddl_commits: bool = False
    #: Secondary indexes on ordinary tables (``CREATE INDEX`` fails without them).
    indexes: bool = True
    #: ``CREATE SCHEMA`` and schema-qualified names (SQLite has neither: use a prefix).
    schemas: bool = True
    #: How writers serialise on a document: PostgreSQL advisory locks, SQLite ``BEGIN IMMEDIATE``,
    #: a lock in this process (DuckDB: one writer per file), or nothing.
    lock: Lock = "none"
    #: Redshift: ``LOCK`` every table at the start of a load (its MERGE has no row locks to rely on).
    lock_tables_on_load: bool = False
    #: The bulk path of the replace load and of filling merge stages: PostgreSQL ``COPY`` (psycopg
    #: 3), a registered DataFrame (DuckDB), or none (``executemany``).
    bulk: Bulk = "none"
    #: How to read a table's live columns (for ``create()``'s ``ADD COLUMN``).
    live_columns: LiveColumns = "information_schema"
    #: ``load_method``: whether the replace path (DELETE + bulk INSERT) runs here, whether the
    #: staged MERGE does, and which ``"auto"`` picks.
    replace: bool = True
    merge: bool = False
    merge_by_default: bool = False
    #: ``CREATE`` of a staging table shaped like the target (``{stage}``, ``{target}``, ``{hours}``).
    stage_ddl: str = "CREATE TEMPORARY TABLE {stage} (LIKE {target})"
    #: Stages live in the target's schema (else the session's temporary schema).
    stage_in_target_schema: bool = False
    #: ``MERGE INTO target AS tgt`` (Redshift takes no alias: the target's own name is used).
    merge_target_alias: bool = True
    #: Both ``WHEN`` clauses are mandatory (Redshift): a MERGE of key-only rows gets a no-op UPDATE.
    merge_needs_update: bool = False
    #: ``WHEN NOT MATCHED BY SOURCE``: supported at all, and used by default to delete stale rows
    #: inside the MERGE (else a ``DELETE … NOT EXISTS`` runs first).
    by_source: bool = False
    by_source_default: bool = False
    #: The apply statements go as one ``BEGIN TRANSACTION; …; COMMIT TRANSACTION;`` script.
    script_transaction: bool = False
    #: BigQuery: seconds the connection check may retry for (the client retries a refused
    #: connection for 10 minutes by default); None: a plain ``SELECT 1``.
    ping_deadline_s: float | None = None
    #: Limits of one multi-row ``INSERT … VALUES`` into a stage: bound values and payload bytes.
    max_params: int = 10_000
    max_bytes: int = 900_000

    # -- engines and transactions -------------------------------------------------------------

    def configure(self, engine: sa.Engine) -> None:
        """Per-connection settings the loader relies on (SQLite: busy timeout, WAL)."""
        if self.lock == "immediate":
            sa.event.listen(engine, "connect", sqlite_on_connect)

    def before_create(self, engine: sa.Engine) -> None:
        """What must run outside any transaction before the tables are created (SQLite: WAL, so
        readers read while a document loads)."""
        if self.lock == "immediate":
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode = WAL")

    def process_lock(self, key: str) -> threading.Lock | None:
        """The lock in this process every writer of ``key`` holds, where the database needs one."""
        if self.lock != "process":
            return None
        with _PROCESS_LOCKS_GUARD:
            return _PROCESS_LOCKS.setdefault(key, threading.Lock())

    def begin_write(self, conn: sa.Connection, lock_keys: Sequence[str]) -> None:
        """Start the write transaction and take the locks for ``lock_keys``."""
        if self.lock == "immediate":
            # pysqlite's legacy transaction control begins lazily and DEFERRED; a deferred
            # transaction that reads and then writes can fail with SQLITE_BUSY on the upgrade.
            # BEGIN IMMEDIATE takes the write lock up front (waiting up to busy_timeout).
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            dbapi = conn.connection.driver_connection
            if dbapi is not None and not dbapi.in_transaction:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif self.lock == "advisory":
            # sorted, so two writers needing the same keys cannot deadlock; released at commit. One
            # statement: unnest yields the keys in array order, and each row takes its lock in turn.
            conn.execute(
                sa.text(
                    "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) "
                    "FROM unnest(CAST(:keys AS text[])) AS k"
                ),
                {"keys": sorted(set(lock_keys))},
            )
        elif self.lock == "process":
            # serialised by process_lock (single writer per file); the first statement opens the
            # transaction the bulk path's raw connection then joins.
            conn.exec_driver_sql("SELECT 1")

    def ping(self, conn: sa.Connection) -> None:
        """One round trip that proves the warehouse answers (``SELECT 1``); within
        :attr:`ping_deadline_s` where the driver would retry for longer (BigQuery's client)."""
        client = getattr(conn.connection.driver_connection, "_client", None)
        if self.ping_deadline_s is None or client is None:
            conn.exec_driver_sql("SELECT 1")
            return
        from google.api_core.retry import Retry
        from google.cloud.bigquery.retry import DEFAULT_RETRY

        deadline = self.ping_deadline_s
        retry: Retry = DEFAULT_RETRY.with_deadline(deadline)
        client.query_and_wait("SELECT 1", retry=retry, job_retry=None, api_timeout=deadline)

    def lock_tables(self, conn: sa.Connection, tables: Iterable[sa.Table]) -> None:
        """At the start of a load, ``LOCK`` the tables where the database needs it (Redshift)."""
        if self.lock_tables_on_load:
            fmt = conn.dialect.identifier_preparer.format_table
            conn.exec_driver_sql(f"LOCK {', '.join(fmt(t) for t in tables)}")

    # -- bulk path ----------------------------------------------------------------------------

    def bulk_insert(
        self, conn: sa.Connection, table: sa.Table, columns: tuple[str, ...], rows: Iterable[Any]
    ) -> bool:
        """Insert ``rows`` through the bulk path inside the current transaction; False (``rows``
        untouched) where there is none."""
        if self.bulk == "copy" and conn.dialect.driver == "psycopg":
            pg_copy(conn, table, columns, rows)
            return True
        if self.bulk == "dataframe":
            dataframe_insert(conn, table, columns, rows)
            return True
        return False

    # -- schema -------------------------------------------------------------------------------

    def live_columns_query(
        self, dialect: sa.Dialect, table: sa.Table, url: sa.URL
    ) -> tuple[Any, dict[str, Any]]:
        """The query for a table's live column names (``information_schema``). Names compare
        case-insensitively (Snowflake stores unquoted names in upper case); BigQuery keeps
        INFORMATION_SCHEMA per dataset (the schema, else the URL's ``bigquery://project/dataset``)."""
        if self.live_columns == "dataset_information_schema":
            dataset = table.schema or url.database
            if not dataset:
                raise errors.ConfigError(
                    "BigQuery needs a dataset: schema= or a bigquery://project/dataset URL"
                )
            ds = dialect.identifier_preparer.quote(check_identifier(dataset, "schema"))
            # a literal (checked): bqemulator answers this query with a bound parameter with no rows
            name = check_identifier(table.name, "table name")
            stmt = sa.text(
                f"SELECT column_name FROM {ds}.INFORMATION_SCHEMA.COLUMNS WHERE table_name = '{name}'"
            )
            return stmt, {}
        stmt = sa.text(
            "SELECT column_name FROM information_schema.columns WHERE lower(table_name) = lower(:t) "
            "AND lower(table_schema) = lower(COALESCE(:s, current_schema()))"
        )
        return stmt, {"t": table.name, "s": table.schema}

    def table_columns(self, conn: sa.Connection, table: sa.Table) -> set[str]:
        """Column names of the table as it exists. Not ``sa.inspect``: duckdb-engine's inspector
        queries catalog tables DuckDB 2 lacks."""
        if self.live_columns == "pragma":
            quoted = conn.dialect.identifier_preparer.quote(table.name)
            return {r[1] for r in conn.exec_driver_sql(f"PRAGMA table_info({quoted})")}
        query = self.live_columns_query(conn.dialect, table, conn.engine.url)
        return {str(r[0]).lower() for r in conn.execute(*query)}

    def tables_columns(self, conn: sa.Connection, tables: Iterable[sa.Table]) -> dict[str, set[str]]:
        """:meth:`table_columns` of each of ``tables`` by table name. BigQuery: one query of the
        dataset's INFORMATION_SCHEMA for all of them (each such query takes a second or more and
        bills at least 10 MB)."""
        tables = list(tables)
        if self.live_columns != "dataset_information_schema" or not tables:
            return {t.name: self.table_columns(conn, t) for t in tables}
        stmt, params = self.live_columns_query(conn.dialect, tables[0], conn.engine.url)
        every = sa.text(
            str(stmt).replace("SELECT column_name", "SELECT table_name, column_name", 1).split(" WHERE ")[0]
        )
        found: dict[str, set[str]] = {t.name: set() for t in tables}
        for name, column in conn.execute(every, params):
            if name in found:
                found[name].add(str(column).lower())
        return found

    # -- staged MERGE -------------------------------------------------------------------------

    def stage_create(self, stage: str, target: str, ttl_hours: int) -> str:
        """``CREATE`` of a staging table (quoted names) shaped like ``target``."""
        return self.stage_ddl.format(stage=stage, target=target, hours=int(ttl_hours))

    def merge_head(self, target: str, stage: str) -> tuple[str, str]:
        """The ``MERGE INTO … USING …`` line and the name the clauses use for the target."""
        if self.merge_target_alias:
            return f"MERGE INTO {target} AS tgt USING {stage} AS src", "tgt"
        return f"MERGE INTO {target} USING {stage} AS src", target

    def apply_script(self, statements: Sequence[str]) -> list[str]:
        """What to execute for the apply phase: one transaction script, or the statements as they
        are inside the caller's transaction."""
        if self.script_transaction:
            return ["BEGIN TRANSACTION;\n" + ";\n".join(statements) + ";\nCOMMIT TRANSACTION;"]
        return list(statements)


_MERGE_WAREHOUSE = Dialect(
    "",
    indexes=False,
    replace=False,
    merge=True,
    merge_by_default=True,
    stage_in_target_schema=True,
)

DIALECTS: dict[str, Dialect] = {
    d.name: d
    for d in (
        Dialect("sqlite", schemas=False, lock="immediate", live_columns="pragma"),
        # PostgreSQL ≥ 15 has MERGE (no NOT MATCHED BY SOURCE before 17); 65,535 bind parameters.
        Dialect(
            "postgresql", lock="advisory", bulk="copy", merge=True, max_params=30_000, max_bytes=16_000_000
        ),
        # DuckDB ≥ 1.4: MERGE with NOT MATCHED BY SOURCE; no LIKE, so stages are CTAS … LIMIT 0.
        Dialect(
            "duckdb",
            lock="process",
            bulk="dataframe",
            merge=True,
            by_source=True,
            stage_ddl="CREATE TEMPORARY TABLE {stage} AS SELECT * FROM {target} LIMIT 0",
            max_params=30_000,
            max_bytes=16_000_000,
        ),
        # Snowflake binds client-side into the statement text (1 MB of SQL text at most). Stages
        # are session temporary tables, unqualified: they live in the session's current schema
        # (the URL's database/schema), the one form fakesnow runs too.
        replace(
            _MERGE_WAREHOUSE,
            name="snowflake",
            transactional_ddl=False,
            ddl_commits=True,
            stage_in_target_schema=False,
            stage_ddl="CREATE TEMPORARY TABLE {stage} LIKE {target}",
        ),
        # BigQuery: at most 10,000 query parameters and 1 MB of query text; temporary tables exist
        # only inside one script, so a stage is a permanent table that expires.
        replace(
            _MERGE_WAREHOUSE,
            name="bigquery",
            transactional_ddl=False,
            live_columns="dataset_information_schema",
            stage_ddl=(
                "CREATE TABLE {stage} LIKE {target} OPTIONS ("
                "expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL {hours} HOUR))"
            ),
            by_source=True,
            by_source_default=True,
            script_transaction=True,
            ping_deadline_s=10,
        ),
        # Redshift: PostgreSQL's wire protocol (32,767 parameters per statement), 16 MB statements.
        replace(
            _MERGE_WAREHOUSE,
            name="redshift",
            stage_in_target_schema=False,
            lock_tables_on_load=True,
            merge_target_alias=False,
            merge_needs_update=True,
            max_params=30_000,
        ),
    )
}


#: Connection failures, by the driver's own words (libpq, sqlite3, DuckDB, Snowflake; at connect time the
#: drivers give no SQLSTATE): a substring, the reason code and the cause printed to the user.
CONNECT_FAILURES: tuple[tuple[str, str, str], ...] = (
    ("password authentication failed", errors.WAREHOUSE_AUTH_FAILED, "wrong password or no such user"),
    ("no password supplied", errors.WAREHOUSE_AUTH_FAILED, "a password is required"),
    ('role "', errors.WAREHOUSE_AUTH_FAILED, "no such user"),  # 'role "x" does not exist'
    ('database "', errors.WAREHOUSE_NO_DATABASE, "no such database"),  # 'database "x" does not exist'
    ("unable to open database file", errors.WAREHOUSE_NO_DATABASE, "cannot open the database file"),
    ("cannot open file", errors.WAREHOUSE_NO_DATABASE, "cannot open the database file"),
    ("connection refused", errors.WAREHOUSE_UNREACHABLE, "connection refused"),
    ("failed to resolve host", errors.WAREHOUSE_UNREACHABLE, "unknown host"),
    ("could not translate host name", errors.WAREHOUSE_UNREACHABLE, "unknown host"),
    ("failed to lookup address", errors.WAREHOUSE_UNREACHABLE, "unknown host"),  # Snowflake's account
    ("timeout expired", errors.WAREHOUSE_UNREACHABLE, "timed out"),
    ("timed out", errors.WAREHOUSE_UNREACHABLE, "timed out"),
)
#: SQLSTATEs that mean the warehouse refuses us whatever we load (SQL standard classes).
SQLSTATE_FAILURES: dict[str, tuple[str, str]] = {
    "28P01": (errors.WAREHOUSE_AUTH_FAILED, "wrong password"),
    "28000": (errors.WAREHOUSE_AUTH_FAILED, "authentication failed"),
    "3D000": (errors.WAREHOUSE_NO_DATABASE, "no such database"),
    "42501": (errors.WAREHOUSE_PERMISSION_DENIED, "permission denied"),
}


def warehouse_failure(
    exc: BaseException, connecting: bool, url: str, schema: str | None
) -> errors.WarehouseError | None:
    """The :class:`~errors.WarehouseError` when ``exc`` says the warehouse cannot be used at all
    (unreachable, authentication, no database, a missing privilege), else None. ``url`` is shown
    as given: pass it with the password masked.

    A missing privilege names the object from the driver's first line (``permission denied for
    schema public``): such messages name objects, never values. Other messages are matched, never
    shown: a statement's error may quote bound values, which can be document text."""
    orig = getattr(exc, "orig", None) or exc
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    found: tuple[str, str] | None = None
    if state in SQLSTATE_FAILURES:
        reason, cause = SQLSTATE_FAILURES[state]
        if reason == errors.WAREHOUSE_PERMISSION_DENIED:
            first = (str(orig).strip().splitlines() or [""])[0]
            cause = first if first.lower().startswith("permission denied") else cause
        found = reason, cause
    elif connecting:
        text = str(orig).lower()
        found = next(
            ((reason, cause) for needle, reason, cause in CONNECT_FAILURES if needle in text),
            (errors.WAREHOUSE_UNREACHABLE, errors.describe(exc)),
        )
    if found is None:
        return None
    reason, cause = found
    if reason == errors.WAREHOUSE_PERMISSION_DENIED:
        where = f"schema {schema}" if schema else "its default schema"
        return errors.WarehouseError(reason, f"no privilege in {where} of warehouse {url} ({cause})")
    return errors.WarehouseError(reason, f"cannot connect to warehouse {url} ({cause})")


def generic(name: str) -> Dialect:
    """A database with no entry here: the replace path with ``executemany``, no locks."""
    return Dialect(name)


def dialect_of(obj: sa.Dialect | sa.Connection | sa.Engine | str) -> Dialect:
    """The :class:`Dialect` of a SQLAlchemy dialect, connection, engine, or dialect name."""
    name = obj if isinstance(obj, str) else (obj if isinstance(obj, sa.Dialect) else obj.dialect).name
    return DIALECTS.get(name) or generic(name)


def merge_dialect(obj: sa.Dialect | sa.Connection | sa.Engine) -> Dialect:
    """The :class:`Dialect` when staged MERGE runs there; :class:`~errors.ConfigError` otherwise."""
    d = dialect_of(obj)
    if not d.merge:
        supported = ", ".join(n for n, x in DIALECTS.items() if x.merge)
        raise errors.ConfigError(f"staged MERGE is not supported on {d.name!r} (supported: {supported})")
    return d


#: Databases a URL may name, for the hint on a URL SQLAlchemy does not know.
KNOWN_URL_SCHEMES = ("sqlite", "postgresql", "duckdb", "snowflake", "bigquery", "redshift")


def url_mistake(url: str) -> str | None:
    """What to write instead, for the common mistakes in a warehouse URL (else None)."""
    if "://" not in url:
        return (
            f"{url!r} is not a database URL: for a SQLite file write sqlite:///{url} "
            "(sqlite:////absolute/path for an absolute one); for a server, dialect://user@host/db"
        )
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("postgres", "postgres+psycopg", "postgres+psycopg2"):
        return "SQLAlchemy does not know postgres://: write postgresql+psycopg://user@host:5432/db"
    return None


def make_engine(url: str, *, must_exist: bool = False) -> sa.Engine:
    """An engine for a URL, with the per-connection settings this loader relies on.

    ``must_exist``: a file database (SQLite, DuckDB) that is not there is a
    :class:`~errors.WarehouseError` (``warehouse_no_database``) instead of an empty new file, for
    commands that only read."""
    hint = url_mistake(url)
    if hint is not None:
        raise errors.ConfigError(f"bad warehouse URL: {hint}")
    try:
        engine = sa.create_engine(url)
    except Exception as exc:  # bad URL / missing driver: a configuration problem
        if "credentials" in type(exc).__name__.lower():  # BigQuery asks for them when the engine is made
            shown = sa.make_url(url).render_as_string(hide_password=True)
            raise errors.WarehouseError(
                errors.WAREHOUSE_AUTH_FAILED,
                f"cannot connect to warehouse {shown} (no credentials: {type(exc).__name__})",
            ) from None
        raise errors.ConfigError(
            f"cannot create an engine for {url.split('://', 1)[0]}:// ({type(exc).__name__}); known "
            f"databases: {', '.join(KNOWN_URL_SCHEMES)} (a driver may follow a +, e.g. postgresql+psycopg)"
        ) from exc
    db = engine.url.database
    file_db = engine.dialect.name in ("sqlite", "duckdb") and db not in (None, "", ":memory:")
    if must_exist and file_db and not Path(str(db)).exists():
        shown = engine.url.render_as_string(hide_password=True)
        engine.dispose()
        raise errors.WarehouseError(
            errors.WAREHOUSE_NO_DATABASE, f"warehouse {shown} does not exist (no such file; nothing created)"
        )
    dialect_of(engine).configure(engine)
    return engine


def live_columns_query(dialect: sa.Dialect, table: sa.Table, url: sa.URL) -> tuple[Any, dict[str, Any]]:
    """:meth:`Dialect.live_columns_query` of ``dialect``."""
    return dialect_of(dialect).live_columns_query(dialect, table, url)


def begin_write(conn: sa.Connection, lock_keys: Sequence[str]) -> None:
    """Start the write transaction on ``conn`` and take the locks for ``lock_keys``."""
    dialect_of(conn).begin_write(conn, lock_keys)


#: The locks in this process of ``lock="process"`` databases, by key.
_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()
