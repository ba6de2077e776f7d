"""Warehouse loads against real databases: SQLite files, PostgreSQL (pg_url), DuckDB files."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.records import (
    Block,
    DocumentRef,
    DocumentResult,
    Failure,
    PageRecord,
    ParsedPage,
    Table,
    TableCell,
)
from airflow_provider_deepocr.core.warehouse import (
    Warehouse,
    block_rows,
    cell_rows,
    page_rows,
)
from airflow_provider_deepocr.core.warehouse.dialects import live_columns_query
from tests.digest import table_digest

SECRET = "PATIENT-SECRET-TEXT"  # document text that must never show up in observed values / logs
KINDS = ("heading", "text", "list_item", "text", "caption", "footnote")


def make_result(
    n_pages: int = 3,
    blocks_per_page: int = 5,
    *,
    name: str = "doc-a",
    fingerprint: str = "fp000000000000a1",
    engine: str = "deepseek-ocr-2",
    with_table: bool = True,
    page_failure: bool = False,
) -> DocumentResult:
    """A realistic DocumentResult: N pages of blocks, one table with cells on page 1."""
    data = f"%PDF-1.7 {name}".encode()
    doc_id = hashlib.sha256(data).hexdigest()
    ref = DocumentRef(uri=f"s3://bucket/in/{name}.pdf", size=len(data), version="etag-1")
    pages: list[PageRecord] = []
    for p in range(1, n_pages + 1):
        blocks: list[Block] = []
        tables: list[Table] = []
        for i in range(blocks_per_page):
            y = 20 + i * (900 // max(blocks_per_page, 1))
            bbox = (50, y, 950, min(y + 40, 999))
            kind = KINDS[i % len(KINDS)]
            text = f"{SECRET} page {p} block {i}"
            blocks.append(
                Block(
                    index=i,
                    label=kind if kind != "list_item" else "text",
                    kind=kind,
                    bbox=bbox,
                    bbox_px=(bbox[0] * 1.7, bbox[1] * 2.2, bbox[2] * 1.7, bbox[3] * 2.2),
                    raw=f"<|ref|>{kind}<|/ref|><|det|>[[{', '.join(map(str, bbox))}]]<|/det|>\n{text}",
                    text=text,
                    flags=[],
                )
            )
        if with_table and p == 1:
            ti = len(blocks)
            blocks.append(
                Block(
                    index=ti,
                    label="table",
                    kind="table",
                    bbox=(60, 940, 940, 990),
                    bbox_px=None,
                    raw="<table>...</table>",
                    text=f"{SECRET} table",
                )
            )
            cells = [
                TableCell(row=r, col=c, rowspan=1, colspan=1, is_header=(r == 0), text=f"{SECRET} r{r}c{c}")
                for r in range(3)
                for c in range(2)
            ]
            tables.append(Table(block_index=ti, caption=f"{SECRET} caption", n_rows=3, n_cols=2, cells=cells))
        parsed = ParsedPage(
            page_no=p,
            blocks=blocks,
            tables=tables,
            markdown="\n\n".join(b.text for b in blocks),
            flags=[],
        )
        pages.append(
            PageRecord(
                doc_id=doc_id,
                page_no=p,
                source_uri=ref.uri,
                source_version=ref.version,
                width=1700,
                height=2200,
                dpi=200,
                engine=engine,
                model="deepseek-community/DeepSeek-OCR-2",
                revision="0123abc",
                prompt="<image>\n<|grounding|>Convert the document to markdown.",
                mode="gundam",
                finish_reason="eos",
                attempts=1,
                prompt_tokens=300,
                output_tokens=120 + p,
                seconds=1.25,
                config_fingerprint=fingerprint,
                parsed=parsed,
            )
        )
    failures = []
    if page_failure:
        n_pages += 1
        failures.append(
            Failure(
                source_uri=ref.uri,
                reason=errors.REPETITION_LOOP,
                detail="page gave up after 3 attempts",
                doc_id=doc_id,
                page_no=n_pages,
                stage="ocr",
            )
        )
    return DocumentResult(
        ref=ref,
        doc_id=doc_id,
        media_type="application/pdf",
        page_count=n_pages,
        config_fingerprint=fingerprint,
        pages=pages,
        failures=failures,
    )


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


def redshift_url(pg_url: str) -> str:
    """The same PostgreSQL database through SQLAlchemy's Redshift dialect (no TLS on loopback)."""
    return pg_url.replace("postgresql+psycopg://", "redshift+psycopg2://", 1) + "?sslmode=disable"


def _backend_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(URL, load method) of a test's ``backend``: ``name`` or ``name-merge``. ``redshift``: the
    Redshift dialect (sqlalchemy-redshift over psycopg2, its staged MERGE) against the local
    PostgreSQL 15, which runs Redshift's statements for real."""
    name, _, method = backend.partition("-")
    if name == "redshift":
        pg = request.getfixturevalue("pg_url")
        return redshift_url(pg), "merge"
    if name == "sqlite":
        url = f"sqlite:///{tmp_path / 'wh.db'}"
    elif name == "duckdb":
        url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    else:
        url = request.getfixturevalue("pg_url")
    return url, method or "replace"


