"""The validate stage: Great Expectations (GX Core 1.x) over a document's warehouse rows.

GX is used directly (not through airflow-provider-great-expectations). It is imported lazily,
once per process, with its analytics off and its logging quieted, and runs in one ephemeral
context cached per process. The rows validated are built by the same functions the warehouse
loads (:func:`~airflow_provider_deepocr.core.warehouse.rows.page_rows` and friends), so a pass means
exactly those rows are fit to load.

Results never carry document text: each row keeps the table, an expectation id such as
``expect_column_values_to_be_between(x0)``, success, and counts/percentages only (GX's
``partial_unexpected_list`` and friends, which quote values, are dropped).

User suites (``suites={"pages"|"blocks"|"cells": ...}``) are appended to the defaults; each
value is a GX ``ExpectationSuite``, a path to a GX suite JSON file, or a short form: a list of
``{"type": "expect_...", "kwargs": {...}}`` (or a dict with an ``"expectations"`` list).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.coverage import LOW_COVERAGE
from airflow_provider_deepocr.core.records import BLOCK_KINDS, GRID, DocumentResult
from airflow_provider_deepocr.core.vocab import PageFlag
from airflow_provider_deepocr.core.warehouse.rows import block_rows, cell_rows, page_rows
from airflow_provider_deepocr.core.warehouse.schema import build_metadata

log = logging.getLogger(__name__)

TABLE_NAMES = ("pages", "blocks", "cells")
_WAREHOUSE_TABLE = {"pages": "pages", "blocks": "blocks", "cells": "table_cells"}
_ALIASES = {"table_cells": "cells"}

BAD_PAGE_FLAGS = ("repetition_loop", "truncated")
EMPTY_PAGE_FLAG = PageFlag.EMPTY_PAGE.value

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


@dataclass
class ValidationReport:
    """The verdict for one document. ``rows`` go to ``{prefix}validation_results``."""

    passed: bool
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if not r["success"]]

    def summary(self) -> str:
        """A short, text-free description, fit for a failure row's ``detail``."""
        if self.passed:
            return f"{len(self.rows)} expectation(s) passed"
        names = ", ".join(f"{r['table_name']}:{r['expectation']}" for r in self.failed[:10])
        more = f" (+{len(self.failed) - 10} more)" if len(self.failed) > 10 else ""
        return f"{len(self.failed)} of {len(self.rows)} expectation(s) failed: {names}{more}"


# --------------------------------------------------------------------------------------------
# GX, imported once and configured once
# --------------------------------------------------------------------------------------------


