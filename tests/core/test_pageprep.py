"""Page prep on real scans: rotated pages read upright and in order, speckled pages cleaned, clean
pages left alone, a failing step flagged and the page still read (RapidOCR, CPU)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_deepocr.core import pageprep
from airflow_provider_deepocr.core.engines.rapid import RapidOcrEngine
from airflow_provider_deepocr.core.records import Document, DocumentRef, PageImage
from airflow_provider_deepocr.core.render import render_pages
from airflow_provider_deepocr.testing import scans
from airflow_provider_deepocr.testing.truth import TruthCase, order_similarity, word_f1, word_recall


@pytest.fixture(scope="module")
def engine() -> RapidOcrEngine:
    return RapidOcrEngine()


def pages_of(case: TruthCase) -> list[PageImage]:
    out = list(render_pages(Document.from_bytes(DocumentRef(case.filename), case.data), dpi=150))
    assert all(isinstance(p, PageImage) for p in out)
    return out


def read(engine: RapidOcrEngine, page: PageImage) -> str:
    result = engine.ocr([page])[0]
    assert result.finish_reason == "eos"
    return "\n".join(b["text"] for b in result.blocks or [])


@pytest.fixture(scope="module")
def rotated(engine: RapidOcrEngine) -> dict[int, tuple[PageImage, str, str]]:
    """rotation -> (prepared page, text read, truth)."""
    out = {}
    for case in scans.rotated_scan_cases():
        (page,) = pages_of(case)
        prepared = pageprep.prepare_for_ocr(page)
        out[case.pages[0].rotation] = (prepared, read(engine, prepared), case.pages[0].text)
    return out


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_scans_read_like_the_upright_one_in_order(
    rotated: dict[int, tuple[PageImage, str, str]], rotation: int
) -> None:
    upright_page, upright_text, truth = rotated[0]
    page, text, _ = rotated[rotation]
    assert upright_page.rotation == 0
    assert page.rotation == rotation  # what the page row records
    assert (page.width, page.height) == (upright_page.width, upright_page.height)
    assert word_f1(text, truth) >= word_f1(upright_text, truth) - 0.02
    assert order_similarity(text, truth) >= 0.9
    assert text.splitlines()[0].startswith("Quarterly")


def test_speckled_a4_scan_is_cleaned_and_read(engine: RapidOcrEngine) -> None:
    (case,) = scans.speckled_record_cases()
    pages = pages_of(case)
    prepared = [pageprep.prepare_page(p) for p in pages]
    assert all(pr.applied == ["despeckle"] and pr.rotation == 0 for pr in prepared)
    read_text = "\n".join(read(engine, pr.page) for pr in prepared)
    truth = "\n".join(p.text for p in case.pages)
    assert word_recall(read_text, truth) >= 0.95
    assert "Patient MRN 100035" in read_text


def test_clean_pages_are_left_alone() -> None:
    image = scans.text_page_image(scans.LETTER_LINES)
    page = PageImage("c" * 64, 1, image.convert("RGB"), 150, image.width, image.height)
    prepared = pageprep.prepare_page(page)
    assert prepared.applied == [] and prepared.flags == [] and prepared.rotation == 0
    assert prepared.page.image is page.image


def test_despeckle_only_on_speckled_images() -> None:
    import numpy as np

    clean = scans.text_page_image(scans.LETTER_LINES)
    assert pageprep.despeckle(np.asarray(clean)) is None
    noisy = np.asarray(scans.speckle(clean, density=0.01))
    cleaned = pageprep.despeckle(noisy)
    assert cleaned is not None
    # the specks on the paper are gone, the text stays
    import cv2

    paper = cv2.erode(np.asarray(clean), np.ones((5, 5), np.uint8)) >= 128  # away from the text
    assert ((cleaned < 128) & paper).sum() < 0.1 * ((noisy < 128) & paper).sum()
    text = np.asarray(clean) < 128
    assert ((cleaned < 128) & text).sum() > 0.8 * text.sum()


def test_a_page_whose_orientation_step_raises_is_read_and_flagged(
    engine: RapidOcrEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(gray: Any) -> int:
        raise RuntimeError("classifier exploded")

    monkeypatch.setattr(pageprep, "detect_orientation", boom)
    (case,) = scans.rotated_scan_cases([0])
    (page,) = pages_of(case)
    prepared = pageprep.prepare_for_ocr(page)
    assert pageprep.FLAG_ORIENTATION_FAILED in prepared.flags
    assert prepared.rotation == 0
    assert word_f1(read(engine, prepared), case.pages[0].text) >= 0.9


def test_orientation_is_cheap_next_to_the_ocr(engine: RapidOcrEngine) -> None:
    import time

    (case,) = scans.rotated_scan_cases([90])
    (page,) = pages_of(case)
    pageprep.prepare_page(page)  # the classifier loads once
    t0 = time.perf_counter()
    prepared = pageprep.prepare_for_ocr(page)
    prep = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.ocr([prepared])
    ocr = time.perf_counter() - t0
    assert prep <= 0.15 * ocr, (prep, ocr)
