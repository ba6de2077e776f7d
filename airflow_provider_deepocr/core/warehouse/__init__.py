"""The warehouse stage: typed records -> SQL rows, whole documents per transaction, exactly once.

One module per concern; only :mod:`.dialects` names a database:

- :mod:`.schema`: tables, keys, identifiers (``build_metadata``, ``check_identifier``);
- :mod:`.rows`: row builders (``validate`` checks exactly what gets loaded) and failure rows;
- :mod:`.dialects`: one object per database, its capabilities as data;
- :mod:`.ledger`: the load ledger that makes reruns no-ops;
- :mod:`.replace`: DELETE + bulk INSERT; :mod:`.merge` (+ :mod:`.merge_sql`): staging tables and MERGE;
- :mod:`.failures`: failure rows;
- :mod:`.runs`: the runs table and the incremental listing's lookups;
- :mod:`.loader`: :class:`Warehouse`, which ties them together.

Exactly-once rules (see ARCHITECTURE.md, "Loads are idempotent"):

* A document is keyed by its content id (``doc_id``, the sha256 of its bytes). Loading it
  deletes every row it had before (pages, blocks, table cells, failures, validation results)
  and inserts the new ones in **one** transaction; readers see the old copy or the new one,
  never half of either. A batch of documents (:meth:`Warehouse.load_documents`) is one
  transaction too.
* ``{prefix}load_ledger`` (:mod:`.ledger`) holds one row per document: which config fingerprint is
  live, the run that wrote it and a content hash of everything that was written. Reloading a
  document whose fingerprint and content hash are unchanged is a no-op (rows, ``loaded_at`` and
  ``run_id`` stay exactly as the first load left them), so rerunning a batch leaves the warehouse
  byte-for-byte as running it once. Pass ``force=True`` to rewrite anyway.
* Concurrent loaders of the same document serialise on a per-document lock taken at the start
  of the transaction (:attr:`.Dialect.lock`: ``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN
  IMMEDIATE`` on SQLite, a process-local lock on DuckDB, which is single-writer per file).
* Quarantine (validation failed) removes the document's main-table rows as well, so the tables
  always reflect the latest run's verdict for the latest config, and writes the reason to
  ``{prefix}failures`` plus the per-expectation results to ``{prefix}validation_results``.
* Document-level failures (``record_failures``) never delete loaded rows: a transient read
  error must not wipe good data. A later successful load removes the document's old failure
  rows (by ``doc_id``, and by ``source_uri`` for failures recorded before the file was hashed).

Timestamps are UTC. ``failures.recorded_at`` is the time the failure was last observed.
Nothing here logs or raises with document text: only ids, counts and reason codes.
"""

from airflow_provider_deepocr.core.warehouse.dialects import make_engine
from airflow_provider_deepocr.core.warehouse.loader import COUNTS, Warehouse
from airflow_provider_deepocr.core.warehouse.rows import (
    BLOCK_COLUMNS,
    CELL_COLUMNS,
    PAGE_COLUMNS,
    VALIDATION_COLUMNS,
    block_rows,
    block_tuples,
    cell_rows,
    cell_tuples,
    clean_text,
    document_row,
    failure_id,
    failure_row,
    page_rows,
    page_tuples,
)
from airflow_provider_deepocr.core.warehouse.schema import KEYS, TABLES, build_metadata, check_identifier

__all__ = [
    "BLOCK_COLUMNS",
    "CELL_COLUMNS",
    "COUNTS",
    "KEYS",
    "PAGE_COLUMNS",
    "TABLES",
    "VALIDATION_COLUMNS",
    "Warehouse",
    "block_rows",
    "block_tuples",
    "build_metadata",
    "cell_rows",
    "cell_tuples",
    "check_identifier",
    "clean_text",
    "document_row",
    "failure_id",
    "failure_row",
    "make_engine",
    "page_rows",
    "page_tuples",
]
