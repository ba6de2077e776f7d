"""Page counts from ranged reads equal the whole-bytes counts (PyMuPDF / Pillow), reading little."""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

import pytest

from airflow_provider_deepocr.core.pagecount import Doubt, ranged_page_count
from airflow_provider_deepocr.core.records import DocumentRef
from airflow_provider_deepocr.core.shards import PageCount, count_document
from airflow_provider_deepocr.core.sources import LocalStorage
from airflow_provider_deepocr.testing.fuzz import make_corpus

DATA = Path(__file__).resolve().parents[1] / "data"


class CountingStorage(LocalStorage):
    """Local files, counting the requests and the document bytes the store served."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def _served(self, data: bytes) -> bytes:
        with self._lock:
            self.requests += 1
            self.bytes += len(data)
        return data

    def read(self, uri: str) -> bytes:
        return self._served(super().read(uri))

    def read_range(self, uri: str, start: int, length: int) -> bytes:
        return self._served(super().read_range(uri, start, length))


def tiff(frames: int, *, big_endian: bool = False, bigtiff: bool = False, side: int = 8) -> bytes:
    """An uncompressed 8-bit grey TIFF of ``frames`` frames of ``side``x``side`` noise, written by
    hand so both byte orders and BigTIFF are covered (each frame's IFD after its pixels)."""
    e = ">" if big_endian else "<"
    order = b"MM" if big_endian else b"II"
    if bigtiff:
        out = bytearray(order + struct.pack(e + "HHHQ", 43, 8, 0, 0))
        first_ptr, entry, count_fmt, next_fmt, long_type = 8, "HHQQ", "Q", "Q", 16
    else:
        out = bytearray(order + struct.pack(e + "HI", 42, 0))
        first_ptr, entry, count_fmt, next_fmt, long_type = 4, "HHII", "H", "I", 4
    ptr = first_ptr
    for _ in range(frames):
        pixels = len(out)
        out += os.urandom(side * side)
        if len(out) % 2:
            out += b"\0"
        tags = [
            (256, 3, 1, side),
            (257, 3, 1, side),
            (258, 3, 1, 8),
            (259, 3, 1, 1),
            (262, 3, 1, 1),
            (273, long_type, 1, pixels),
            (277, 3, 1, 1),
            (278, 3, 1, side),
            (279, long_type, 1, side * side),
        ]
        ifd = len(out)
        struct.pack_into(e + next_fmt, out, ptr, ifd)
        out += struct.pack(e + count_fmt, len(tags))
        for tag, typ, count, value in tags:
            if typ == 3:  # a SHORT sits left-justified in the value field
                field = struct.pack(e + "H", value).ljust(8 if bigtiff else 4, b"\0")
            else:
                field = struct.pack(e + ("Q" if bigtiff else "I"), value)
            out += struct.pack(e + entry[:3], tag, typ, count) + field
        ptr = len(out)
        out += struct.pack(e + next_fmt, 0)
    return bytes(out)


def _pymupdf_pdf(pages: int, image_bytes: int = 0) -> object:
    import pymupdf

    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page()
        page.insert_text((72, 72), f"page {i + 1}")
        if image_bytes and i == 0:  # incompressible noise: the file is about image_bytes long
            side = int((image_bytes / 3) ** 0.5)
            pix = pymupdf.Pixmap(pymupdf.csRGB, side, side, os.urandom(side * side * 3), False)
            page.insert_image(page.rect, pixmap=pix)
    return doc


def well_formed(tmp: Path) -> dict[str, bytes]:
    """PDFs (xref tables, xref streams with object streams, incremental updates, many pages) and
    TIFFs (both byte orders, classic and BigTIFF, one and many frames): the ranged way must count
    every one of them itself."""
    import pymupdf
    from PIL import Image

    tmp.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}
    for n in (1, 3, 250):
        files[f"table-{n}.pdf"] = _pymupdf_pdf(n).tobytes(garbage=3)  # type: ignore[attr-defined]
        files[f"objstm-{n}.pdf"] = _pymupdf_pdf(n).tobytes(  # type: ignore[attr-defined]
            garbage=3, deflate=True, use_objstms=True
        )
    path = tmp / "incremental.pdf"
    _pymupdf_pdf(3).save(path)  # type: ignore[attr-defined]
    for _ in range(2):  # two incremental updates, each adding a page: 5 pages, 3 xref sections
        doc = pymupdf.open(path)
        doc.new_page()
        doc.saveIncr()
        doc.close()
    files["incremental.pdf"] = path.read_bytes()
    path = tmp / "incremental-objstm.pdf"
    _pymupdf_pdf(2).save(path, use_objstms=True, garbage=3)  # type: ignore[attr-defined]
    doc = pymupdf.open(path)
    doc.delete_page(0)
    doc.saveIncr()
    doc.close()
    files["incremental-objstm.pdf"] = path.read_bytes()
    for frames in (1, 7):
        for big_endian in (False, True):
            for bigtiff in (False, True):
                name = f"{'be' if big_endian else 'le'}-{'big' if bigtiff else 'classic'}-{frames}.tif"
                files[name] = tiff(frames, big_endian=big_endian, bigtiff=bigtiff)
    # (Pillow 13 reads a big-endian BigTIFF's header as classic and refuses the file: both ways
    # count it 1, and it fails in its shard)
    frames = [Image.new("L", (40, 30), 30 * i) for i in range(5)]
    path = tmp / "pillow.tif"
    frames[0].save(path, save_all=True, append_images=frames[1:], compression="tiff_lzw")
    files["pillow-lzw-5.tif"] = path.read_bytes()
    return files


