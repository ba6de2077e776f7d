"""Reading order (issue 21, item 3): ``layout.reading_order`` on boxes, and the text layer's order,
labels and captions on a generated two-column document with known truth."""

from __future__ import annotations

from airflow_provider_deepocr.core.engines.layout import reading_order
from airflow_provider_deepocr.testing import fidelity, truth
from tests.core.engines.test_pdf_tables import read_pages


def test_two_columns_on_the_same_leading_are_read_one_after_the_other() -> None:
    title = [(80, 40, 920, 70)]
    left = [(80, 100 + 30 * k, 480, 120 + 30 * k) for k in range(5)]
    right = [(520, 100 + 30 * k, 920, 120 + 30 * k) for k in range(5)]
    footer = [(450, 950, 550, 965)]
    boxes = title + [b for pair in zip(left, right, strict=True) for b in pair] + footer  # interleaved input
    order, cols = reading_order(boxes)
    read = [boxes[i] for i in order]
    assert read == title + left + right + footer
    assert [cols[boxes.index(b)] for b in left] == [0] * 5 and [cols[boxes.index(b)] for b in right] == [
        1
    ] * 5


def test_form_rows_are_read_row_by_row() -> None:
    labels = [(80, 100 + 40 * k, 200, 120 + 40 * k) for k in range(4)]
    values = [(260, 100 + 40 * k, 420, 120 + 40 * k) for k in range(4)]
    boxes = labels + values
    order, _ = reading_order(boxes)
    assert order == [i for k in range(4) for i in (k, 4 + k)]


def test_a_full_width_block_separates_two_column_sections() -> None:
    top = [(80, 100, 480, 120), (80, 130, 480, 150), (520, 100, 920, 120), (520, 130, 920, 150)]
    table = [(80, 200, 920, 400)]
    bottom = [(80, 450, 480, 470), (520, 450, 920, 470)]
    order, _ = reading_order(top + table + bottom)
    assert order == [0, 1, 2, 3, 4, 5, 6]
    assert reading_order([]) == ([], [])


def test_two_column_pdf_reads_in_order_with_captions_headers_and_footers() -> None:
    case = fidelity.two_column_case()
    for page, want in zip(read_pages(case.data), case.pages, strict=True):
        text = "\n".join(b.text for b in page.blocks)
        assert truth.order_similarity(text, want.text) >= 0.9
        assert truth.word_f1(text, want.text) >= 0.95
        kinds = {b.text: b.kind for b in page.blocks}
        assert kinds["Northwind Quarterly Review"] == "header"
        assert any(k == "footer" and t.startswith("-") for t, k in kinds.items())
        captions = [b for b in page.blocks if b.kind == "caption"]
        assert len(captions) == 2 and all(
            b.text.startswith("Figure") and "\n" not in b.text for b in captions
        )
        for cap in captions:  # each caption right after its own column's figure
            before = page.blocks[cap.index - 1]
            assert before.kind == "figure" and before.bbox[3] <= cap.bbox[1]
            assert (before.bbox[0] < 500) == (cap.bbox[0] < 500)  # same column
