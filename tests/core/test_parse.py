"""Tests for the grounded-output parser: real DeepSeek-OCR outputs, broken shapes, properties."""

from __future__ import annotations

import html
import itertools
import json
import re
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_deepocr.core import parse as parse_mod
from airflow_provider_deepocr.core.parse import (
    FLAG_BAD_BBOX,
    FLAG_EMPTY_PAGE,
    FLAG_NO_BOX,
    FLAG_REPETITION_LOOP,
    FLAG_TRUNCATED,
    FLAG_UNCLOSED_DET,
    PARSER_VERSION,
    document_markdown,
    page_to_markdown,
    parse_document,
    parse_page,
    parse_structured,
)
from airflow_provider_deepocr.core.records import BLOCK_KINDS, GRID, ParsedPage, Table, TableCell
from tests.conftest import RAW_FIXTURES

FIXTURE_TEXTS = {p.name: p.read_text(encoding="utf-8") for p in sorted(RAW_FIXTURES.glob("*.txt"))}


def _raw(name: str) -> str:
    return FIXTURE_TEXTS[name]


def _cell(table: Table, row: int, col: int) -> TableCell:
    found = [c for c in table.cells if c.row == row and c.col == col]
    assert len(found) == 1, f"expected one cell at ({row}, {col}), found {len(found)}"
    return found[0]


def _check_invariants(page: ParsedPage) -> None:
    """What must hold for any page, whatever the input."""
    assert page.flags == sorted(set(page.flags))
    for i, b in enumerate(page.blocks):
        assert b.index == i
        assert b.kind in BLOCK_KINDS
        for box in ([b.bbox] if b.bbox is not None else []) + list(b.extra_boxes):
            x0, y0, x1, y1 = box
            assert all(isinstance(v, int) for v in box)
            assert 0 <= x0 < x1 <= GRID and 0 <= y0 < y1 <= GRID
        if b.bbox is None:
            assert b.bbox_px is None
        assert "<|ref|>" not in b.raw and "<|det|>" not in b.raw
    for t in page.tables:
        assert 0 <= t.block_index < len(page.blocks)
        assert page.blocks[t.block_index].kind == "table"
        seen = set()
        for c in t.cells:
            assert c.rowspan >= 1 and c.colspan >= 1
            assert c.row + c.rowspan <= t.n_rows and c.col + c.colspan <= t.n_cols
            for r in range(c.row, c.row + c.rowspan):
                for k in range(c.col, c.col + c.colspan):
                    assert (r, k) not in seen, "two cells cover the same grid slot"
                    seen.add((r, k))
    assert "<|ref|>" not in page.markdown and "<|det|>" not in page.markdown
    json.dumps(page.to_json_dict())


# ---- the real fixtures ------------------------------------------------------------------------


def test_fixture_files_are_all_covered(raw_fixture_files: list[Path]) -> None:
    assert (
        {p.name for p in raw_fixture_files}
        == set(FIXTURE_TEXTS)
        == {
            "case02.txt",
            "case04.txt",
            "case05.txt",
            "case07.txt",
        }
    )
    for p in raw_fixture_files:
        _check_invariants(parse_page(p.read_text(encoding="utf-8"), width=1000, height=1400))


def test_case02_blocks() -> None:
    page = parse_page(_raw("case02.txt"))
    assert page.flags == []
    assert Counter(b.label for b in page.blocks) == {
        "title": 1,
        "text": 10,
        "sub_title": 2,
        "table": 2,
        "equation": 3,
        "table_caption": 1,
    }
    b0 = page.blocks[0]
    assert (b0.label, b0.kind, b0.bbox, b0.raw, b0.text) == (
        "title",
        "heading",
        (115, 165, 485, 201),
        "# Übungsblatt DGL 7",
        "Übungsblatt DGL 7",
    )
    # A text block whose content is a markdown heading.
    assert page.blocks[2].label == "text" and page.blocks[2].kind == "heading"
    assert page.blocks[2].text == "Lösungen"
    # Markdown list lines in text blocks.
    assert [b.kind for b in page.blocks[5:8]] == ["list_item"] * 3
    assert page.blocks[5].text.startswith("Sie kennen die Begriffe")
    # "<|det|> [[" (a space before the coordinates) still parses.
    sei = page.blocks[12]
    assert sei.bbox == (115, 685, 875, 720) and sei.flags == []
    assert "\\(\\omega_0, \\delta > 0\\)" in sei.raw
    assert "\\(" not in sei.text and "δ" in sei.text
    # Equations: kind formula, LaTeX kept in raw, delimiters gone from text.
    eqs = [b for b in page.blocks if b.label == "equation"]
    assert [b.kind for b in eqs] == ["formula"] * 3
    assert eqs[0].raw == "\\[\n\\text{DGL: } \\ddot{x} + 2\\delta \\dot{x} + \\omega_0^2 x = 0\n\\]"
    assert eqs[2].bbox == (152, 753, 255, 772)
    assert "\\[" not in eqs[0].text and "DGL:" in eqs[0].text
    # The empty caption (content is one space).
    cap = page.blocks[17]
    assert (cap.label, cap.kind, cap.raw, cap.text) == ("table_caption", "caption", "", "")


