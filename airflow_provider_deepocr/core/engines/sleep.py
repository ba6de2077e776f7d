"""A deterministic, fixed-latency OCR engine for tests and the scale benchmark.

``SleepEngine(seconds_per_page)`` answers every page after sleeping ``seconds_per_page`` (so it
costs wall time, not CPU, like a GPU worker seen from the orchestrator) with a valid grounded
DeepSeek-OCR output: a title and a text block whose content is derived from the page's identity
(document id and page number) and size, never from its pixels. Output is therefore the same for the
same page, whatever the batch, shard or run — what exactly-once and resume tests need.

``calls_file`` (optional) gets one line per engine call, ``<pid> <doc_id> <page_no>`` per page, so a
test can count what a task (or a killed and retried one) really sent to the engine.

It is selected with ``engine="sleep"`` (``get_engine("sleep", seconds_per_page=0.2)``; the OCR
operator's ``engine_options={"seconds_per_page": 0.2}``; or the connection extra ``{"engine": "sleep",
"options": {"seconds_per_page": 0.2}}``): it reads nothing, so it measures the orchestration
(listing, shards, workers, loads) alone. It is no OCR engine: never use it for data.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from airflow_provider_deepocr.core.engines.base import OcrEngine
from airflow_provider_deepocr.core.records import OcrResult, PageImage


class SleepEngine(OcrEngine):
    """Sleeps ``seconds_per_page`` per page, then answers with a fixed grounded page."""

    name = "sleep"
    reads_pixels = False  # its boxes are made up: no coverage, no low_coverage flag

    def __init__(
        self, seconds_per_page: float = 0.0, calls_file: str | None = None, batch_size: int = 8
    ) -> None:
        self.seconds_per_page = float(seconds_per_page)
        self.model = f"sleep-{self.seconds_per_page:g}s"
        self.batch_size = int(batch_size)
        self.calls_file = calls_file

    def describe(self) -> dict[str, object]:
        # the latency is not part of the output: a slower sleep engine gives the same rows
        return {"engine": self.name, "model": "sleep"}

    def ocr(self, pages: Sequence[PageImage], temperature: float = 0.0) -> list[OcrResult]:
        if self.calls_file:
            with open(self.calls_file, "a", encoding="utf-8") as f:
                f.write("".join(f"{os.getpid()} {p.doc_id} {p.page_no}\n" for p in pages))
        time.sleep(self.seconds_per_page * len(pages))
        # the nominal latency, not the measured one: the same page gives the same row every time
        return [self._page(p, self.seconds_per_page) for p in pages]

    def _page(self, page: PageImage, seconds: float) -> OcrResult:
        raw = (
            "<|ref|>title<|/ref|><|det|>[[80, 40, 920, 90]]<|/det|>\n"
            f"# Document {page.doc_id[:12]} page {page.page_no}\n\n"
            "<|ref|>text<|/ref|><|det|>[[80, 120, 920, 400]]<|/det|>\n"
            f"A page of {page.width} by {page.height} pixels at {page.dpi} dpi.\n"
        )
        return OcrResult(
            raw,
            "eos",
            self.name,
            self.model,
            prompt_tokens=256,
            output_tokens=len(raw.split()),
            seconds=seconds,
        )
