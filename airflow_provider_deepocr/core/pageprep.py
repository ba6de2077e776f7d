"""Page prep: turn a scanned page upright and clean its speckle before any engine reads it.

Only image pages go through here (scans, photos, image-only PDF pages), never pages read from a
PDF's text layer. :func:`prepare_page` returns the prepared :class:`PageImage` and what was
applied; the page row records the rotation (``rotation``) and the flags.

Orientation (0/90/180/270, the degrees the scan was turned clockwise from upright):

1. *Axis* without a model: characters are smeared along x and, separately, along y (a closing
   as long as a character); text lines become long thin blobs along the reading direction only.
   Whichever direction yields more line length is the text direction (0/180 or 90/270).
2. *Which way up*: the page is turned to the horizontal axis and the longest line crops (4, up
   to :data:`_MAX_CROPS` when those 4 do not agree clearly) go through RapidOCR's 0/180 text-line
   classifier (a tiny ONNX model shipped in the ``rapidocr`` package); the mean "180"
   probability decides. Without rapidocr a page whose
   lines run horizontally is kept as it is, and a sideways one is left sideways and flagged
   ``orientation_unchecked``.

Clean-up: a page whose ink is mostly isolated dots (salt-and-pepper scan noise: over half of its
connected ink components are <= 4 pixels, and there are many of them) has those dots removed (set
to the paper's shade): a 3x3 median filter also cleared them but thinned small print at 150 dpi
(the fidelity bench's balance-sheet scan fell from word F1 0.99 to 0.90 under it).
A clean page has few such dots and is left untouched.

A step that raises leaves the page as it was for that step and adds a flag (``orientation_failed``
or ``cleanup_failed``): the page is still read, never lost.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from airflow_provider_deepocr.core.records import PageImage
from airflow_provider_deepocr.core.vocab import PageFlag

log = logging.getLogger(__name__)

PREP_VERSION = "1"
"""Changes when page prep's output changes (part of the config fingerprint)."""
FLAG_ORIENTATION_FAILED = PageFlag.ORIENTATION_FAILED.value
FLAG_ORIENTATION_UNCHECKED = PageFlag.ORIENTATION_UNCHECKED.value
FLAG_CLEANUP_FAILED = PageFlag.CLEANUP_FAILED.value

_WORK_SIDE = 800  # orientation is decided on a copy no longer than this on its long side
_MAX_CROPS = 12
_FIRST_CROPS = 4
_CLEAR = 0.3  # a mean P(180) under 0.2 or over 0.8 settles it
_SPECKLE_SHARE = 0.5  # share of ink components that are specks
_SPECKLE_MIN = 300  # and at least this many specks per megapixel
_SPECK_AREA = 4


@dataclass
class Prepared:
    """A prepared page and what was done to it."""

    page: PageImage
    rotation: int = 0
    """Degrees the scan was turned clockwise from upright (it was turned back before OCR)."""
    flags: list[str] = field(default_factory=list)
    """Page flags for steps that failed (the page row's flags send it to review)."""
    applied: list[str] = field(default_factory=list)
    """Steps applied: ``despeckle``, ``rotate``."""
    seconds: float = 0.0


def prepare_page(page: PageImage, orient: bool = True, clean: bool = True) -> Prepared:
    """The upright, cleaned page. Never raises: a failing step is skipped and flagged."""
    t0 = time.perf_counter()
    out = Prepared(page)
    if page.image is None:
        return out
    try:
        import numpy as np

        gray = np.asarray(page.image.convert("L"))
    except Exception as exc:
        log.warning(
            "page prep: doc %s page %s unreadable (%s)", page.doc_id[:12], page.page_no, type(exc).__name__
        )
        out.flags.append(FLAG_CLEANUP_FAILED)
        return out
    image = page.image
    if clean:
        try:
            cleaned = despeckle(gray)
            if cleaned is not None:
                gray = cleaned
                image = _from_gray(cleaned, page.image.mode)
                out.applied.append("despeckle")
        except Exception as exc:
            log.warning(
                "page prep: clean-up failed on doc %s page %s (%s)",
                page.doc_id[:12],
                page.page_no,
                type(exc).__name__,
            )
            out.flags.append(FLAG_CLEANUP_FAILED)
    if orient:
        try:
            rotation = detect_orientation(gray)
        except Exception as exc:
            log.warning(
                "page prep: orientation failed on doc %s page %s (%s)",
                page.doc_id[:12],
                page.page_no,
                type(exc).__name__,
            )
            out.flags.append(FLAG_ORIENTATION_FAILED)
            rotation = 0
        if rotation is None:
            out.flags.append(FLAG_ORIENTATION_UNCHECKED)
        elif rotation:
            image = turn_upright(image, rotation)
            out.rotation = rotation
            out.applied.append("rotate")
    if image is not page.image or out.flags:
        out.page = replace(
            page,
            image=image,
            width=image.width,
            height=image.height,
            flags=[*page.flags, *out.flags],
            rotation=out.rotation,
        )
    out.seconds = time.perf_counter() - t0
    return out


def prepare_for_ocr(page: PageImage) -> PageImage:
    """The page an engine should read: :func:`prepare_page`'s page, its ``rotation`` set and the
    flags of failed steps added to its ``flags``."""
    prepared = prepare_page(page)
    log.debug(
        "page prep: doc %s page %s rotation %d %s in %.0f ms",
        page.doc_id[:12],
        page.page_no,
        prepared.rotation,
        ",".join(prepared.applied) or "-",
        prepared.seconds * 1000,
    )
    return prepared.page