def test_case02_tables() -> None:
    page = parse_page(_raw("case02.txt"))
    assert [t.block_index for t in page.tables] == [10, 18]
    t1, t2 = page.tables
    assert (t1.n_rows, t1.n_cols, len(t1.cells)) == (6, 3, 18)
    assert (t1.caption, t2.caption) == (None, None)  # no caption; an empty caption
    assert _cell(t1, 0, 1).text == "wahr" and _cell(t1, 0, 2).text == "falsch"
    assert _cell(t1, 5, 0).text.startswith("e) Die Frequenz")
    assert not any(c.is_header for c in t1.cells)
    # Second table: row 1 col 0 spans two rows; row 2 has only its two real cells, at cols 1, 2.
    assert (t2.n_rows, t2.n_cols, len(t2.cells)) == (6, 3, 17)
    a = _cell(t2, 1, 0)
    assert (a.rowspan, a.colspan) == (2, 1)
    assert a.text.startswith("a) Ist \\(x_1\\) eine Lösung")  # LaTeX inside cells kept
    assert [c.col for c in t2.cells if c.row == 2] == [1, 2]
    assert _cell(t2, 2, 1).text == "" and _cell(t2, 2, 2).text == "X"
    c4 = _cell(t2, 4, 0).text
    assert c4.startswith("c) Gilt \\(\\delta > \\omega_0\\), dann oszilliert")
    assert c4.endswith("mit der Kreisfrequenz \\(\\omega_d < \\omega_0\\).")


def test_case04_untagged_start_and_split_table() -> None:
    page = parse_page(_raw("case04.txt"))
    assert page.flags == []
    lead = page.blocks[0]
    assert lead.bbox is None and lead.flags == [FLAG_NO_BOX] and lead.label == ""
    assert lead.text.startswith("order to compute the TED score.")
    assert Counter(b.label for b in page.blocks) == {
        "": 1,
        "sub_title": 2,
        "text": 3,
        "table": 1,
        "table_caption": 1,
    }
    # table det -> caption det -> caption text -> <table>: the HTML goes to the table block,
    # the caption comes first (it was written first and sits above the table).
    labels = [b.label for b in page.blocks]
    ci, ti = labels.index("table_caption"), labels.index("table")
    assert ti == ci + 1
    cap, tab = page.blocks[ci], page.blocks[ti]
    assert cap.bbox == (217, 342, 785, 413) and tab.bbox == (225, 421, 777, 595)
    assert cap.raw.startswith("Table 1. HPO performed") and "<table" not in cap.raw
    assert tab.raw.startswith("<table>") and tab.raw.endswith("</table>")
    assert len(page.tables) == 1
    t = page.tables[0]
    assert t.block_index == ti
    assert t.caption is not None and t.caption.startswith("Table 1.")
    assert (t.n_rows, t.n_cols) == (10, 8)
    # Header row: rowspan 2 cells, then TEDs spanning 3 columns at col 3.
    teds = _cell(t, 0, 3)
    assert (teds.text, teds.rowspan, teds.colspan, teds.is_header) == ("TEDs", 1, 3, True)
    assert _cell(t, 0, 0).text == "# enc-layers" and _cell(t, 0, 0).rowspan == 2
    assert _cell(t, 0, 6).text == "mAP (0.75)" and _cell(t, 0, 7).text == "Inference time (secs)"
    simple = _cell(t, 1, 3)
    assert (simple.text, simple.is_header) == ("simple", True)
    assert [c.text for c in t.cells if c.row == 1] == ["simple", "complex", "all"]
    assert [c.col for c in t.cells if c.row == 1] == [3, 4, 5]
    # Data rows: rowspan 2 in the first two columns, the next row starts at col 2.
    six = _cell(t, 2, 0)
    assert (six.text, six.rowspan, six.is_header) == ("6", 2, False)
    assert [(c.col, c.text) for c in t.cells if c.row == 3][:2] == [(2, "HTML"), (3, "0.969")]
    assert _cell(t, 9, 7).text == "2"
    assert sum(c.is_header for c in t.cells) == 9
    assert len(t.cells) == 9 + 4 * (8 + 6)
    # Inline formula kept in raw.
    assert "\\(2x\\)" in page.blocks[2].raw


