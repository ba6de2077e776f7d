"""The scan generators: image-only files whose truth matches what was drawn."""

from __future__ import annotations

import io

from airflow_provider_deepocr.testing import scans
from airflow_provider_deepocr.testing.truth import TruthCase


def _size(case: TruthCase) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(case.data)) as img:
        return img.size


def test_rotated_cases_are_the_same_page_turned() -> None:
    cases = {c.pages[0].rotation: c for c in scans.rotated_scan_cases()}
    assert sorted(cases) == [0, 90, 180, 270]
    w, h = _size(cases[0])
    assert w > h and _size(cases[90]) == (h, w) == _size(cases[270]) and _size(cases[180]) == (w, h)
    assert all(c.kind == "scan" and c.pages[0].lines == scans.LETTER_LINES for c in cases.values())
    assert cases[90].data != cases[270].data


def test_table_and_speckled_cases_carry_their_truth() -> None:
    (table,) = scans.ruled_table_cases()
    assert table.pages[0].tables == [scans.TABLE] and table.filename.endswith(".png")
    (speckled,) = scans.speckled_record_cases()
    assert speckled.data.startswith(b"%PDF") and len(speckled.pages) == 2
    assert speckled.pages[1].lines[0] == "RECORD 0005 PAGE 2 OF 2"
    assert {c.kind for c in scans.scan_cases()} == {"scan"}
