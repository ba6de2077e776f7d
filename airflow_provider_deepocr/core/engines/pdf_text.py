"""The PDF text-layer engine (``pdf-text``): born-digital pages without a model.

Filings and statements exported from software carry an exact text layer; sending those pages to
a GPU wastes it. With ``text_layer="auto"`` the pipeline sends a PDF page to this engine when its
text layer is good and only image-only or garbled pages to the OCR model; ``"only"`` never uses
the model (pages without a usable layer become failure rows); ``"never"`` (the default) always
does.

API for routing (what ``core.pipeline`` calls; all pure functions, PyMuPDF imported inside):

1. ``blocks = extract_pdf_blocks(pdf_bytes)`` -> ``{page_no: [block, ...]}`` once per document
   (one parse of the PDF), or ``extract_blocks(pdf_bytes, page_no, width_px, height_px)`` for
   one page, or ``page_blocks(page)`` with an open ``pymupdf.Page``. A block is
   ``{"label": "text" | "title", "bbox": [x0, y0, x1, y1], "text": str}``: ``bbox`` ints on the
   0..999 grid of the page *as rendered* (rotation and crop box applied, exactly what
   ``render.py`` rasterises), ``x0 < x1``, ``y0 < y1``, clamped; blocks in reading order.
2. ``text_layer_quality(page_text(blocks))`` -> ``bool``: use the layer or OCR the page.
3. When it is True: ``page.text_layer = json.dumps(blocks)`` (the convention: a ``PageImage``'s
   ``text_layer`` holds the JSON list of its blocks) and send the page to
   ``PdfTextEngine().ocr([...])``, which needs no image and returns
   ``OcrResult(raw_text=page_text(blocks), finish_reason="eos", blocks=blocks,
   engine="pdf-text", model="pymupdf-<version>", mode="text-layer")``; the parser turns
   ``blocks`` into ``Block`` records (``parse.parse_structured``) like RapidOCR's.
   A ``text_layer`` that is not a JSON list of blocks gives ``finish_reason="error"``.

What the quality check cannot see: a font whose ToUnicode map is wrong but still yields valid
letters (a shifted alphabet). Layers like that are rare in exported filings; ``"never"`` is the
escape hatch.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections.abc import Sequence
from typing import Any

from airflow_provider_deepocr.core.engines.base import OcrEngine
from airflow_provider_deepocr.core.errors import PageError
from airflow_provider_deepocr.core.records import GRID, OcrResult, PageImage

TEXT_LAYER_MODES = ("never", "auto", "only")
MIN_CHARS = 30  # fewer non-space characters: treat the page as image-only
MAX_BAD_SHARE = 0.02  # U+FFFD, private use, controls, unassigned, lone surrogates, (cid:N)
MIN_ALNUM_SHARE = 0.5  # letters and digits among non-space characters
TITLE_RATIO = 1.3  # a line this much larger than the page's body font is a title

_CID = re.compile(r"\(cid:\d+\)")  # pdfminer-style unmapped glyph markers, from other extractors
_BAD_CATEGORIES = frozenset({"Co", "Cc", "Cs", "Cn"})


def text_layer_quality(text: str | None, min_chars: int = MIN_CHARS) -> bool:
    """True when a page's text layer is worth trusting instead of OCR.

    Needs at least ``min_chars`` non-space characters (fewer: an image-only page, a scan with a
    stray header, a figure); at most 2 % bad characters (U+FFFD, private-use, control,
    unassigned, lone surrogates, ``(cid:N)`` markers: what unmapped glyphs turn into; a font
    without a ToUnicode map comes out as glyph ids, mostly control characters); and at least
    half letters or digits (a layer of stray symbols is garbage). Scripts without spaces (CJK)
    pass like any other.
    """
    if not text:
        return False
    cids = len(_CID.findall(text))
    if cids:
        text = _CID.sub("\ufffd", text)
    chars = [c for c in text if not c.isspace()]
    if len(chars) < min_chars:
        return False
    bad = sum(1 for c in chars if c == "\ufffd" or unicodedata.category(c) in _BAD_CATEGORIES)
    if bad > MAX_BAD_SHARE * len(chars):
        return False
    alnum = sum(1 for c in chars if c.isalnum())
    return alnum >= MIN_ALNUM_SHARE * len(chars)


def _grid(v: float, extent: float) -> int:
    return max(0, min(GRID, round(v / extent * GRID))) if extent > 0 else 0


def _box(rect: Any, width: float, height: float) -> list[int]:
    box = [_grid(rect.x0, width), _grid(rect.y0, height), _grid(rect.x1, width), _grid(rect.y1, height)]
    for lo, hi in ((0, 2), (1, 3)):  # a zero-width box (one thin glyph): one grid unit wide
        if box[hi] <= box[lo]:
            box[hi] = min(GRID, box[lo] + 1)
            box[lo] = box[hi] - 1
    return box


def page_blocks(page: Any) -> list[dict[str, Any]]:
    """Text blocks of one open ``pymupdf.Page`` on the 0..999 grid of the rendered page.

    PyMuPDF reports text boxes in unrotated page space (relative to the crop box); they are
    mapped through ``page.rotation_matrix`` to the page as displayed (``page.rect``), which is
    what rendering rasterises. Lines of one block are split where the label changes, so a
    heading set in the same block as body text gets its own ``title`` block.
    """
    import pymupdf

    rect = page.rect
    matrix = page.rotation_matrix
    raw = page.get_text("dict", sort=True)
    text_blocks = [b for b in raw["blocks"] if b.get("type") == 0]
    sizes = sorted(
        span["size"]
        for b in text_blocks
        for line in b["lines"]
        for span in line["spans"]
        if span["text"].strip()
    )
    body = sizes[len(sizes) // 2] if sizes else 0.0
    out: list[dict[str, Any]] = []
    for b in text_blocks:
        runs: list[tuple[str, list[Any], list[str]]] = []  # (label, line bboxes, line texts)
        for line in b["lines"]:
            text = "".join(s["text"] for s in line["spans"]).strip()
            if not text:
                continue
            big = max((s["size"] for s in line["spans"] if s["text"].strip()), default=0.0)
            label = "title" if body and big >= TITLE_RATIO * body else "text"
            if runs and runs[-1][0] == label:
                runs[-1][1].append(line["bbox"])
                runs[-1][2].append(text)
            else:
                runs.append((label, [line["bbox"]], [text]))
        for label, boxes, texts in runs:
            r = pymupdf.Rect(boxes[0])
            for extra in boxes[1:]:
                r |= pymupdf.Rect(extra)
            r = r * matrix
            r.normalize()
            out.append({"label": label, "bbox": _box(r, rect.width, rect.height), "text": "\n".join(texts)})
    return out


def extract_blocks(
    pdf_bytes: bytes, page_no: int, width_px: int | None = None, height_px: int | None = None
) -> list[dict[str, Any]]:
    """Text blocks of page ``page_no`` (1-based) of a PDF; see :func:`page_blocks`.

    ``width_px``/``height_px`` are the rendered image's size, for a check only: the grid is a
    fraction of the page, so it does not depend on the DPI, but an image whose aspect ratio
    differs from the page's (more than 2 %) was not rendered from this page as displayed, and
    boxes on its grid would be wrong; that raises :class:`PageError` (``corrupt``).
    Raises :class:`PageError` (``corrupt``) for a page number out of range or an unreadable PDF.
    """
    import pymupdf

    try:
        doc = pymupdf.open(stream=pdf_bytes, filetype="pdf")
    except Exception as exc:
        raise PageError("corrupt", f"cannot open PDF ({type(exc).__name__})", page_no) from None
    with doc:
        if not 1 <= page_no <= doc.page_count:
            raise PageError("corrupt", f"page {page_no} of {doc.page_count}", page_no)
        page = doc.load_page(page_no - 1)
        if width_px and height_px:
            rect = page.rect
            page_aspect = rect.width / rect.height if rect.height else 0.0
            image_aspect = width_px / height_px
            if page_aspect <= 0 or abs(image_aspect / page_aspect - 1) > 0.02:
                raise PageError("corrupt", "image aspect ratio differs from the page's", page_no)
        return page_blocks(page)


def extract_pdf_blocks(data: bytes) -> dict[int, list[dict[str, Any]]]:
    """Text blocks of every page of a PDF: ``{page_no: [block, ...]}`` (see :func:`page_blocks`)."""
    import pymupdf

    out: dict[int, list[dict[str, Any]]] = {}
    with pymupdf.open(stream=data, filetype="pdf") as doc:
        for index, page in enumerate(doc):
            out[index + 1] = page_blocks(page)
    return out


def page_text(blocks: Sequence[dict[str, Any]]) -> str:
    """The plain text of a page's blocks, in reading order (what the quality check reads)."""
    return "\n".join(str(b.get("text", "")) for b in blocks if isinstance(b, dict))


