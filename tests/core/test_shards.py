"""Shards: the plan (property-tested), cheap page counts on real files, and the sharded listing."""

from __future__ import annotations

import io
from pathlib import Path

import pymupdf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.pipeline import stage_list
from airflow_provider_deepocr.core.records import DocumentRef
from airflow_provider_deepocr.core.shards import (
    ShardItem,
    check_shard_pages,
    count_pages_cheap,
    plan_shards,
)
from airflow_provider_deepocr.core.sources import LocalStorage, WorkArea


def _pdf(pages: int) -> bytes:
    doc = pymupdf.open()
    for i in range(pages):
        doc.new_page(width=200, height=200).insert_text((20, 40), f"page {i + 1}")
    data = doc.tobytes()
    doc.close()
    return data


def _tiff(frames: int) -> bytes:
    from PIL import Image

    imgs = [Image.new("RGB", (40, 30), "white") for _ in range(frames)]
    buf = io.BytesIO()
    imgs[0].save(buf, format="TIFF", save_all=True, append_images=imgs[1:])
    return buf.getvalue()


def _refs(counts: list[int]) -> list[tuple[DocumentRef, int]]:
    return [(DocumentRef(f"s3://b/d{i:03d}.pdf"), n) for i, n in enumerate(counts)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 40), max_size=30), st.integers(1, 25))
def test_every_page_lands_in_exactly_one_shard_and_no_shard_is_over_size(
    counts: list[int], size: int
) -> None:
    plan = plan_shards(_refs(counts), size)
    covered: dict[str, list[int]] = {}
    for shard in plan:
        assert shard, "no empty shard"
        assert sum(len(it.page_numbers() or range(it.pages)) for it in shard) <= size
        for it in shard:
            covered.setdefault(it.ref.uri, []).extend(it.page_numbers() or range(1, it.pages + 1))
    for ref, n in _refs(counts):
        assert covered[ref.uri] == list(range(1, n + 1))  # in order, each page once
    for shard in plan:
        for it in shard:
            assert it.is_part == (it.pages > size)  # only documents longer than a shard are split
    order = [it.ref.uri for shard in plan for it in shard]
    assert sorted(set(order), key=order.index) == [r.uri for r, _ in _refs(counts)]  # listing order


def test_a_long_document_fills_the_open_shard_then_whole_shards() -> None:
    plan = plan_shards(_refs([1, 7, 1, 2]), 3)
    shape = [[(it.ref.uri[-8:-4], it.first, it.last, it.part, it.parts) for it in s] for s in plan]
    assert shape == [
        [("d000", 1, None, 0, 1), ("d001", 1, 2, 0, 3)],
        [("d001", 3, 5, 1, 3)],
        [("d001", 6, 7, 2, 3), ("d002", 1, None, 0, 1)],
        [("d003", 1, None, 0, 1)],  # 2 pages do not fit the 0 left: a new shard, not a split
    ]
    assert plan_shards([], 5) == []


@pytest.mark.parametrize("bad", [0, -1, "x", None, 2.5, True])
def test_shard_pages_below_one_is_a_config_error(bad: object) -> None:
    with pytest.raises(errors.ConfigError, match="shard_pages"):
        check_shard_pages(bad)
    assert check_shard_pages("7") == 7


def test_shard_items_round_trip_and_read_plain_listings() -> None:
    item = ShardItem(DocumentRef("s3://b/a.pdf", 10, "e1"), 9, 4, 6, 1, 3)
    assert ShardItem.from_dict(item.to_dict()) == item and item.page_numbers() == [4, 5, 6]
    plain = ShardItem.from_dict({"uri": "s3://b/a.pdf", "size": 10, "version": "e1"})
    assert not plain.is_part and plain.page_numbers() is None