def test_case05_image_and_caption() -> None:
    page = parse_page(_raw("case05.txt"), width=1224, height=1584)
    assert page.flags == []
    assert Counter(b.label for b in page.blocks) == {
        "title": 1,
        "text": 9,
        "sub_title": 4,
        "image": 1,
        "image_caption": 1,
    }
    img = next(b for b in page.blocks if b.label == "image")
    assert (img.kind, img.raw, img.text, img.bbox) == ("figure", "", "", (530, 310, 905, 666))
    assert img.bbox_px == pytest.approx(
        (530 * 1224 / 999, 310 * 1584 / 999, 905 * 1224 / 999, 666 * 1584 / 999), abs=0.01
    )
    cap = page.blocks[img.index + 1]
    assert cap.label == "image_caption" and cap.kind == "caption"
    assert cap.raw.startswith("<center>")
    assert cap.text == "Figure 1: Four examples of complex page layouts across different document categories"
    assert "<center>" not in page.markdown
    assert page.tables == []
    # Reading order jumps between the two columns as the model wrote it.
    assert [b.bbox[0] for b in page.blocks if b.bbox][6:10] == [86, 85, 86, 86]
    assert page.blocks[9].kind == "list_item"
    assert "→" in page.blocks[9].text


def test_case07_truncated_at_token_limit() -> None:
    raw = _raw("case07.txt")
    page = parse_page(raw, finish_reason="length")
    assert page.flags == [FLAG_TRUNCATED]
    assert len(page.blocks) == 1
    b = page.blocks[0]
    assert (b.label, b.kind, b.bbox, b.raw, b.text) == ("title", "heading", (330, 198, 559, 230), "# R", "R")
    assert FLAG_TRUNCATED in b.flags
    assert page.markdown == "# R"
    assert parse_page(raw, finish_reason="stop").flags == []


def test_json_shape_fits_records() -> None:
    page = parse_page(_raw("case04.txt"), page_no=3, width=1000, height=1000)
    d = page.to_json_dict()
    assert d["page_no"] == 3
    assert d["blocks"][1]["bbox"] == [217, 209, 520, 225]
    assert d["tables"][0]["cells"][3] == {
        "row": 0,
        "col": 3,
        "rowspan": 1,
        "colspan": 3,
        "is_header": True,
        "text": "TEDs",
    }
    json.dumps(d, ensure_ascii=False)


def test_round_trip_blocks_in_markdown_in_order() -> None:
    for name, raw in FIXTURE_TEXTS.items():
        page = parse_page(raw)
        md = page.markdown
        assert md == page_to_markdown(page)
        pos = 0
        for b in page.blocks:
            if not b.raw:
                continue
            piece = b.raw.replace("<center>", "").replace("</center>", "").strip()
            found = md.find(piece, pos)
            assert found >= 0, f"{name}: block {b.index} missing or out of order"
            pos = found + len(piece)
            if b.text and b.text == b.raw:
                assert md.count(b.text) == sum(1 for o in page.blocks if b.text in o.raw)
        # The headings are written as the model wrote them.
        for b in page.blocks:
            if b.raw.startswith("#"):
                assert "\n" + b.raw.split("\n")[0] in "\n" + md


# ---- broken shapes ----------------------------------------------------------------------------


def test_empty_page() -> None:
    for raw in ("", "   \n\t\n"):
        page = parse_page(raw)
        assert page.flags == [FLAG_EMPTY_PAGE] and page.blocks == [] and page.markdown == ""
    assert parse_page("", finish_reason="length").flags == [FLAG_EMPTY_PAGE, FLAG_TRUNCATED]


def test_unclosed_det_loop() -> None:
    loop = ", ".join(["[100, 200, 300, 400]", "[100, 220, 300, 420]"] * 2000)
    raw = (
        "<|ref|>text<|/ref|><|det|>[[50, 60, 500, 90]]<|/det|>\nGood paragraph.\n\n"
        f"<|ref|>text<|/ref|><|det|>[[100, 200, 300, 400], {loop}, [100, 2"
    )
    page = parse_page(raw, finish_reason="length")
    assert page.flags == [FLAG_TRUNCATED, FLAG_UNCLOSED_DET]
    assert page.blocks[0].text == "Good paragraph." and page.blocks[0].flags == []
    b = page.blocks[1]
    assert FLAG_UNCLOSED_DET in b.flags and FLAG_TRUNCATED in b.flags
    assert b.bbox == (100, 200, 300, 400)
    assert b.extra_boxes == [(100, 220, 300, 420)]  # parsable boxes kept, duplicates dropped
    assert b.raw == ""
    _check_invariants(page)