@pytest.fixture(params=["sqlite", "postgresql", "duckdb", "postgresql-merge", "duckdb-merge"])
def wh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    # "-merge": the staged-MERGE path Snowflake, BigQuery and Redshift take, run for real
    url, method = _backend_url(request.param, request, tmp_path)
    w = Warehouse(url, load_method=method)
    w.create()
    try:
        yield w
    finally:
        w.dispose()


def snapshot(w: Warehouse, *, skip: tuple[str, ...] = ("loaded_at", "recorded_at")) -> dict[str, list[tuple]]:
    """Sorted content of every table, without the given columns."""
    out: dict[str, list[tuple]] = {}
    with w.engine.connect() as conn:
        for name in (
            "documents",
            "pages",
            "blocks",
            "table_cells",
            "failures",
            "load_ledger",
            "validation_results",
        ):
            t = w.table(name)
            cols = [c for c in t.columns if c.name not in skip]
            rows = conn.execute(sa.select(*cols)).all()
            out[name] = sorted((tuple(r) for r in rows), key=repr)
    return out


# --------------------------------------------------------------------------------------------
# unit: row builders and configuration
# --------------------------------------------------------------------------------------------


def test_row_builders_shape() -> None:
    r = make_result(2, 3)
    pages, blocks, cells = page_rows(r), block_rows(r), cell_rows(r)
    assert len(pages) == 2 and len(blocks) == 2 * 3 + 1 and len(cells) == 6
    assert {"doc_id", "page_no", "engine", "model", "finish_reason", "markdown"} <= set(pages[0])
    assert {"doc_id", "page_no", "block_no", "label", "x0", "y0", "x1", "y1", "text"} <= set(blocks[0])
    table_block = [b for b in blocks if b["kind"] == "table"][0]
    assert table_block["px_x0"] is None and table_block["x0"] == 60
    assert cells[0]["block_no"] == table_block["block_no"] and cells[0]["is_header"] is True


@pytest.mark.parametrize("prefix", ["", "1abc", "deep-ocr", "x; drop table y", "a" * 64, 'q"'])
def test_bad_prefix_is_config_error(prefix: str, tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError):
        Warehouse(f"sqlite:///{tmp_path / 'x.db'}", prefix=prefix)


def test_bad_schema_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError):
        Warehouse(f"duckdb:///{tmp_path / 'x.duckdb'}", schema="public; drop")
    with pytest.raises(errors.ConfigError):  # SQLite has no schemas to create
        Warehouse(f"sqlite:///{tmp_path / 'x.db'}", schema="ocr")


def test_duplicate_block_ids_are_a_typed_load_error(tmp_path: Path) -> None:
    w = Warehouse(f"sqlite:///{tmp_path / 'd.db'}")
    w.create()
    r = make_result(1, 3)
    r.pages[0].parsed.blocks[1].index = 0
    with pytest.raises(errors.DeepOcrError) as ei:
        w.load_document(r, "run-1")
    assert ei.value.reason == errors.LOAD_ERROR and SECRET not in str(ei.value)
    assert w.counts()["documents"] == 0


# --------------------------------------------------------------------------------------------
# every backend
# --------------------------------------------------------------------------------------------


def test_create_twice_and_counts(wh: Warehouse) -> None:
    wh.create()
    assert wh.counts() == dict.fromkeys(
        (
            "documents",
            "pages",
            "blocks",
            "table_cells",
            "failures",
            "load_ledger",
            "validation_results",
            "runs",
            "reviews",
            "sources",
        ),
        0,
    )


def test_load_twice_is_idempotent(wh: Warehouse) -> None:
    r = make_result(3, 4, page_failure=True)
    c1 = wh.load_document(r, "run-1")
    assert c1 == {
        "documents": 1,
        "pages": 3,
        "blocks": 13,
        "cells": 6,
        "failures": 1,
        "validation_results": 0,
        "unchanged": 0,
    }
    snap1 = snapshot(wh, skip=())
    counts1 = wh.counts()
    # the same batch again, even under a new run id: nothing changes, timestamps included
    c2 = wh.load_document(r, "run-2")
    assert c2["unchanged"] == 1 and c2["pages"] == 3
    assert wh.counts() == counts1
    assert snapshot(wh, skip=()) == snap1
    # a forced rewrite leaves identical content (bar timestamps and run id)
    wh.load_document(r, "run-1", force=True)
    assert wh.counts() == counts1
    assert snapshot(wh) == snapshot_wo_ts(snap1, wh)
    assert counts1["failures"] == 1 and counts1["documents"] == 1 and counts1["table_cells"] == 6


def snapshot_wo_ts(snap: dict[str, list[tuple]], w: Warehouse) -> dict[str, list[tuple]]:
    out = {}
    for name, rows in snap.items():
        idx = [i for i, c in enumerate(w.table(name).columns) if c.name not in ("loaded_at", "recorded_at")]
        out[name] = sorted((tuple(r[i] for i in idx) for r in rows), key=repr)
    return out


