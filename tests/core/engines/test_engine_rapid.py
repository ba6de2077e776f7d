"""RapidOcrEngine reads real text rendered in the test, boxes on the 0..999 grid, reading order."""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_deepocr.core.engines.rapid import RapidOcrEngine, reading_order, to_grid
from airflow_provider_deepocr.core.records import GRID, PageImage

LINES = [
    ((60, 60), "Invoice number 12345"),
    ((60, 200), "Total amount due"),
    ((640, 204), "EUR 99.50"),
    ((60, 420), "Thank you for your business"),
]
WIDTH, HEIGHT = 1000, 560


def _font_path() -> str | None:
    candidates = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/Library/Fonts/Arial.ttf",
    ]
    for c in candidates:
        if Path(c).is_file():
            return c
    if shutil.which("fc-list"):
        out = subprocess.run(["fc-list", ":style=Regular", "file"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            path = line.split(":")[0].strip()
            if path.endswith(".ttf"):
                return path
    return None


def _render_text_page() -> Any:
    from PIL import Image, ImageDraw, ImageFont

    font_path = _font_path()
    if font_path is not None:
        img = Image.new("RGB", (WIDTH, HEIGHT), "white")
        draw = ImageDraw.Draw(img)
        font = ImageFont.truetype(font_path, 36)
        for (x, y), text in LINES:
            draw.text((x, y), text, fill="black", font=font)
        return img
    # no TrueType font on this machine: PyMuPDF's built-in Helvetica
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=WIDTH / 2, height=HEIGHT / 2)
    for (x, y), text in LINES:
        page.insert_text((x / 2, y / 2 + 14), text, fontsize=18, fontname="helv")
    pix = page.get_pixmap(dpi=144)
    return Image.frombytes("RGB", (pix.width, pix.height), pix.samples)


def _page(image: Any, page_no: int = 1) -> PageImage:
    w, h = (image.width, image.height) if image is not None else (0, 0)
    return PageImage(doc_id="x" * 64, page_no=page_no, image=image, dpi=144, width=w, height=h)


@pytest.fixture(scope="module")
def engine() -> RapidOcrEngine:
    return RapidOcrEngine()


def test_reads_rendered_text(engine: RapidOcrEngine, caplog: pytest.LogCaptureFixture) -> None:
    from PIL import Image

    page = _page(_render_text_page())
    blank = _page(Image.new("L", (300, 200), 255), 2)
    with caplog.at_level(logging.DEBUG):
        text_page, blank_page, missing = engine.ocr([page, blank, _page(None, 3)])

    assert text_page.finish_reason == "eos"
    assert text_page.engine == "rapidocr"
    assert text_page.model.startswith("rapidocr-")
    blocks = text_page.blocks
    assert blocks is not None
    texts = [b["text"] for b in blocks]
    assert len(blocks) == len(LINES), texts
    # reading order: top to bottom, and "Total amount due" before "EUR 99.50" on the same row
    for (_, expected), got in zip(LINES, texts, strict=True):
        assert got.replace(" ", "").lower() == expected.replace(" ", "").lower()
    assert text_page.raw_text == "\n".join(texts)
    for b in blocks:
        x0, y0, x1, y1 = b["bbox"]
        assert all(isinstance(v, int) for v in b["bbox"])
        assert 0 <= x0 < x1 <= GRID and 0 <= y0 < y1 <= GRID
        assert b["label"] == "text" and 0.0 < b["score"] <= 1.0
    # first line starts at x=60 px of 1000 -> about 60 on the grid
    assert abs(blocks[0]["bbox"][0] - 60) <= 15
    assert blocks[2]["bbox"][0] > 500  # "EUR 99.50" is on the right

    assert blank_page.finish_reason == "eos" and blank_page.raw_text == "" and blank_page.blocks == []
    assert missing.finish_reason == "error" and missing.raw_text == ""
    # never recognised text in the logs
    assert "Invoice" not in caplog.text and "99.50" not in caplog.text


def test_to_grid() -> None:
    assert to_grid(0, 0, 1000, 500, 1000, 500) == [0, 0, GRID, GRID]
    assert to_grid(-5, -5, 2000, 20, 1000, 500) == [0, 0, GRID, 40]
    assert to_grid(500, 100, 500, 100, 1000, 1000) == [500, 100, 501, 101]  # degenerate -> 1 wide
    assert to_grid(1000, 1000, 1000, 1000, 1000, 1000) == [GRID - 1, GRID - 1, GRID, GRID]


def test_reading_order() -> None:
    boxes = [
        [600, 102, 800, 130],  # row 2, right
        [50, 10, 400, 40],  # row 1
        [50, 100, 300, 128],  # row 2, left
        [50, 300, 500, 330],  # row 3
    ]
    assert reading_order(boxes) == [1, 2, 0, 3]
    assert reading_order([]) == []
