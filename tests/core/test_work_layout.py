"""The work area's layout: the paths every stage, the review and the report agree on."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_deepocr.core.sources import WorkArea
from airflow_provider_deepocr.core.work_layout import SPANNING, UNSHARDED, Manifest, RunLayout, WorkLayout


@pytest.fixture()
def work(tmp_path: Path) -> WorkArea:
    return WorkArea(str(tmp_path / "w"))


def test_the_paths_are_the_documented_layout(work: WorkArea) -> None:
    root = work.root_uri
    run = RunLayout(work, "r1")
    assert run.documents() == f"{root}/runs/r1/documents.jsonl"
    assert run.shard("00003") == f"{root}/runs/r1/shards/00003.jsonl"
    assert run.manifest(Manifest.OCR, UNSHARDED) == f"{root}/runs/r1/ocr.jsonl"
    assert run.manifest(Manifest.RECORDS, "00003") == f"{root}/runs/r1/records/00003.jsonl"
    assert run.manifest(Manifest.OCR, SPANNING) == f"{root}/runs/r1/ocr/spanning.jsonl"
    assert run.stats("00003") == f"{root}/runs/r1/stats/00003.json"
    layout = WorkLayout(work)
    ocr_dir = layout.ocr_dir("fp1", "abc")
    assert ocr_dir == f"{root}/ocr/fp1/abc"
    assert WorkLayout.page(ocr_dir, 7) == f"{root}/ocr/fp1/abc/p00007.json"
    assert WorkLayout.part_summary(ocr_dir, 1, 5000) == f"{root}/ocr/fp1/abc/part-00001-05000.json"
    assert layout.records("fp1", "abc") == f"{root}/records/fp1/abc.json"
    assert layout.decision("abc") == f"{root}/reviews/abc.json"


def test_a_manifest_names_its_shard(work: WorkArea) -> None:
    run = RunLayout(work, "r1")
    for shard in ("00000", "00012", SPANNING, UNSHARDED):
        for stage in Manifest:
            assert RunLayout.shard_of(run.manifest(stage, shard)) == shard, (stage, shard)
    assert RunLayout.shard_of(run.shard("00004")) == "00004"
    assert RunLayout.shard_of(run.documents()) == UNSHARDED
    assert RunLayout.shard_of(run.spanning()) == SPANNING


def test_records_manifests_are_found_sharded_or_not(work: WorkArea) -> None:
    run = RunLayout(work, "r1")
    assert run.records_manifests() == []
    work.write_jsonl(run.manifest(Manifest.RECORDS, "00001"), [{"doc_id": "b"}])
    work.write_jsonl(run.manifest(Manifest.RECORDS, UNSHARDED), [{"doc_id": "a"}])
    found = run.records_manifests()
    assert [work.read_jsonl(u)[0]["doc_id"] for u in found] == ["a", "b"]
