"""The pipeline over real parts: S3 (moto server), the tiny DeepSeek-OCR-2, SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.engines.base import OcrEngine
from airflow_provider_deepocr.core.pipeline import (
    OcrEntry,
    OcrSettings,
    run_pipeline,
    stage_list,
    stage_ocr,
)
from airflow_provider_deepocr.core.records import OcrResult, PageImage
from airflow_provider_deepocr.core.sources import LocalStorage, WorkArea, storage_for
from airflow_provider_deepocr.core.warehouse import Warehouse
from tests.digest import table_digest


def _png(text: str, size: tuple[int, int] = (320, 120)) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, "white")
    ImageDraw.Draw(img).text((10, 40), text, fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _tiff(pages: int) -> bytes:
    from PIL import Image, ImageDraw

    frames = []
    for i in range(pages):
        img = Image.new("RGB", (300, 140), "white")
        ImageDraw.Draw(img).text((10, 50), f"fax page {i + 1}", fill="black")
        frames.append(img)
    buf = io.BytesIO()
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


class Recording(OcrEngine):
    """A real engine wrapped to record which pages it was asked for (and optionally fail some)."""

    def __init__(self, inner: OcrEngine, fail_pages: set[int] | None = None) -> None:
        self.inner = inner
        self.name, self.model, self.batch_size = inner.name, inner.model, inner.batch_size
        self.calls: list[list[tuple[str, int]]] = []
        self.fail_pages = fail_pages or set()

    def describe(self) -> dict[str, object]:
        return self.inner.describe()

    def ocr(self, pages: Sequence[PageImage], temperature: float = 0.0) -> list[OcrResult]:
        self.calls.append([(p.doc_id, p.page_no) for p in pages])
        results = self.inner.ocr(pages)
        for i, p in enumerate(pages):
            if p.page_no in self.fail_pages:
                results[i] = OcrResult("", "error", self.name, self.model)
        return results


@pytest.fixture(scope="module")
def tiny_engine(tiny_model_dir: Path) -> OcrEngine:
    from airflow_provider_deepocr.core.engines import get_engine

    return get_engine("deepseek", model=str(tiny_model_dir), max_new_tokens=8, batch_size=3)


@pytest.fixture()
def inbox(tmp_path: Path) -> Path:
    root = tmp_path / "inbox"
    (root / "a").mkdir(parents=True)
    (root / "a" / "one.png").write_bytes(_png("invoice 1"))
    (root / "a" / "two.png").write_bytes(_png("invoice 2", (200, 300)))
    (root / "fax.tiff").write_bytes(_tiff(3))
    (root / "broken.pdf").write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 50)
    return root


def _work(tmp_path: Path) -> WorkArea:
    root = str(tmp_path / "work")
    return WorkArea(root, storage_for(root))


def test_s3_source_and_s3_work_area_end_to_end(
    s3_client: Any, tiny_engine: OcrEngine, inbox: Path, tmp_path: Path
) -> None:
    s3_client.create_bucket(Bucket="docs")
    for path in sorted(p for p in inbox.rglob("*") if p.is_file()):
        s3_client.put_object(Bucket="docs", Key=f"in/{path.relative_to(inbox)}", Body=path.read_bytes())
    work = WorkArea("s3://docs/work", storage_for("s3://docs/work", s3_client=s3_client))
    db = tmp_path / "wh.db"
    # 8 new tokens of a random model end at the token limit: pages are flagged truncated and would
    # be quarantined by the default suite, so this test loads them with a warning instead
    summary = run_pipeline(
        "s3://docs/in/",
        Warehouse(f"sqlite:///{db}"),
        tiny_engine,
        work,
        s3_client=s3_client,
        on_validation_failure="warn",
    )
    assert summary.documents == 4
    assert summary.pages == 5  # 1 + 1 + 3 pages in the readable documents
    assert summary.failed == {"corrupt": 1}
    with sqlite3.connect(db) as conn:
        uris = {r[0] for r in conn.execute("select source_uri from deepocr_pages")}
        pages = conn.execute("select count(*) from deepocr_pages").fetchone()[0]
        failure = conn.execute("select source_uri, reason from deepocr_failures").fetchall()
    assert all(u.startswith("s3://docs/in/") for u in uris) and len(uris) == 3
    assert pages == summary.ok == 5
    assert failure == [("s3://docs/in/broken.pdf", "corrupt")]
    # the work area is in the bucket, content-addressed
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket="docs", Prefix="work/ocr/")["Contents"]]
    # a page file for each page of the 3-page document; the one-page documents' results are held
    # in their summaries (one object each, not two)
    assert sorted(k.rsplit("/", 1)[-1] for k in keys if "/p000" in k) == [
        "p00001.json",
        "p00002.json",
        "p00003.json",
    ]
    summaries = [k for k in keys if k.endswith("/document.json")]
    held = [json.loads(s3_client.get_object(Bucket="docs", Key=k)["Body"].read()) for k in summaries]
    assert len(summaries) == 3
    assert sorted(list(d["results"]) if d["results"] else [] for d in held) == [[], ["1"], ["1"]]
    assert all(d["results"]["1"]["raw_text"] for d in held if d["results"])


def test_pages_are_batched_across_documents_and_prefetch_changes_nothing(
    tiny_engine: OcrEngine, inbox: Path, tmp_path: Path
) -> None:
    outputs = {}
    for prefetch in (0, 2):
        rec = Recording(tiny_engine)
        work = WorkArea(str(tmp_path / f"w{prefetch}"), storage_for(str(tmp_path)))
        listed = stage_list(str(inbox), work, "r1")
        res = stage_ocr(listed.manifest_uri, work, "r1", rec, settings=OcrSettings(prefetch=prefetch))
        assert res.pages == 5 and res.failed == {"corrupt": 1}
        # 5 pages from 3 documents in batches of 3: the first batch spans two documents
        assert [len(c) for c in rec.calls] == [3, 2]
        assert len({doc for doc, _ in rec.calls[0]}) >= 2
        texts = {}
        for entry in work.read_jsonl(res.manifest_uri):
            for page_no in entry["pages_ok"]:
                meta = OcrEntry.from_dict(entry).page_result(page_no)  # held (one-page) or a file
                meta = meta or work.read_json(f"{entry['ocr_dir']}/p{page_no:05d}.json")
                texts[(entry["doc_id"], page_no)] = meta["raw_text"]
        outputs[prefetch] = texts
    assert outputs[0] == outputs[2]


def test_rerun_skips_finished_pages_and_documents(
    tiny_engine: OcrEngine, inbox: Path, tmp_path: Path
) -> None:
    work = _work(tmp_path)
    listed = stage_list(str(inbox), work, "r1")
    first = Recording(tiny_engine)
    stage_ocr(listed.manifest_uri, work, "r1", first)
    assert sum(len(c) for c in first.calls) == 5

    # simulate a task killed after page 2 of the fax was written but before the document finished
    fax = next(e for e in work.read_jsonl(work.uri("runs", "r1", "ocr.jsonl")) if e["page_count"] == 3)
    LocalStorage.path(f"{fax['ocr_dir']}/document.json").unlink()
    LocalStorage.path(f"{fax['ocr_dir']}/p00003.json").unlink()

    second = Recording(tiny_engine)
    asked: list[str] = []
    exists = work.storage.exists
    work.storage.exists = lambda uri: asked.append(uri) or exists(uri)  # type: ignore[method-assign]
    res = stage_ocr(listed.manifest_uri, work, "r2", second)
    assert second.calls == [[(fax["doc_id"], 3)]]
    assert res.pages == 5
    # finished pages are found by one listing of the document's folder, not one request per page
    assert not [u for u in asked if u.rsplit("/", 1)[-1].startswith("p0")], asked


def test_page_files_are_written_off_the_engines_thread(
    tiny_engine: OcrEngine, inbox: Path, tmp_path: Path
) -> None:
    """The engine never waits on the work area: its page files are written by the writer pool,
    and each document's summary only after its page files (a resumed try trusts the summary)."""
    import threading
    import time

    work = _work(tmp_path)
    listed = stage_list(str(inbox), work, "r1")
    engine_threads: set[str] = set()
    writes: list[tuple[str, str]] = []
    recording = Recording(tiny_engine)
    ocr = recording.ocr

    def ocr_noting_its_thread(pages: Sequence[PageImage], temperature: float = 0.0) -> list[OcrResult]:
        engine_threads.add(threading.current_thread().name)
        return ocr(pages, temperature)

    recording.ocr = ocr_noting_its_thread  # type: ignore[method-assign]
    write = work.storage.write

    def slow_write(uri: str, data: bytes) -> None:  # a slow store: 0.3 s a page file
        if uri.rsplit("/", 1)[-1].startswith("p0"):
            time.sleep(0.3)
        writes.append((threading.current_thread().name, uri))
        write(uri, data)

    work.storage.write = slow_write  # type: ignore[method-assign]
    res = stage_ocr(listed.manifest_uri, work, "r1", recording)
    assert res.pages == 5
    pages = [(t, u) for t, u in writes if u.rsplit("/", 1)[-1].startswith("p0")]
    assert len(pages) == 3 and not {t for t, _ in pages} & engine_threads  # the 3-page document's
    summaries = [(t, u) for t, u in writes if u.endswith("/document.json")]  # one-page ones: held here
    assert len(summaries) == 3 and not {t for t, _ in summaries} & engine_threads
    order = [u for _, u in writes]
    for summary in [u for u in order if u.endswith("/document.json")]:
        folder = summary.rsplit("/", 1)[0]
        assert all(order.index(u) < order.index(summary) for u in order if u.startswith(folder + "/p0"))


