"""The validate stage: Great Expectations (GX Core 1.x) over a document's warehouse rows.

GX is used directly (not through airflow-provider-great-expectations), through
:mod:`.validate_gx` (imported once per process, one ephemeral context). Many documents are
validated with one GX run per table (:func:`validate_documents`, derivation in
:mod:`.validate_batch`); :func:`validate_one` is one run per document, the reference. The rows
validated are built by the same functions the warehouse loads
(:func:`~airflow_provider_deepocr.core.warehouse.rows.page_rows` and friends), so a pass means
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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_deepocr.core import errors, validate_gx
from airflow_provider_deepocr.core.coverage import LOW_COVERAGE
from airflow_provider_deepocr.core.records import BLOCK_KINDS, GRID, DocumentResult
from airflow_provider_deepocr.core.validate_gx import (
    _LOCK,
    TABLE_NAMES,
    expectation_name,
    frames,
    lean_blocks_frame,
    lean_blocks_frame_of,
    warm_up,
)
from airflow_provider_deepocr.core.vocab import PageFlag

__all__ = [
    "TABLE_NAMES",
    "ValidationReport",
    "default_specs",
    "expectation_name",
    "frames",
    "lean_blocks_frame",
    "lean_blocks_frame_of",
    "user_specs",
    "validate_document",
    "validate_documents",
    "validate_one",
    "warm_up",
]

log = logging.getLogger(__name__)

_ALIASES = {"table_cells": "cells"}

BAD_PAGE_FLAGS = ("repetition_loop", "truncated")
EMPTY_PAGE_FLAG = PageFlag.EMPTY_PAGE.value


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
# Expectations
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


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


def _number_duplicates(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r["table_name"], r["expectation"])
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            r["expectation"] = f"{r['expectation']}#{seen[key]}"
    return rows


def _plan(
    result: DocumentResult, extra: dict[str, list[dict[str, Any]]], defaults: bool = True
) -> tuple[dict[str, list[dict[str, Any]]], bool]:
    """The document's specs per table, and whether the lean blocks frame serves them."""
    specs = default_specs(result) if defaults else {t: [] for t in TABLE_NAMES}
    todo_by_table = {t: specs[t] + extra[t] for t in TABLE_NAMES}
    needed = [_spec_columns(sp) for sp in todo_by_table["blocks"]]
    return todo_by_table, all(c is not None and c <= _LEAN_BLOCK_COLUMNS for c in needed)


def _finish(result: DocumentResult, rows: list[dict[str, Any]], seconds: float) -> ValidationReport:
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
    :func:`validate_documents` with one document.
    """
    return validate_documents([result], suites, defaults=defaults)[0]


def validate_documents(
    results: Sequence[DocumentResult], suites: dict[str, Any] | None = None, *, defaults: bool = True
) -> list[ValidationReport]:
    """:func:`validate_one` for every document (the same rows, document by document), with one GX
    run per table and group of documents sharing an expectation (:mod:`.validate_batch`)."""
    from airflow_provider_deepocr.core.validate_batch import rounds, table_rows

    t0 = time.perf_counter()
    extra = user_specs(suites)
    plans = [_plan(r, extra, defaults) for r in results]
    rows: list[list[dict[str, Any]]] = [[] for _ in results]
    with _LOCK:
        for rnd in rounds([r.doc_id for r in results]):
            docs = [results[i] for i in rnd]
            lean = all(plans[i][1] for i in rnd)
            for table in TABLE_NAMES:
                got = table_rows(table, docs, [plans[i][0][table] for i in rnd], bool(extra[table]), lean)
                for i, r in zip(rnd, got, strict=True):
                    rows[i].extend(r)
    each = (time.perf_counter() - t0) / max(len(results), 1)
    return [_finish(r, rs, each) for r, rs in zip(results, rows, strict=True)]


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
    todo_by_table, lean = _plan(result, extra, defaults)
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
            rows.extend(validate_gx._run_table(table, dfs[table], todo, result))
    return _finish(result, rows, time.perf_counter() - t0)