def test_reload_with_new_fingerprint_replaces(wh: Warehouse) -> None:
    old = make_result(4, 5, fingerprint="fp-old")
    wh.load_document(old, "run-1")
    assert wh.is_loaded(old.doc_id, "fp-old")
    new = make_result(2, 3, fingerprint="fp-new", engine="rapidocr", with_table=False)
    assert new.doc_id == old.doc_id
    c = wh.load_document(new, "run-2")
    assert c["unchanged"] == 0
    counts = wh.counts()
    assert (counts["documents"], counts["pages"], counts["blocks"], counts["table_cells"]) == (1, 2, 6, 0)
    assert wh.is_loaded(new.doc_id, "fp-new") and not wh.is_loaded(new.doc_id, "fp-old")
    entry = wh.ledger_entry(new.doc_id)
    assert entry is not None and entry["run_id"] == "run-2" and entry["blocks"] == 6
    with wh.engine.connect() as conn:
        engines = conn.execute(sa.select(wh.pages.c.engine).distinct()).scalars().all()
        fps = conn.execute(sa.select(wh.blocks.c.config_fingerprint).distinct()).scalars().all()
    assert engines == ["rapidocr"] and fps == ["fp-new"]


def test_failures_idempotent_and_cleared_by_load(wh: Warehouse) -> None:
    r = make_result(1, 2)
    unreadable = Failure(
        source_uri="s3://bucket/in/broken.pdf", reason=errors.CORRUPT, detail="xref", stage="read"
    )
    by_uri = Failure(source_uri=r.ref.uri, reason=errors.READ_ERROR, detail="timeout", stage="read")
    assert wh.record_failures([unreadable, unreadable], "run-1", "fp") == 1
    assert wh.record_failures([unreadable, by_uri], "run-2", "fp") == 2
    assert wh.counts()["failures"] == 2
    with wh.engine.connect() as conn:
        run = conn.execute(
            sa.select(wh.failures.c.run_id).where(wh.failures.c.source_uri == unreadable.source_uri)
        ).scalar_one()
    assert run == "run-2"
    # the file at r.ref.uri now loads: its earlier (unhashed) failure goes, the other stays
    wh.load_document(r, "run-3")
    assert wh.counts()["failures"] == 1
    # a read error after a good load does not wipe the rows; the next identical load clears it
    wh.record_failures([by_uri], "run-4", "fp")
    assert wh.counts()["pages"] == 1 and wh.counts()["failures"] == 2
    assert wh.load_document(r, "run-5")["unchanged"] == 1
    assert wh.counts()["failures"] == 1


def test_quarantine_removes_rows_and_records_validation(wh: Warehouse) -> None:
    good = make_result(2, 3)
    other = make_result(1, 2, name="doc-b")
    wh.load_document(good, "run-1")
    wh.load_document(other, "run-1")
    vrows = [
        {"table_name": "blocks", "expectation": "expect_column_values_to_be_between(x0)", "success": False,
         "observed": {"unexpected_count": 1}},
        {"table_name": "pages", "expectation": "expect_column_values_to_not_be_null(doc_id)", "success": True,
         "observed": {"unexpected_count": 0}},
        {"table_name": "pages", "expectation": "expect_column_values_to_not_be_null(doc_id)", "success": True,
         "observed": None},
    ]  # fmt: skip
    out = wh.quarantine(good, errors.VALIDATION_FAILED, "1 failed expectation(s): blocks", "run-2", vrows)
    assert out == {"failures": 1, "validation_results": 3}
    assert not wh.is_loaded(good.doc_id, good.config_fingerprint)
    with wh.engine.connect() as conn:
        for name in ("documents", "pages", "blocks", "table_cells"):
            t = wh.table(name)
            n = conn.execute(
                sa.select(sa.func.count()).select_from(t).where(t.c.doc_id == good.doc_id)
            ).scalar()
            assert n == 0, name
        f = conn.execute(sa.select(wh.failures)).mappings().all()
        vr = conn.execute(sa.select(wh.validation_results)).mappings().all()
    assert len(f) == 1 and f[0]["reason"] == "validation_failed" and f[0]["doc_id"] == good.doc_id
    assert f[0]["page_no"] is None and f[0]["stage"] == "validate"
    assert {r["expectation"] for r in vr} >= {"expect_column_values_to_not_be_null(doc_id)#2"}
    assert all(r["doc_id"] == good.doc_id for r in vr)
    assert wh.counts()["documents"] == 1  # the other document is untouched
    # quarantining twice changes nothing; a good load afterwards clears failure + validation rows
    wh.quarantine(good, errors.VALIDATION_FAILED, "1 failed expectation(s): blocks", "run-2", vrows)
    assert wh.counts()["failures"] == 1 and wh.counts()["validation_results"] == 3
    wh.load_document(good, "run-3")
    c = wh.counts()
    assert c["failures"] == 0 and c["validation_results"] == 0 and c["documents"] == 2


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "executemany"])
def test_no_half_loaded_document_on_error(wh: Warehouse, bulk: bool) -> None:
    wh.copy_min_rows = 1 if bulk else 10**9
    r = make_result(2, 3)
    wh.load_document(r, "run-1")
    before = snapshot(wh, skip=())

    def fails(bad: DocumentResult, **kw: Any) -> None:
        with pytest.raises(errors.DeepOcrError) as ei:
            wh.load_document(bad, "run-2", **kw)
        assert ei.value.reason == errors.LOAD_ERROR
        assert SECRET not in str(ei.value) and SECRET not in repr(ei.value)
        assert ei.value.__cause__ is None and ei.value.__suppress_context__
        assert snapshot(wh, skip=()) == before

    # a malformed record is refused when its rows are built (streamed, after the delete)
    bad = make_result(3, 3, fingerprint="fp-bad")
    bad.pages[2].parsed.blocks[2].bbox = (1, 2, 3, f"{SECRET} 4")  # type: ignore[assignment]
    fails(bad)
    # an error after the delete and every insert (bad validation rows) rolls all of it back
    fails(make_result(3, 3, fingerprint="fp-bad"), validation_rows=[{"table_name": "pages"}])
    if wh.dialect != "sqlite":  # SQLite stores text in an INTEGER column; the others refuse it
        bad = make_result(3, 3, fingerprint="fp-bad")
        bad.pages[0].parsed.tables[0].cells[-1].col = SECRET  # type: ignore[assignment]
        fails(bad)


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "executemany"])
def test_bulk_and_executemany_give_same_rows(wh: Warehouse, bulk: bool) -> None:
    wh.copy_min_rows = 1 if bulk else 10**9
    r = make_result(3, 4, page_failure=True)
    r.pages[1].parsed.blocks[0].bbox = None
    r.pages[1].parsed.blocks[0].bbox_px = None
    r.pages[1].parsed.blocks[1].flags = ["low_confidence", "merged"]
    wh.load_document(r, "run-1")
    with wh.engine.connect() as conn:
        blocks = conn.execute(sa.select(wh.blocks).order_by("page_no", "block_no")).mappings().all()
        cells = conn.execute(sa.select(wh.table_cells).order_by("row_no", "col_no")).mappings().all()
    expected = sorted(block_rows(r), key=lambda b: (b["page_no"], b["block_no"]))
    assert [dict(b) for b in blocks] == expected
    assert [dict(c) for c in cells] == sorted(cell_rows(r), key=lambda c: (c["row_no"], c["col_no"]))


