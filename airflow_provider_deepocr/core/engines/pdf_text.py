"""The PDF text-layer engine (``pdf-text``): born-digital pages without a model.

Filings and statements exported from software carry an exact text layer; sending those pages to
a GPU wastes it. With ``text_layer="auto"`` the pipeline sends a PDF page to this engine when its
text layer is good (:func:`text_layer_quality`) and only image-only or garbled pages to the OCR
model; ``"only"`` never uses the model; ``"never"`` (the default) always does.

Convention: the pipeline extracts a document's blocks once with :func:`extract_pdf_blocks` and
puts each page's list of blocks, JSON-encoded, in ``PageImage.text_layer``; :meth:`PdfTextEngine.ocr`
turns that into an ``OcrResult`` with ``blocks`` on the 0..999 grid, like RapidOCR's.
"""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Sequence
from typing import Any

from airflow_provider_deepocr.core.engines.base import OcrEngine
from airflow_provider_deepocr.core.records import GRID, OcrResult, PageImage

TEXT_LAYER_MODES = ("never", "auto", "only")
MIN_CHARS = 30  # fewer non-space characters: treat the page as image-only


def text_layer_quality(text: str | None, min_chars: int = MIN_CHARS) -> bool:
    """True when a page's text layer is worth trusting instead of OCR.

    Enough characters, few replacement / private-use / control characters (unmapped glyphs come
    out as those), and mostly letters and digits (a layer of stray symbols is garbage).
    """
    if not text:
        return False
    chars = [c for c in text if not c.isspace()]
    if len(chars) < min_chars:
        return False
    bad = sum(1 for c in chars if c == "\ufffd" or unicodedata.category(c) in ("Co", "Cc", "Cs", "Cn"))
    if bad > 0.02 * len(chars):
        return False
    alnum = sum(1 for c in chars if c.isalnum())
    return alnum >= 0.5 * len(chars)


def _grid(v: float, extent: float) -> int:
    return max(0, min(GRID, round(v / extent * GRID))) if extent > 0 else 0


def extract_pdf_blocks(data: bytes) -> dict[int, list[dict[str, Any]]]:
    """Text blocks of every page of a PDF: ``{page_no: [{"label", "bbox", "text"}]}``.

    Boxes are on the 0..999 grid of the page (like DeepSeek-OCR's); blocks in reading order
    (PyMuPDF's ``sort=True``: top to bottom, left to right). Lines whose font is much larger than
    the page's body text are labelled ``title``.
    """
    import pymupdf

    out: dict[int, list[dict[str, Any]]] = {}
    with pymupdf.open(stream=data, filetype="pdf") as doc:
        for index, page in enumerate(doc):
            rect = page.rect
            raw = page.get_text("dict", sort=True)
            sizes = sorted(
                span["size"]
                for b in raw["blocks"]
                if b.get("type") == 0
                for line in b["lines"]
                for span in line["spans"]
                if span["text"].strip()
            )
            body = sizes[len(sizes) // 2] if sizes else 0.0
            blocks = []
            for b in raw["blocks"]:
                if b.get("type") != 0:
                    continue
                lines = ["".join(s["text"] for s in line["spans"]).strip() for line in b["lines"]]
                text = "\n".join(x for x in lines if x)
                if not text:
                    continue
                x0, y0, x1, y1 = b["bbox"]
                box = [
                    _grid(x0, rect.width),
                    _grid(y0, rect.height),
                    _grid(x1, rect.width),
                    _grid(y1, rect.height),
                ]
                if box[2] <= box[0]:
                    box[2] = min(GRID, box[0] + 1)
                    box[0] = box[2] - 1
                if box[3] <= box[1]:
                    box[3] = min(GRID, box[1] + 1)
                    box[1] = box[3] - 1
                big = max((s["size"] for line in b["lines"] for s in line["spans"]), default=0.0)
                label = "title" if body and big >= 1.3 * body else "text"
                blocks.append({"label": label, "bbox": box, "text": text})
            out[index + 1] = blocks
    return out


def page_text(blocks: Sequence[dict[str, Any]]) -> str:
    return "\n".join(b["text"] for b in blocks)


class PdfTextEngine(OcrEngine):
    """Emits a PDF page's own text layer as blocks; no model, no GPU."""

    name = "pdf-text"

    def __init__(self, batch_size: int = 64) -> None:
        from importlib.metadata import version

        self.model = f"pymupdf-{version('pymupdf')}"
        self.revision = None
        self.batch_size = batch_size

    def ocr(self, pages: Sequence[PageImage], temperature: float = 0.0) -> list[OcrResult]:
        results = []
        for page in pages:
            t0 = time.perf_counter()
            try:
                blocks = json.loads(page.text_layer or "[]")
            except ValueError:
                results.append(self.error_result())
                continue
            results.append(
                OcrResult(
                    raw_text=page_text(blocks),
                    finish_reason="eos",
                    engine=self.name,
                    model=self.model,
                    seconds=time.perf_counter() - t0,
                    mode="text-layer",
                    blocks=blocks,
                )
            )
        return results
