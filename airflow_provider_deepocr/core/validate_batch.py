"""Validation in batches: one GX run per table over many documents' rows, verdicts per document.

GX costs about a tenth of a second per validation call whatever the rows, so one call per document
caps a pipeline of one-page documents at a few documents a second. Here the rows of a batch of
documents go into one frame per table and each expectation runs once over them; each document's
result is then derived from that run, by the expectation's own GX ``_validate`` fed that
document's metrics:

- the unexpected rows come from the run (``result_format=COMPLETE``: ``unexpected_index_list``),
  counted per document by row owner;
- the domain (rows after the ``row_condition``, through GX's own pandas filter) and the
  missing/ignored rows (``ignore_row_if``, pandas ``isna`` as GX uses) are counted per document
  here; their totals must equal the run's ``element_count``/``missing_count``, else that
  expectation is run per document as before.

Only row-wise expectations are batched (:data:`ROW_WISE`); an expectation whose kwargs differ
between documents (the default ``page_no`` range) runs once per group of documents that share it.
Everything else (aggregates over a table, types, ordering, unknown or custom expectations, a
document whose table is empty) runs per document, exactly as :func:`.validate.validate_one`.
Documents sharing a ``doc_id`` go to separate rounds, so uniqueness over ``doc_id, ...`` holds.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from airflow_provider_deepocr.core import validate_gx as v
from airflow_provider_deepocr.core.records import DocumentResult

log = logging.getLogger(__name__)

# type -> how its domain is counted: "column" (nulls of one column), "pair" (column_A/column_B with
# ignore_row_if), "multi" (column_list with ignore_row_if). All are judged row by row.
ROW_WISE: dict[str, str] = {
    **dict.fromkeys(
        (
            "expect_column_values_to_not_be_null",
            "expect_column_values_to_be_null",
            "expect_column_values_to_be_between",
            "expect_column_values_to_be_in_set",
            "expect_column_values_to_not_be_in_set",
            "expect_column_values_to_match_regex",
            "expect_column_values_to_not_match_regex",
            "expect_column_values_to_match_like_pattern",
            "expect_column_values_to_not_match_like_pattern",
            "expect_column_value_lengths_to_be_between",
            "expect_column_value_lengths_to_equal",
        ),
        "column",
    ),
    **dict.fromkeys(
        (
            "expect_column_pair_values_a_to_be_greater_than_b",
            "expect_column_pair_values_to_be_equal",
            "expect_column_pair_values_to_be_in_set",
        ),
        "pair",
    ),
    **dict.fromkeys(
        ("expect_select_column_values_to_be_unique_within_record", "expect_multicolumn_sum_to_equal"), "multi"
    ),
}
_UNIQUE_COMPOUND = "expect_compound_columns_to_be_unique"  # row-wise only with doc_id in the list


def _mode(spec: dict[str, Any]) -> str | None:
    kw = spec["kwargs"]
    if spec["type"] == _UNIQUE_COMPOUND:
        return "multi" if "doc_id" in (kw.get("column_list") or ()) else None
    if "result_format" in kw or "catch_exceptions" in kw:
        return None
    return ROW_WISE.get(spec["type"])


def _key(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True, default=repr)


def _config_key(cfg: Any) -> str:
    kwargs = {k: val for k, val in dict(cfg.kwargs).items() if k != "batch_id"}
    return json.dumps([cfg.type, kwargs], sort_keys=True, default=repr)


def rounds(doc_ids: Sequence[str]) -> list[list[int]]:
    """Positions of the documents, split so that no round holds one ``doc_id`` twice."""
    seen: dict[str, int] = defaultdict(int)
    rounds: list[list[int]] = []
    for i, doc_id in enumerate(doc_ids):
        k = seen[doc_id]
        seen[doc_id] += 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(i)
    return rounds


def _frame(table: str, docs: list[DocumentResult], lean: bool) -> tuple[Any, Any]:
    """The rows of ``docs`` in one frame (warehouse columns) and each row's owner (position)."""
    import numpy as np
    import pandas as pd

    if table == "blocks" and lean:
        frame = v.lean_blocks_frame_of(docs)
        sizes = [sum(len(p.parsed.blocks) for p in d.pages) for d in docs]
    else:
        per_doc = [v._ROW_BUILDERS[table](d) for d in docs]
        sizes = [len(rows) for rows in per_doc]
        frame = pd.DataFrame.from_records([r for rows in per_doc for r in rows], columns=v._columns()[table])
    return frame, np.repeat(np.arange(len(docs)), sizes)


