"""Coverage: a page whose blocks miss lines is flagged low_coverage and quarantined; a full reading
is not; rotation and coverage reach the warehouse page row through the pipeline (SQLite)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from airflow_provider_deepocr.core import coverage, errors
from airflow_provider_deepocr.core.engines.base import OcrEngine
from airflow_provider_deepocr.core.engines.rapid import RapidOcrEngine
from airflow_provider_deepocr.core.pipeline import run_pipeline
from airflow_provider_deepocr.core.records import OcrResult, PageImage
from airflow_provider_deepocr.core.sources import WorkArea, storage_for
from airflow_provider_deepocr.core.warehouse import Warehouse
from airflow_provider_deepocr.testing import scans


@pytest.fixture(scope="module")
def engine() -> RapidOcrEngine:
    return RapidOcrEngine()


@pytest.fixture(scope="module")
def page_and_result(engine: RapidOcrEngine) -> tuple[PageImage, OcrResult]:
    image = scans.text_page_image(scans.LETTER_LINES).convert("RGB")
    page = PageImage("d" * 64, 1, image, 150, image.width, image.height)
    result = engine.ocr([page])[0]
    assert len(result.blocks or []) == len(scans.LETTER_LINES)
    return page, result


def test_a_full_reading_covers_the_page(page_and_result: tuple[PageImage, OcrResult]) -> None:
    page, result = page_and_result
    cov, flags = coverage.coverage_of(page.image, result)
    assert cov is not None and cov >= 0.95 and flags == []


def test_a_page_whose_blocks_miss_lines_is_low_coverage(page_and_result: tuple[PageImage, OcrResult]) -> None:
    page, result = page_and_result
    blocks = result.blocks or []
    kept = [b for b in blocks if not b["text"].startswith(("Pump", "Valves"))]
    assert len(kept) == len(blocks) - 2
    partial = OcrResult("\n".join(b["text"] for b in kept), "eos", "rapidocr", "m", blocks=kept)
    cov, flags = coverage.coverage_of(page.image, partial)
    assert cov is not None and cov < coverage.LOW_COVERAGE
    assert flags == [coverage.FLAG_LOW_COVERAGE]
    # no block at all on a page with ink (the cluster run's empty page): coverage 0
    empty = OcrResult("", "eos", "rapidocr", "m", blocks=[])
    assert coverage.coverage_of(page.image, empty) == (0.0, [coverage.FLAG_LOW_COVERAGE])


def test_a_blank_page_and_an_ungrounded_reading() -> None:
    from PIL import Image

    blank = Image.new("RGB", (300, 200), "white")
    assert coverage.coverage_of(blank, OcrResult("", "eos", "e", "m", blocks=[])) == (1.0, [])
    image = scans.text_page_image(["Some words"]).convert("RGB")
    assert coverage.coverage_of(image, OcrResult("Some words", "eos", "e", "m")) == (None, [])


class DropsLines(OcrEngine):
    """RapidOCR that loses every line after the first (the reading that lost lines)."""

    def __init__(self, inner: RapidOcrEngine) -> None:
        self.inner = inner
        self.name, self.model = inner.name, inner.model

    def ocr(self, pages: Sequence[PageImage], temperature: float = 0.0) -> list[OcrResult]:
        out = self.inner.ocr(pages)
        for r in out:
            r.blocks = (r.blocks or [])[:1]
        return out


def _run(engine: OcrEngine, inbox: Path, tmp_path: Path, name: str) -> tuple[object, sqlite3.Connection]:
    db = tmp_path / f"{name}.db"
    work = str(tmp_path / f"work-{name}")
    summary = run_pipeline(
        str(inbox), Warehouse(f"sqlite:///{db}"), engine, WorkArea(work, storage_for(work))
    )
    return summary, sqlite3.connect(db)


def test_rotation_and_coverage_reach_the_page_row_and_lost_lines_are_quarantined(
    engine: RapidOcrEngine, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (case,) = scans.rotated_scan_cases([270])
    (inbox / case.filename).write_bytes(case.data)

    summary, conn = _run(engine, inbox, tmp_path, "ok")
    assert summary.ok == 1, summary  # type: ignore[attr-defined]
    rotation, cov, flags, markdown = conn.execute(
        "select rotation, coverage, flags, markdown from deepocr_pages"
    ).fetchone()
    assert rotation == 270 and cov >= 0.95 and flags == ""
    assert markdown.splitlines()[0] == "Quarterly maintenance report"

    summary, conn = _run(DropsLines(engine), inbox, tmp_path, "lost")
    assert summary.failed == {errors.VALIDATION_FAILED: 1}  # type: ignore[attr-defined]
    assert conn.execute("select count(*) from deepocr_pages").fetchone()[0] == 0
    failed = [
        r[0] for r in conn.execute("select expectation from deepocr_validation_results where not success")
    ]
    assert failed == ["expect_column_values_to_be_between(coverage)"]
