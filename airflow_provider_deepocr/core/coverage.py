"""Coverage: how much of a page's ink its blocks account for.

``coverage`` = dark pixels inside any block box / all dark pixels of the rendered page, on the
image the engine read (after page prep). A page whose engine dropped lines has ink outside every
box, so its coverage falls; below :data:`LOW_COVERAGE` the page gets the flag ``low_coverage``
and the default validation suite (core.validate) fails it, so it goes to review instead of
loading silently. A page with no ink has coverage 1 (nothing was lost).

Ink is measured on a grey copy no longer than :data:`_WORK_SIDE` pixels (area-averaged, which
also fades isolated scan specks), thresholded by Otsu's method when the page has real contrast.
Block boxes (0..999 grid) are widened by :data:`_MARGIN` grid units: detectors draw tight boxes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from airflow_provider_deepocr.core.records import GRID, OcrResult
from airflow_provider_deepocr.core.vocab import PageFlag

log = logging.getLogger(__name__)

LOW_COVERAGE = 0.75
"""Pages whose blocks hold less than this share of the ink are flagged ``low_coverage``."""
FLAG_LOW_COVERAGE = PageFlag.LOW_COVERAGE.value

_WORK_SIDE = 1000
_MARGIN = 4  # grid units (0.4% of the page) around each box
_MIN_CONTRAST = 40  # grey levels between paper and ink below which a page counts as blank


def result_boxes(
    result: OcrResult, width: int | None = None, height: int | None = None
) -> list[Sequence[int]]:
    """The grid boxes of an engine's blocks: its structured ``blocks``, else the boxes parsed
    from its DeepSeek markup."""
    if result.blocks is not None:
        return [b["bbox"] for b in result.blocks if isinstance(b, dict) and b.get("bbox") is not None]
    from airflow_provider_deepocr.core.parse import parse_page

    parsed = parse_page(result.raw_text, 1, width, height, finish_reason=result.finish_reason)
    out: list[Sequence[int]] = []
    for b in parsed.blocks:
        if b.bbox is not None:
            out.append(b.bbox)
        out.extend(b.extra_boxes)
    return out


def ink_mask(image: Any) -> Any:
    """A boolean ink mask of a PIL image on a copy at most :data:`_WORK_SIDE` pixels long."""
    import cv2
    import numpy as np

    gray = np.asarray(image.convert("L"))
    scale = min(1.0, _WORK_SIDE / max(gray.shape[:2]))
    if scale < 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    lo, hi = np.percentile(gray, (0.5, 99.5)) if gray.size else (0, 0)
    if hi - lo < _MIN_CONTRAST:
        return np.zeros(gray.shape, dtype=bool)
    t, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return gray < t


def page_coverage(image: Any, boxes: Iterable[Sequence[float]]) -> float:
    """Dark pixels of ``image`` inside any of ``boxes`` (0..999 grid) / all its dark pixels."""
    import numpy as np

    ink = ink_mask(image)
    total = int(ink.sum())
    if total == 0:
        return 1.0
    h, w = ink.shape
    inside = np.zeros_like(ink)
    for box in boxes:
        x0, y0, x1, y1 = (float(v) for v in box[:4])
        c0 = max(0, int((x0 - _MARGIN) / GRID * w))
        r0 = max(0, int((y0 - _MARGIN) / GRID * h))
        c1 = min(w, int(np.ceil((x1 + _MARGIN) / GRID * w)))
        r1 = min(h, int(np.ceil((y1 + _MARGIN) / GRID * h)))
        inside[r0:r1, c0:c1] = True
    return round(float((ink & inside).sum()) / total, 4)


def coverage_of(image: Any, result: OcrResult) -> tuple[float | None, list[str]]:
    """``(coverage, flags)`` for one page the engine read; ``(None, [])`` if it cannot be
    measured: text without any box (an ungrounded prompt), or an error (logged by class name)."""
    try:
        boxes = result_boxes(result, getattr(image, "width", None), getattr(image, "height", None))
        if not boxes and result.raw_text.strip():
            return None, []
        cov = page_coverage(image, boxes)
    except Exception as exc:
        log.warning("coverage: not measured (%s)", type(exc).__name__)
        return None, []
    return cov, ([FLAG_LOW_COVERAGE] if cov < LOW_COVERAGE else [])


def page_meta(page: Any, result: OcrResult, image_page: bool) -> dict[str, Any]:
    """What the page row gets beside the engine's result: ``rotation`` and ``coverage`` (None for
    a page read from its text layer) and ``page_flags`` (render and prep flags, the engine's
    flags, ``low_coverage``)."""
    flags = [*page.flags, *result.flags]
    cov = None
    if image_page and page.image is not None:
        cov, cov_flags = coverage_of(page.image, result)
        flags.extend(cov_flags)
    return {
        "rotation": int(getattr(page, "rotation", 0) or 0) if image_page else None,
        "coverage": cov,
        "page_flags": list(dict.fromkeys(flags)),
    }