def test_nul_and_surrogates_in_model_text_load_everywhere(wh: Warehouse) -> None:
    r = make_result(1, 2)
    blk = r.pages[0].parsed.blocks[0]
    blk.text = "a\x00b \ud800 c"
    blk.raw = "\x00" * 3
    r.pages[0].parsed.markdown = "x\x00y"
    r.pages[0].parsed.tables[0].cells[0].text = "\x00\udfff"
    assert wh.load_document(r, "run-1")["blocks"] == 3
    with wh.engine.connect() as conn:
        text = conn.execute(sa.select(wh.blocks.c.text).where(wh.blocks.c.block_no == 0)).scalar_one()
        md = conn.execute(sa.select(wh.pages.c.markdown)).scalar_one()
    assert text == "ab ? c" and md == "xy"


def test_schema_on_postgres(pg_url: str) -> None:
    w = Warehouse(pg_url, schema="ocr", prefix="t_")
    w.create()
    w.create()
    w.load_document(make_result(1, 2), "run-1")
    with w.engine.connect() as conn:
        n = conn.execute(sa.text("select count(*) from ocr.t_blocks")).scalar()
    assert n == 3
    w.dispose()


# --------------------------------------------------------------------------------------------
# concurrency
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["postgresql", "postgresql-merge", "duckdb", "duckdb-merge", "redshift"])
def test_threads_racing_on_one_document(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url, method = _backend_url(backend, request, tmp_path)
    w = Warehouse(url, load_method=method)
    w.create()
    results = [make_result(3, 40, fingerprint=f"fp-{i % 2}") for i in range(6)]
    errs: list[BaseException] = []
    barrier = threading.Barrier(len(results))

    def go(i: int) -> None:
        try:
            barrier.wait()
            w.load_document(results[i], f"run-{i}", force=True)
        except BaseException as exc:  # pragma: no cover - reported below
            errs.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errs
    c = w.counts()
    assert (c["documents"], c["pages"], c["blocks"], c["table_cells"], c["load_ledger"]) == (1, 3, 121, 6, 1)
    entry = w.ledger_entry(results[0].doc_id)
    assert entry is not None
    with w.engine.connect() as conn:
        fps = conn.execute(sa.select(w.blocks.c.config_fingerprint).distinct()).scalars().all()
    assert fps == [entry["config_fingerprint"]]  # the live copy is one loader's, whole
    w.dispose()


@pytest.mark.parametrize("method", ["replace", "merge"])
def test_failure_writers_racing_with_loads_postgres(pg_url: str, method: str) -> None:
    """record_failures and load_document writing the same failure id serialise, no dup-key error."""
    w = Warehouse(pg_url, load_method=method)
    w.create()
    r = make_result(1, 5, page_failure=True)
    page_failure = r.failures[0]
    errs: list[BaseException] = []
    barrier = threading.Barrier(6)

    def go(i: int) -> None:
        try:
            barrier.wait()
            if i % 2:
                w.record_failures([page_failure], f"run-{i}", r.config_fingerprint)
            else:
                w.load_document(r, f"run-{i}", force=True)
        except BaseException as exc:  # pragma: no cover - reported below
            errs.append(exc)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errs
    c = w.counts()
    assert (c["documents"], c["blocks"], c["failures"]) == (1, 6, 1)
    w.dispose()


def _load_in_process(url: str, method: str, i: int, start: float) -> None:
    w = Warehouse(url, load_method=method)
    r = make_result(2, 200, fingerprint=f"fp-{i}")
    time.sleep(max(0.0, start - time.time()))
    w.load_document(r, f"proc-{i}")
    w.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "postgresql-merge", "sqlite"])
