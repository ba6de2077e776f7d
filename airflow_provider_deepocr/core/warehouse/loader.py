"""``Warehouse``: typed records -> SQL rows, whole documents per transaction, exactly once.

SQLAlchemy Core only (no ORM). What differs per database is data in :mod:`.dialects`; tables and
identifiers are in :mod:`.schema`, rows in :mod:`.rows`. The exactly-once rules are in the package
docstring (:mod:`airflow_provider_deepocr.core.warehouse`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.records import DocumentResult, Failure
from airflow_provider_deepocr.core.warehouse import failures as fail
from airflow_provider_deepocr.core.warehouse import reviews, runs
from airflow_provider_deepocr.core.warehouse.dialects import (
    dialect_of,
    make_engine,
    merge_dialect,
    warehouse_failure,
)
from airflow_provider_deepocr.core.warehouse.ledger import ledger_pages, ledger_state, split_changed
from airflow_provider_deepocr.core.warehouse.merge import merge_documents, merge_sources, warehouse_ddl
from airflow_provider_deepocr.core.warehouse.replace import delete_docs, replace_documents
from airflow_provider_deepocr.core.warehouse.rows import (
    DocRows,
    Row,
    build_doc_rows,
    failure_row,
    validation_rows_of,
)
from airflow_provider_deepocr.core.warehouse.schema import (
    TABLES,
    add_missing_columns,
    add_missing_indexes,
    build_metadata,
    check_identifier,
)
from airflow_provider_deepocr.core.warehouse.sources import source_rows, write_sources

log = logging.getLogger(__name__)

# What a load returns: rows written per kind, and how many documents were unchanged.
COUNTS = ("documents", "pages", "blocks", "cells", "failures", "validation_results", "unchanged")


def _log_batch(verb: str, counts: dict[str, int], run_id: str) -> None:
    msg = "warehouse: %s %d documents in one transaction, run %s: %d pages, %d blocks (%d unchanged)"
    log.info(msg, verb, counts["documents"], run_id, counts["pages"], counts["blocks"], counts["unchanged"])


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
        must_exist: bool = False,
    ) -> None:
        """``load_method``: ``replace`` (delete the documents' rows, then bulk-insert: COPY on
        PostgreSQL, a DataFrame on DuckDB, executemany elsewhere), ``merge`` (staging tables and
        MERGE, :mod:`~airflow_provider_deepocr.core.warehouse.merge`), or ``auto``: ``merge`` on
        Snowflake, BigQuery and Redshift, ``replace`` everywhere else. ``must_exist``: refuse a
        missing SQLite/DuckDB file (``warehouse_no_database``) instead of creating it."""
        self.prefix = check_identifier(prefix, "prefix")
        self.schema = check_identifier(schema, "schema") if schema is not None else None
        if isinstance(engine_or_url, str):
            self.engine = make_engine(engine_or_url, must_exist=must_exist)
        elif isinstance(engine_or_url, sa.Engine):
            self.engine = engine_or_url
        else:
            raise errors.ConfigError("engine_or_url must be a SQLAlchemy Engine or a URL string")
        self.db = dialect_of(self.engine)
        self.dialect = self.db.name
        if self.schema is not None and not self.db.schemas:
            raise errors.ConfigError(f"schema is not supported on {self.dialect} (use prefix)")
        self.copy_min_rows = copy_min_rows
        if load_method == "auto":
            load_method = "merge" if self.db.merge_by_default else "replace"
        if load_method not in ("replace", "merge"):
            raise errors.ConfigError(f"load_method must be auto, replace or merge, got {load_method!r}")
        if load_method == "merge":
            merge_dialect(self.engine)
        elif not self.db.replace:
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
        plock = self.db.process_lock(f"{self.engine.url}|{self._lock_ns}")
        if plock is not None:
            plock.acquire()
        connecting = True
        try:
            with self.engine.connect() as conn:
                connecting = False
                try:
                    self.db.begin_write(conn, [f"{self._lock_ns}:{k}" for k in lock_keys])
                    yield conn
                    conn.commit()
                except BaseException:
                    conn.rollback()
                    raise
        except errors.DeepOcrError:
            raise
        except Exception as exc:
            problem = self._refusal(exc, connecting)
            if problem is not None:
                raise problem from None
            # Driver messages quote the offending values (SQLAlchemy adds the bound parameters):
            # that is document text, so it stays out of the error; class and SQLSTATE only.
            what = lock_keys[0] if len(lock_keys) == 1 else f"{len(lock_keys)} keys"
            raise errors.DeepOcrError(errors.LOAD_ERROR, f"{what}: {errors.describe(exc)}") from None
        finally:
            if plock is not None:
                plock.release()

    def _refusal(self, exc: BaseException, connecting: bool) -> errors.WarehouseError | None:
        url = self.engine.url.render_as_string(hide_password=True)
        return warehouse_failure(exc, connecting, url, self.schema)

    def check(self) -> None:
        """Connect once; :class:`~errors.WarehouseError` (one line: the warehouse, password
        masked, and the cause) when the warehouse is unreachable or refuses us."""
        try:
            with self.engine.connect() as conn:
                self.db.ping(conn)
        except Exception as exc:
            raise (self._refusal(exc, True) or exc) from None

    def create(self) -> list[str]:
        """Create the schema (where supported) and all tables if missing. Idempotent.

        Tables made by an older version get the columns they lack, added as nullable columns
        (``ALTER TABLE … ADD COLUMN``); nothing is ever dropped, renamed or retyped. Returns the
        ``table.column`` names added. Checks the connection first (:meth:`check`).
        """
        self.check()
        self.db.before_create(self.engine)
        with self._write("__ddl__") as conn:
            if self.schema is not None:
                conn.execute(sa.schema.CreateSchema(self.schema, if_not_exists=True))
            if not self.db.indexes:
                for ddl in warehouse_ddl(conn, self.metadata):  # no CREATE INDEX there
                    conn.exec_driver_sql(ddl)
            else:
                self.metadata.create_all(conn, checkfirst=True)
            live = self.db.tables_columns(conn, self._tables.values())
            added = add_missing_columns(conn, self._tables.values(), lambda _c, t: live[t.name])
            if self.db.indexes:  # an older table gets the indexes it lacks
                add_missing_indexes(conn, self._tables.values())
        if added:
            log.info("warehouse: added columns %s", ", ".join(added))
        return added

    # -- loading --------------------------------------------------------------------------

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
        built: dict[str, DocRows] = {}
        counts = self._load(
            [result],
            built,
            run_id,
            force=force,
            validation_rows=None if validation_rows is None else {result.doc_id: validation_rows},
        )
        rows = built[result.doc_id]
        return {
            **counts,
            "documents": 1,
            "pages": len(rows.pages),
            "blocks": len(rows.blocks),
            "cells": len(rows.cells),
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

    def _load(
        self,
        results: list[DocumentResult],
        built: dict[str, DocRows],
        run_id: str,
        *,
        force: bool,
        validation_rows: Mapping[str, list[dict[str, Any]]] | None,
    ) -> dict[str, int]:
        """One transaction for these documents: the changed ones (all of them under ``force``)
        are written by :func:`~.replace.replace_documents` or :func:`~.merge.merge_documents`
        (``load_method``), the unchanged ones only get their stale failures dropped and their
        validation results refreshed. Each document's rows are built once, into ``built`` (doc
        id → :class:`~.rows.DocRows`), when first needed: up front only for documents the ledger
        holds under the same config (their content hash decides whether they changed); the
        others' rows are built while the replace path streams them to the database."""

        def rows_of(result: DocumentResult) -> DocRows:
            rows = built.get(result.doc_id)
            if rows is None:
                rows = built[result.doc_id] = build_doc_rows(result)
            return rows

        merging = self.load_method == "merge"
        counts = dict.fromkeys(COUNTS, 0)
        ids = [r.doc_id for r in results]
        sm: Any = None  # the StagedMerge whose stages still exist
        with self._write(*sorted(ids)) as conn:
            try:
                self.db.lock_tables(conn, self._tables.values())
                prev = ledger_state(conn, self.ledger, ids)
                changed, same = split_changed(results, prev, rows_of, force=force)
                now = datetime.now(UTC)
                if changed:
                    vrows = validation_rows_of(changed, validation_rows, run_id)
                    if merging:
                        todo = [(r, rows_of(r)) for r in changed]
                        srows = source_rows(results, run_id, now)  # upserted in the MERGE script
                        sm = merge_documents(
                            conn, self._tables, todo, vrows, run_id, now, self._bulk_fill, srows
                        )
                    else:
                        replace_documents(
                            conn,
                            self.db,
                            self._tables,
                            changed,
                            rows_of,
                            vrows,
                            run_id,
                            now,
                            self.copy_min_rows,
                        )
                    todo = [(r, built[r.doc_id]) for r in changed]
                    fail.delete_failures_of(conn, self.failures, changed)
                    counts["failures"] += fail.insert_failures(
                        conn, self.failures, fail.failure_rows_of(todo, run_id, now)
                    )
                    counts["validation_results"] += len(vrows)
                    counts.update(
                        documents=len(todo),
                        pages=sum(len(p.pages) for _, p in todo),
                        blocks=sum(len(p.blocks) for _, p in todo),
                        cells=sum(len(p.cells) for _, p in todo),
                    )
                elif merging:  # every document unchanged: its URIs still go through a MERGE
                    sm = merge_sources(conn, self._tables, source_rows(results, run_id, now), self._bulk_fill)
                if same:
                    # failures recorded since their load (a transient read error, say) are stale
                    # now; each result's own are kept
                    keep = [
                        {fail.own_failure_id(f, r.doc_id) for f in built[r.doc_id].failures} for r in same
                    ]
                    fail.delete_failures_of(conn, self.failures, same, keep=set().union(*keep))
                    counts["unchanged"] = len(same)
                    counts["failures"] += sum(map(len, keep))
                    if validation_rows is not None:
                        delete_docs(conn, self._tables, [r.doc_id for r in same], ("validation_results",))
                        rows = validation_rows_of(same, validation_rows, run_id)
                        if rows:
                            conn.execute(self.validation_results.insert(), rows)
                        counts["validation_results"] += len(rows)
                if sm is None:  # every URI seen (else merged with the documents)
                    write_sources(conn, self._tables["sources"], results, run_id, now)
                if sm is not None:
                    if not self.db.transactional_ddl:
                        conn.commit()  # Snowflake: a DROP would commit anyway; keep it after the writes
                    sm.drop()
                    sm = None
            except BaseException:
                if sm is not None and not self.db.transactional_ddl:
                    conn.rollback()
                    with suppress(Exception):
                        sm.drop()  # temporary (Snowflake) or expiring (BigQuery) anyway
                raise
        _log_batch("merged" if merging else "loaded", counts, run_id)
        return counts

    def _bulk_fill(
        self, conn: sa.Connection, stage: sa.Table, columns: tuple[str, ...], rows: Sequence[Row]
    ) -> bool:
        """Fill a merge stage with the dialect's bulk path where there is one (PostgreSQL COPY,
        DuckDB DataFrame); False lets the merge insert in chunks."""
        return len(rows) >= self.copy_min_rows and self.db.bulk_insert(conn, stage, columns, rows)

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
            n = fail.insert_failures(conn, self.failures, rows)
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
        frows = fail.quarantine_rows(result, reason or errors.VALIDATION_FAILED, detail, run_id, stage)
        vrows = validation_rows_of([result], {doc_id: validation_rows or []}, run_id)
        with self._write(doc_id) as conn:
            delete_docs(conn, self._tables, [doc_id])
            fail.delete_failures_of(conn, self.failures, [result])
            nf = fail.insert_failures(conn, self.failures, frows)
            if vrows:
                conn.execute(self.validation_results.insert(), vrows)
        log.info("warehouse: quarantined doc %s run %s reason %s", doc_id, run_id, frows[0]["reason"])
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
        return self.live_fingerprints([doc_id]).get(doc_id, ("",))[0] == fingerprint

    def live_fingerprints(self, doc_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        """(live config fingerprint, pages loaded) by doc id, for those of ``doc_ids`` the ledger
        holds (a query per 1,000 ids)."""
        with self.engine.connect() as conn:
            return ledger_pages(conn, self.ledger, doc_ids)

    def record_run(self, row: dict[str, Any]) -> None:
        """Write one ``runs`` row (a shard's load), replacing the same run, DAG and shard's."""
        runs.record_run(self.engine, self._tables["runs"], row)

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest ``runs`` rows, newest first."""
        return runs.run_rows(self.engine, self._tables["runs"], limit)

    def last_fingerprint(self, dag_id: str) -> str | None:
        """The config fingerprint of ``dag_id``'s latest run that OCR'd (the incremental listing's)."""
        return runs.last_fingerprint(self.engine, self._tables["runs"], dag_id)

    def loaded_sources(self, prefix_uri: str) -> Iterator[tuple[str, int | None, str | None, str]]:
        """(source URI, size, version, config fingerprint) of the loaded documents under a prefix."""
        return runs.loaded_sources(self.engine, self._tables, prefix_uri)

    def record_review(self, row: dict[str, Any]) -> None:
        """Append one row to the reviews table (core.review): an audit trail, never updated."""
        with self._write(row["doc_id"]) as conn:
            reviews.append_review(conn, self._tables["reviews"], row)

    def reviews(self, doc_id: str | None = None) -> list[dict[str, Any]]:
        return reviews.review_rows(self.engine, self._tables["reviews"], doc_id)

    def ledger_entry(self, doc_id: str) -> dict[str, Any] | None:
        led = self.ledger
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(led).where(led.c.doc_id == doc_id)).mappings().first()
        return dict(row) if row is not None else None

    def dispose(self) -> None:
        self.engine.dispose()