def test_documents_are_read_ahead_while_the_engine_works(
    tiny_engine: OcrEngine, inbox: Path, tmp_path: Path
) -> None:
    """A slow source store (0.3 s a read) is read several documents ahead, not one after another
    on the render thread; the stage's result is the listing's documents, in the listing's order."""
    work = _work(tmp_path)
    listed = stage_list(str(inbox), work, "r1")
    source = LocalStorage()
    slow = _SlowStore(source, lambda kind, uri: kind == "read", delay=0.3)
    res = stage_ocr(listed.manifest_uri, work, "r1", Recording(tiny_engine), storage=source)
    assert res.pages == 5
    assert slow.most >= 3, slow.most  # every document of the inbox read at once, not one at a time
    assert [e["ref"]["uri"] for e in work.read_jsonl(res.manifest_uri)] == [
        r["uri"] for r in work.read_jsonl(listed.manifest_uri)
    ]


def test_a_failing_page_is_a_failure_row_and_its_siblings_load(
    tiny_engine: OcrEngine, inbox: Path, tmp_path: Path, pg_url: str
) -> None:
    wh = Warehouse(pg_url)
    summary = run_pipeline(
        str(inbox), wh, Recording(tiny_engine, fail_pages={2}), _work(tmp_path), on_validation_failure="warn"
    )
    assert summary.failed == {"corrupt": 1, errors.OCR_ERROR: 1}
    import sqlalchemy as sa

    with wh.engine.connect() as conn:
        pages = conn.execute(sa.text("select doc_id, page_no from deepocr_pages order by 1, 2")).all()
        fails = conn.execute(sa.text("select reason, page_no, stage from deepocr_failures order by 1")).all()
    assert len(pages) == 4 and all(p != 2 for _, p in pages)
    assert (errors.OCR_ERROR, 2, "ocr") in [tuple(f) for f in fails]
    assert summary.ok == 4
    # every loaded document has its expectation results, one row per expectation
    with wh.engine.connect() as conn:
        per_doc = conn.execute(
            sa.text("select doc_id, count(*) from deepocr_validation_results group by doc_id")
        ).all()
    assert {d for d, _ in per_doc} == {d for d, _ in pages} and all(n >= 10 for _, n in per_doc)