def test_qquad_repetition_without_closing_bracket() -> None:
    raw = (
        "<|ref|>text<|/ref|><|det|>[[10, 10, 900, 40]]<|/det|>\nIntro line.\n\n"
        "<|ref|>equation<|/ref|><|det|>[[10, 50, 900, 90]]<|/det|>\n\\[\nx = 1 + y \\qquad"
        + " \\qquad" * 3000
        + " \\qqu"
    )
    page = parse_page(raw, finish_reason="length")
    assert page.flags == [FLAG_REPETITION_LOOP, FLAG_TRUNCATED]
    eq = page.blocks[1]
    assert eq.kind == "formula" and FLAG_REPETITION_LOOP in eq.flags
    assert eq.raw == "\\[\nx = 1 + y \\qquad"  # the good prefix and one copy of the loop unit
    assert eq.text == "x = 1 + y"
    assert page.markdown.endswith("\\[\nx = 1 + y \\qquad\n\\]")  # closed so the rest renders
    assert page.blocks[0].flags == []


def test_same_line_twenty_times() -> None:
    line = "Der Patient klagt über Schmerzen im rechten Knie seit drei Tagen."
    raw = "<|ref|>text<|/ref|><|det|>[[10, 10, 900, 600]]<|/det|>\nBefund:\n" + "\n".join([line] * 20)
    page = parse_page(raw)
    assert page.flags == [FLAG_REPETITION_LOOP]
    assert page.blocks[0].raw == "Befund:\n" + line
    # Ten different lines are not a loop.
    ok = "\n".join(f"Zeile {i}: Messwert {i * 7} mg, Kontrolle am {i + 1}. Tag." for i in range(30))
    page = parse_page("<|ref|>text<|/ref|><|det|>[[10, 10, 900, 600]]<|/det|>\n" + ok)
    assert page.flags == [] and page.blocks[0].raw == ok


def test_dot_leaders_are_not_a_loop() -> None:
    toc = "\n".join(f"{i}. Kapitel {i} " + ". " * 40 + str(i * 3) for i in range(1, 15))
    page = parse_page("<|ref|>text<|/ref|><|det|>[[10, 10, 900, 600]]<|/det|>\n" + toc)
    assert page.flags == [] and page.blocks[0].raw == toc


def test_repeated_whole_blocks() -> None:
    one = "<|ref|>text<|/ref|><|det|>[[10, {y}, 900, {y2}]]<|/det|>\nSiehe Anlage.\n\n"
    raw = "<|ref|>title<|/ref|><|det|>[[10, 5, 900, 9]]<|/det|>\n# Bericht\n\n" + "".join(
        one.format(y=10 + i, y2=20 + i) for i in range(30)
    )
    page = parse_page(raw)
    assert [b.raw for b in page.blocks] == ["# Bericht", "Siehe Anlage."]
    assert page.flags == [FLAG_REPETITION_LOOP]


def test_table_row_loop_in_unclosed_table() -> None:
    row = "<tr><td></td><td></td></tr>"
    raw = (
        "<|ref|>table<|/ref|><|det|>[[10, 10, 900, 900]]<|/det|>\n"
        "<table><tr><td>a</td><td>b</td></tr>" + row * 200 + "<tr><td></"
    )
    page = parse_page(raw, finish_reason="length")
    assert FLAG_REPETITION_LOOP in page.flags
    t = page.tables[0]
    assert t.n_rows == 2 and t.n_cols == 2
    assert page.markdown.endswith(row + "</table>")
    # A closed table with many blank rows (a blank form) is left alone.
    closed = "<table><tr><td>a</td><td>b</td></tr>" + row * 20 + "</table>"
    page = parse_page("<|ref|>table<|/ref|><|det|>[[10, 10, 900, 900]]<|/det|>\n" + closed)
    assert page.flags == [] and page.tables[0].n_rows == 21


@pytest.mark.parametrize(
    "coords",
    ["[[100, 200, 1200, 300]]", "[[-5, 200, 300, 300]]", "[[300, 200, 300, 400]]", "[[100, 400, 300, 200]]"],
)
def test_bad_coordinates(coords: str) -> None:
    raw = f"<|ref|>text<|/ref|><|det|>{coords}<|/det|>\nKept text."
    page = parse_page(raw, width=1000, height=1000)
    b = page.blocks[0]
    assert b.flags == [FLAG_BAD_BBOX] and b.bbox is None and b.bbox_px is None and b.extra_boxes == []
    assert b.text == "Kept text."
    assert page.flags == []  # bad_bbox stays on the block
    assert "1200" not in json.dumps(page.to_json_dict())


