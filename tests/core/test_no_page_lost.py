"""No page is lost for good (issue 20): a page that failed comes back in the next run, and every
source URI is kept when bytes repeat. Real engine class, real warehouse (SQLite / PostgreSQL)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.engines.base import OcrEngine
from airflow_provider_deepocr.core.pipeline import run_pipeline, stage_list
from airflow_provider_deepocr.core.records import OcrResult, PageImage
from airflow_provider_deepocr.core.sources import WorkArea, storage_for
from airflow_provider_deepocr.core.warehouse import Warehouse


class Scripted(OcrEngine):
    """Reads a page as ``fax page <n> text``; fails the pages in ``fail`` (once each, when
    ``once``), and records every page it was asked for."""

    name = "scripted"
    model = "scripted-1"
    batch_size = 2

    def __init__(self, fail: set[int] | None = None) -> None:
        self.fail = set(fail or ())
        self.asked: list[int] = []

    def describe(self) -> dict[str, object]:
        return {"engine": self.name, "model": self.model}

    def ocr(self, pages: Sequence[PageImage], temperature: float = 0.0) -> list[OcrResult]:
        out = []
        for p in pages:
            self.asked.append(p.page_no)
            if p.page_no in self.fail:
                out.append(OcrResult("", "error", self.name, self.model))
                continue
            raw = f"<|ref|>text<|/ref|><|det|>[[50, 50, 950, 200]]<|/det|>\nfax page {p.page_no} text\n"
            out.append(OcrResult(raw, "eos", self.name, self.model, output_tokens=5))
        return out


def _tiff(pages: int, height: int = 140) -> bytes:
    from PIL import Image

    frames = [Image.new("RGB", (300, height + i), "white") for i in range(pages)]
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


def _work(tmp_path: Path) -> WorkArea:
    root = str(tmp_path / "work")
    return WorkArea(root, storage_for(root))


def _texts(wh: Warehouse) -> list[tuple[int, str]]:
    with wh.engine.connect() as conn:
        rows = conn.execute(sa.text("select page_no, text from deepocr_blocks order by page_no")).all()
    return [(int(p), str(t).strip()) for p, t in rows]


def _failures(wh: Warehouse) -> list[tuple[str, int | None]]:
    with wh.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("select reason, page_no from deepocr_failures"))]


@pytest.mark.parametrize("skip_unchanged", [True, False])
def test_a_failed_page_comes_back_in_the_next_run(tmp_path: Path, skip_unchanged: bool) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "fax.tiff").write_bytes(_tiff(3))
    wh = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    work = _work(tmp_path)
    first = Scripted(fail={2})
    run_pipeline(str(inbox), wh, first, work, on_validation_failure="warn")
    assert _texts(wh) == [(1, "fax page 1 text"), (3, "fax page 3 text")]
    assert _failures(wh) == [(errors.OCR_ERROR, 2)]

    second = Scripted()  # the same config, the engine works now
    summary = run_pipeline(
        str(inbox), wh, second, work, on_validation_failure="warn", skip_unchanged=skip_unchanged
    )
    assert second.asked == [2]  # only the failed page; pages 1 and 3 come from the work area
    assert summary.loaded_documents == 1
    assert _texts(wh) == [(1, "fax page 1 text"), (2, "fax page 2 text"), (3, "fax page 3 text")]
    assert _failures(wh) == []
    with wh.engine.connect() as conn:
        held = conn.execute(
            sa.text("select d.page_count, l.pages from deepocr_documents d, deepocr_load_ledger l")
        )
        assert held.one() == (3, 3)

    third = Scripted()  # whole now: an unchanged document again
    again = run_pipeline(str(inbox), wh, third, work, on_validation_failure="warn")
    assert third.asked == [] and again.skipped_documents == 1


def _sources(wh: Warehouse) -> dict[str, tuple[str, int, str]]:
    with wh.engine.connect() as conn:
        rows = conn.execute(
            sa.text("select source_uri, doc_id, source_size, source_version from deepocr_sources")
        )
        return {Path(u).name: (d, s, v) for u, d, s, v in rows}


def test_every_uri_is_kept_when_bytes_repeat(tmp_path: Path, pg_url: str) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    fax = _tiff(3)
    (inbox / "a.tiff").write_bytes(fax)
    (inbox / "b.tiff").write_bytes(fax)  # the same bytes under a second name
    (inbox / "c.tiff").write_bytes(_tiff(2))
    wh = Warehouse(pg_url)
    work = _work(tmp_path)
    first = Scripted()
    summary = run_pipeline(str(inbox), wh, first, work, on_validation_failure="warn")
    assert sorted(first.asked) == [1, 1, 2, 2, 3]  # the repeated bytes are OCR'd once
    assert summary.loaded_documents == 2 and summary.duplicates == 1
    with wh.engine.connect() as conn:
        docs = dict(conn.execute(sa.text("select doc_id, source_uri from deepocr_documents")).all())
    seen = _sources(wh)
    assert set(seen) == {"a.tiff", "b.tiff", "c.tiff"}
    assert seen["a.tiff"][0] == seen["b.tiff"][0] != seen["c.tiff"][0]
    assert Path(docs[seen["a.tiff"][0]]).name == "a.tiff"  # the document row keeps the first URI
    stat = (inbox / "b.tiff").stat()
    assert seen["b.tiff"][1:] == (stat.st_size, f"{stat.st_mtime_ns}-{stat.st_size}")

    # the next listing skips each URI on its own size and version, without reading one
    listed = stage_list(str(inbox), work, "r2", warehouse=wh, fingerprint=summary.config_fingerprint)
    assert (listed.skipped, listed.documents) == (3, 0)

    (inbox / "d.tiff").write_bytes(fax)  # the same bytes again, under a new name
    third = Scripted()
    run_pipeline(str(inbox), wh, third, work, on_validation_failure="warn")
    assert third.asked == [] and seen["a.tiff"][0] == _sources(wh)["d.tiff"][0]
    assert len(docs) == 2 and _texts_of(wh, seen["a.tiff"][0]) == [
        "fax page 1 text",
        "fax page 2 text",
        "fax page 3 text",
    ]


def _texts_of(wh: Warehouse, doc_id: str) -> list[str]:
    with wh.engine.connect() as conn:
        rows = conn.execute(
            sa.text("select text from deepocr_blocks where doc_id = :d order by page_no"), {"d": doc_id}
        )
        return [str(t).strip() for (t,) in rows]


def test_a_listed_object_without_an_outcome_is_lost_and_named(tmp_path: Path) -> None:
    from airflow_provider_deepocr.core.pipeline import (
        StageContext,
        load_manifest,
        ocr_manifest,
        parse_manifest,
    )
    from airflow_provider_deepocr.core.pipeline.listing import list_source

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.tiff").write_bytes(_tiff(1))
    (inbox / "b.tiff").write_bytes(_tiff(1))  # a duplicate
    (inbox / "c.pdf").write_bytes(b"%PDF-1.7 broken")
    wh = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    ctx = StageContext(_work(tmp_path), "r1")
    listed = list_source(ctx, str(inbox))
    parsed = parse_manifest(
        ctx, ocr_manifest(ctx, listed.manifest_uri, Scripted()).manifest_uri, on_failure="warn"
    )
    expect = [d["uri"] for d in ctx.work.read_jsonl(listed.manifest_uri)]
    ghost = expect[0].replace("a.tiff", "ghost.tiff")  # listed, then dropped before the load
    res = load_manifest(ctx, parsed.manifest_uri, wh, expect=[*expect, ghost])
    assert (res.documents, res.duplicates, res.failed_objects) == (1, 1, 1)
    assert res.lost == [ghost]


def test_each_load_task_of_a_sharded_run_accounts_for_its_listed_objects(tmp_path: Path) -> None:
    """What the mapped DAG's load tasks check: each shard's and the assembly's listed URIs all end
    loaded, failed or duplicate; a URI dropped from a records manifest is lost, by name."""
    from airflow_provider_deepocr.core.pipeline import (
        stage_assemble,
        stage_load,
        stage_ocr,
        stage_parse_validate,
    )

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.tiff").write_bytes(_tiff(3))  # split across shards of 2 pages
    (inbox / "b.tiff").write_bytes(_tiff(1))
    (inbox / "c.pdf").write_bytes(b"%PDF-1.7 broken")
    wh = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    work = _work(tmp_path)
    listed = stage_list(str(inbox), work, "r1", shard_pages=2)
    results = []
    for shard in listed.shards:
        parsed = stage_parse_validate(
            stage_ocr(shard, work, "r1", Scripted()).manifest_uri, work, "r1", on_failure="warn"
        )
        results.append(stage_load(parsed.manifest_uri, work, "r1", wh))
    assembled = stage_assemble(listed.spanning_uri or "", work, "r1")
    spanning = stage_parse_validate(assembled.manifest_uri, work, "r1", on_failure="warn")
    results.append(stage_load(spanning.manifest_uri, work, "r1", wh))
    assert [r.lost for r in results] == [[]] * len(results)
    assert sum(r.documents + r.failed_objects + r.duplicates for r in results) == 3
    # a records manifest that lost an entry on the way: its load names the URI
    entries = work.read_jsonl(spanning.manifest_uri)
    work.write_jsonl(spanning.manifest_uri, [])
    again = stage_load(spanning.manifest_uri, work, "r1", wh)
    assert again.lost == [e["source_uri"] for e in entries] and len(again.lost) == 1


def test_progress_counts_pages_and_the_summary_names_the_engine_of_each_page(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from airflow_provider_deepocr.core.pipeline import OcrSettings, StageContext, ocr_manifest
    from airflow_provider_deepocr.core.pipeline.batching import BatchedOcr
    from airflow_provider_deepocr.core.pipeline.listing import list_source
    from airflow_provider_deepocr.core.shards import ShardItem
    from airflow_provider_deepocr.testing import fuzz

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.pdf").write_bytes(fuzz.text_pdf(3))  # a born-digital PDF: read from its text layer
    (inbox / "b.tiff").write_bytes(_tiff(2))  # a scan: read by the model
    ctx = StageContext(_work(tmp_path), "r1", settings=OcrSettings(text_layer="auto"))
    listed = list_source(ctx, str(inbox))
    items = [ShardItem.from_dict(d) for d in ctx.work.read_jsonl(listed.manifest_uri)]
    run = BatchedOcr(ctx, items, Scripted(), "fp")
    run.run()
    assert (run.progress.done, run.progress.total) == (5, 5)  # pages, not documents
    assert dict(run.engines) == {"pdf-text": 3, "scripted": 2}
    with caplog.at_level(logging.INFO, logger="airflow_provider_deepocr.core.pipeline.batching"):
        res = ocr_manifest(
            StageContext(_work(tmp_path / "w2"), "r2", settings=ctx.settings), listed.manifest_uri, Scripted()
        )
    assert res.engines == {"pdf-text": 3, "scripted": 2}
    lines = [r.getMessage() for r in caplog.records if "documents:" in r.getMessage()]
    assert any("a.pdf" in m and "read now by pdf-text 3" in m for m in lines), lines


def test_a_document_whose_bytes_change_between_shards_is_one_failure_and_the_rest_loads(
    tmp_path: Path,
) -> None:
    import hashlib

    from airflow_provider_deepocr.core.pipeline import (
        stage_assemble,
        stage_load,
        stage_ocr,
        stage_parse_validate,
    )

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "x.tiff").write_bytes(_tiff(3))  # pages 1-2 in shard 0, page 3 in shard 1
    y = _tiff(4)  # another split document (shards 1 to 3): it must load
    (inbox / "y.tiff").write_bytes(y)
    wh = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    work = _work(tmp_path)
    listed = stage_list(str(inbox), work, "r1", shard_pages=2)
    assert listed.spanning == 2
    for i, shard in enumerate(listed.shards):
        if i == 1:  # x is rewritten between its shards: the same page count, other bytes
            (inbox / "x.tiff").write_bytes(_tiff(3, height=150))
        parsed = stage_parse_validate(
            stage_ocr(shard, work, "r1", Scripted()).manifest_uri, work, "r1", on_failure="warn"
        )
        stage_load(parsed.manifest_uri, work, "r1", wh)
    assembled = stage_assemble(listed.spanning_uri or "", work, "r1")
    parsed = stage_parse_validate(assembled.manifest_uri, work, "r1", on_failure="warn")
    res = stage_load(parsed.manifest_uri, work, "r1", wh)
    assert (res.documents, res.failed_objects, res.lost) == (1, 1, [])
    with wh.engine.connect() as conn:
        failures = conn.execute(sa.text("select source_uri, reason, page_no from deepocr_failures")).all()
        docs = conn.execute(sa.text("select doc_id, source_uri from deepocr_documents")).all()
    assert [(Path(u).name, r, p) for u, r, p in failures] == [("x.tiff", errors.SOURCE_CHANGED, None)]
    assert [Path(u).name for _, u in docs] == ["y.tiff"] and docs[0][0] == hashlib.sha256(y).hexdigest()
    texts = [t for p, t in _texts(wh)]
    assert texts == [f"fax page {n} text" for n in (1, 2, 3, 4)]  # y, whole
    summaries = list((tmp_path / "work").rglob("document.json"))
    assert [s.parent.name for s in summaries] == [docs[0][0]]  # nothing of x is cached as done
