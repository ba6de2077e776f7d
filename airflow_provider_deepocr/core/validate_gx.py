"""Great Expectations plumbing for :mod:`.validate`: GX imported and configured once per process,
the rows as pandas frames, one GX run of a list of expectation specs over one frame.

GX is used directly (not through airflow-provider-great-expectations). It is imported lazily,
once per process, with its analytics off and its logging quieted, and runs in one ephemeral
context cached per process, shared under :data:`_LOCK`. Results keep counts and percentages only
(:func:`_observed`): GX's ``partial_unexpected_list`` and friends, which quote values, are dropped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.records import DocumentResult
from airflow_provider_deepocr.core.warehouse.rows import block_rows, cell_rows, page_rows
from airflow_provider_deepocr.core.warehouse.schema import build_metadata

log = logging.getLogger(__name__)

TABLE_NAMES = ("pages", "blocks", "cells")


_WAREHOUSE_TABLE = {"pages": "pages", "blocks": "blocks", "cells": "table_cells"}


# Result keys that are counts or percentages; everything else GX returns may quote values.
_SAFE_RESULT_KEYS = (
    "element_count",
    "missing_count",
    "missing_percent",
    "unexpected_count",
    "unexpected_percent",
    "unexpected_percent_total",
    "unexpected_percent_nonmissing",
)


_LOCK = threading.RLock()


@cache
def _gx() -> Any:
    """Import great_expectations once, analytics off, logging quiet."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    t0 = time.perf_counter()
    import great_expectations as gx

    for name in ("great_expectations", "great_expectations.core", "great_expectations.expectations"):
        logging.getLogger(name).setLevel(logging.WARNING)
    log.debug("great_expectations imported in %.2fs", time.perf_counter() - t0)
    _settle()
    return gx


def _settle() -> None:
    """Move every object alive now (GX, pandas and their imports: ~400k objects, kept for the
    process's life) out of the garbage collector's reach (``gc.freeze``): otherwise each full
    collection walks them all again (0.3-0.6 s on 2 cores, about one per 250 one-page documents
    parsed). Objects made later are collected as before; one collection first, so no unreachable
    cycle alive now is kept for good."""
    import gc

    gc.collect()
    gc.freeze()


@cache
def _context() -> Any:
    """The per-process ephemeral GX context with one pandas data source, progress bars off."""
    gx = _gx()
    ctx = gx.get_context(mode="ephemeral")
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    except Exception:  # pragma: no cover - cosmetic only
        log.debug("could not turn GX progress bars off")
    _settle()
    return ctx


@cache
def _batch_definition(table: str) -> Any:
    ctx = _context()
    try:
        ds = ctx.data_sources.get("deepocr")
    except Exception:
        ds = ctx.data_sources.add_pandas("deepocr")
    asset = ds.add_dataframe_asset(table)
    return asset.add_batch_definition_whole_dataframe(f"{table}_whole")


def warm_up() -> float:
    """Import GX and build the context now (seconds taken); later calls are free."""
    t0 = time.perf_counter()
    with _LOCK:
        for t in TABLE_NAMES:
            _batch_definition(t)
    return time.perf_counter() - t0


def expectation_name(etype: str, kwargs: dict[str, Any]) -> str:
    """``type(columns)``: the id of an expectation in validation rows (no values in it)."""
    cols: list[str] = []
    if "column" in kwargs:
        cols.append(str(kwargs["column"]))
    for k in ("column_A", "column_B"):
        if k in kwargs:
            cols.append(str(kwargs[k]))
    if "column_list" in kwargs:
        cols.extend(str(c) for c in kwargs["column_list"])
    return f"{etype}({','.join(cols)})" if cols else etype


@contextmanager
def _quiet_row_condition_warnings() -> Iterator[None]:
    """The empty-page rule needs "flags does not contain empty_page", which GX 1.x's Condition
    objects cannot say (no "contains"). The pandas string form works throughout GX 1.x
    (pyproject pins great-expectations<2) but warns each time an expectation is copied."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", category=DeprecationWarning, message=".*(row_condition|condition_parser)"
        )
        yield


def _build(spec: dict[str, Any]) -> Any:
    from great_expectations.expectations.registry import get_expectation_impl

    kwargs = {k: v for k, v in spec["kwargs"].items() if k != "batch_id"}
    try:
        cls = get_expectation_impl(spec["type"])
    except Exception:
        raise errors.ConfigError(f"unknown expectation type {spec['type']!r}") from None
    try:
        with _quiet_row_condition_warnings():
            return cls(**kwargs)
    except Exception as exc:
        raise errors.ConfigError(f"bad arguments for {spec['type']}: {type(exc).__name__}") from None


@cache
def _columns() -> dict[str, list[str]]:
    md = build_metadata("", None)
    return {t: [c.name for c in md.tables[w].columns] for t, w in _WAREHOUSE_TABLE.items()}


_ROW_BUILDERS: dict[str, Callable[[DocumentResult], list[dict[str, Any]]]] = {
    "pages": page_rows,
    "blocks": block_rows,
    "cells": cell_rows,
}


def frames(result: DocumentResult, tables: Sequence[str] = TABLE_NAMES) -> dict[str, Any]:
    """pandas DataFrames of the document's rows, one per table, warehouse columns."""
    import pandas as pd

    cols = _columns()
    return {t: pd.DataFrame.from_records(_ROW_BUILDERS[t](result), columns=cols[t]) for t in tables}