def test_several_boxes_for_one_ref() -> None:
    raw = (
        "<|ref|>text<|/ref|><|det|>[[10, 20, 30, 40], [50, 60, 70, 80], [1, 2, 1000, 3]]<|/det|>\nTwo parts."
    )
    b = parse_page(raw, width=999, height=999).blocks[0]
    assert b.bbox == (10, 20, 30, 40) and b.extra_boxes == [(50, 60, 70, 80)]
    assert b.bbox_px == (10.0, 20.0, 30.0, 40.0)
    assert b.flags == [FLAG_BAD_BBOX]


def test_page_split_joining() -> None:
    p1 = "<|ref|>title<|/ref|><|det|>[[10, 10, 500, 50]]<|/det|>\n# Seite eins\n"
    p2 = "<|ref|>text<|/ref|><|det|>[[10, 10, 500, 50]]<|/det|>\nSeite zwei\n"
    raw = f"{p1}\n<--- Page Split --->\n{p2}\n<--- Page Split --->\n"
    pages = parse_document(raw, first_page_no=4, finish_reason="length")
    assert [p.page_no for p in pages] == [4, 5, 6]
    assert [p.markdown for p in pages] == ["# Seite eins", "Seite zwei", ""]
    assert [p.flags for p in pages] == [[], [], [FLAG_EMPTY_PAGE, FLAG_TRUNCATED]]
    md = document_markdown(pages)
    assert md == "<!-- page 4 -->\n\n# Seite eins\n\n<!-- page 5 -->\n\nSeite zwei\n\n<!-- page 6 -->"
    assert len(parse_document("")) == 1
    joined = parse_document("\n<--- Page Split --->\n".join(FIXTURE_TEXTS.values()))
    assert [len(p.blocks) for p in joined] == [len(parse_page(t).blocks) for t in FIXTURE_TEXTS.values()]


def test_html_entities() -> None:
    raw = (
        "<|ref|>text<|/ref|><|det|>[[10, 10, 500, 50]]<|/det|>\nWenn a &lt; b &amp;&amp; c &gt; d\n\n"
        "<|ref|>table<|/ref|><|det|>[[10, 60, 500, 90]]<|/det|>\n"
        "<table><tr><td>x &lt; 5</td><td>A&amp;B<br>C</td></tr></table>"
    )
    page = parse_page(raw)
    assert page.blocks[0].text == "Wenn a < b && c > d"
    assert page.blocks[0].raw == "Wenn a &lt; b &amp;&amp; c &gt; d"
    cells = page.tables[0].cells
    assert [c.text for c in cells] == ["x < 5", "A&B C"]


def test_caption_before_table_and_latex_in_cells() -> None:
    raw = (
        "<|ref|>table_caption<|/ref|><|det|>[[10, 10, 500, 30]]<|/det|>\nTable 2: Results &amp; errors\n\n"
        "<|ref|>table<|/ref|><|det|>[[10, 40, 500, 300]]<|/det|>\n"
        "<table><thead><tr><th>k</th><th>\\(\\alpha_k\\)</th></tr></thead>"
        "<tbody><tr><td>1</td><td>\\(\\frac{1}{2}\\)</td></tr></tbody></table>\n\n"
        "<|ref|>table_caption<|/ref|><|det|>[[10, 310, 500, 330]]<|/det|>\nTable 3: Other\n\n"
        "<|ref|>table<|/ref|><|det|>[[10, 340, 500, 600]]<|/det|>\n<table><tr><td>z</td></tr></table>"
    )
    page = parse_page(raw)
    t1, t2 = page.tables
    assert t1.caption == "Table 2: Results & errors"
    assert t2.caption == "Table 3: Other"  # each caption is linked once
    assert _cell(t1, 0, 1).text == "\\(\\alpha_k\\)" and _cell(t1, 0, 1).is_header
    assert _cell(t1, 1, 1).text == "\\(\\frac{1}{2}\\)" and not _cell(t1, 1, 1).is_header
    assert "α_k" in page.blocks[1].text and "1/2" in page.blocks[1].text


def test_caption_after_table_and_image_caption_not_linked() -> None:
    raw = (
        "<|ref|>table<|/ref|><|det|>[[10, 40, 500, 300]]<|/det|>\n<table><tr><td>1</td></tr></table>\n\n"
        "<|ref|>table_caption<|/ref|><|det|>[[10, 310, 500, 330]]<|/det|>\n<center>Tab. 1 below</center>\n\n"
        "<|ref|>image_caption<|/ref|><|det|>[[10, 340, 500, 360]]<|/det|>\nFigure 9\n\n"
        "<|ref|>table<|/ref|><|det|>[[10, 400, 500, 600]]<|/det|>\n<table><tr><td>2</td></tr></table>"
    )
    page = parse_page(raw)
    assert [t.caption for t in page.tables] == ["Tab. 1 below", None]