def corpus() -> dict[str, bytes]:
    """Damaged files: tests/data/broken and the fuzz corpus (truncated, flipped xref bytes,
    absurd /Count, looping page trees, zeroed, bad image sizes)."""
    files = {f"broken/{p.name}": p.read_bytes() for p in sorted((DATA / "broken").iterdir())}
    files |= {f"fidelity/{p.name}": p.read_bytes() for p in sorted((DATA / "fidelity").glob("*.pdf"))}
    files |= {f"fuzz/{name}": data for name, data in make_corpus(seed=20).items()}
    return files


def _counts(path: Path) -> tuple[PageCount, PageCount]:
    """(the ranged way, the whole-bytes way) for one file."""
    storage = LocalStorage()
    ref = DocumentRef(LocalStorage.uri(path), size=path.stat().st_size)
    return count_document(ref, storage.read, storage.read_range), count_document(ref, storage.read)


def test_the_ranged_count_is_the_whole_count_on_every_file(tmp_path: Path) -> None:
    good = well_formed(tmp_path / "gen")
    files = good | corpus()
    (tmp_path / "all").mkdir()
    ranged_alone = 0
    for name, data in files.items():
        path = tmp_path / "all" / name.replace("/", "__")
        path.write_bytes(data)
        ranged, whole = _counts(path)
        assert ranged.pages == whole.pages, name
        if name in good:
            assert ranged.ranged, f"{name}: the ranged way gave up on a well-formed file"
        ranged_alone += ranged.ranged
    # the damaged files are judged by the ranged way too, not all sent to the whole read
    assert ranged_alone > len(good) + 100