def _per_doc_metrics(exp: Any, mode: str, frame: Any, owner: Any, n: int, bad: Any) -> list[dict[str, Any]]:
    """Each document's metrics for ``exp._validate``: domain rows, nulls or kept rows, unexpected."""
    import numpy as np
    from great_expectations.execution_engine import PandasExecutionEngine

    kw = exp.configuration.kwargs
    dom: Any = np.ones(len(frame), dtype=bool)
    if kw.get("row_condition"):
        kept = PandasExecutionEngine()._apply_row_condition_filter(frame, kw["row_condition"], dict(kw))
        dom = np.isin(np.arange(len(frame)), kept.index.to_numpy())
    if mode == "column":
        missing = frame[kw["column"]].isna().to_numpy()
    else:
        cols = [kw["column_A"], kw["column_B"]] if mode == "pair" else list(kw["column_list"])
        how = exp.ignore_row_if
        na = frame[cols].isna().to_numpy()
        if how in ("both_values_are_missing", "all_values_are_missing"):
            missing = na.all(axis=1)
        elif how in ("either_value_is_missing", "any_value_is_missing"):
            missing = na.any(axis=1)
        else:
            missing = np.zeros(len(frame), dtype=bool)
    total = np.bincount(owner[dom], minlength=n)
    kept_n = total - np.bincount(owner[dom & missing], minlength=n)
    unexpected = np.bincount(owner[bad], minlength=n) if len(bad) else np.zeros(n, dtype=np.int64)
    name = exp.map_metric
    out = []
    for i in range(n):
        m = {"table.row_count": int(total[i]), f"{name}.unexpected_count": int(unexpected[i])}
        if mode == "column":
            m["column_values.nonnull.unexpected_count"] = int(total[i] - kept_n[i])
        else:
            m[f"{name}.filtered_row_count"] = int(kept_n[i])
        out.append(m)
    return out


def _consistent(res: Any, metrics: list[dict[str, Any]], mode: str) -> bool:
    """Do the per-document counts add up to the run's own?"""
    got = dict(res.result or {})
    total = sum(m["table.row_count"] for m in metrics)
    if got.get("element_count") != total:
        return False
    if "missing_count" in got and mode == "column":
        return bool(got["missing_count"] == sum(m["column_values.nonnull.unexpected_count"] for m in metrics))
    if "missing_count" in got:
        kept = sum(m[k] for m in metrics for k in m if k.endswith("filtered_row_count"))
        return bool(got["missing_count"] == total - kept)
    return True