def test_colspan_rowspan_occupancy() -> None:
    html = (
        "<table><tr><td rowspan=3>A</td><td colspan='2'>B</td><td>C</td></tr>"
        '<tr><td>D</td><td rowspan="2" colspan="2">E</td></tr>'
        "<tr><td>F</td></tr><tr><td>G</td><td>H</td><td>I</td><td>J</td><td>K</td></tr></table>"
    )
    page = parse_page("<|ref|>table<|/ref|><|det|>[[1, 1, 998, 998]]<|/det|>\n" + html)
    t = page.tables[0]
    got = {(c.row, c.col): (c.text, c.rowspan, c.colspan) for c in t.cells}
    assert got == {
        (0, 0): ("A", 3, 1),
        (0, 1): ("B", 1, 2),
        (0, 3): ("C", 1, 1),
        (1, 1): ("D", 1, 1),
        (1, 2): ("E", 2, 2),
        (2, 1): ("F", 1, 1),
        (3, 0): ("G", 1, 1),
        (3, 1): ("H", 1, 1),
        (3, 2): ("I", 1, 1),
        (3, 3): ("J", 1, 1),
        (3, 4): ("K", 1, 1),
    }
    assert (t.n_rows, t.n_cols) == (4, 5)
    _check_invariants(page)


def test_table_spans_clipped_and_truncated_table() -> None:
    html = '<table><tr><td rowspan="65000" colspan="99999">x</td></tr><tr><td>y'
    page = parse_page(
        "<|ref|>table<|/ref|><|det|>[[1, 1, 998, 998]]<|/det|>\n" + html, finish_reason="length"
    )
    t = page.tables[0]
    assert (t.n_rows, t.n_cols) == (2, 1001)
    assert [(c.row, c.col, c.rowspan, c.colspan, c.text) for c in t.cells] == [
        (0, 0, 2, 1000, "x"),
        (1, 1000, 1, 1, "y"),
    ]
    assert page.markdown.endswith("</table>")
    _check_invariants(page)


def test_stray_tokens_and_eos() -> None:
    raw = (
        "<|ref|>text<|/ref|><|det|>[[10, 10, 500, 50]]<|/det|>\nHallo<|/det|> Welt\n\n"
        "<|ref|>sub_title<|/ref|>\n## Ohne Box<｜end▁of▁sentence｜>"
    )
    page = parse_page(raw)
    assert [b.raw for b in page.blocks] == ["Hallo Welt", "## Ohne Box"]
    assert page.blocks[1].flags == [FLAG_NO_BOX] and page.blocks[1].kind == "heading"
    assert parse_page("Half a tag at the end <|ref|>tab").blocks[0].raw == "Half a tag at the end"


def test_unknown_labels_and_kinds() -> None:
    labels = ["TITLE", "footnote", "page_number", "header", "weird_thing", "formula", "figure_title"]
    raw = "".join(
        f"<|ref|>{lab}<|/ref|><|det|>[[1, 1, 2, 2]]<|/det|>\nx{i}\n" for i, lab in enumerate(labels)
    )
    kinds = [b.kind for b in parse_page(raw).blocks]
    assert kinds == ["heading", "footnote", "footer", "header", "other", "formula", "caption"]


def test_parse_structured() -> None:
    blocks = [
        {"label": "text", "bbox": [10, 20, 300, 40], "text": "Erste Zeile"},
        {"label": "text", "bbox": [10, 50, 1300, 70], "text": "Box daneben"},
        {"label": "text", "bbox": None, "text": "Ohne Box"},
        {"label": "table_caption", "bbox": [10, 80, 300, 90], "text": "Tabelle 1"},
        {"label": "table", "bbox": [10.4, 95.6, 300, 200], "text": "<table><tr><th>a</th></tr></table>"},
        {"label": "title", "bbox": ["x", 1, 2, 3], "text": "# Titel"},
        "not a dict",  # ignored
    ]
    page = parse_structured(blocks, page_no=2, width=999, height=1998)  # type: ignore[list-item]
    assert page.page_no == 2
    assert [b.bbox for b in page.blocks] == [
        (10, 20, 300, 40),
        None,
        None,
        (10, 80, 300, 90),
        (10, 96, 300, 200),
        None,
    ]
    assert [b.flags for b in page.blocks] == [[], [FLAG_BAD_BBOX], [FLAG_NO_BOX], [], [], [FLAG_BAD_BBOX]]
    assert page.blocks[0].bbox_px == (10.0, 40.0, 300.0, 80.0)
    assert page.tables[0].caption == "Tabelle 1" and page.tables[0].cells[0].is_header
    assert page.blocks[5].kind == "heading" and page.blocks[5].text == "Titel"
    assert page.markdown.startswith("Erste Zeile\n\nBox daneben\n\nOhne Box\n\nTabelle 1\n\n<table>")
    assert parse_structured([], 1, None, None).flags == [FLAG_EMPTY_PAGE]
    _check_invariants(page)