@pytest.mark.parametrize("kind", ["table", "objstm", "many-pages", "incremental", "tiff-be", "tiff-le-big"])
def test_about_1mb_documents_are_counted_from_under_5_percent_of_their_bytes(
    tmp_path: Path, kind: str
) -> None:
    import pymupdf

    path = tmp_path / ("doc.tif" if kind.startswith("tiff") else "doc.pdf")
    if kind == "table":
        _pymupdf_pdf(2, image_bytes=1_000_000).save(path, garbage=3)  # type: ignore[attr-defined]
    elif kind == "objstm":
        _pymupdf_pdf(2, image_bytes=1_000_000).save(  # type: ignore[attr-defined]
            path, garbage=3, deflate=True, use_objstms=True
        )
    elif kind == "many-pages":
        _pymupdf_pdf(400, image_bytes=900_000).save(path, garbage=3)  # type: ignore[attr-defined]
    elif kind == "incremental":
        _pymupdf_pdf(3, image_bytes=1_000_000).save(path)  # type: ignore[attr-defined]
        doc = pymupdf.open(path)
        doc.new_page()
        doc.saveIncr()
        doc.close()
    else:  # 16 frames of 256x256 grey: 1 MB, one IFD after each frame
        path.write_bytes(tiff(16, big_endian=kind == "tiff-be", bigtiff=kind == "tiff-le-big", side=256))
    size = path.stat().st_size
    assert size > 900_000
    storage = CountingStorage()
    got = count_document(DocumentRef(LocalStorage.uri(path), size=size), storage.read, storage.read_range)
    assert got.ranged
    assert (
        got.pages == count_document(DocumentRef(LocalStorage.uri(path), size=size), LocalStorage().read).pages
    )
    assert storage.bytes <= 0.05 * size, f"{storage.bytes} of {size} bytes read"
    assert storage.bytes == got.bytes_read and storage.requests == got.requests


def test_doubt_reads_the_document_whole(tmp_path: Path) -> None:
    """An encrypted PDF: the ranged way doubts (``/Encrypt``), the whole read counts it (MuPDF
    needs a password: counted 1, it fails in its shard)."""
    import pymupdf

    path = tmp_path / "locked.pdf"
    _pymupdf_pdf(3).save(  # type: ignore[attr-defined]
        path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="u", owner_pw="o"
    )
    data = path.read_bytes()
    with pytest.raises(Doubt, match="encrypted"):
        ranged_page_count(lambda start, length: data[start : start + length], len(data))
    storage = CountingStorage()
    got = count_document(
        DocumentRef(LocalStorage.uri(path), size=len(data)), storage.read, storage.read_range
    )
    assert (got.pages, got.ranged, got.known) == (1, False, True)
    assert storage.bytes >= len(data)  # the whole read happened


def test_a_failed_read_is_counted_1_and_not_known(tmp_path: Path) -> None:
    ref = DocumentRef(LocalStorage.uri(tmp_path / "gone.pdf"), size=5000)
    storage = LocalStorage()
    got = count_document(ref, storage.read, storage.read_range)
    assert (got.pages, got.known) == (1, False)  # a page-count cache must not keep it


def test_a_small_document_costs_one_request(tmp_path: Path) -> None:
    path = tmp_path / "small.pdf"
    path.write_bytes(_pymupdf_pdf(3, image_bytes=9000).tobytes(garbage=3))  # type: ignore[attr-defined]
    assert 4096 < path.stat().st_size <= 16384  # past one end read, within SMALL
    storage = CountingStorage()
    got = count_document(
        DocumentRef(LocalStorage.uri(path), size=path.stat().st_size), storage.read, storage.read_range
    )
    assert (got.pages, got.ranged, storage.requests) == (3, True, 1)


def test_a_store_without_its_own_ranged_read_is_read_whole_once(tmp_path: Path) -> None:
    """The ABC's default ``read_range`` reads the whole object per call: counting through it would
    read a document whole two or three times, so ``count_all`` reads it whole once instead."""
    from collections.abc import Iterator

    from airflow_provider_deepocr.core.shards import count_all
    from airflow_provider_deepocr.core.sources import Storage

    class WholeOnly(Storage):
        def __init__(self) -> None:
            self.reads = 0

        def list(self, prefix_uri: str) -> Iterator[DocumentRef]:
            return iter(())

        def read(self, uri: str) -> bytes:
            self.reads += 1
            return LocalStorage().read(uri)

        def write(self, uri: str, data: bytes) -> None:
            raise NotImplementedError

        def exists(self, uri: str) -> bool:
            return True

    path = tmp_path / "big.pdf"
    _pymupdf_pdf(4, image_bytes=200_000).save(path)  # type: ignore[attr-defined]
    store = WholeOnly()
    (got,) = count_all([DocumentRef(LocalStorage.uri(path), size=path.stat().st_size)], store)
    assert (got.pages, got.ranged, store.reads) == (4, False, 1)
