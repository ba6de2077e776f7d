"""Text-layer routing: which pages the OCR stage sends to the model, which to the ``pdf-text``
engine (their own PDF text layer, :mod:`~airflow_provider_deepocr.core.engines.pdf_text`), and
which fail for want of a layer.

``text_layer="never"`` routes every page to the model; ``"auto"`` sends a PDF page whose text layer
passes :func:`~airflow_provider_deepocr.core.engines.pdf_text.text_layer_quality` to ``pdf-text``
and the rest to the model; ``"only"`` never uses the model (a page without a usable layer is a
``no_text_layer`` failure). The PDF is parsed once per document (:meth:`TextLayerRouter.open`).
"""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.engines.base import OcrEngine
    from airflow_provider_deepocr.core.records import PageImage

log = logging.getLogger(__name__)

PDF = "application/pdf"


class Route(StrEnum):
    MODEL = "model"  # the run's engine
    TEXT = "text"  # the page's own text layer (the pdf-text engine)
    NONE = "none"  # text_layer="only" and no usable layer: a failure row


class TextLayerRouter:
    """Routes the pages of a run by ``mode`` (``never``, ``auto``, ``only``)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.engine: OcrEngine | None = None  # the pdf-text engine, unless mode is "never"
        if mode != "never":
            from airflow_provider_deepocr.core.engines.pdf_text import PdfTextEngine

            self.engine = PdfTextEngine()

    def open(self, data: bytes, media_type: str, doc_id: str) -> dict[int, list[dict[str, Any]]] | None:
        """A document's text-layer blocks by page number, or None: routing is off, the document is
        not a PDF, or its layer cannot be read (then every page goes to the model)."""
        if self.engine is None or media_type != PDF:
            return None
        from airflow_provider_deepocr.core.engines.pdf_text import extract_pdf_blocks

        try:
            return extract_pdf_blocks(data)
        except Exception as exc:  # no usable text layer: every page goes to the model
            log.warning("document %s: text layer unreadable (%s)", doc_id[:12], type(exc).__name__)
            return None

    def route(
        self, blocks: dict[int, list[dict[str, Any]]] | None, page: PageImage, usable: bool | None = None
    ) -> Route:
        """Where ``page`` goes, given its document's blocks (from :meth:`open`) and, where the page
        worker decided it already, whether they are usable (:func:`usable_text_layer`). A page
        routed to the text layer gets its blocks as ``page.text_layer`` (JSON), what ``pdf-text``
        reads."""
        if self.engine is None:
            return Route.MODEL
        page_blocks = (blocks or {}).get(page.page_no)
        if usable is None:
            usable = usable_text_layer(page_blocks)
        if usable:
            page.text_layer = json.dumps(page_blocks, ensure_ascii=False)
            return Route.TEXT
        return Route.NONE if self.mode == "only" else Route.MODEL

    def pixels(self, engine: OcrEngine) -> str:
        """Which PDF pages the page worker renders (``core.pageworker.PIXELS``) when ``engine``
        reads the pages the text layer does not: ``none`` under ``only`` (no page reaches the
        model) or for an engine that reads no pixels; ``model`` under ``auto`` (a page routed to
        the text layer is never looked at); else ``all``."""
        if self.mode == "only" or not engine.needs_pixels():
            return "none"
        return "model" if self.engine is not None else "all"


def usable_text_layer(page_blocks: list[dict[str, Any]] | None) -> bool:
    """Whether a page's text-layer blocks are good enough to skip the model (:meth:`route`)."""
    from airflow_provider_deepocr.core.engines.pdf_text import page_text, text_layer_quality

    return bool(page_blocks) and bool(text_layer_quality(page_text(page_blocks or [])))
