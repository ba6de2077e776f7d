"""The pdf-text engine and its text-layer quality check, on real PDFs made here."""

from __future__ import annotations

import json

import pymupdf
import pytest

from airflow_provider_deepocr.core.engines.pdf_text import (
    PdfTextEngine,
    extract_pdf_blocks,
    page_text,
    text_layer_quality,
)
from airflow_provider_deepocr.core.records import PageImage


def _pdf(write: callable) -> bytes:  # type: ignore[valid-type]
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    write(page)
    data = doc.tobytes()
    doc.close()
    return data


def test_born_digital_page_gives_blocks_on_the_grid() -> None:
    def write(page: pymupdf.Page) -> None:
        page.insert_text((72, 80), "Consolidated Balance Sheet", fontsize=20)
        page.insert_text((72, 140), "Cash and cash equivalents      12,400      11,950", fontsize=10)
        page.insert_text((72, 160), "Accounts receivable            30,118      28,007", fontsize=10)

    blocks = extract_pdf_blocks(_pdf(write))[1]
    assert text_layer_quality(page_text(blocks))
    title = blocks[0]
    assert title["label"] == "title" and title["text"] == "Consolidated Balance Sheet"
    assert any("Accounts receivable" in b["text"] for b in blocks[1:])
    for b in blocks:
        x0, y0, x1, y1 = b["bbox"]
        assert 0 <= x0 < x1 <= 999 and 0 <= y0 < y1 <= 999
    # the title starts about 72/595 of the width in, 80/842 of the height down (baseline)
    assert abs(title["bbox"][0] - 121) <= 3 and title["bbox"][1] < 95


def test_image_only_and_garbage_layers_are_rejected() -> None:
    def image_only(page: pymupdf.Page) -> None:
        pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 50, 50), False)
        pix.clear_with(200)
        page.insert_image(page.rect, pixmap=pix)

    assert extract_pdf_blocks(_pdf(image_only))[1] == []
    assert not text_layer_quality("")
    assert not text_layer_quality("short")
    assert not text_layer_quality("\ufffd" * 10 + "Balance sheet for the year ended 31 December")
    assert not text_layer_quality("\ue000\ue001\ue002 " * 20)
    assert not text_layer_quality("§ ¶ † ‡ ※ " * 20)


@pytest.mark.parametrize("bad", ["not json", None])
def test_engine_reads_the_blocks_the_pipeline_attached(bad: str | None) -> None:
    blocks = [{"label": "text", "bbox": [10, 10, 500, 40], "text": "Total assets 287,778"}]
    good = PageImage("d" * 64, 1, None, 144, 100, 100, text_layer=json.dumps(blocks))
    broken = PageImage("d" * 64, 2, None, 144, 100, 100, text_layer=bad)
    ok, other = PdfTextEngine().ocr([good, broken])
    assert ok.engine == "pdf-text" and ok.finish_reason == "eos" and ok.blocks == blocks
    assert ok.raw_text == "Total assets 287,778"
    assert other.finish_reason == ("error" if bad else "eos")
