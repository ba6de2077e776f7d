"""core.pagework: the child-process page work, against the in-process path and real failures."""

from __future__ import annotations

import os
from typing import Any

import pytest

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.engines.pdf_text import extract_pdf_blocks
from airflow_provider_deepocr.core.pagework import PageResult, PageWork
from airflow_provider_deepocr.core.records import Document, DocumentRef
from airflow_provider_deepocr.testing import fuzz


def _doc(data: bytes, name: str = "doc.pdf") -> Document:
    return Document.from_bytes(DocumentRef(uri=f"mem://{name}"), data)


def words_on_page(page: Any, page_no: int) -> int:
    """A page function (run in the child): the number of words of the PDF page."""
    return len(page.get_text("words"))


def die_on_page_two(page: Any, page_no: int) -> None:
    """A page function that kills its process on page 2 (a native crash stands in)."""
    if page_no == 2:
        os._exit(3)


@pytest.fixture(scope="module")
def three_pages() -> bytes:
    return fuzz.text_pdf(3)


def test_child_and_in_process_give_the_same_pages_and_the_text_layer_blocks(three_pages: bytes) -> None:
    doc = _doc(three_pages)
    expected = extract_pdf_blocks(three_pages)
    results = {}
    for timeout in (30.0, None):
        with PageWork(page_timeout_s=timeout, dpi=100, text_layer=True) as work:
            opened = work.open(doc)
            assert (opened.media_type, opened.page_count, opened.numbers) == ("application/pdf", 3, [1, 2, 3])
            results[timeout] = list(opened)
    for a, b in zip(results[30.0], results[None], strict=True):
        assert isinstance(a, PageResult) and isinstance(b, PageResult)
        assert (a.page.page_no, a.page.dpi, a.page.image.size) == (b.page.page_no, 100, (850, 1100))
        assert a.page.image.tobytes() == b.page.image.tobytes()  # the same pixels through the pipe
        assert a.blocks == b.blocks == expected[a.page.page_no]
    assert "Page 3: invoice 2024-009, total due 1,434.56 EUR" in results[30.0][2].blocks[0]["text"]  # type: ignore[union-attr,index]


def test_asked_pages_only_and_pages_the_document_no_longer_has(three_pages: bytes) -> None:
    with PageWork(page_timeout_s=30) as work:
        assert [r.page.page_no for r in work.open(_doc(three_pages), pages=[3, 2])] == [3, 2]  # type: ignore[union-attr]
        with pytest.raises(errors.DocumentError) as info:
            work.open(_doc(three_pages), pages=[4, 5])  # listed with 5 pages, 3 now
        assert info.value.reason == errors.SOURCE_CHANGED


def test_page_functions_run_in_the_child_with_the_open_page(three_pages: bytes) -> None:
    name = f"{__name__}:words_on_page"
    with PageWork(page_timeout_s=30, page_functions=[name]) as work:
        counts = [r.extras[name] for r in work.open(_doc(three_pages))]  # type: ignore[union-attr]
    import pymupdf

    with pymupdf.open(stream=three_pages, filetype="pdf") as pdf:
        assert counts == [len(page.get_text("words")) for page in pdf]
    assert all(c > 60 for c in counts)


def test_a_child_that_dies_costs_its_page_and_the_rest_goes_on(three_pages: bytes) -> None:
    with PageWork(page_timeout_s=30, page_functions=[f"{__name__}:die_on_page_two"]) as work:
        items = list(work.open(_doc(three_pages)))
        assert work.restarts == 1
    assert isinstance(items[0], PageResult) and isinstance(items[2], PageResult)
    assert isinstance(items[1], errors.PageError) and (items[1].reason, items[1].page_no) == (
        errors.CORRUPT,
        2,
    )
    assert items[2].page.page_no == 3


