"""Tables from the text layer (issue 21, item 1): cells against known truth, through the records.

Every page goes the way the pipeline sends it: ``extract_pdf_blocks`` -> ``PdfTextEngine`` ->
``parse.parse_structured``, so what is checked is what lands in the warehouse.
"""

from __future__ import annotations

import json

import pytest

from airflow_provider_deepocr.core.engines import pdf_tables, pdf_text
from airflow_provider_deepocr.core.parse import FLAG_TABLES_SKIPPED, parse_structured
from airflow_provider_deepocr.core.records import PageImage, ParsedPage
from airflow_provider_deepocr.testing import fidelity, truth


def read_pages(data: bytes) -> list[ParsedPage]:
    engine = pdf_text.PdfTextEngine()
    out = []
    for page_no, blocks in pdf_text.extract_pdf_blocks(data).items():
        image = PageImage("0" * 64, page_no, None, 144, 1191, 1684, text_layer=json.dumps(blocks))
        (result,) = engine.ocr([image])
        out.append(parse_structured(result.blocks or [], page_no, image.width, image.height))
    return out


def cells_at(page: ParsedPage) -> dict[tuple[int, int], str]:
    (table,) = page.tables
    return {(c.row, c.col): c.text for c in table.cells}


@pytest.fixture(scope="module")
def balance() -> tuple[fidelity.TruthCase, list[ParsedPage]]:
    case = fidelity.balance_sheet_case()
    return case, read_pages(case.data)


def test_every_figure_of_the_balance_sheet_is_in_its_cell(
    balance: tuple[fidelity.TruthCase, list[ParsedPage]],
) -> None:
    case, pages = balance
    (want,) = case.pages[0].tables
    got = cells_at(pages[0])
    figures = [
        (r, c, text) for r, row in enumerate(want) for c, text in enumerate(row) if c > 0 and r > 0 and text
    ]
    assert len(figures) == 50  # 25 rows with a figure for each of two years
    misplaced = [(r, c, text) for r, c, text in figures if got.get((r, c)) != text]
    assert not misplaced
    labels = [row[0] for row in want[1:]]
    assert [got.get((r, 0)) for r in range(1, len(want))] == labels
    header = [c for c in pages[0].tables[0].cells if c.row == 0]
    assert [c.text for c in header if c.text] == ["2024", "2023"] and all(c.is_header for c in header)
    assert not pages[1].tables  # the notes page has prose only


def test_a_tables_text_is_not_also_emitted_as_loose_lines(
    balance: tuple[fidelity.TruthCase, list[ParsedPage]],
) -> None:
    _, pages = balance
    table_block = pages[0].blocks[pages[0].tables[0].block_index]
    assert table_block.kind == "table" and "48,215" in table_block.text
    loose = "\n".join(b.text for b in pages[0].blocks if b.kind != "table")
    for figure in ("48,215", "41,030", "Cash and cash equivalents", "TOTAL ASSETS"):
        assert figure not in loose


def test_unruled_ruled_and_continued_tables_match_their_truth() -> None:
    for case in (fidelity.filing_case(), fidelity.continued_table_case()):
        pages = read_pages(case.data)
        for page, want in zip(pages, case.pages, strict=True):
            read = [[[c.text for c in sorted((c for c in t.cells if c.row == r), key=lambda c: c.col)]
                     for r in range(t.n_rows)] for t in page.tables]  # fmt: skip
            assert truth.tables_found(read, want.tables) == len(want.tables), case.name
            assert truth.cell_accuracy(read, want.tables) == 1.0, case.name


def test_two_column_prose_is_not_a_table() -> None:
    case = fidelity.two_column_case()
    assert all(not p.tables for p in read_pages(case.data))


def test_a_page_whose_table_finder_raises_is_read_without_tables_and_flagged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object) -> list[pdf_tables.FoundTable]:
        raise RuntimeError("finder bug")

    monkeypatch.setattr(pdf_tables, "find_tables", broken)
    case = fidelity.balance_sheet_case()
    page = read_pages(case.data)[0]
    assert not page.tables and FLAG_TABLES_SKIPPED in page.flags
    assert truth.word_f1("\n".join(b.text for b in page.blocks), case.pages[0].text) == 1.0


def test_find_tables_on_plain_words() -> None:
    # Three rows of label + two figures, and a prose line that ends the table.
    words = []
    for r, (label, a, b) in enumerate(
        (("Revenue", "1,200", "1,100"), ("Costs", "(800)", "(700)"), ("Profit", "400", "400"))
    ):
        y = 100 + 16 * r
        words += [
            (60, y, 60 + 6 * len(label), y + 10, label),
            (300, y, 330, y + 10, a),
            (400, y, 430, y + 10, b),
        ]
    words.append(
        (60, 160, 500, 170, "This is a sentence of running prose that is long enough to be prose text")
    )
    (table,) = pdf_tables.find_tables(words)
    assert {(c.row, c.col): c.text for c in table.cells} == {
        (0, 0): "Revenue", (0, 1): "1,200", (0, 2): "1,100",
        (1, 0): "Costs", (1, 1): "(800)", (1, 2): "(700)",
        (2, 0): "Profit", (2, 1): "400", (2, 2): "400",
    }  # fmt: skip
    assert table.words == set(range(9))
    assert pdf_tables.table_html(table).startswith("<table><tr><td>Revenue</td><td>1,200</td>")


def test_a_real_lattice_table_keeps_its_framed_header_rows() -> None:
    """camelot's twotables_2.pdf: rules drawn cell by cell, a header row of one cell in the frame."""
    (case,) = [c for c in fidelity.real_cases() if c.name == "real_twotables_2"]
    (page,) = read_pages(case.data)
    assert len(page.tables) == 2
    assert [t.caption.split(" :")[0] for t in page.tables if t.caption] == ["Table 6", "Table 7"]  # linked
    for table, want in zip(page.tables, case.pages[0].tables, strict=True):
        got = {(c.row, c.col): c.text for c in table.cells}
        assert "Literacy Status" in {got[k] for k in got if k[0] == 0}  # inside the table, row 0
        body = [(r, c, t) for r, row in enumerate(want) for c, t in enumerate(row) if r >= 2]
        assert all(got.get((r, c)) == t for r, c, t in body)  # every body cell at camelot's (row, col)
    loose = "\n".join(b.text for b in page.blocks if b.kind != "table")
    assert "Literacy Status" not in loose and "Kerala" not in loose


def test_a_page_that_fails_to_read_costs_only_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_deepocr.core.engines import layout

    real = layout.reading_order
    calls: list[int] = []

    def fails_once(boxes: list[list[int]]) -> tuple[list[int], list[int]]:
        calls.append(len(boxes))
        if len(calls) == 1:
            raise ValueError("layout bug")
        return real(boxes)

    monkeypatch.setattr(layout, "reading_order", fails_once)
    case = fidelity.balance_sheet_case()
    first, second = read_pages(case.data)
    assert FLAG_TABLES_SKIPPED in first.flags and not first.tables  # read again, without tables
    assert truth.word_f1("\n".join(b.text for b in first.blocks), case.pages[0].text) == 1.0
    assert (
        not second.flags
        and truth.word_f1("\n".join(b.text for b in second.blocks), case.pages[1].text) == 1.0
    )
