"""The warehouse stage: typed records -> SQL rows, whole documents per transaction, exactly once.

One module per concern; only :mod:`.dialects` names a database:

- :mod:`.schema`: tables, keys, identifiers (``build_metadata``, ``check_identifier``);
- :mod:`.rows`: row builders (``validate`` checks exactly what gets loaded) and failure rows;
- :mod:`.dialects`: one object per database, its capabilities as data;
- :mod:`.ledger`: the load ledger that makes reruns no-ops;
- :mod:`.replace`: DELETE + bulk INSERT; :mod:`.merge` (+ :mod:`.merge_sql`): staging tables and MERGE;
- :mod:`.failures`: failure rows;
- :mod:`.loader`: :class:`Warehouse`, which ties them together (its docstring has the rules).
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