def test_version_and_flags_are_strings() -> None:
    assert PARSER_VERSION == "1"
    assert FLAG_NO_BOX == "no_box" and FLAG_UNCLOSED_DET == "unclosed_det"


# ---- properties -------------------------------------------------------------------------------

_FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_SOUP = st.lists(
    st.sampled_from(
        [
            "<|ref|>",
            "<|/ref|>",
            "<|det|>",
            "<|/det|>",
            "[[",
            "]]",
            "[",
            "]",
            ", ",
            "-3",
            "0",
            "12",
            "999",
            "1000",
            "text",
            "table",
            "table_caption",
            "equation",
            "image",
            "<table>",
            "</table>",
            "<tr>",
            "</tr>",
            "<td>",
            "</td>",
            "<th colspan='2'>",
            '<td rowspan="3">',
            "<thead>",
            "</thead>",
            "\\[",
            "\\]",
            "\\(",
            "\\)",
            "\\qquad",
            "\\frac{",
            "}",
            "&lt;",
            "&amp",
            "<center>",
            "# ",
            "- ",
            "\n",
            "\n\n",
            " ",
            "x",
            "Wort",
            "<--- Page Split --->",
            "<｜end▁of▁sentence｜>",
        ]
    ),
    max_size=60,
).map("".join)


@_FAST
@given(st.text(max_size=400))
def test_property_arbitrary_text_never_raises(raw: str) -> None:
    page = parse_page(raw, width=640, height=480)
    _check_invariants(page)
    for p in parse_document(raw):
        _check_invariants(p)


@_FAST
@given(st.sampled_from(sorted(FIXTURE_TEXTS)), st.floats(min_value=0.0, max_value=1.0))
def test_property_truncated_fixture(name: str, frac: float) -> None:
    raw = FIXTURE_TEXTS[name]
    cut = raw[: int(len(raw) * frac)]
    page = parse_page(cut, width=1000, height=1000, finish_reason="length")
    _check_invariants(page)
    assert FLAG_TRUNCATED in page.flags
    assert len(page.blocks) <= len(parse_page(raw).blocks) + 1


@_FAST
@given(_SOUP, st.sampled_from([None, "length", "stop"]))
def test_property_tag_soup_never_raises(raw: str, finish: str | None) -> None:
    page = parse_page(raw, width=100, height=100, finish_reason=finish)
    _check_invariants(page)
    document_markdown(parse_document(raw))


@_FAST
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "label": st.one_of(st.none(), st.sampled_from(["text", "table", "title", "??"])),
                "bbox": st.one_of(
                    st.none(),
                    st.lists(st.one_of(st.integers(-2000, 2000), st.floats(allow_nan=True)), max_size=5),
                ),
                "text": st.one_of(st.none(), st.text(max_size=40), _SOUP),
            }
        ),
        max_size=8,
    )
)
def test_property_structured_never_raises(blocks: list[dict[str, object]]) -> None:
    _check_invariants(parse_structured(blocks, 1, 100, 100))  # type: ignore[arg-type]


def test_untagged_output_loop_and_huge_span() -> None:
    raw = "Freitext ohne Tags.\n" + "Immer wieder dieselbe Zeile hier.\n" * 50
    page = parse_page(raw)
    assert page.flags == [FLAG_REPETITION_LOOP]
    assert page.blocks[0].raw == "Freitext ohne Tags.\nImmer wieder dieselbe Zeile hier."
    rows = "<tr><td>r</td></tr>" * 3000
    html = f'<table><tr><td rowspan="65000" colspan="1000">x</td></tr>{rows}</table>'
    page = parse_page("<|ref|>table<|/ref|><|det|>[[1, 1, 998, 998]]<|/det|>\n" + html)
    first = page.tables[0].cells[0]
    assert first.colspan == 1000 and first.rowspan * first.colspan <= 1 << 16
    _check_invariants(page)


# ---- the fast paths give what the plain regexes give -------------------------------------------


@given(st.text(alphabet=" \t\n#ab", max_size=30))
def test_line_start_precheck_matches_the_regex(s: str) -> None:
    assert parse_mod._some_line_starts_with(s, "#") == bool(re.search(r"^[ \t]*#", s, re.M))


