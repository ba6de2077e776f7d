"""Ruled tables on scans: cells at the right (row, col), spans, the table's lines not repeated as
loose text, and a table step that raises leaves the page read and flagged."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_deepocr.core.engines import rapid, scan_tables
from airflow_provider_deepocr.core.engines.rapid import RapidOcrEngine
from airflow_provider_deepocr.core.parse import parse_structured
from airflow_provider_deepocr.core.records import Document, DocumentRef, PageImage
from airflow_provider_deepocr.core.render import render_pages
from airflow_provider_deepocr.testing import scans
from airflow_provider_deepocr.testing.truth import cell_accuracy


@pytest.fixture(scope="module")
def engine() -> RapidOcrEngine:
    return RapidOcrEngine()


@pytest.fixture(scope="module")
def table_page() -> PageImage:
    (case,) = scans.ruled_table_cases()
    (page,) = render_pages(Document.from_bytes(DocumentRef(case.filename), case.data), dpi=150)
    assert isinstance(page, PageImage)
    return page


def test_a_ruled_table_on_a_scan_gives_cells_at_the_right_row_and_col(
    engine: RapidOcrEngine, table_page: PageImage
) -> None:
    result = engine.ocr([table_page])[0]
    assert result.flags == []
    parsed = parse_structured(result.blocks or [], 1, table_page.width, table_page.height)
    assert [b.kind for b in parsed.blocks] == ["heading", "table"] or [b.kind for b in parsed.blocks] == [
        "text",
        "table",
    ]
    assert parsed.blocks[0].text == "Fruit order"
    (table,) = parsed.tables
    assert (table.n_rows, table.n_cols) == (4, 3)
    at = {(c.row, c.col): c.text for c in table.cells}
    assert at[(0, 0)] == "Item" and at[(0, 2)] == "Price"
    assert at[(1, 0)] == "Apples" and at[(1, 1)] == "12" and at[(1, 2)] == "3.40"
    assert at[(2, 0)] == "Pears" and at[(3, 1)] == "30"
    grid = [[at.get((r, c), "") for c in range(3)] for r in range(4)]
    assert cell_accuracy([grid], [scans.TABLE]) >= 0.9
    # the table's lines are inside the table block only, not loose text too
    loose = " ".join(b.text for b in parsed.blocks if b.kind != "table")
    assert "Apples" not in loose and "Price" not in loose


def _spanned_table_image() -> Any:
    """A 3 x 3 ruled grid whose top row is one cell across (colspan 3) and whose first column's
    last two rows are one cell (rowspan 2)."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (400, 220), 255)
    d = ImageDraw.Draw(img)
    x = [20, 140, 260, 380]
    y = [20, 80, 140, 200]
    for yy in y:  # horizontal rules; the one between rows 1 and 2 skips column 0
        d.line([(x[1] if yy == y[2] else x[0], yy), (x[3], yy)], fill=0, width=2)
    for i, xx in enumerate(x):  # vertical rules; inner ones skip the top row
        d.line([(xx, y[0] if i in (0, 3) else y[1]), (xx, y[3])], fill=0, width=2)
    return img


def test_missing_rules_become_spans() -> None:
    import numpy as np

    (table,) = scan_tables.find_tables(np.asarray(_spanned_table_image()))
    assert sorted(table.cells) == [
        (0, 0, 1, 3),
        (1, 0, 2, 1),
        (1, 1, 1, 1),
        (1, 2, 1, 1),
        (2, 1, 1, 1),
        (2, 2, 1, 1),
    ]


def test_a_page_whose_table_step_raises_is_read_and_flagged(
    engine: RapidOcrEngine, table_page: PageImage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any) -> Any:
        raise RuntimeError("broken grid")

    monkeypatch.setattr(rapid, "_scan_tables", boom)
    result = engine.ocr([table_page])[0]
    assert result.finish_reason == "eos"
    assert result.flags == [rapid.FLAG_TABLE_FAILED]
    texts = [b["text"] for b in result.blocks or []]
    assert "Apples" in " ".join(texts) and all(b["label"] == "text" for b in result.blocks or [])