def test_truncated_pages_are_quarantined_by_default(
    tiny_engine: OcrEngine, inbox: Path, tmp_path: Path
) -> None:
    db = tmp_path / "q.db"
    summary = run_pipeline(str(inbox), Warehouse(f"sqlite:///{db}"), tiny_engine, _work(tmp_path))
    assert summary.failed == {"corrupt": 1, errors.VALIDATION_FAILED: 3}
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from deepocr_pages").fetchone()[0] == 0
        reasons = [r[0] for r in conn.execute("select reason from deepocr_failures order by 1")]
        failed_checks = conn.execute(
            "select count(*) from deepocr_validation_results where not success"
        ).fetchone()
    assert reasons == ["corrupt"] + [errors.VALIDATION_FAILED] * 3
    assert failed_checks[0] >= 3


def test_text_layer_routing_sends_born_digital_pages_to_pdf_text(
    tiny_engine: OcrEngine, tmp_path: Path
) -> None:
    from airflow_provider_deepocr.testing.samples import write_samples

    docs = write_samples(tmp_path / "docs")
    folders = {p.parent.name for p in docs}
    assert {"finance", "clinic"} <= folders  # a born-digital PDF and an image-only scan
    engines: dict[str, dict[str, set[str]]] = {}
    for mode in ("never", "auto", "only"):
        db = tmp_path / f"{mode}.db"
        summary = run_pipeline(
            str(tmp_path / "docs"),
            Warehouse(f"sqlite:///{db}"),
            Recording(tiny_engine),
            _work(tmp_path / mode),
            settings=OcrSettings(text_layer=mode),
            on_validation_failure="warn",
        )
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "select d.source_uri, p.engine from deepocr_pages p join deepocr_documents d using (doc_id)"
            ).fetchall()
        engines[mode] = {}
        for uri, engine in rows:
            engines[mode].setdefault(Path(uri).parent.name, set()).add(engine)
        if mode == "only":
            # every page without a text layer (the scan, the TIFF's two pages, the PNG) is a failure row
            assert summary.failed == {errors.NO_TEXT_LAYER: summary.pages - 2}
    assert engines["never"] == {f: {"deepseek-ocr2"} for f in folders}
    assert engines["auto"] == {f: {"pdf-text" if f == "finance" else "deepseek-ocr2"} for f in folders}
    assert engines["only"] == {"finance": {"pdf-text"}}