def test_line_start_precheck_is_linear() -> None:
    s = "x" + "#" * 200_000  # one long line of '#' that never starts it
    t0 = time.perf_counter()
    assert not parse_mod._some_line_starts_with(s, "#")
    assert time.perf_counter() - t0 < 2.0


@given(st.text(alphabet=st.sampled_from(list("ab<>&;\t\n\r\x0b\x0c\x1c\x85\xa0\u2003\u3000 ")), max_size=30))
def test_cell_text_collapses_whitespace_like_the_regex(body: str) -> None:
    expected = body
    if "<" in expected:
        expected = re.sub(r"</?[A-Za-z!][^<>]*>", " ", expected)
    expected = re.sub(r"\s+", " ", html.unescape(expected)).strip()
    assert parse_mod._cell_text(body) == expected


def test_fast_coordinates_cover_every_grid_spelling() -> None:
    table = parse_mod._INT
    assert len(table) == 10 + 100 + 1000
    assert all(table[k] == int(k) for k in table)
    page = parse_page("<|ref|>text<|/ref|><|det|>[[007, 08, 999, 99]]<|/det|>\nx")
    assert page.blocks[0].bbox == (7, 8, 999, 99)
    # \d matches any Unicode digit: those coordinates are read as int() reads them
    page = parse_page("<|ref|>text<|/ref|><|det|>[[１0, 2٠, 300, 400]]<|/det|>\nx")
    assert page.blocks[0].bbox == (10, 20, 300, 400)


def test_latex_commands_by_lookup_and_fallback() -> None:
    # \\é keeps its letter, \\1 is a blank, unknown commands keep their name, symbols map.
    assert parse_mod._latex_plain(r"\é\1\foo \alpha\%\)\{x\}") == "é foo α% x "


def test_same_span_attributes_clip_per_row() -> None:
    html_ = (
        '<table><tr><td rowspan="5">a</td><td>b</td></tr><tr><td>c</td></tr>'
        '<tr><td rowspan="5">d</td></tr></table>'
    )
    page = parse_page("<|ref|>table<|/ref|><|det|>[[1, 1, 998, 998]]<|/det|>\n" + html_)
    t = page.tables[0]
    assert (t.n_rows, t.n_cols) == (3, 2)
    assert [(c.row, c.col, c.rowspan, c.text) for c in t.cells] == [
        (0, 0, 3, "a"),
        (0, 1, 1, "b"),
        (1, 1, 1, "c"),
        (2, 1, 1, "d"),
    ]


def test_implicit_header_row_and_inner_tags_in_cells() -> None:
    html_ = (
        '<table><thead><th>h1</th><th colspan="2">h2</th></thead><tr><td>a<br>b</td><td>&amp;\tx</td></tr>'
    )
    page = parse_page("<|ref|>table<|/ref|><|det|>[[1, 1, 998, 998]]<|/det|>\n" + html_)
    t = page.tables[0]
    assert (t.n_rows, t.n_cols) == (2, 3)
    assert [(c.row, c.col, c.colspan, c.is_header, c.text) for c in t.cells] == [
        (0, 0, 1, True, "h1"),
        (0, 1, 2, True, "h2"),
        (1, 0, 1, False, "a b"),
        (1, 1, 1, False, "& x"),
    ]


_TABLE_PIECES = st.sampled_from(
    [
        "<tr>",
        "</tr>",
        "<td>",
        "</td>",
        "<th>",
        "</th>",
        '<td rowspan="2">',
        "<td colspan=3>",
        '<th rowspan="0">',
        "<thead>",
        "</thead>",
        "<br>",
        "x",
        " y ",
        "\\alpha",
        "  ",
        "\t",
        "\n",
        "&amp;",
        "",
    ]
)


def _row_lines(cells: list[TableCell]) -> str:
    """The reference: a table's text from its placed cells (a line per row, non-empty texts)."""
    lines: list[str] = []
    for _, row in itertools.groupby(cells, key=lambda c: c.row):
        texts = [c.text for c in row if c.text]
        if texts:
            lines.append(" ".join(texts))
    return "\n".join(lines)


@given(st.lists(_TABLE_PIECES, max_size=40))
def test_table_row_lines_match_the_cells(pieces: list[str]) -> None:
    # _parse_table builds the table's text while placing cells; the cells must give the same
    seg = "<table>" + "".join(pieces)
    _, _, cells, lines = parse_mod._parse_table(seg)
    assert lines == _row_lines(cells)


@given(st.text(alphabet=st.sampled_from(list("<|｜>ab\n")), max_size=20))
def test_one_character_prefilters_keep_the_stray_token_check(s: str) -> None:
    assert parse_mod._clean_content(s) == re.sub(parse_mod._STRAY_TOKEN_RE, "", s).strip()
