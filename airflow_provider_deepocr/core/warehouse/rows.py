"""Records -> warehouse rows: the row builders the loader writes and ``validate`` checks, so a
validation pass means exactly those rows are fit to load.

Rows are tuples in a fixed column order (``*_COLUMNS``): the bulk loaders write them as they are,
and a tuple costs a third of a dict to build. Nothing here touches a database.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.records import DocumentResult, Failure
from airflow_provider_deepocr.core.warehouse.schema import KEYS

Row = Sequence[Any]
"""One row: values in the order of its table's ``*_COLUMNS`` (a tuple when built here)."""

# Column order of the tuples the row builders make (the loader names the columns it writes, so
# this order need not match the table's).
PAGE_COLUMNS: tuple[str, ...] = (
    "doc_id",
    "page_no",
    "source_uri",
    "width",
    "height",
    "dpi",
    "engine",
    "model",
    "revision",
    "prompt",
    "mode",
    "finish_reason",
    "attempts",
    "prompt_tokens",
    "output_tokens",
    "seconds",
    "flags",
    "markdown",
    "config_fingerprint",
    "rotation",
    "coverage",
)
BLOCK_COLUMNS: tuple[str, ...] = (
    "doc_id",
    "page_no",
    "block_no",
    "label",
    "kind",
    "x0",
    "y0",
    "x1",
    "y1",
    "px_x0",
    "px_y0",
    "px_x1",
    "px_y1",
    "text",
    "raw",
    "flags",
    "engine",
    "model",
    "config_fingerprint",
)
CELL_COLUMNS: tuple[str, ...] = (
    "doc_id",
    "page_no",
    "block_no",
    "row_no",
    "col_no",
    "rowspan",
    "colspan",
    "is_header",
    "text",
    "caption",
)
VALIDATION_COLUMNS: tuple[str, ...] = ("doc_id", "table_name", "expectation", "success", "observed", "run_id")


def clean_text(value: str | None) -> str | None:
    """Model text made storable everywhere: NUL removed (PostgreSQL text cannot hold it) and
    lone surrogates (undecodable model bytes) replaced, so UTF-8 encoding cannot fail."""
    if value is None:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _flags(flags: Iterable[str]) -> str:
    return ",".join(flags)


def document_row(result: DocumentResult) -> dict[str, Any]:
    """The ``documents`` row, without ``loaded_at``/``run_id`` (set at load time)."""
    return {
        "doc_id": result.doc_id,
        "source_uri": result.ref.uri,
        "source_version": result.ref.version,
        "source_size": result.ref.size,
        "media_type": result.media_type,
        "page_count": result.page_count,
        "config_fingerprint": result.config_fingerprint,
    }


def page_tuples(result: DocumentResult) -> list[Row]:
    """One row per page, in :data:`PAGE_COLUMNS` order."""
    return [
        (
            result.doc_id,
            p.page_no,
            p.source_uri,
            p.width,
            p.height,
            p.dpi,
            p.engine,
            p.model,
            p.revision,
            p.prompt,
            p.mode,
            p.finish_reason,
            p.attempts,
            p.prompt_tokens,
            p.output_tokens,
            float(p.seconds),
            _flags(p.flags),
            clean_text(p.markdown),
            p.config_fingerprint or result.config_fingerprint,
            p.rotation,
            None if p.coverage is None else float(p.coverage),
        )
        for p in result.pages
    ]


def block_tuples(result: DocumentResult) -> list[Row]:
    """One row per layout block, in :data:`BLOCK_COLUMNS` order; ``block_no`` is the block's
    reading-order index on its page. (Tuples: the bulk loaders write them as they are, and a
    tuple costs a third of a dict to build.)"""
    rows: list[Row] = []
    append = rows.append
    doc_id = result.doc_id
    no_box = (None, None, None, None)
    for p in result.pages:
        fp = p.config_fingerprint or result.config_fingerprint
        page_no, engine, model = p.page_no, p.engine, p.model
        for b in p.parsed.blocks:
            bb = b.bbox
            px = b.bbox_px
            x0, y0, x1, y1 = no_box if bb is None else (int(bb[0]), int(bb[1]), int(bb[2]), int(bb[3]))
            if px is None:
                px0 = py0 = px1 = py1 = None
            else:
                px0, py0, px1, py1 = float(px[0]), float(px[1]), float(px[2]), float(px[3])
            append(
                (
                    doc_id,
                    page_no,
                    b.index,
                    clean_text(b.label),
                    b.kind,
                    x0,
                    y0,
                    x1,
                    y1,
                    px0,
                    py0,
                    px1,
                    py1,
                    clean_text(b.text),
                    clean_text(b.raw),
                    ",".join(b.flags),
                    engine,
                    model,
                    fp,
                )
            )
    return rows