def test_cheap_page_counts_on_real_files(tmp_path: Path) -> None:
    reads: list[str] = []
    files = {"a.pdf": _pdf(5), "b.tiff": _tiff(3), "c.png": b"not even a png", "d.pdf": b"%PDF-1.7 broken"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    def read(uri: str) -> bytes:
        reads.append(uri.rsplit("/", 1)[1])
        return LocalStorage().read(uri)

    got = {n: count_pages_cheap(DocumentRef(LocalStorage.uri(tmp_path / n)), read) for n in files}
    assert got == {"a.pdf": 5, "b.tiff": 3, "c.png": 1, "d.pdf": 1}
    assert "c.png" not in reads  # one page by its extension: never read
    gone = DocumentRef(LocalStorage.uri(tmp_path / "gone.pdf"))
    assert count_pages_cheap(gone, read) == 1  # fails later, in its shard (source_missing)


def test_sharded_listing_writes_shards_and_the_split_documents(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name, pages in (("a.pdf", 1), ("b.pdf", 5), ("c.pdf", 2)):
        (src / name).write_bytes(_pdf(pages))
    work = WorkArea(str(tmp_path / "work"))
    res = stage_list(str(src), work, "r1", shard_pages=2)
    assert (res.documents, res.total_pages, res.spanning, len(res.shards)) == (3, 8, 1, 4)
    shards = [[ShardItem.from_dict(d) for d in work.read_jsonl(u)] for u in res.shards]
    assert [[(Path(i.ref.uri).name, i.first, i.last) for i in s] for s in shards] == [
        [("a.pdf", 1, None), ("b.pdf", 1, 1)],
        [("b.pdf", 2, 3)],
        [("b.pdf", 4, 5)],
        [("c.pdf", 1, None)],
    ]
    (spanning,) = work.read_jsonl(res.spanning_uri)
    assert Path(spanning["ref"]["uri"]).name == "b.pdf" and spanning["pages"] == 5
    assert [(p["shard"], p["first"], p["last"]) for p in spanning["parts"]] == [
        ("00000", 1, 1),
        ("00001", 2, 3),
        ("00002", 4, 5),
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    none = stage_list(str(empty), work, "r2", shard_pages=2)
    assert none.shards == [] and none.documents == 0  # mapped tasks over [] are skipped, not failed
    with pytest.raises(errors.ConfigError, match="shard_pages"):
        stage_list(str(src), work, "r3", shard_pages=0)


class _Served(LocalStorage):
    """Local files, recording which documents the store served and how many bytes."""

    def __init__(self) -> None:
        self.served: dict[str, int] = {}

    def _count(self, uri: str, data: bytes) -> bytes:
        name = uri.rsplit("/", 1)[1]
        self.served[name] = self.served.get(name, 0) + len(data)
        return data

    def read(self, uri: str) -> bytes:
        return self._count(uri, super().read(uri))

    def read_range(self, uri: str, start: int, length: int) -> bytes:
        return self._count(uri, super().read_range(uri, start, length))


def test_a_relisting_of_unchanged_objects_reads_no_document_bytes(tmp_path: Path) -> None:
    import os

    from airflow_provider_deepocr.core.pipeline import StageContext, list_source
    from airflow_provider_deepocr.core.pipeline.listing import ListResult

    src = tmp_path / "in"
    src.mkdir()
    for name, data in (("a.pdf", _pdf(1)), ("b.pdf", _pdf(5)), ("c.tiff", _tiff(3)), ("d.png", b"png")):
        (src / name).write_bytes(data)
    work = WorkArea(str(tmp_path / "work"))
    store = _Served()

    def listing(run_id: str) -> tuple[ListResult, list[list[tuple[str, int, int | None]]]]:
        res = list_source(StageContext(work, run_id, store), str(src), shard_pages=4)
        shards = [[ShardItem.from_dict(d) for d in work.read_jsonl(u)] for u in res.shards]
        return res, [[(Path(i.ref.uri).name, i.first, i.last) for i in s] for s in shards]

    first, plan = listing("r1")
    assert sorted(store.served) == ["a.pdf", "b.pdf", "c.tiff"]  # d.png: one page by its name
    assert (first.total_pages, first.counted_from_cache) == (10, 0)
    store.served.clear()
    again, plan_again = listing("r2")
    assert store.served == {}  # every count came from the page-count cache
    assert (again.total_pages, again.counted_from_cache, plan_again) == (10, 4, plan)
    # a changed object (new bytes, new mtime) is counted again, and only it
    (src / "b.pdf").write_bytes(_pdf(2))
    os.utime(src / "b.pdf", ns=(1, 1))
    changed, _ = listing("r3")
    assert list(store.served) == ["b.pdf"]
    assert (changed.total_pages, changed.counted_from_cache) == (7, 3)
