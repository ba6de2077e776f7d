"""RapidOCR (PP-OCR models on onnxruntime): the CPU fallback engine.

Returns text lines as blocks with boxes on the 0..999 grid, in reading order; a ruled table
(core.engines.scan_tables) becomes one ``table`` block of HTML whose cells hold the lines inside
it (those lines are not repeated as loose text). If table finding raises, the page is read
without tables and flagged ``table_failed``. rapidocr is
imported lazily; its logger is quieted (it must never log recognised text).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from airflow_provider_deepocr.core.engines.base import OcrEngine
from airflow_provider_deepocr.core.errors import EngineUnavailable
from airflow_provider_deepocr.core.records import GRID, OcrResult, PageImage
from airflow_provider_deepocr.core.vocab import PageFlag

log = logging.getLogger(__name__)

CPU_OCR_EXTRA = "airflow-provider-deepocr[cpu-ocr]"
FLAG_TABLE_FAILED = PageFlag.TABLE_FAILED.value


def _enum_value(v: Any) -> str:
    return str(getattr(v, "value", v))


def to_grid(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> list[int]:
    """A pixel box to ints on the 0..GRID grid of a ``width`` x ``height`` image; x0<x1, y0<y1."""

    def scale(v: float, size: int) -> int:
        return min(GRID, max(0, int(round(v / max(size, 1) * GRID))))

    gx0, gx1 = sorted((scale(x0, width), scale(x1, width)))
    gy0, gy1 = sorted((scale(y0, height), scale(y1, height)))
    if gx1 == gx0:
        gx0, gx1 = (gx0 - 1, gx0) if gx0 == GRID else (gx0, gx0 + 1)
    if gy1 == gy0:
        gy0, gy1 = (gy0 - 1, gy0) if gy0 == GRID else (gy0, gy0 + 1)
    return [gx0, gy0, gx1, gy1]


def reading_order(boxes: Sequence[Sequence[float]]) -> list[int]:
    """Indices of axis-aligned pixel boxes ``[x0, y0, x1, y1]`` in reading order.

    Boxes are grouped into rows (a box joins a row when its vertical centre lies within the
    row's span), rows go top to bottom, boxes in a row left to right.
    """
    order = sorted(range(len(boxes)), key=lambda i: (boxes[i][1], boxes[i][0]))
    rows: list[list[int]] = []
    spans: list[tuple[float, float]] = []
    for i in order:
        x0, y0, x1, y1 = boxes[i]
        cy = (y0 + y1) / 2
        for r, (top, bottom) in enumerate(spans):
            if top <= cy <= bottom:
                rows[r].append(i)
                spans[r] = (min(top, y0), max(bottom, y1))
                break
        else:
            rows.append([i])
            spans.append((y0, y1))
    row_order = sorted(range(len(rows)), key=lambda r: spans[r][0])
    return [i for r in row_order for i in sorted(rows[r], key=lambda i: boxes[i][0])]


class RapidOcrEngine(OcrEngine):
    """Text lines from RapidOCR's detection + recognition models (CPU, onnxruntime)."""

    name = "rapidocr"

    def __init__(
        self, params: dict[str, Any] | None = None, batch_size: int = 1, tables: bool = True
    ) -> None:
        """``params``: RapidOCR config overrides, e.g. ``{"Rec.lang_type": "en"}``; ``tables``:
        find ruled tables (core.engines.scan_tables) and fill their cells with the lines."""
        self.tables = tables
        try:
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise EngineUnavailable(f"RapidOCR is not installed: pip install '{CPU_OCR_EXTRA}'") from exc

        cfg: dict[str, Any] = {"Global.log_level": "error"}
        cfg.update(params or {})
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        t0 = time.perf_counter()
        try:
            self._ocr = RapidOCR(params=cfg)
        except Exception as exc:
            raise EngineUnavailable(f"RapidOCR failed to initialise ({type(exc).__name__})") from exc
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        det = self._ocr.cfg.Det
        version = _package_version("rapidocr")
        self.model = f"rapidocr-{version}/{_enum_value(det.ocr_version)}-{_enum_value(det.model_type)}"
        self.revision = version
        self.batch_size = max(1, int(batch_size))
        self.mode = f"lang-{_enum_value(self._ocr.cfg.Rec.lang_type)}"
        log.info("RapidOCR %s ready in %.1fs", self.model, time.perf_counter() - t0)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "tables": "ruled-v1" if self.tables else None}

    def ocr(self, pages: Sequence[PageImage], temperature: float = 0.0) -> list[OcrResult]:
        return [self._one(p) for p in pages]

    def _one(self, page: PageImage) -> OcrResult:
        t0 = time.perf_counter()
        flags: list[str] = []
        try:
            image = page.image
            if image is None or image.width < 1 or image.height < 1:
                raise ValueError("no image")
            if image.mode != "RGB":
                image = image.convert("RGB")
            res = self._ocr(image)
            rects, texts, scores = _lines(res)
            tables: list[tuple[Any, Any]] = []
            used: set[int] = set()
            if self.tables and rects:
                try:
                    tables, used = _scan_tables(image, rects, texts)
                except Exception as exc:  # the page is read without tables, flagged
                    log.warning(
                        "table structure failed on doc %s page %s: %s",
                        page.doc_id[:12],
                        page.page_no,
                        type(exc).__name__,
                    )
                    flags.append(FLAG_TABLE_FAILED)
            blocks = self._blocks(rects, texts, scores, tables, used, image.width, image.height)
        except Exception as exc:
            log.warning(
                "RapidOCR failed on doc %s page %s: %s", page.doc_id[:12], page.page_no, type(exc).__name__
            )
            return self.error_result(seconds=time.perf_counter() - t0)
        return OcrResult(
            raw_text="\n".join(b["text"] for b in blocks),
            finish_reason="eos",
            engine=self.name,
            model=self.model,
            revision=self.revision,
            mode=self.mode,
            seconds=time.perf_counter() - t0,
            blocks=blocks,
            flags=flags,
        )

    @staticmethod
    def _blocks(
        rects: list[list[float]],
        texts: list[str],
        scores: list[float],
        tables: Sequence[tuple[Any, Sequence[float]]],
        used: set[int],
        width: int,
        height: int,
    ) -> list[dict[str, Any]]:
        """Text lines not inside a table, and one ``table`` block per table, in reading order."""
        keep = [i for i in range(len(rects)) if i not in used and texts[i]]
        boxes = [rects[i] for i in keep] + [list(box) for _, box in tables]
        blocks = []
        for j in reading_order(boxes):
            if j < len(keep):
                i = keep[j]
                blocks.append(
                    {
                        "label": "text",
                        "bbox": to_grid(*rects[i], width=width, height=height),
                        "text": texts[i],
                        "score": scores[i],
                    }
                )
            else:
                table, box = tables[j - len(keep)]
                blocks.append(
                    {
                        "label": "table",
                        "bbox": to_grid(*box, width=width, height=height),
                        "text": table.html(),
                    }
                )
        return blocks


def _lines(res: Any) -> tuple[list[list[float]], list[str], list[float]]:
    """RapidOCR's output as axis-aligned pixel boxes, stripped texts and scores."""
    boxes = getattr(res, "boxes", None)
    txts = getattr(res, "txts", None)
    scores = getattr(res, "scores", None)
    if boxes is None or txts is None or len(txts) == 0:
        return [], [], []
    rects: list[list[float]] = []
    for quad in boxes:
        xs = [float(p[0]) for p in quad]
        ys = [float(p[1]) for p in quad]
        rects.append([min(xs), min(ys), max(xs), max(ys)])
    texts = [str(t).strip() for t in txts]
    return rects, texts, [float(s) for s in scores] if scores is not None else [1.0] * len(texts)


def _scan_tables(
    image: Any, rects: list[list[float]], texts: list[str]
) -> tuple[list[tuple[Any, Any]], set[int]]:
    import numpy as np

    from airflow_provider_deepocr.core.engines.scan_tables import tables_from_lines

    return tables_from_lines(np.asarray(image.convert("L")), rects, texts)


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"