@cache
def _gx() -> Any:
    """Import great_expectations once, analytics off, logging quiet."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    t0 = time.perf_counter()
    import great_expectations as gx

    for name in ("great_expectations", "great_expectations.core", "great_expectations.expectations"):
        logging.getLogger(name).setLevel(logging.WARNING)
    log.debug("great_expectations imported in %.2fs", time.perf_counter() - t0)
    return gx


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


# --------------------------------------------------------------------------------------------
# Expectations
# --------------------------------------------------------------------------------------------


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


def _spec(etype: str, **kwargs: Any) -> dict[str, Any]:
    return {"type": etype, "kwargs": kwargs}


def default_specs(result: DocumentResult) -> dict[str, list[dict[str, Any]]]:
    """The built-in suite for one document, as ``{"type", "kwargs"}`` specs per table."""
    bad_flags = "|".join(BAD_PAGE_FLAGS)
    pages = [
        *(
            _spec("expect_column_values_to_not_be_null", column=c)
            for c in ("doc_id", "page_no", "engine", "model")
        ),
        _spec("expect_compound_columns_to_be_unique", column_list=["doc_id", "page_no"]),
        _spec(
            "expect_column_values_to_be_between", column="page_no", min_value=1, max_value=result.page_count
        ),
        _spec(
            "expect_column_values_to_not_match_regex", column="flags", regex=rf"(?:^|,)(?:{bad_flags})(?:,|$)"
        ),
        _spec(
            "expect_column_values_to_match_regex",
            column="markdown",
            regex=r"\S",
            row_condition=f'~flags.str.contains("{EMPTY_PAGE_FLAG}", regex=False)',
            condition_parser="pandas",
        ),
        # low_coverage: a page whose blocks hold too little of its ink lost lines (core.coverage);
        # pages without a measured coverage (null: text-layer pages) are not judged
        _spec("expect_column_values_to_be_between", column="coverage", min_value=LOW_COVERAGE),
    ]
    blocks = [
        *(_spec("expect_column_values_to_not_be_null", column=c) for c in ("doc_id", "page_no", "block_no")),
        _spec("expect_compound_columns_to_be_unique", column_list=["doc_id", "page_no", "block_no"]),
        *(
            _spec("expect_column_values_to_be_between", column=c, min_value=0, max_value=GRID)
            for c in ("x0", "y0", "x1", "y1")
        ),
        *(
            _spec(
                "expect_column_pair_values_a_to_be_greater_than_b",
                column_A=a,
                column_B=b,
                or_equal=False,
                ignore_row_if="either_value_is_missing",
            )
            for a, b in (("x1", "x0"), ("y1", "y0"))
        ),
        _spec("expect_column_values_to_be_in_set", column="kind", value_set=list(BLOCK_KINDS)),
    ]
    cells = [
        *(
            _spec("expect_column_values_to_not_be_null", column=c)
            for c in ("doc_id", "page_no", "block_no", "row_no", "col_no")
        ),
        _spec(
            "expect_compound_columns_to_be_unique",
            column_list=["doc_id", "page_no", "block_no", "row_no", "col_no"],
        ),
        *(_spec("expect_column_values_to_be_between", column=c, min_value=0) for c in ("row_no", "col_no")),
        *(_spec("expect_column_values_to_be_between", column=c, min_value=1) for c in ("rowspan", "colspan")),
    ]
    return {"pages": pages, "blocks": blocks, "cells": cells}


def _items(obj: Any) -> list[dict[str, Any]]:
    """Normalise one user suite to a list of ``{"type", "kwargs"}`` specs."""
    if isinstance(obj, (str, Path)):
        path = Path(obj)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise errors.ConfigError(f"cannot read suite file {path.name}: {type(exc).__name__}") from None
        return _items(data)
    if isinstance(obj, dict):
        if "expectations" in obj:
            return _items(obj["expectations"])
        return [_one(obj)]
    if isinstance(obj, (list, tuple)):
        return [_one(x) for x in obj]
    if hasattr(obj, "expectations"):  # a GX ExpectationSuite
        out = []
        for e in obj.expectations:
            cfg = e.configuration
            out.append({"type": cfg.type, "kwargs": dict(cfg.kwargs)})
        return out
    raise errors.ConfigError(f"unsupported suite value of type {type(obj).__name__}")


def _one(item: Any) -> dict[str, Any]:
    if hasattr(item, "configuration") and hasattr(item, "expectation_type"):  # an Expectation
        return {"type": item.configuration.type, "kwargs": dict(item.configuration.kwargs)}
    if not isinstance(item, dict):
        raise errors.ConfigError(f"an expectation must be a dict, not {type(item).__name__}")
    etype = item.get("type") or item.get("expectation_type")
    if not isinstance(etype, str):
        raise errors.ConfigError("an expectation needs a 'type'")
    kwargs = item.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise errors.ConfigError(f"{etype}: 'kwargs' must be a mapping")
    return {"type": etype, "kwargs": dict(kwargs)}


def user_specs(suites: dict[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    """Normalise ``suites`` (see module docstring); unknown table names are a ConfigError."""
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLE_NAMES}
    for key, value in (suites or {}).items():
        table = _ALIASES.get(key, key)
        if table not in out:
            raise errors.ConfigError(f"unknown table {key!r} in suites; use one of {', '.join(TABLE_NAMES)}")
        out[table].extend(_items(value))
    return out


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


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


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


_LEAN_BLOCK_COLUMNS = frozenset({"doc_id", "page_no", "block_no", "kind", "x0", "y0", "x1", "y1"})


def _spec_columns(spec: dict[str, Any]) -> set[str] | None:
    """Columns a spec reads, or None when it cannot be told (a row condition, an unknown form)."""
    kw = spec.get("kwargs") or {}
    if kw.get("row_condition"):
        return None
    cols = {kw[k] for k in ("column", "column_A", "column_B") if isinstance(kw.get(k), str)}
    for k in ("column_list", "column_set"):
        if isinstance(kw.get(k), (list, tuple, set)):
            cols.update(kw[k])
    return cols


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
    return rows


def _number_duplicates(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r["table_name"], r["expectation"])
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            r["expectation"] = f"{r['expectation']}#{seen[key]}"
    return rows


def plan(
    result: DocumentResult, extra: dict[str, list[dict[str, Any]]], defaults: bool = True
) -> tuple[dict[str, list[dict[str, Any]]], bool]:
    """The document's specs per table, and whether the lean blocks frame serves them."""
    specs = default_specs(result) if defaults else {t: [] for t in TABLE_NAMES}
    todo_by_table = {t: specs[t] + extra[t] for t in TABLE_NAMES}
    needed = [_spec_columns(sp) for sp in todo_by_table["blocks"]]
    return todo_by_table, all(c is not None and c <= _LEAN_BLOCK_COLUMNS for c in needed)