def test_a_document_left_half_read_does_not_leak_into_the_next(three_pages: bytes) -> None:
    with PageWork(page_timeout_s=30) as work:
        first = iter(work.open(_doc(three_pages)))
        next(first)  # page 1 read, pages 2 and 3 still coming
        other = fuzz.text_pdf(1)
        items = list(work.open(_doc(other, "other.pdf")))
        assert [(i.page.doc_id, i.page.page_no) for i in items] == [(_doc(other).doc_id, 1)]  # type: ignore[union-attr]


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(errors.ConfigError):
        PageWork(page_timeout_s=0)


def _text_and_scan_pdf() -> bytes:
    """Page 1 born-digital (a usable text layer), page 2 a scan (an image, no text)."""
    import io

    import pymupdf
    from PIL import Image, ImageDraw

    pdf = pymupdf.open()
    page = pdf.new_page(width=300, height=400)
    for line in range(6):
        page.insert_text((30, 40 + 30 * line), f"Invoice line {line}: amount {line * 7}.00 EUR", fontsize=9)
    img = Image.new("L", (300, 400), 255)
    ImageDraw.Draw(img).text((30, 40), "Scanned letter", fill=0)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    pdf.new_page(width=300, height=400).insert_image(pymupdf.Rect(0, 0, 300, 400), stream=buf.getvalue())
    return pdf.tobytes()


@pytest.mark.parametrize("timeout", [30.0, None])
def test_pages_no_engine_looks_at_come_without_pixels_and_with_their_render_size(
    timeout: float | None,
) -> None:
    doc = _doc(_text_and_scan_pdf())
    got: dict[str, list[PageResult]] = {}
    for pixels in ("all", "model", "none"):
        with PageWork(page_timeout_s=timeout, dpi=100, text_layer=True, pixels=pixels) as work:
            got[pixels] = [r for r in work.open(doc) if isinstance(r, PageResult)]
    size = [
        (r.page.page_no, r.page.width, r.page.height, r.page.dpi, r.page.flags, r.blocks) for r in got["all"]
    ]
    for pixels in ("model", "none"):
        assert [
            (r.page.page_no, r.page.width, r.page.height, r.page.dpi, r.page.flags, r.blocks)
            for r in got[pixels]
        ] == size
    assert [r.page.image is not None for r in got["all"]] == [True, True]
    assert [r.page.image is not None for r in got["model"]] == [False, True]  # the text page goes to pdf-text
    assert got["model"][1].page.image.tobytes() == got["all"][1].page.image.tobytes()
    assert [r.page.image for r in got["none"]] == [None, None]
    with pytest.raises(errors.ConfigError):
        PageWork(pixels="some")


def test_the_next_page_work_of_the_process_takes_the_last_ones_child(three_pages: bytes) -> None:
    """A stage's healthy child is kept for the next stage of this process (PyMuPDF imported once),
    and its pages are the same; a child left half-way through a document is not kept."""
    from airflow_provider_deepocr.core import pagework

    pagework._stop_spare()
    with PageWork(page_timeout_s=30) as work:
        opened = work.open(_doc(three_pages))
        first = [(r.page.width, r.page.height) for r in opened if isinstance(r, PageResult)]
        assert work._child is not None
        pid = work._child.proc.pid
    with PageWork(page_timeout_s=30, dpi=72) as work:  # another configuration: the same child
        assert work._child is None
        again = list(work.open(_doc(three_pages)))
        assert work._child is not None and work._child.proc.pid == pid
        assert [(r.page.width, r.page.height) for r in again if isinstance(r, PageResult)] == [
            (round(w / 2), round(h / 2)) for w, h in first
        ]
        half = iter(work.open(_doc(three_pages)))
        next(half)  # pages 2 and 3 still coming when the stage ends
        child = work._child
    assert not pagework._spare and child.proc.poll() is not None  # killed, not handed on


def test_warm_up_starts_the_child_the_next_page_work_takes(three_pages: bytes) -> None:
    from airflow_provider_deepocr.core import pagework

    pagework._stop_spare()
    pagework.warm_up()
    (waiting,) = pagework._spare
    with PageWork(page_timeout_s=30) as work:
        assert len(list(work.open(_doc(three_pages)))) == 3
        assert work._child is waiting
    assert pagework._spare == [waiting]
    pagework._stop_spare()
    assert waiting.proc.poll() is not None