def cell_tuples(result: DocumentResult) -> list[Row]:
    """One row per table cell, in :data:`CELL_COLUMNS` order; ``block_no`` is the index of the
    table's block on its page."""
    rows: list[Row] = []
    doc_id = result.doc_id
    for p in result.pages:
        for t in p.parsed.tables:
            caption = clean_text(t.caption)
            rows.extend(
                (
                    doc_id,
                    p.page_no,
                    t.block_index,
                    c.row,
                    c.col,
                    c.rowspan,
                    c.colspan,
                    bool(c.is_header),
                    clean_text(c.text),
                    caption,
                )
                for c in t.cells
            )
    return rows


def _as_dicts(columns: tuple[str, ...], rows: list[Row]) -> list[dict[str, Any]]:
    return [dict(zip(columns, r, strict=True)) for r in rows]


def page_rows(result: DocumentResult) -> list[dict[str, Any]]:
    """One row per page as a dict of warehouse column names."""
    return _as_dicts(PAGE_COLUMNS, page_tuples(result))


def block_rows(result: DocumentResult) -> list[dict[str, Any]]:
    """One row per layout block as a dict of warehouse column names."""
    return _as_dicts(BLOCK_COLUMNS, block_tuples(result))


def cell_rows(result: DocumentResult) -> list[dict[str, Any]]:
    """One row per table cell as a dict of warehouse column names."""
    return _as_dicts(CELL_COLUMNS, cell_tuples(result))


