"""The engine interface: prepare/ocr_prepared are declared on OcrEngine, with defaults."""

from __future__ import annotations

import inspect
from pathlib import Path

from airflow_provider_deepocr.core.engines.base import OcrEngine
from airflow_provider_deepocr.core.records import PageImage


def _pages(tmp_path: Path) -> list[PageImage]:
    from PIL import Image, ImageDraw

    pages = []
    for i in (1, 2):
        img = Image.new("RGB", (360, 120), "white")
        ImageDraw.Draw(img).text((10, 40), f"INVOICE {i} TOTAL 12.50", fill="black")
        pages.append(PageImage(f"doc{i}", 1, img, 144, img.width, img.height, "image/png"))
    return pages


def test_prepare_and_ocr_prepared_are_declared_on_the_base() -> None:
    for name in ("prepare", "ocr_prepared", "ocr", "describe", "close"):
        assert name in vars(OcrEngine), name
    assert list(inspect.signature(OcrEngine.ocr_prepared).parameters) == ["self", "prepared", "temperature"]


def test_an_engine_with_only_ocr_runs_through_the_default_prepare(tmp_path: Path) -> None:
    from airflow_provider_deepocr.core.engines.rapid import RapidOcrEngine

    engine = RapidOcrEngine()
    assert "prepare" not in vars(RapidOcrEngine) and "ocr_prepared" not in vars(RapidOcrEngine)
    pages = _pages(tmp_path)
    direct = engine.ocr(pages)
    prepared = engine.ocr_prepared(engine.prepare(pages))
    assert [r.blocks for r in prepared] == [r.blocks for r in direct]
    assert all(r.finish_reason == "eos" for r in prepared)


def test_the_retry_ladder_uses_the_inner_engines_declared_methods(tmp_path: Path) -> None:
    from airflow_provider_deepocr.core.engines.rapid import RapidOcrEngine
    from airflow_provider_deepocr.core.engines.retry import RetryingEngine

    inner = RapidOcrEngine()
    ladder = RetryingEngine(inner, (0.0, 0.5))
    pages = _pages(tmp_path)
    prepared = ladder.prepare(pages)
    assert prepared[1] == pages  # the inner engine's (default) prepare ran
    results = ladder.ocr_prepared(prepared)
    assert [r.blocks for r in results] == [r.blocks for r in inner.ocr(pages)]
    assert [r.attempts for r in results] == [1, 1]