def finish(result: DocumentResult, rows: list[dict[str, Any]], seconds: float) -> ValidationReport:
    """Rows in their stored order (duplicates numbered), the verdict, one log line."""
    rows.sort(key=lambda r: (TABLE_NAMES.index(r["table_name"]), r["expectation"]))
    rows = _number_duplicates(rows)
    report = ValidationReport(passed=all(r["success"] for r in rows), rows=rows, seconds=seconds)
    log.info(
        "validate: doc %s %s (%d expectations, %d failed) in %.3fs",
        result.doc_id,
        "passed" if report.passed else "FAILED",
        len(rows),
        len(report.failed),
        report.seconds,
    )
    return report


def validate_document(
    result: DocumentResult,
    suites: dict[str, Any] | None = None,
    *,
    defaults: bool = True,
) -> ValidationReport:
    """Run the default suite (plus ``suites``) over the document's rows.

    Tables without rows (a document with no tables has no cells) are skipped unless a user
    suite names them. Raises :class:`errors.ConfigError` for a malformed user suite. This is
    the batch path (:mod:`.validate_batch`) with one document; many documents at once are
    :func:`~airflow_provider_deepocr.core.validate_batch.validate_documents`.
    """
    from airflow_provider_deepocr.core.validate_batch import validate_documents

    return validate_documents([result], suites, defaults=defaults)[0]


def validate_one(
    result: DocumentResult,
    suites: dict[str, Any] | None = None,
    *,
    defaults: bool = True,
) -> ValidationReport:
    """One GX run per table for this document alone: the reference the batch path must equal
    (and the per-document baseline of ``bench/pipeline_ceiling.py``)."""
    t0 = time.perf_counter()
    extra = user_specs(suites)
    todo_by_table, lean = plan(result, extra, defaults)
    if lean:
        dfs = frames(result, tables=("pages", "cells"))
        dfs["blocks"] = lean_blocks_frame(result)
    else:
        dfs = frames(result)
    rows: list[dict[str, Any]] = []
    with _LOCK:  # the cached GX context is shared; GX is not documented as thread-safe
        for table in TABLE_NAMES:
            todo = todo_by_table[table]
            if not todo or (len(dfs[table]) == 0 and not extra[table]):
                continue
            rows.extend(_run_table(table, dfs[table], todo, result))
    return finish(result, rows, time.perf_counter() - t0)
