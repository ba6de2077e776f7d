"""testing.fidelity: the generated corpus says what its files hold, and the real files load."""

from __future__ import annotations

import io

import pymupdf
from PIL import Image

from airflow_provider_deepocr.testing import fidelity, truth


def test_generated_truth_is_the_text_layer_word_for_word() -> None:
    # The truth must be what was drawn: PyMuPDF's own plain text of each page has the same words.
    for case in fidelity.born_digital_cases():
        with pymupdf.open(stream=case.data, filetype="pdf") as doc:
            assert doc.page_count == len(case.pages), case.name
            for page, want in zip(doc, case.pages, strict=True):
                text = page.get_text("text").replace("-\n", "")  # the generator hyphenates line ends
                assert truth.word_recall(text, want.text) >= 0.97, case.name
                for table in want.tables:  # every true cell is on the page
                    for row in table:
                        for cell in row:
                            assert truth.normalise(cell) in truth.normalise(page.get_text("text")), cell


def test_scans_are_turned_as_their_truth_says() -> None:
    upright, turned = fidelity.scan_cases(rotations=(0, 90))
    a = Image.open(io.BytesIO(upright.data))
    b = Image.open(io.BytesIO(turned.data))
    assert a.height > a.width and (b.width, b.height) == (a.height, a.width)
    assert (upright.pages[0].rotation, turned.pages[0].rotation) == (0, 90)
    assert upright.pages[0].tables == fidelity.balance_sheet_case().pages[0].tables


def test_real_files_load_with_their_expected_tables() -> None:
    cases = {c.name: c for c in fidelity.real_cases()}
    assert set(cases) == {
        "real_health",
        "real_twotables_2",
        "real_spanning_cells",
        "real_frx_2012_disclosure",
    }
    (health,) = cases["real_health"].pages
    assert health.tables[0][0][:2] == ["States-A", "Revenue"] and len(health.tables[0]) == 29
    assert [len(t) for t in cases["real_twotables_2"].pages[0].tables] == [13, 13]