def _from_gray(gray: Any, mode: str) -> Any:
    from PIL import Image

    img = Image.fromarray(gray, mode="L")
    return img.convert("RGB") if mode != "L" else img


def turn_upright(image: Any, rotation: int) -> Any:
    """``image`` (a scan turned ``rotation`` degrees clockwise) turned back upright."""
    from PIL import Image

    ops = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}
    return image.transpose(ops[rotation]) if rotation in ops else image


def _ink(gray: Any) -> Any:
    """A 0/255 ink mask (ink = 255) by Otsu's threshold."""
    import cv2

    _, bw = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    return bw


def despeckle(gray: Any) -> Any | None:
    """``gray`` median-filtered (3x3) when it is speckled, else None (leave the page alone)."""
    import cv2
    import numpy as np

    n, labels, stats, _ = cv2.connectedComponentsWithStats(_ink(gray), connectivity=8)
    if n <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    specks = int((areas <= _SPECK_AREA).sum())
    megapixels = gray.shape[0] * gray.shape[1] / 1e6
    if specks / len(areas) < _SPECKLE_SHARE or specks < _SPECKLE_MIN * megapixels:
        return None
    # the specks alone go (set to the paper's shade); strokes keep every pixel, unlike a median
    # filter, which thins small print at 150 dpi
    small: Any = np.zeros(n, dtype=bool)
    small[1:] = areas <= _SPECK_AREA
    out = gray.copy()
    out[small[labels]] = int(np.percentile(gray, 90))
    return out


def text_axis(gray: Any) -> tuple[str, list[tuple[int, int, int, int]]]:
    """``("h" | "v", line boxes)``: the direction text lines run in, and the line blobs (x, y, w,
    h in ``gray``'s pixels) found along it. ``("h", [])`` for a page with no ink."""
    import cv2
    import numpy as np

    bw = _ink(gray)
    n, _, stats, _ = cv2.connectedComponentsWithStats(bw, connectivity=8)
    if n <= 1:
        return "h", []
    big = stats[1:][stats[1:, cv2.CC_STAT_AREA] > _SPECK_AREA * 2]
    if not len(big):
        return "h", []
    size = int(np.median(np.maximum(big[:, cv2.CC_STAT_WIDTH], big[:, cv2.CC_STAT_HEIGHT])))
    k = max(3, size)
    best: dict[str, list[tuple[int, int, int, int]]] = {}
    score: dict[str, float] = {}
    for axis, kernel in (("h", (k, 1)), ("v", (1, k))):
        closed = cv2.morphologyEx(bw, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, kernel))
        m, _, st, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
        lines = []
        for x, y, w, h, _a in st[1:]:
            long_, short = (w, h) if axis == "h" else (h, w)
            # a text line is about a character thick; thinner blobs are rules (table borders)
            if long_ >= 3 * short and long_ >= 2 * k and short >= max(2, k // 3):
                lines.append((int(x), int(y), int(w), int(h)))
        best[axis] = lines
        score[axis] = float(sum(b[2] if axis == "h" else b[3] for b in lines))
    axis = "v" if score["v"] > score["h"] else "h"
    return axis, best[axis]


def detect_orientation(gray: Any) -> int | None:
    """Degrees (0, 90, 180, 270) the page in ``gray`` was turned clockwise from upright; None when
    the 0/180 classifier is not installed (and the axis alone cannot say)."""
    import cv2

    scale = min(1.0, _WORK_SIDE / max(gray.shape[:2]))
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    axis, lines = text_axis(small)
    if not lines:
        return 0
    classify = _classifier()
    if classify is None:  # which way up is unknown: a sideways page is flagged, others kept
        return None if axis == "v" else 0
    if axis == "v":  # turn the lines horizontal (as if the scan were 90) and classify those
        gray = cv2.rotate(gray, cv2.ROTATE_90_COUNTERCLOCKWISE)
        width = small.shape[1]
        lines = [(y, width - x - w, h, w) for x, y, w, h in lines]
    crops = []
    for x, y, w, h in sorted(lines, key=lambda b: -b[2] * b[3])[:_MAX_CROPS]:
        pad = max(1, h // 4)
        x0, y0 = max(0, int((x - pad) / scale)), max(0, int((y - pad) / scale))
        x1, y1 = int((x + w + pad) / scale), int((y + h + pad) / scale)
        crop = gray[y0:y1, x0:x1]
        if crop.size:
            crops.append(cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR))
    # the longest lines first; more only when the first few do not agree clearly
    p180 = classify(crops[:_FIRST_CROPS]) if crops else 0.0
    if len(crops) > _FIRST_CROPS and abs(p180 - 0.5) < _CLEAR:
        p180 = classify(crops)
    flipped = p180 > 0.5
    if axis == "v":
        return 270 if flipped else 90
    return 180 if flipped else 0


@functools.lru_cache(maxsize=1)
def _classifier() -> Any:
    """RapidOCR's 0/180 text-line classifier as ``crops -> mean P(180)``; None if not installed."""
    try:
        from rapidocr import RapidOCR
    except ImportError:
        return None
    logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    cls = RapidOCR(params={"Global.log_level": "error"})._load_cls_model()
    logging.getLogger("RapidOCR").setLevel(logging.ERROR)

    def mean_flip(crops: list[Any]) -> float:
        res = cls(crops).cls_res
        probs = [score if "180" in label else 1.0 - score for label, score in res]
        return sum(probs) / len(probs) if probs else 0.0

    return mean_flip