def _run_group(
    table: str, frame: Any, owner: Any, specs: list[dict[str, Any]], n: int
) -> list[list[dict[str, Any]] | None]:
    """One GX run of ``specs`` over ``frame``; per spec, each document's row (None: run per doc)."""
    import numpy as np

    gx = v._gx()
    exps = [v._build(s) for s in specs]
    with v._quiet_row_condition_warnings():
        suite = gx.ExpectationSuite(name=f"deepocr_{table}_batch", expectations=exps)
        batch = v._batch_definition(table).get_batch(batch_parameters={"dataframe": frame})
        res = batch.validate(suite, result_format="COMPLETE")
    out: list[list[dict[str, Any]] | None] = []
    by_config: dict[str, list[Any]] = defaultdict(list)  # GX does not keep the suite's order
    for r in res.results:
        by_config[_config_key(r.expectation_config)].append(r)
    for spec, exp in zip(specs, exps, strict=True):
        found = by_config.get(_config_key(exp.configuration)) or [None]
        r = found.pop(0)
        idx = None if r is None else (r.result or {}).get("unexpected_index_list")
        if r is None or idx is None or (r.exception_info or {}).get("raised_exception"):
            out.append(None)
            continue
        mode = _mode(spec) or ""
        try:
            metrics = _per_doc_metrics(exp, mode, frame, owner, n, np.asarray(idx, dtype=np.int64))
        except Exception:  # an index GX gave in another form, a condition it read otherwise
            log.debug("validate: %s %s counted per document instead", table, spec["type"])
            metrics = []
        if not metrics or not _consistent(r, metrics, mode):
            out.append(None)
            continue
        kwargs = {k: val for k, val in dict(exp.configuration.kwargs).items() if k != "batch_id"}
        name = v.expectation_name(exp.expectation_type, kwargs)
        rows = []
        bad = np.asarray(idx, dtype=np.int64)
        # GX's verdict is a function of the counts alone: documents with the same counts (most
        # one-page documents) share one ``_validate`` call instead of one each
        verdicts: dict[tuple[tuple[str, int], ...], tuple[bool, dict[str, Any]]] = {}
        for i, m in enumerate(metrics):
            counts = tuple(sorted(m.items()))
            if counts not in verdicts:
                d = exp._validate(m, runtime_configuration={"result_format": "BASIC"})
                shim = SimpleNamespace(result=d.get("result"), exception_info=None)
                verdicts[counts] = (bool(d["success"]), v._observed(shim))
            success, seen = verdicts[counts]
            observed = dict(seen)
            if not success and len(bad):
                ids = v.row_ids(frame, bad[owner[bad] == i])  # which rows, as the per-document run names
                if ids:
                    observed["rows"] = ids
            rows.append(
                {
                    "table_name": table,
                    "expectation": name,
                    "success": success,
                    "observed": observed,
                }
            )
        out.append(rows)
    return out


def table_rows(
    table: str, docs: list[DocumentResult], todos: list[list[dict[str, Any]]], extra: bool, lean: bool
) -> list[list[dict[str, Any]]]:
    """Each document's rows for ``table``, in its specs' order."""
    import numpy as np

    frame, owner = _frame(table, docs, lean)
    sizes = np.bincount(owner, minlength=len(docs))
    answer: dict[tuple[int, int], dict[str, Any]] = {}  # (doc, spec position) -> row
    keys = [[_key(sp) if _mode(sp) is not None else None for sp in todo] for todo in todos]
    users: dict[str, set[int]] = defaultdict(set)  # batched spec key -> documents
    specs: dict[str, dict[str, Any]] = {}
    for i, todo in enumerate(todos):
        if sizes[i] == 0:
            continue  # an empty table named by a user suite: per document, as before
        for k, sp in zip(keys[i], todo, strict=True):
            if k is not None:
                users[k].add(i)
                specs[k] = sp
    groups: dict[frozenset[int], list[str]] = defaultdict(list)
    for k, docs_of_k in users.items():
        groups[frozenset(docs_of_k)].append(k)
    for who, group_keys in groups.items():
        mask = np.isin(owner, sorted(who))
        sub = frame if mask.all() else frame[mask].reset_index(drop=True)
        ran = _run_group(table, sub, owner[mask], [specs[k] for k in group_keys], len(docs))
        got = dict(zip(group_keys, ran, strict=True))
        for i in who:
            for pos, k in enumerate(keys[i]):
                rows = got.get(k) if k is not None else None
                if rows is not None:
                    answer[(i, pos)] = dict(rows[i], observed=dict(rows[i]["observed"]))
    out: list[list[dict[str, Any]]] = []
    for i, (doc, todo) in enumerate(zip(docs, todos, strict=True)):
        if not todo or (sizes[i] == 0 and not extra):
            out.append([])
            continue
        rest = [pos for pos in range(len(todo)) if (i, pos) not in answer]
        if rest:
            one = (
                v.frames(doc, (table,))[table]
                if not (table == "blocks" and lean)
                else v.lean_blocks_frame(doc)
            )
            for pos, row in zip(rest, v._run_table(table, one, [todo[p] for p in rest], doc), strict=True):
                answer[(i, pos)] = row
        out.append([answer[(i, pos)] for pos in range(len(todo))])
    return out