def lean_blocks_frame(result: DocumentResult) -> Any:
    """The blocks frame with only the columns the default suite reads, built column by column.

    Numbers as numpy arrays (missing boxes as NaN), ``doc_id`` and ``kind`` as categoricals: no
    per-row dicts and no text columns, which is most of the cost at a million blocks.
    """
    return lean_blocks_frame_of([result])


def lean_blocks_frame_of(results: Sequence[DocumentResult]) -> Any:
    """:func:`lean_blocks_frame` over several documents, their rows one after another."""
    import numpy as np
    import pandas as pd

    pairs = [(r.doc_id, p.page_no, b) for r in results for p in r.pages for b in p.parsed.blocks]
    n = len(pairs)
    nan4 = (np.nan, np.nan, np.nan, np.nan)
    boxes = np.array([b.bbox if b.bbox is not None else nan4 for _, _, b in pairs], dtype=np.float64)
    boxes = boxes.reshape(n, 4)
    data = {
        "doc_id": pd.Categorical([d for d, _, _ in pairs]),
        "page_no": np.fromiter((p for _, p, _ in pairs), dtype=np.int64, count=n),
        "block_no": np.fromiter((b.index for _, _, b in pairs), dtype=np.int64, count=n),
        "kind": pd.Categorical([b.kind for _, _, b in pairs]),
        "x0": boxes[:, 0],
        "y0": boxes[:, 1],
        "x1": boxes[:, 2],
        "y1": boxes[:, 3],
    }
    return pd.DataFrame(data)


def _observed(res: Any) -> dict[str, Any]:
    info = res.exception_info or {}
    raised = bool(info.get("raised_exception")) if isinstance(info, dict) else False
    out: dict[str, Any] = {}
    result = dict(res.result or {})
    for k in _SAFE_RESULT_KEYS:
        v = result.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = v
    ov = result.get("observed_value")
    if isinstance(ov, (bool, int, float)):
        out["observed_value"] = ov
    if raised:
        out["raised_exception"] = True
    return out


def _run_table(
    table: str, frame: Any, specs: list[dict[str, Any]], result: DocumentResult
) -> list[dict[str, Any]]:
    gx = _gx()
    expectations = [_build(s) for s in specs]
    with _quiet_row_condition_warnings():
        suite = gx.ExpectationSuite(name=f"deepocr_{table}", expectations=expectations)
        batch = _batch_definition(table).get_batch(batch_parameters={"dataframe": frame})
        res = batch.validate(suite, result_format="BASIC")
    rows: list[dict[str, Any]] = []
    for r in res.results:
        cfg = r.expectation_config
        kwargs = {k: v for k, v in dict(cfg.kwargs).items() if k != "batch_id"}
        observed = _observed(r)
        if observed.get("raised_exception"):
            # GX's message may quote values: keep it out of logs and rows
            log.warning(
                "validate: doc %s %s %s raised inside GX (message withheld)",
                result.doc_id,
                table,
                cfg.type,
            )
        rows.append(
            {
                "table_name": table,
                "expectation": expectation_name(cfg.type, kwargs),
                "success": bool(r.success),
                "observed": observed,
            }
        )
    failed = [{"type": r["expectation"].split("(")[0], "kwargs": k} for r, k in _failed_specs(res, rows)]
    if failed:
        ids = _failing_rows(table, frame, failed)
        for row in rows:
            if not row["success"] and ids.get(row["expectation"]):
                row["observed"]["rows"] = ids[row["expectation"]]
    return rows


MAX_ROW_IDS = 20
"""How many failing rows an expectation names (``observed["rows"]``), as GX's partial lists do."""


def row_ids(frame: Any, indexes: Sequence[Any]) -> list[list[int]]:
    """``[page_no, block_no]`` (``block_no`` -1 for a page row) of the first :data:`MAX_ROW_IDS` of
    ``indexes`` (row positions in ``frame``): which rows, never what they say."""
    if "page_no" not in frame.columns:
        return []
    has_block = "block_no" in frame.columns
    out = []
    for ix in list(indexes)[:MAX_ROW_IDS]:
        if 0 <= int(ix) < len(frame):
            row = frame.iloc[int(ix)]
            out.append([int(row["page_no"]), int(row["block_no"]) if has_block else -1])
    return out


def _failed_specs(res: Any, rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    out = []
    for r, row in zip(res.results, rows, strict=True):
        if not row["success"]:
            out.append((row, {k: v for k, v in dict(r.expectation_config.kwargs).items() if k != "batch_id"}))
    return out


def _failing_rows(table: str, frame: Any, specs: list[dict[str, Any]]) -> dict[str, list[list[int]]]:
    """Which rows each failed expectation found wrong, by expectation name (see :func:`row_ids`):
    the failed ones run again with GX's ``SUMMARY`` format, the one that names row indexes."""
    if "page_no" not in frame.columns:
        return {}
    gx = _gx()
    with _quiet_row_condition_warnings():
        suite = gx.ExpectationSuite(name=f"deepocr_{table}_failed", expectations=[_build(s) for s in specs])
        batch = _batch_definition(table).get_batch(batch_parameters={"dataframe": frame})
        res = batch.validate(suite, result_format="SUMMARY")
    out: dict[str, list[list[int]]] = {}
    for r in res.results:
        cfg = r.expectation_config
        kwargs = {k: v for k, v in dict(cfg.kwargs).items() if k != "batch_id"}
        index = [
            ix for ix in (r.result or {}).get("partial_unexpected_index_list") or [] if isinstance(ix, int)
        ]
        if index:
            out[expectation_name(cfg.type, kwargs)] = row_ids(frame, index)
    return out
