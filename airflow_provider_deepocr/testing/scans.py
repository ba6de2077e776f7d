"""Scanned pages with known truth: rotated pages, speckled pages, a ruled table.

Each generator returns ``list[TruthCase]`` with ``kind="scan"`` (image-only files: PNG, or a PDF
holding one JPEG per page), so ``bench/fidelity.py`` and the scan tests score the CPU reading path
against what each page says. Everything is made in code from a fixed seed (no downloads).
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from typing import Any

from airflow_provider_deepocr.testing.truth import Table, TruthCase, TruthPage

SEED = 20261206

LETTER_LINES = [
    "Quarterly maintenance report",
    "Pump station seven was inspected on Monday",
    "Valves replaced: 3 of 12 (north wing)",
    "Pressure held at 4.2 bar for two hours",
    "Next visit scheduled for 14 March 2025",
]
"""A short page of mixed case, digits and punctuation (rotated-scan cases)."""

TABLE = [
    ["Item", "Qty", "Price"],
    ["Apples", "12", "3.40"],
    ["Pears", "7", "2.15"],
    ["Plums", "30", "9.99"],
]
"""The ruled table of :func:`ruled_table_cases` (first row is the header)."""


def _pymupdf() -> Any:
    import pymupdf

    pymupdf.TOOLS.mupdf_display_errors(False)
    pymupdf.TOOLS.mupdf_display_warnings(False)
    return pymupdf


def _render(page: Any, dpi: int) -> Any:
    from PIL import Image

    pix = page.get_pixmap(dpi=dpi, alpha=False, colorspace=_pymupdf().csGRAY)
    return Image.frombytes("L", (pix.width, pix.height), pix.samples)


def text_page_image(
    lines: Sequence[str], size: tuple[int, int] = (420, 240), dpi: int = 150, fontsize: float = 12
) -> Any:
    """A grey image of ``lines`` typed top to bottom on a page of ``size`` points."""
    pymupdf = _pymupdf()
    doc = pymupdf.open()
    page = doc.new_page(width=size[0], height=size[1])
    y = 30.0
    for line in lines:
        page.insert_text((24, y), line, fontname="helv", fontsize=fontsize)
        y += fontsize * 2.0
    img = _render(page, dpi)
    doc.close()
    return img


def _png(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def rotate_clockwise(img: Any, degrees: int) -> Any:
    """``img`` turned ``degrees`` (0, 90, 180, 270) clockwise, as a scanner that fed it sideways."""
    from PIL import Image

    ops = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}
    return img.transpose(ops[degrees]) if degrees in ops else img


def rotated_scan_cases(rotations: Sequence[int] = (0, 90, 180, 270)) -> list[TruthCase]:
    """One PNG per rotation of the same typed page (:data:`LETTER_LINES`), turned clockwise."""
    upright = text_page_image(LETTER_LINES)
    return [
        TruthCase(
            name=f"scan-rotated-{r}",
            filename=f"rotated_{r}.png",
            data=_png(rotate_clockwise(upright, r)),
            pages=[TruthPage(list(LETTER_LINES), rotation=r)],
            kind="scan",
        )
        for r in rotations
    ]


def speckled_record_cases(pages: int = 2, record: int = 5) -> list[TruthCase]:
    """The project's speckled grey scan (``samples.make_scanned_record_pdf``) at A4 size: four
    typed lines a page under heavy salt-and-pepper noise (the case RapidOCR read 8 of 28 words of)."""
    from airflow_provider_deepocr.testing.samples import make_scanned_record_pdf

    truth = [
        TruthPage(
            [
                f"RECORD {record:04d} PAGE {n} OF {pages}",
                f"Patient MRN {100000 + 7 * record}",
                f"Visit {2000 + n} follow up",
                "SYNTHETIC",
            ]
        )
        for n in range(1, pages + 1)
    ]
    data = make_scanned_record_pdf(pages, record, size=(595, 842))
    return [TruthCase("scan-speckled-a4", f"record_{record:04d}_a4.pdf", data, truth, kind="scan")]


def speckle(img: Any, density: float = 0.004, seed: int = SEED) -> Any:
    """Black salt noise on a grey image: about ``density`` of the pixels set to 0."""
    from PIL import Image, ImageChops

    rng = random.Random(seed)
    w, h = img.size
    noise = Image.frombytes("L", (w, h), rng.randbytes(w * h))
    cut = max(1, int(256 * density))
    return ImageChops.darker(img, noise.point(lambda v: 0 if v < cut else 255))


def ruled_table_image(
    table: Table = TABLE, size: tuple[int, int] = (360, 200), dpi: int = 150, title: str = "Fruit order"
) -> Any:
    """A grey image with a title line and ``table`` drawn as a fully ruled grid under it."""
    pymupdf = _pymupdf()
    doc = pymupdf.open()
    page = doc.new_page(width=size[0], height=size[1])
    page.insert_text((24, 28), title, fontname="helv", fontsize=12)
    x0, y0, col_w, row_h = 24.0, 44.0, 96.0, 26.0
    n_rows, n_cols = len(table), max(len(r) for r in table)
    for r in range(n_rows + 1):
        page.draw_line((x0, y0 + r * row_h), (x0 + n_cols * col_w, y0 + r * row_h), width=1)
    for c in range(n_cols + 1):
        page.draw_line((x0 + c * col_w, y0), (x0 + c * col_w, y0 + n_rows * row_h), width=1)
    for r, row in enumerate(table):
        for c, text in enumerate(row):
            font = "hebo" if r == 0 else "helv"
            page.insert_text((x0 + c * col_w + 8, y0 + r * row_h + 18), text, fontname=font, fontsize=11)
    img = _render(page, dpi)
    doc.close()
    return img


def ruled_table_cases() -> list[TruthCase]:
    """A scanned page (PNG) holding a title and a ruled 4 x 3 table (:data:`TABLE`)."""
    lines = ["Fruit order", *(" ".join(row) for row in TABLE)]
    page = TruthPage(lines, tables=[[list(r) for r in TABLE]])
    return [TruthCase("scan-ruled-table", "ruled_table.png", _png(ruled_table_image()), [page], kind="scan")]


def scan_cases() -> list[TruthCase]:
    """Every scan case above (for the fidelity bench)."""
    return [*rotated_scan_cases(), *speckled_record_cases(), *ruled_table_cases()]