def test_processes_racing_on_one_document(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url, method = _backend_url(backend, request, tmp_path)
    Warehouse(url, load_method=method).create()
    ctx = mp.get_context("spawn")
    start = time.time() + 3.0
    procs = [ctx.Process(target=_load_in_process, args=(url, method, i, start)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    w = Warehouse(url)
    c = w.counts()
    assert (c["documents"], c["pages"], c["blocks"], c["table_cells"], c["load_ledger"]) == (1, 2, 401, 6, 1)
    entry = w.ledger_entry(make_result(1, 1).doc_id)
    assert entry is not None
    with w.engine.connect() as conn:
        fps = conn.execute(sa.select(w.blocks.c.config_fingerprint).distinct()).scalars().all()
    assert fps == [entry["config_fingerprint"]]  # the live copy is one loader's, whole
    w.dispose()


#: How long a loader waits, after its ledger read, for the other loader to have read it too.
MEET_S = 2.0


def _meet_after_ledger_read(barrier: Any) -> None:
    """Make every load of this process wait at ``barrier`` (at most ``MEET_S``) right after it read
    the ledger and before it writes: the loader's own ``ledger_state``, wrapped (no hook in the
    package). Where the write lock is taken before the read, the second loader is still waiting for
    it, so the first gives up waiting after ``MEET_S`` and the second passes the broken barrier."""
    from airflow_provider_deepocr.core.warehouse import loader

    read = loader.ledger_state

    def meet(conn: sa.Connection, ledger: sa.Table, ids: Any) -> dict[str, tuple[str, str]]:
        prev = read(conn, ledger, ids)
        try:
            barrier.wait(MEET_S)
        except threading.BrokenBarrierError:
            pass
        return prev

    loader.ledger_state = meet  # type: ignore[assignment]


def _race_after_ledger_read(url: str, method: str, run_id: str, ready: Any, barrier: Any, out: Any) -> None:
    _meet_after_ledger_read(barrier)
    w = Warehouse(url, load_method=method)
    ready.wait(60)
    out.put((run_id, w.load_document(make_result(2, 50), run_id)["unchanged"]))
    w.dispose()


@pytest.mark.parametrize(
    "backend", ["sqlite", "postgresql", "postgresql-merge", "duckdb", "duckdb-merge", "redshift"]
)
def test_two_loaders_of_the_same_document_load_it_once(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two loaders of the same content, each stopped right after its ledger read until the other
    has read it too: the write lock taken before the read (SQLite ``BEGIN IMMEDIATE``, PostgreSQL
    advisory locks, DuckDB's lock in the process) makes the second read the first one's ledger
    row and skip the document. Without it both read an empty ledger and both write."""
    url, method = _backend_url(backend, request, tmp_path)
    w = Warehouse(url, load_method=method)
    w.create()
    outcomes: list[tuple[str, int]] = []
    if backend.startswith("duckdb"):  # one process per DuckDB file: threads
        from airflow_provider_deepocr.core.warehouse import loader

        monkeypatch.setattr(loader, "ledger_state", loader.ledger_state)  # restored after the test
        _meet_after_ledger_read(threading.Barrier(2))
        errs: list[BaseException] = []

        def go(run_id: str) -> None:
            try:
                outcomes.append((run_id, w.load_document(make_result(2, 50), run_id)["unchanged"]))
            except BaseException as exc:  # pragma: no cover - reported below
                errs.append(exc)

        threads = [threading.Thread(target=go, args=(f"run-{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errs
    else:
        ctx = mp.get_context("spawn")
        ready, barrier, out = ctx.Barrier(2), ctx.Barrier(2), ctx.Queue()
        procs = [
            ctx.Process(target=_race_after_ledger_read, args=(url, method, f"run-{i}", ready, barrier, out))
            for i in range(2)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0, 0]
        outcomes = [out.get(timeout=5) for _ in procs]
    # one wrote the document, the other found it in the ledger, unchanged
    assert sorted(unchanged for _, unchanged in outcomes) == [0, 1], outcomes
    (writer,) = [run_id for run_id, unchanged in outcomes if not unchanged]
    # every table holds exactly what one load by the writer leaves
    ref = Warehouse(w.engine, prefix="clean_", load_method=method)
    ref.create()
    ref.load_document(make_result(2, 50), writer)
    assert table_digest(w.engine, skip=("loaded_at", "seen_at")) == table_digest(
        w.engine, "clean_", skip=("loaded_at", "seen_at")
    )
    w.dispose()


def _rows_per_second(w: Warehouse, n_blocks: int) -> float:
    r = make_result(100, n_blocks // 100, with_table=False, fingerprint="fp-bench")
    t0 = time.perf_counter()
    w.load_document(r, "bench", force=True)
    return n_blocks / (time.perf_counter() - t0)


def test_bench_load_10k_blocks(wh: Warehouse, capsys: pytest.CaptureFixture[str]) -> None:
    rate = _rows_per_second(wh, 10_000)
    assert wh.counts()["blocks"] == 10_000
    with capsys.disabled():
        print(f"\n[bench] {wh.dialect}: load 10k blocks at {rate:,.0f} rows/s")


# --------------------------------------------------------------------------------------------
# batches of whole documents in one transaction
# --------------------------------------------------------------------------------------------


def test_a_batch_load_equals_loading_each_document(wh: Warehouse, tmp_path: Path) -> None:
    docs = [make_result(2, 3, name=f"doc-{i}", page_failure=i == 1) for i in range(4)]
    other = Warehouse(f"sqlite:///{tmp_path / 'one_by_one.db'}")
    other.create()
    for d in docs:
        other.load_document(d, "run-1")
    counts = wh.load_documents(docs, "run-1")
    assert counts["documents"] == 4 and counts["unchanged"] == 0
    assert wh.counts() == other.counts()
    assert snapshot(wh) == snapshot(other)
    # the same batch again changes nothing; forced, it rewrites identical rows
    again = wh.load_documents(docs, "run-2")
    assert again["unchanged"] == 4 and again["documents"] == 0
    wh.load_documents(docs, "run-3", force=True)
    no_run = ("loaded_at", "recorded_at", "run_id", "seen_at")
    assert snapshot(wh, skip=no_run) == snapshot(other, skip=no_run)
    # a new config for one document replaces just that one
    changed = make_result(1, 2, name="doc-2", fingerprint="fp-new")
    assert wh.load_documents([docs[0], changed], "run-4")["documents"] == 1
    assert wh.ledger_entry(changed.doc_id)["config_fingerprint"] == "fp-new"  # type: ignore[index]
    assert wh.counts()["documents"] == 4


def test_a_batch_load_writes_each_documents_validation_results(wh: Warehouse) -> None:
    docs = [make_result(1, 2, name=f"v-{i}") for i in range(3)]
    ok = {"table_name": "blocks", "expectation": "expect_x", "success": True, "observed": {"n": 2}}
    results = {d.doc_id: [ok, {**ok, "table_name": "pages"}] for d in docs}
    counts = wh.load_documents(docs, "run-1", validation_rows=results)
    assert counts["validation_results"] == 6

    def rows() -> list[tuple[Any, ...]]:
        vr = wh.validation_results
        with wh.engine.connect() as conn:
            q = sa.select(vr.c.doc_id, vr.c.table_name, vr.c.run_id, vr.c.observed).order_by(
                vr.c.doc_id, vr.c.table_name
            )
            return [tuple(r) for r in conn.execute(q)]

    first = rows()
    assert len(first) == 6 and {r[2] for r in first} == {"run-1"} and first[0][3] == '{"n": 2}'
    # unchanged documents keep no stale results either: the new run's replace them
    results[docs[0].doc_id] = [ok]
    again = wh.load_documents(docs, "run-2", validation_rows=results)
    assert again["unchanged"] == 3 and again["validation_results"] == 5
    assert {r[2] for r in rows()} == {"run-2"} and len(rows()) == 5
    # a forced reload without results drops the old ones (they described other rows)
    wh.load_documents(docs[:1], "run-3", force=True)
    assert len(rows()) == 4 and docs[0].doc_id not in {r[0] for r in rows()}


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "executemany"])
def test_a_bad_document_rolls_back_its_whole_batch(wh: Warehouse, bulk: bool) -> None:
    wh.copy_min_rows = 1 if bulk else 10**9
    good = make_result(2, 3, name="good")
    wh.load_documents([good], "run-1")
    before = snapshot(wh, skip=())
    bad = make_result(2, 3, name="bad")
    bad.pages[0].parsed.blocks[1].index = 0  # duplicate block id
    # bulk: the good documents' blocks are already streamed when the bad one's rows are built
    with pytest.raises(errors.DeepOcrError) as ei:
        wh.load_documents([make_result(1, 1, name="new"), good, bad], "run-2", force=True)
    assert ei.value.reason == errors.LOAD_ERROR and SECRET not in str(ei.value)
    assert "duplicate key" in str(ei.value)
    assert snapshot(wh, skip=()) == before
    wh.load_documents([make_result(1, 1, name="new"), good], "run-3", force=True)  # usable after
    assert wh.counts()["documents"] == 2


def test_each_documents_rows_are_built_once_per_load(wh: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    wh.copy_min_rows = 1
    docs = [make_result(2, 3, name=f"d{i}") for i in range(3)]
    from airflow_provider_deepocr.core.warehouse import loader

    built: list[str] = []
    real = loader.build_doc_rows

    def counting(result: DocumentResult) -> Any:
        built.append(result.doc_id)
        return real(result)

    monkeypatch.setattr(loader, "build_doc_rows", counting)
    wh.load_documents(docs, "run-1")  # new documents: built while they stream
    assert sorted(built) == sorted(d.doc_id for d in docs)
    built.clear()
    counts = wh.load_documents(docs, "run-2")  # known, same config: built to compare hashes only
    assert counts["unchanged"] == 3 and sorted(built) == sorted(d.doc_id for d in docs)
    built.clear()
    one = wh.load_document(docs[0], "run-3", force=True)
    assert built == [docs[0].doc_id] and one["blocks"] == len(block_rows(docs[0]))


def test_create_adds_missing_columns_to_an_older_table(wh: Warehouse) -> None:
    """A table made by an older version gains the new nullable columns; its rows stay."""
    wh.create()
    r = make_result(1, 2)
    wh.load_document(r, "run-1")
    pages = wh.pages.name
    with wh.engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {pages} DROP COLUMN output_tokens")
        conn.exec_driver_sql(f"ALTER TABLE {pages} DROP COLUMN mode")
    assert sorted(wh.create()) == [f"{pages}.mode", f"{pages}.output_tokens"]
    assert wh.create() == []
    assert wh.counts()["pages"] == 1
    wh.load_document(r, "run-2", force=True)
    with wh.engine.connect() as conn:
        assert conn.execute(sa.select(wh.pages.c.output_tokens)).scalar_one() == r.pages[0].output_tokens


def test_page_rotation_and_coverage_columns_are_added_and_loaded(wh: Warehouse) -> None:
    """Issue 21's page columns: an older pages table gains them; a page's values land in them."""
    wh.create()
    pages = wh.pages.name
    with wh.engine.begin() as conn:
        conn.exec_driver_sql(f"ALTER TABLE {pages} DROP COLUMN rotation")
        conn.exec_driver_sql(f"ALTER TABLE {pages} DROP COLUMN coverage")
    assert sorted(wh.create()) == [f"{pages}.coverage", f"{pages}.rotation"]
    r = make_result(2, 2)
    r.pages[0].rotation, r.pages[0].coverage = 270, 0.9375
    wh.load_document(r, "run-1")
    with wh.engine.connect() as conn:
        c = wh.pages.c
        got = conn.execute(sa.select(c.page_no, c.rotation, c.coverage).order_by(c.page_no)).all()
    assert [tuple(g) for g in got] == [(1, 270, 0.9375), (2, None, None)]


def test_row_builders_cover_every_content_column_once() -> None:
    from airflow_provider_deepocr.core import warehouse as W

    md = W.build_metadata("x_", None)
    for name, columns in (
        ("pages", W.PAGE_COLUMNS),
        ("blocks", W.BLOCK_COLUMNS),
        ("table_cells", W.CELL_COLUMNS),
    ):
        assert len(set(columns)) == len(columns)
        assert set(columns) == {c.name for c in md.tables[f"x_{name}"].columns}
        assert set(W.KEYS[name]) == {c.name for c in md.tables[f"x_{name}"].primary_key.columns}


# --------------------------------------------------------------------------------------------
# Snowflake, BigQuery, Redshift: no server here; what the Warehouse picks and emits for them
# --------------------------------------------------------------------------------------------

SERVERLESS_URLS = {
    "snowflake": "snowflake://user:pw@account/db/public",
    "bigquery": "bigquery://project/dataset",
    "redshift": "redshift+psycopg2://user:pw@host:5439/db",
}


@pytest.mark.parametrize("name", sorted(SERVERLESS_URLS))
def test_cloud_warehouses_load_through_staged_merge(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_deepocr.core.warehouse import merge

    if name == "bigquery":  # the dialect asks for credentials when the engine is made
        import google.auth
        from google.auth.credentials import AnonymousCredentials

        monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), "project"))
    engine = sa.create_engine(SERVERLESS_URLS[name])  # connects only when used
    w = Warehouse(engine, schema="ocr")
    assert w.dialect == name and w.load_method == "merge"
    with pytest.raises(errors.ConfigError, match="load_method='merge'"):
        Warehouse(engine, load_method="replace")
    ddl = "\n".join(merge.warehouse_ddl(engine.dialect, w.metadata))
    assert "CREATE INDEX" not in ddl and ddl.count("CREATE TABLE IF NOT EXISTS") == 10
    # timestamps keep their time zone everywhere (BigQuery's DATETIME would drop it)
    loaded_at = sa.schema.CreateTable(w.documents).compile(dialect=engine.dialect)
    assert re.search(
        r"loaded_at\W*\s+(TIMESTAMP|TIMESTAMP_TZ|TIMESTAMPTZ|TIMESTAMP WITH TIME ZONE)\b", str(loaded_at)
    )
    stmt, params = live_columns_query(engine.dialect, w.blocks, engine.url)
    sql = str(stmt)
    if name == "bigquery":
        assert "`ocr`.INFORMATION_SCHEMA.COLUMNS WHERE table_name = 'deepocr_blocks'" in sql and params == {}
    else:  # Snowflake stores unquoted names upper-case: compared case-insensitively
        assert "lower(table_name) = lower(:t)" in sql and params == {"t": "deepocr_blocks", "s": "ocr"}


def test_replace_is_the_default_where_copy_exists_and_merge_can_be_chosen(tmp_path: Path) -> None:
    assert Warehouse(f"sqlite:///{tmp_path / 'a.db'}").load_method == "replace"
    with pytest.raises(errors.ConfigError):
        Warehouse(f"sqlite:///{tmp_path / 'a.db'}", load_method="merge")  # SQLite has no MERGE
    with pytest.raises(errors.ConfigError):
        Warehouse(f"sqlite:///{tmp_path / 'a.db'}", load_method="upsert")
    assert Warehouse(f"duckdb:///{tmp_path / 'a.duckdb'}", load_method="merge").load_method == "merge"


def test_postgres_takes_every_documents_lock_in_one_statement(pg_url: str) -> None:
    from airflow_provider_deepocr.core.warehouse.dialects import begin_write, make_engine

    engine = make_engine(pg_url)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    keys = [f"deepocr:test:{i}" for i in (3, 1, 2, 1)]
    try:
        with engine.connect() as conn:
            begin_write(conn, keys)
            taken = len(statements)
            held = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                )
            ).scalar_one()
            conn.rollback()
    finally:
        engine.dispose()
    assert held == 3 and taken == 1


# --------------------------------------------------------------------------------------------
# A warehouse that cannot be used: one line naming it (password masked) and the cause


def _refused(url: str, **kwargs: Any) -> errors.WarehouseError:
    with pytest.raises(errors.WarehouseError) as info:
        Warehouse(url, **kwargs).create()
    assert "OperationalError" not in str(info.value) and "\n" not in str(info.value)
    return info.value


def test_unreachable_warehouse_names_it_with_the_password_masked(closed_port: int) -> None:
    err = _refused(f"postgresql+psycopg://loader:hunter2@127.0.0.1:{closed_port}/x")
    assert err.reason == errors.WAREHOUSE_UNREACHABLE
    assert str(err) == (
        "warehouse_unreachable: cannot connect to warehouse "
        f"postgresql+psycopg://loader:***@127.0.0.1:{closed_port}/x (connection refused)"
    )


def test_wrong_password_and_unknown_user_are_authentication_failures(
    pg_password_server: dict[str, str], pg_server_url: str
) -> None:
    port = pg_password_server["port"]
    err = _refused(f"postgresql+psycopg://reader:not-the-password@127.0.0.1:{port}/postgres")
    assert str(err).endswith("(wrong password or no such user)")
    assert err.reason == errors.WAREHOUSE_AUTH_FAILED and "reader:***@" in str(err)
    assert "not-the-password" not in str(err)
    # password authentication does not say which of the two was wrong: the same line
    err = _refused(f"postgresql+psycopg://nobody:pw@127.0.0.1:{port}/postgres")
    assert err.reason == errors.WAREHOUSE_AUTH_FAILED
    assert str(err).endswith("(wrong password or no such user)")
    # trust authentication (the machine's server) names the missing role
    err = _refused(pg_server_url.replace("postgres@", "deepocr_nobody@").rsplit("/", 1)[0] + "/postgres")
    assert err.reason == errors.WAREHOUSE_AUTH_FAILED and str(err).endswith("(no such user)")


def test_missing_database_or_database_file(pg_server_url: str, tmp_path: Path) -> None:
    err = _refused(pg_server_url.rsplit("/", 1)[0] + "/deepocr_no_such_database")
    assert err.reason == errors.WAREHOUSE_NO_DATABASE and str(err).endswith("(no such database)")
    err = _refused(f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}")
    assert err.reason == errors.WAREHOUSE_NO_DATABASE
    assert str(err).endswith("(cannot open the database file)")


def test_missing_schema_privilege_names_the_schema(pg_password_server: dict[str, str]) -> None:
    reader = pg_password_server["reader"]
    err = _refused(reader, schema="locked")
    assert err.reason == errors.WAREHOUSE_PERMISSION_DENIED
    assert "no privilege in schema locked of warehouse" in str(err) and "reader:***@" in str(err)
    assert "(permission denied for " in str(err)
    err = _refused(reader)  # PostgreSQL 15+: nobody but the owner creates in public
    assert str(err).endswith("(permission denied for schema public)")
    # the same warehouse, as its owner: nothing wrong with it
    assert Warehouse(pg_password_server["admin"], schema="locked").create() == []


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgres://postgres@127.0.0.1:5432/x", "write postgresql+psycopg://user@host:5432/db"),
        ("warehouse.db", "for a SQLite file write sqlite:///warehouse.db"),
        ("mssqlx://u@h/db", "known databases: sqlite, postgresql, duckdb"),
    ],
)
def test_common_url_mistakes_say_what_to_write(url: str, says: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        Warehouse(url)
    assert says in str(info.value)


@pytest.mark.parametrize("scheme", ["sqlite", "duckdb"])
def test_a_reader_never_creates_a_missing_database_file(scheme: str, tmp_path: Path) -> None:
    path = tmp_path / f"absent.{scheme}"
    with pytest.raises(errors.WarehouseError) as info:
        Warehouse(f"{scheme}:///{path}", must_exist=True)
    assert info.value.reason == errors.WAREHOUSE_NO_DATABASE
    assert "does not exist" in str(info.value)
    assert not path.exists()
    Warehouse(f"{scheme}:///{path}").create()  # a writer makes it
    assert path.exists()
    Warehouse(f"{scheme}:///{path}", must_exist=True).dispose()