def _valid_blocks(value: Any) -> list[dict[str, Any]] | None:
    if not isinstance(value, list):
        return None
    for b in value:
        if not isinstance(b, dict) or not isinstance(b.get("text"), str):
            return None
    return value


class PdfTextEngine(OcrEngine):
    """Emits a PDF page's own text layer as blocks; no model, no GPU, no image needed."""

    name = "pdf-text"
    mode = "text-layer"
    prompt = None

    def __init__(self, batch_size: int = 64) -> None:
        from importlib.metadata import version

        self.model = f"pymupdf-{version('pymupdf')}"
        self.revision = None
        self.batch_size = batch_size

    def describe(self) -> dict[str, object]:
        return {"engine": self.name, "model": self.model, "mode": self.mode}

    def ocr(self, pages: Sequence[PageImage], temperature: float = 0.0) -> list[OcrResult]:
        """One result per page from its ``text_layer`` (a JSON list of blocks); ``temperature`` is unused."""
        results = []
        for page in pages:
            t0 = time.perf_counter()
            try:
                blocks = _valid_blocks(json.loads(page.text_layer or "[]"))
            except ValueError:
                blocks = None
            if blocks is None:
                results.append(self.error_result())
                continue
            results.append(
                OcrResult(
                    raw_text=page_text(blocks),
                    finish_reason="eos",
                    engine=self.name,
                    model=self.model,
                    seconds=time.perf_counter() - t0,
                    mode=self.mode,
                    blocks=blocks,
                )
            )
        return results
