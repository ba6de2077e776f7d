"""Tests that kill mutations which survived the suite (issue 20): the incremental listing's version
check, the fingerprint it assumes, and pages_ocr counting only pages read by this try."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow_provider_deepocr.core.engines import get_engine
from airflow_provider_deepocr.core.pipeline import stage_list, stage_ocr, unchanged_refs
from airflow_provider_deepocr.core.records import DocumentRef
from airflow_provider_deepocr.core.sources import LocalStorage, WorkArea, storage_for
from airflow_provider_deepocr.core.warehouse import Warehouse


def test_a_same_size_overwrite_is_read_again() -> None:
    loaded = [("s3://b/a.pdf", 100, "etag-1", "fp"), ("s3://b/b.pdf", 100, "etag-1", "fp")]
    refs = [DocumentRef("s3://b/a.pdf", 100, "etag-1"), DocumentRef("s3://b/b.pdf", 100, "etag-2")]
    assert unchanged_refs(refs, loaded, "fp") == {"s3://b/a.pdf"}  # b: same size, new version


def _run_row(run_id: str, dag_id: str, fp: str, ended: datetime) -> dict[str, object]:
    return {
        "run_id": run_id,
        "dag_id": dag_id,
        "shard": "all",
        "started_at": ended - timedelta(minutes=1),
        "ended_at": ended,
        "documents": 1,
        "pages": 1,
        "config_fingerprint": fp,
    }


def test_the_listing_assumes_the_same_dags_latest_fingerprint(tmp_path: Path) -> None:
    wh = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    wh.create()
    t = datetime(2026, 1, 1, tzinfo=UTC)
    wh.record_run(_run_row("r1", "docs", "fp-old", t))
    wh.record_run(_run_row("r2", "docs", "fp-new", t + timedelta(hours=1)))
    wh.record_run(_run_row("r3", "other", "fp-other", t + timedelta(hours=2)))  # another DAG, newer
    assert wh.last_fingerprint("docs") == "fp-new"
    assert wh.last_fingerprint("other") == "fp-other"


def test_pages_ocr_counts_only_the_pages_this_try_read(tmp_path: Path) -> None:
    from PIL import Image

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    frames = [Image.new("RGB", (200, 100 + i), "white") for i in range(3)]
    frames[0].save(inbox / "fax.tiff", save_all=True, append_images=frames[1:])
    root = str(tmp_path / "work")
    work = WorkArea(root, storage_for(root))
    listed = stage_list(str(inbox), work, "r1")
    stage_ocr(listed.manifest_uri, work, "r1", get_engine("sleep"))
    entry = work.read_jsonl(work.uri("runs", "r1", "ocr.jsonl"))[0]
    LocalStorage.path(f"{entry['ocr_dir']}/document.json").unlink()  # a try killed after 2 pages
    LocalStorage.path(f"{entry['ocr_dir']}/p00003.json").unlink()
    stage_ocr(listed.manifest_uri, work, "r2", get_engine("sleep"))
    stats = work.read_json(work.uri("runs", "r2", "stats", "all.json"))
    assert (stats["pages"], stats["pages_ocr"]) == (3, 1)