def test_a_document_that_fails_to_load_is_a_failure_row_and_the_batch_loads(
    tiny_engine: OcrEngine, inbox: Path, tmp_path: Path, pg_url: str
) -> None:
    import json

    import sqlalchemy as sa

    from airflow_provider_deepocr.core.pipeline import stage_load, stage_ocr, stage_parse_validate

    work = _work(tmp_path)
    listed = stage_list(str(inbox), work, "r1")
    ocr = stage_ocr(listed.manifest_uri, work, "r1", tiny_engine)
    parsed = stage_parse_validate(ocr.manifest_uri, work, "r1", on_failure="warn")
    # corrupt one document's records on disk: its first page twice (a duplicate key)
    entries = [e for e in work.read_jsonl(parsed.manifest_uri) if e["status"] in ("ok", "warned")]
    path = LocalStorage.path(entries[0]["records_uri"])
    rec = json.loads(path.read_text())
    rec["pages"].append(rec["pages"][0])
    path.write_text(json.dumps(rec))

    wh = Warehouse(pg_url)
    res = stage_load(parsed.manifest_uri, work, "r1", wh)
    assert res.failed.get(errors.LOAD_ERROR) == 1 and res.documents == len(entries) - 1
    with wh.engine.connect() as conn:
        rows = conn.execute(
            sa.text("select doc_id, stage, detail from deepocr_failures where reason = :r"),
            {"r": errors.LOAD_ERROR},
        ).all()
        loaded = {r[0] for r in conn.execute(sa.text("select doc_id from deepocr_documents"))}
    assert [(r[0], r[1]) for r in rows] == [(entries[0]["doc_id"], "load")]
    assert "duplicate key" in rows[0][2]
    assert loaded == {e["doc_id"] for e in entries[1:]}