def failure_id(source_uri: str, doc_id: str | None, page_no: int | None, reason: str, stage: str) -> str:
    """Deterministic id of a failure: the same failure observed twice is one row."""
    blob = json.dumps([source_uri, doc_id, page_no, reason, stage], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def failure_row(
    f: Failure, *, run_id: str, config_fingerprint: str, doc_id: str | None = None, now: datetime
) -> dict[str, Any]:
    d = f.doc_id if f.doc_id is not None else doc_id
    return {
        "failure_id": failure_id(f.source_uri, d, f.page_no, f.reason, f.stage),
        "source_uri": f.source_uri,
        "doc_id": d,
        "page_no": f.page_no,
        "stage": f.stage,
        "reason": f.reason,
        "detail": f.detail,
        "config_fingerprint": config_fingerprint,
        "run_id": run_id,
        "recorded_at": now,
    }


def validation_rows(doc_id: str, results: Sequence[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """One ``validation_results`` row per expectation result of one document (a repeated
    expectation is kept, numbered ``#2``, ``#3`` …; observed values as JSON text)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        table_name = str(r["table_name"])
        base = str(r["expectation"])[:480]
        name, n = base, 1
        while (table_name, name) in out:  # same expectation twice: keep both, numbered
            n += 1
            name = f"{base}#{n}"
        observed = r.get("observed")
        if observed is not None and not isinstance(observed, str):
            observed = json.dumps(observed, sort_keys=True, default=str)
        out[(table_name, name)] = {
            "doc_id": doc_id,
            "table_name": table_name,
            "expectation": name,
            "success": bool(r["success"]),
            "observed": observed,
            "run_id": run_id,
        }
    return list(out.values())


def chunks(items: Sequence[Any], n: int) -> list[Sequence[Any]]:
    """``items`` in slices of at most ``n`` (ids for ``IN (…)`` lists, rows for statements)."""
    return [items[i : i + n] for i in range(0, len(items), n)]


def duplicate_keys(columns: Sequence[str], key: Sequence[str], rows: Sequence[Row]) -> int:
    """How many of ``rows`` (tuples in ``columns`` order) repeat a key already seen."""
    return len(rows) - len(set(map(itemgetter(*(columns.index(c) for c in key)), rows)))


def content_hash(*parts: Any) -> str:
    """A hash of the rows about to be written (their column order is fixed by the row builders).

    Pickle (protocol 5) is the cheapest stable serialisation of these plain tuples of str, int,
    float and None; if its bytes ever changed between Python versions the only effect would be one
    unnecessary rewrite of an unchanged document.
    """
    h = hashlib.sha256()
    for part in parts:
        h.update(pickle.dumps(part, protocol=5))
        h.update(b"\x1e")
    return h.hexdigest()


def block_count(results: Sequence[DocumentResult]) -> int:
    """How many block rows these results make (0 for a malformed one: building its rows raises)."""
    try:
        return sum(len(p.parsed.blocks) for r in results for p in r.pages)
    except (TypeError, AttributeError):
        return 0


def _check_unique(table: str, columns: tuple[str, ...], rows: Sequence[Row], doc_id: str) -> None:
    key = KEYS[table]
    dup = duplicate_keys(columns, key, rows)
    if dup:
        raise errors.DeepOcrError(
            errors.LOAD_ERROR, f"doc {doc_id}: {dup} duplicate key(s) in {table} on ({', '.join(key)})"
        )


@dataclass(frozen=True)
class DocRows:
    """Everything one document writes, built once per load: rows in ``*_COLUMNS`` order, the
    page-level failures it carries, and the content hash the ledger compares."""

    doc: dict[str, Any]
    pages: list[Row]
    blocks: list[Row]
    cells: list[Row]
    failures: list[Failure]
    content_hash: str


def build_doc_rows(result: DocumentResult) -> DocRows:
    """The rows of one document, checked (unique keys) and hashed. A malformed record raises a
    ``load_error`` that names the document and the exception class only (the message would quote
    the bad value, which may be document text)."""
    try:
        doc = document_row(result)
        pages, blocks, cells = page_tuples(result), block_tuples(result), cell_tuples(result)
        _check_unique("pages", PAGE_COLUMNS, pages, result.doc_id)
        _check_unique("blocks", BLOCK_COLUMNS, blocks, result.doc_id)
        _check_unique("table_cells", CELL_COLUMNS, cells, result.doc_id)
        failures = list(result.failures)
        chash = content_hash(doc, pages, blocks, cells, [f.to_dict() for f in failures])
    except (TypeError, ValueError, IndexError, AttributeError) as exc:
        raise errors.DeepOcrError(
            errors.LOAD_ERROR, f"doc {result.doc_id}: malformed record ({type(exc).__name__})"
        ) from None
    return DocRows(doc, pages, blocks, cells, failures, chash)


def ledger_row(result: DocumentResult, rows: DocRows, run_id: str, now: datetime) -> dict[str, Any]:
    """The ``load_ledger`` row of a loaded document: its live config and content hash."""
    return {
        "doc_id": result.doc_id,
        "run_id": run_id,
        "config_fingerprint": result.config_fingerprint,
        "content_hash": rows.content_hash,
        "pages": len(rows.pages),
        "blocks": len(rows.blocks),
        "cells": len(rows.cells),
        "loaded_at": now,
    }


def new_rows(
    todo: Sequence[tuple[DocumentResult, DocRows]],
    vrows: Sequence[dict[str, Any]],
    run_id: str,
    now: datetime,
    skip: str | None = None,
) -> Iterator[tuple[str, tuple[str, ...], list[Row]]]:
    """(table, columns, rows) of everything a load of ``todo`` writes, in the order written:
    documents, pages, blocks, cells, validation results, then the ledger (``skip``: a table
    already written, whose rows are not gathered again)."""
    yield (
        "documents",
        (*todo[0][1].doc, "loaded_at", "run_id"),
        [(*r.doc.values(), now, run_id) for _, r in todo],
    )
    yield "pages", PAGE_COLUMNS, [x for _, r in todo for x in r.pages]
    if skip != "blocks":
        yield "blocks", BLOCK_COLUMNS, [x for _, r in todo for x in r.blocks]
    yield "table_cells", CELL_COLUMNS, [x for _, r in todo for x in r.cells]
    yield (
        "validation_results",
        VALIDATION_COLUMNS,
        [tuple(v[c] for c in VALIDATION_COLUMNS) for v in vrows],
    )
    ledger = [ledger_row(res, r, run_id, now) for res, r in todo]
    yield "load_ledger", tuple(ledger[0]), [tuple(d.values()) for d in ledger]


def validation_rows_of(
    docs: Sequence[DocumentResult], by_doc: Mapping[str, list[dict[str, Any]]] | None, run_id: str
) -> list[dict[str, Any]]:
    """:func:`validation_rows` of each of ``docs`` (doc id → its expectation results)."""
    by_doc = by_doc or {}
    return [row for r in docs for row in validation_rows(r.doc_id, by_doc.get(r.doc_id) or [], run_id)]