def test_stage_load_batches_by_documents_and_reads_the_ledger_once(
    tiny_engine: OcrEngine, inbox: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_deepocr.core.pipeline import stage_load, stage_ocr, stage_parse_validate

    work = _work(tmp_path)
    listed = stage_list(str(inbox), work, "r1")
    ocr = stage_ocr(listed.manifest_uri, work, "r1", tiny_engine)
    parsed = stage_parse_validate(ocr.manifest_uri, work, "r1", on_failure="warn")
    wh = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    batches: list[int] = []
    reads: list[int] = []
    load_documents, live_fingerprints = wh.load_documents, wh.live_fingerprints

    def spy_load(batch: Sequence[Any], *a: Any, **k: Any) -> dict[str, int]:
        batches.append(len(batch))
        return load_documents(batch, *a, **k)

    def spy_live(ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        reads.append(len(ids))
        return live_fingerprints(ids)

    monkeypatch.setattr(wh, "load_documents", spy_load)
    monkeypatch.setattr(wh, "live_fingerprints", spy_live)
    ids = len([e for e in work.read_jsonl(parsed.manifest_uri) if e.get("doc_id")])  # the corrupt PDF too
    first = stage_load(parsed.manifest_uri, work, "r1", wh, batch_docs=2)
    # three good documents: a batch of two, then the last one on its own
    assert first.documents == 3 and batches == [2] and reads == [ids]
    # the corrupt PDF's failure is recorded again by each run: the same row but for its run and time
    rerecorded = ("failures.run_id", "failures.recorded_at")
    before = table_digest(wh.engine, skip=rerecorded)
    again = stage_load(parsed.manifest_uri, work, "r2", wh, batch_docs=2)
    # the runs table is an audit log (a row per run); every other table is exactly as it was
    after = table_digest(wh.engine, skip=rerecorded)
    assert after.counts["runs"] == before.counts["runs"] + 1
    after.hashes.pop("runs"), before.hashes.pop("runs")
    assert after.hashes == before.hashes
    assert again.skipped == 3 and again.documents == 0 and batches == [2] and reads == [ids, ids]
    assert wh.counts()["documents"] == 3


# --------------------------------------------------------------------------------------------
# Shards: the same rows as an unsharded run, split documents loaded once and whole, resumes
# --------------------------------------------------------------------------------------------

VOLATILE = ("run_id", "loaded_at", "recorded_at", "seen_at")  # differ between two runs of the same documents


def _pdf(pages: int, title: str) -> bytes:
    import pymupdf

    doc = pymupdf.open()
    for i in range(pages):
        doc.new_page(width=300, height=200).insert_text((20, 40), f"{title} page {i + 1}")
    data = doc.tobytes()
    doc.close()
    return data


@pytest.fixture()
def shelf(tmp_path: Path) -> Path:
    """A 5-page PDF (split across shards of 2), a 3-frame TIFF, a PNG and a corrupt PDF."""
    root = tmp_path / "shelf"
    root.mkdir()
    (root / "a_receipt.png").write_bytes(_png("receipt"))
    (root / "b_filing.pdf").write_bytes(_pdf(5, "filing"))
    (root / "c_fax.tiff").write_bytes(_tiff(3))
    (root / "d_broken.pdf").write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 50)
    return root


def _sleep(calls: Path | None = None, batch_size: int = 2) -> OcrEngine:
    from airflow_provider_deepocr.core.engines import get_engine

    return get_engine("sleep", batch_size=batch_size, calls_file=str(calls) if calls else None)


def _split_docs_loaded(wh: Warehouse) -> list[str]:
    with wh.engine.connect() as conn:
        rows = conn.exec_driver_sql(f"select source_uri from {wh.documents.name}").scalars().all()
    return [u for u in rows if u.endswith(("b_filing.pdf", "c_fax.tiff"))]


def _sharded_run(
    source: Path, wh: Warehouse, work: WorkArea, run_id: str, shard_pages: int, engine: OcrEngine
) -> list[dict[str, Any]]:
    """What the mapped DAG does: list, then OCR/parse/load per shard, then assemble the split ones."""
    from airflow_provider_deepocr.core.pipeline import stage_assemble, stage_load, stage_parse_validate

    listed = stage_list(str(source), work, run_id, shard_pages=shard_pages)
    seen = []
    for shard in listed.shards:
        ocr = stage_ocr(shard, work, run_id, engine)
        parsed = stage_parse_validate(ocr.manifest_uri, work, run_id)
        stage_load(parsed.manifest_uri, work, run_id, wh, dag_id="d")
        seen.append(_split_docs_loaded(wh))  # never in part, before its assembly
    assembled = stage_assemble(listed.spanning_uri or "", work, run_id)
    parsed = stage_parse_validate(assembled.manifest_uri, work, run_id)
    stage_load(parsed.manifest_uri, work, run_id, wh, dag_id="d")
    assert seen == [[]] * len(listed.shards)
    return wh.runs()


def test_a_sharded_run_loads_the_same_rows_as_an_unsharded_one(shelf: Path, tmp_path: Path) -> None:
    from tests.digest import table_digest

    url = f"sqlite:///{tmp_path / 'wh.db'}"
    whole, sharded = Warehouse(url, prefix="a_"), Warehouse(url, prefix="b_")
    summary = run_pipeline(str(shelf), whole, _sleep(), _work(tmp_path / "w1"))
    assert summary.loaded_documents == 3 and summary.failed == {"corrupt": 1}
    runs = _sharded_run(shelf, sharded, _work(tmp_path / "w2"), "r2", 2, _sleep())
    a = table_digest(url, "a_", skip=VOLATILE)
    b = table_digest(url, "b_", skip=VOLATILE)
    a.hashes.pop("runs"), b.hashes.pop("runs")
    assert a.hashes == b.hashes, (a.counts, b.counts)
    assert b.counts["pages"] == 1 + 5 + 3 and b.counts["documents"] == 3
    # one runs row per shard (10 pages in shards of 2: 5 shards) and one for the split documents
    assert sorted(r["shard"] for r in runs) == ["00000", "00001", "00002", "00003", "00004", "spanning"]
    assert sum(r["pages_ocr"] for r in runs) == 9 and {r["engine"] for r in runs} == {"sleep", None}
    spanning = next(r for r in runs if r["shard"] == "spanning")
    assert (spanning["documents"], spanning["pages"]) == (2, 8)  # the filing and the fax, whole


def test_a_sharded_run_after_an_unsharded_one_ocrs_nothing_and_loads_the_same_rows(
    shelf: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Documents an unsharded run OCR'd whole are not read again by a sharded run in the same work
    area: each part is cut from the whole document's summary (read ahead with the listing of its
    folder), and the rows are the unsharded run's."""
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    whole, sharded = Warehouse(url, prefix="a_"), Warehouse(url, prefix="b_")
    work = _work(tmp_path / "w")
    run_pipeline(str(shelf), whole, _sleep(), work)
    calls = tmp_path / "calls.txt"
    with caplog.at_level(logging.INFO, logger="airflow_provider_deepocr.core.pipeline.batching"):
        _sharded_run(shelf, sharded, work, "r2", 2, _sleep(calls))
    assert not calls.exists()  # no page went to the engine again, split documents included
    done = [r.getMessage() for r in caplog.records if "OCR already done" in r.getMessage()]
    # every part of the filing (3) and of the fax (2) cut from its whole summary, not reopened
    assert sum("b_filing.pdf" in m for m in done) == 3 and sum("c_fax.tiff" in m for m in done) == 2
    a = table_digest(url, "a_", skip=VOLATILE)
    b = table_digest(url, "b_", skip=VOLATILE)
    for digest in (a, b):
        digest.hashes.pop("runs")
    assert a.hashes == b.hashes and b.counts["pages"] == 1 + 5 + 3, (a.counts, b.counts)


def test_a_split_document_missing_a_part_is_a_failure_not_half_of_it(shelf: Path, tmp_path: Path) -> None:
    from airflow_provider_deepocr.core.pipeline import stage_assemble

    work = _work(tmp_path)
    listed = stage_list(str(shelf), work, "r1", shard_pages=2)
    for shard in listed.shards:
        stage_ocr(shard, work, "r1", _sleep())
    filing, fax = work.read_jsonl(listed.spanning_uri or "")
    assert [p["shard"] for p in filing["parts"]] == ["00000", "00001", "00002"]
    assert [p["shard"] for p in fax["parts"]] == ["00003", "00004"]
    LocalStorage.path(work.uri("runs", "r1", "ocr", "00001.jsonl")).unlink()  # its OCR never finished
    res = stage_assemble(listed.spanning_uri or "", work, "r1")
    assert res.failed == {errors.INCOMPLETE_DOCUMENT: 1} and res.pages == 3  # the fax, whole
    broken, whole = work.read_jsonl(res.manifest_uri)
    assert broken["ocr_dir"] is None and broken["failures"][0]["detail"] == "2 of 3 parts OCR'd"
    assert whole["pages_ok"] == [1, 2, 3] and whole["failures"] == []


def test_a_retried_shard_ocrs_only_the_pages_it_had_not_finished(shelf: Path, tmp_path: Path) -> None:
    work = _work(tmp_path)
    listed = stage_list(str(shelf), work, "r1", shard_pages=4)
    shard = listed.shards[0]  # the receipt and pages 1-3 of the filing
    calls = tmp_path / "calls.txt"

    class Crash(BaseException):  # the worker dies: not an engine error the stage turns into rows
        pass

    engine = _sleep(calls, batch_size=1)
    real = engine.ocr

    def crash_after_two(pages: Sequence[PageImage], temperature: float = 0.0) -> list[OcrResult]:
        if len(calls.read_text().splitlines() if calls.exists() else []) >= 2:
            raise Crash  # the worker dies mid-shard (not a page error: the whole try fails)
        return real(pages, temperature)

    engine.ocr = crash_after_two  # type: ignore[method-assign]
    with pytest.raises(Crash):
        stage_ocr(shard, work, "r1", engine, settings=OcrSettings(prefetch=0))
    first = calls.read_text().splitlines()
    assert len(first) == 2
    res = stage_ocr(shard, work, "r1", _sleep(calls, batch_size=1))  # the retry
    again = calls.read_text().splitlines()[2:]
    pages = [tuple(c.split()[1:]) for c in first + again]
    assert len(again) == 2 and len(set(pages)) == 4  # the retry sent only the 2 unfinished pages
    assert res.pages == 4


def test_a_file_gone_after_listing_is_a_source_missing_row_and_the_rest_loads(
    shelf: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse(url)
    work = _work(tmp_path)
    listed = stage_list(str(shelf), work, "r1", shard_pages=100)
    (shelf / "a_receipt.png").unlink()
    from airflow_provider_deepocr.core.pipeline import stage_load, stage_parse_validate

    ocr = stage_ocr(listed.shards[0], work, "r1", _sleep())
    loaded = stage_load(stage_parse_validate(ocr.manifest_uri, work, "r1").manifest_uri, work, "r1", wh)
    assert loaded.failed == {"corrupt": 1, errors.SOURCE_MISSING: 1} and loaded.documents == 2
    with wh.engine.connect() as conn:
        reasons = dict(conn.exec_driver_sql("select source_uri, reason from deepocr_failures").all())
    assert reasons[LocalStorage.uri(shelf / "a_receipt.png")] == errors.SOURCE_MISSING


def test_unchanged_objects_are_skipped_without_being_read(shelf: Path, tmp_path: Path) -> None:
    class CountingStorage(LocalStorage):
        def __init__(self) -> None:
            self.reads: list[str] = []

        def read(self, uri: str) -> bytes:
            self.reads.append(Path(uri).name)
            return super().read(uri)

        def read_range(self, uri: str, start: int, length: int) -> bytes:
            self.reads.append(Path(uri).name)
            return super().read_range(uri, start, length)

    wh = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    work = _work(tmp_path)
    engine = _sleep()
    first = run_pipeline(str(shelf), wh, engine, work)
    assert first.loaded_documents == 3
    fp = first.config_fingerprint or ""

    def listing(run_id: str, fingerprint: str = fp) -> tuple[int, list[str]]:
        storage = CountingStorage()
        res = stage_list(
            str(shelf), work, run_id, storage=storage, shard_pages=2, warehouse=wh, fingerprint=fingerprint
        )
        return res.skipped, sorted(set(storage.reads))

    assert listing("r2") == (3, ["d_broken.pdf"])  # only the never-loaded file is read (to count it)
    (shelf / "c_fax.tiff").write_bytes(_tiff(2))  # changed: new size and mtime
    # the changed file is read; the never-loaded one's count is in the page-count cache now
    assert listing("r3") == (2, ["c_fax.tiff"])
    assert listing("r4", "another-config")[0] == 0  # another config: nothing is unchanged under it


def test_ocr_progress_lines_at_most_every_interval(
    shelf: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    from airflow_provider_deepocr.core import runs

    work = _work(tmp_path)
    listed = stage_list(str(shelf), work, "r1", shard_pages=4)
    with caplog.at_level(logging.INFO, logger="airflow_provider_deepocr.core.runs"):
        stage_ocr(listed.shards[1], work, "r1", _sleep(batch_size=1))  # 30 s apart: a short shard logs none
        assert not [r for r in caplog.records if "OCR progress" in r.message]
        monkeypatch.setattr(runs, "PROGRESS_EVERY_S", 0.0)
        stage_ocr(listed.shards[0], work, "r1", _sleep(batch_size=1))  # 4 pages, one per batch
    lines = [r.getMessage() for r in caplog.records if "OCR progress" in r.getMessage()]
    done = [line.split(": ")[1].split(",")[0] for line in lines]
    assert done == ["1/4 pages", "2/4 pages", "3/4 pages", "4/4 pages", "4/4 pages"]  # the last: at the end
    assert lines[0].startswith("OCR progress shard 00000: ") and " output tokens/s, ETA " in lines[0]
    assert lines[-1].endswith("ETA 0m00s")


def test_on_oversize_is_part_of_the_config_fingerprint() -> None:
    from airflow_provider_deepocr.core.engines import get_engine
    from airflow_provider_deepocr.core.pipeline import config_fingerprint

    engine = get_engine("pdf-text")
    downscale = config_fingerprint(engine, OcrSettings())
    assert OcrSettings().on_oversize == "downscale"
    assert config_fingerprint(engine, OcrSettings(on_oversize="fail")) != downscale
    assert config_fingerprint(engine, OcrSettings(prefetch=0)) == downscale  # not everything counts
    assert OcrSettings(on_oversize="fail").limits().on_oversize == "fail"
    with pytest.raises(errors.ConfigError, match="on_oversize"):
        OcrSettings(on_oversize="crop")


def test_an_image_without_a_resolution_is_stored_at_an_unknown_dpi(
    tiny_engine: OcrEngine, tmp_path: Path
) -> None:
    """A fax TIFF without resolution tags (Pillow says 1 dpi) is rendered at the stated default and
    its page row says dpi NULL with the flag dpi_unknown; one with tags keeps its own dpi."""
    from PIL import Image

    inbox = tmp_path / "faxes"
    inbox.mkdir()
    (inbox / "untagged.tiff").write_bytes(_tiff(1))
    buf = io.BytesIO()
    Image.new("RGB", (300, 140), "white").save(buf, format="TIFF", dpi=(200, 200))
    (inbox / "tagged.tiff").write_bytes(buf.getvalue())
    db = tmp_path / "wh.db"
    run_pipeline(
        str(inbox), Warehouse(f"sqlite:///{db}"), tiny_engine, _work(tmp_path), on_validation_failure="warn"
    )
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "select d.source_uri, p.dpi, p.flags from deepocr_pages p join deepocr_documents d using (doc_id)"
        ).fetchall()
    by_name = {Path(uri).name: (dpi, flags or "") for uri, dpi, flags in rows}
    assert by_name["untagged.tiff"][0] is None and "dpi_unknown" in by_name["untagged.tiff"][1]
    assert by_name["tagged.tiff"][0] == 200 and "dpi_unknown" not in by_name["tagged.tiff"][1]


def test_a_one_page_documents_result_is_held_in_its_summary_and_a_rerun_still_finds_every_page(
    inbox: Path, tmp_path: Path
) -> None:
    """One work-area write for a one-page document (its summary, holding the page), a page file
    per page of a longer one; the parse stage reads the held result, and a rerun OCRs nothing."""
    from airflow_provider_deepocr.core.engines import get_engine
    from airflow_provider_deepocr.core.pipeline import build_records

    calls = tmp_path / "calls.txt"
    engine = get_engine("sleep", calls_file=str(calls))
    work = _work(tmp_path)
    listed = stage_list(str(inbox), work, "r1")
    writes: list[str] = []
    write = work.storage.write
    work.storage.write = lambda uri, data: writes.append(uri) or write(uri, data)  # type: ignore[method-assign,func-returns-value]
    res = stage_ocr(listed.manifest_uri, work, "r1", engine)
    assert res.pages == 5 and len(calls.read_text().splitlines()) == 5
    entries = {Path(e["ref"]["uri"]).name: OcrEntry.from_dict(e) for e in work.read_jsonl(res.manifest_uri)}
    for name in ("one.png", "two.png"):
        entry = entries[name]
        assert entry.ocr_dir is not None
        assert [u for u in writes if u.startswith(entry.ocr_dir)] == [f"{entry.ocr_dir}/document.json"]
        held = entry.page_result(1)
        assert held is not None and "page 1" in held["raw_text"]
        (page,) = build_records(entry, work).pages  # parsed from the held result
        assert (page.page_no, page.width, page.height) == (1, held["width"], held["height"])
    fax = entries["fax.tiff"]
    assert fax.results is None and fax.ocr_dir is not None
    assert sorted(u.rsplit("/", 1)[-1] for u in writes if u.startswith(fax.ocr_dir)) == [
        "document.json",
        "p00001.json",
        "p00002.json",
        "p00003.json",
    ]
    again = stage_ocr(listed.manifest_uri, work, "r2", engine)
    assert again.pages == 5 and len(calls.read_text().splitlines()) == 5  # nothing OCR'd again
    rerun = {Path(e["ref"]["uri"]).name: OcrEntry.from_dict(e) for e in work.read_jsonl(again.manifest_uri)}
    assert rerun["one.png"].page_result(1) == entries["one.png"].page_result(1)


class _SlowStore:
    """A store (a source's, or a work area's ``storage``) made slow (``delay`` s) for the requests
    ``slow(kind, uri)`` picks, counting every request by kind and the most of the slow ones in
    flight at once."""

    def __init__(self, storage: Any, slow: Any, delay: float = 0.2) -> None:
        import threading

        self.calls: list[tuple[str, str]] = []
        self.most = 0
        self._now = 0
        self._lock = threading.Lock()
        for kind in ("exists", "list", "read", "write"):
            setattr(storage, kind, self._wrap(kind, getattr(storage, kind), slow, delay))

    def _wrap(self, kind: str, fn: Any, slow: Any, delay: float) -> Any:
        import time

        def call(uri: str, *args: Any) -> Any:
            with self._lock:
                self.calls.append((kind, uri))
            if not slow(kind, uri):
                return fn(uri, *args)
            with self._lock:
                self._now += 1
                self.most = max(self.most, self._now)
            time.sleep(delay)
            with self._lock:
                self._now -= 1
            return fn(uri, *args)

        return call

    def of(self, kind: str, part: str = "") -> list[str]:
        return [uri for k, uri in self.calls if k == kind and part in uri]


@pytest.fixture()
def receipts(tmp_path: Path) -> Path:
    root = tmp_path / "receipts"
    root.mkdir()
    for i in range(8):
        (root / f"r{i}.png").write_bytes(_png(f"receipt {i}"))
    return root


def test_a_new_document_costs_the_work_area_one_listing_and_its_summaries_are_written_together(
    receipts: Path, tmp_path: Path
) -> None:
    """Opening a document asks the work area once (a listing of its OCR folder says whether it is
    done and which pages are), and the summaries of finished documents are written by a pool: on a
    slow store (0.2 s a summary) several at once, not one after another."""
    from airflow_provider_deepocr.core.engines import get_engine

    work = _work(tmp_path)
    listed = stage_list(str(receipts), work, "r1")
    store = _SlowStore(work.storage, lambda kind, uri: kind == "write" and uri.endswith("/document.json"))
    res = stage_ocr(listed.manifest_uri, work, "r1", get_engine("sleep", batch_size=1))
    assert res.pages == 8
    assert len(store.of("list", "/ocr/")) == 8  # one listing of each document's OCR folder
    assert not store.of("exists", "/ocr/")  # and no existence check besides it
    assert len(store.of("write", "/document.json")) == 8
    assert store.most >= 3, store.most  # summaries written together (1 with a single finisher)

    again = _SlowStore(work.storage, lambda kind, uri: False)
    second = Recording(get_engine("sleep", batch_size=1))
    assert stage_ocr(listed.manifest_uri, work, "r2", second).pages == 8
    assert second.calls == []  # the listing found every summary
    assert not again.of("exists", "/ocr/") and len(again.of("list", "/ocr/")) == 8


def test_records_are_written_and_read_several_at_once(receipts: Path, tmp_path: Path) -> None:
    """On a slow work area (0.2 s a records file) the parse stage writes records files, and the
    load reads them, several at once; the rows are those of a run on a fast one."""
    from airflow_provider_deepocr.core.engines import get_engine
    from airflow_provider_deepocr.core.pipeline import stage_load, stage_parse_validate

    rows = {}
    for name, delay in (("fast", 0.0), ("slow", 0.2)):
        work = _work(tmp_path / name)
        listed = stage_list(str(receipts), work, "r1")
        ocr = stage_ocr(listed.manifest_uri, work, "r1", get_engine("sleep"))
        writes = _SlowStore(work.storage, lambda kind, uri: kind == "write" and "/records/" in uri, delay)
        parsed = stage_parse_validate(ocr.manifest_uri, work, "r1")
        assert parsed.pages == 8 and len(writes.of("write", "/records/")) == 8
        wh = Warehouse(f"sqlite:///{tmp_path / name}.db")
        reads = _SlowStore(work.storage, lambda kind, uri: kind == "read" and "/records/" in uri, delay)
        loaded = stage_load(parsed.manifest_uri, work, "r1", wh)
        assert loaded.pages == 8 and loaded.documents == 8
        if delay:
            assert writes.most >= 3, writes.most
            assert reads.most >= 3, reads.most
        digest = table_digest(wh.engine, "deepocr_", skip=["loaded_at", "run_id", "seen_at"])
        rows[name] = {t: digest.hashes[t] for t in ("pages", "blocks", "documents")}
        assert digest.counts["blocks"] > 8
        wh.dispose()
    assert rows["slow"] == rows["fast"]


def test_the_read_ahead_keeps_order_and_its_documents_under_the_byte_budget() -> None:
    """100-byte documents under a 250-byte budget: at most 2 fetched and not handed out at once
    (the window alone allows 8), in the listing's order; one heavier than the budget still goes,
    alone."""
    import threading
    import time

    from airflow_provider_deepocr.core.pipeline.prefetch import ahead

    def most_held(sizes: list[int], **bounds: Any) -> int:
        lock = threading.Lock()
        held: list[int] = []
        most = 0

        def fetch(size: int) -> int:
            nonlocal most
            with lock:
                held.append(size)
                most = max(most, sum(held))
            time.sleep(0.02)
            return size

        out = []
        for size, got in ahead(sizes, fetch, window=8, **bounds):
            assert got == size
            out.append(size)
            time.sleep(0.01)  # the consumer's own work
            with lock:
                held.remove(size)  # handed out: no longer waiting here
        assert out == sizes
        return most

    assert most_held([100] * 10, weight=lambda s: s, budget=250) == 200
    assert most_held([100] * 10) >= 500  # without a budget the window bounds it
    assert most_held([100, 1000, 100], weight=lambda s: s, budget=250) == 1000  # alone
