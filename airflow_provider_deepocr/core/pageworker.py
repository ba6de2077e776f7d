"""The child side of :mod:`core.pagework`: the per-page work of one job, sent over a socket.

Run as ``python -m airflow_provider_deepocr.core.pageworker FD`` by ``core.pagework`` (never
imported by a DAG). Messages: see :func:`_stream`.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.records import Document, PageImage

log = logging.getLogger(__name__)


@dataclass
class PageResult:
    """One page's work: the rendered page, its PDF text-layer blocks (None: not asked, not a PDF,
    or unreadable: ``text_error`` says why) and the extra page functions' results by name."""

    page: PageImage
    blocks: list[dict[str, Any]] | None = None
    text_error: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # the child's time for this page
    # whether ``blocks`` are a usable text layer, where the child decided it (``pixels="model"``:
    # the page is rendered only when not); None: not decided here, the router decides
    usable: bool | None = None


PIXELS_ALL = "all"
PIXELS_MODEL = "model"
PIXELS_NONE = "none"
PIXELS = (PIXELS_ALL, PIXELS_MODEL, PIXELS_NONE)
"""Which PDF pages get pixels: ``all``; ``model``: those whose text layer is not usable
(:func:`core.engines.text_layer.usable_text_layer`), the only ones the OCR stage can send to
the model under ``text_layer="auto"``; ``none`` (sizes only: an engine that reads no pixels, or
``text_layer="only"``). Raster images always get theirs."""


@dataclass(frozen=True)
class _Job:
    doc: Document
    numbers: list[int] | None  # None: every page
    dpi: int
    limits: Any
    text_layer: bool
    functions: tuple[str, ...]
    pixels: str = PIXELS_ALL


def _usable(job: _Job, blocks: list[dict[str, Any]] | None) -> bool | None:
    """Whether a PDF page's text-layer ``blocks`` are usable, where rendering depends on it
    (``pixels="model"``); None elsewhere."""
    if job.pixels != PIXELS_MODEL:
        return None
    from airflow_provider_deepocr.core.engines.text_layer import usable_text_layer

    return usable_text_layer(blocks)


def _wants_pixels(job: _Job, usable: bool | None) -> bool:
    """Whether a PDF page is rendered (see :data:`PIXELS`), given :func:`_usable` of its blocks."""
    if job.pixels == PIXELS_ALL:
        return True
    if job.pixels == PIXELS_NONE:
        return False
    return not usable


# --------------------------------------------------------------------------------------------
# The work itself (runs in the child; in this process with page_timeout_s=None)


def _resolve(name: str) -> Any:
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


def _page_extras(job: _Job, page: Any, page_no: int) -> tuple[Any, str | None, dict[str, Any]]:
    """Text blocks, text error and extras of one page (``page``: the open ``pymupdf.Page``, None
    for a raster image)."""
    from airflow_provider_deepocr.core.engines.pdf_text import page_blocks

    blocks, text_error, extras = None, None, {}
    if job.text_layer and page is not None:
        try:
            blocks = page_blocks(page)
        except Exception as exc:
            text_error = f"cannot read the text layer ({type(exc).__name__})"
    for name in job.functions:
        try:
            extras[name] = _resolve(name)(page, page_no)
        except Exception as exc:
            extras[name] = None
            log.debug("page %d: %s failed (%s)", page_no, name, type(exc).__name__)
    return blocks, text_error, extras


def _open(job: _Job) -> tuple[str, int, Iterator[Any]]:
    """Media type, page count and the page iterator (raw pixels for a PDF) of a job."""
    from airflow_provider_deepocr.core.render import (
        PDF,
        OpenPdf,
        count_pages,
        detect_media_type,
        render_pages,
    )

    media_type = detect_media_type(job.doc.data)
    if media_type == PDF:  # one open: the count, then the asked pages
        pdf = OpenPdf(job.doc, job.limits)
        try:
            _check_numbers(job, pdf.page_count)
        except errors.DeepOcrError:
            pdf.close()
            raise
        pages = pdf.pages(dpi=job.dpi, pages=job.numbers, pixels=job.pixels == PIXELS_ALL)
        return media_type, pdf.page_count, pages
    page_count = count_pages(job.doc, job.limits)
    _check_numbers(job, page_count)
    return media_type, page_count, render_pages(job.doc, dpi=job.dpi, limits=job.limits, pages=job.numbers)


def _check_numbers(job: _Job, page_count: int) -> None:
    if job.numbers and max(job.numbers) > page_count:
        raise errors.DocumentError(
            errors.SOURCE_CHANGED, f"pages up to {max(job.numbers)} asked, {page_count} in the document"
        )


def _stream(job: _Job) -> Iterator[tuple[Any, ...]]:
    """The messages of one job: ``("open", media_type, page_count)`` or ``("doc_error", reason,
    detail)``; then per page ``("raw", PageResult, stride, samples)`` (a PDF page: its image
    still to be made from the raw RGB samples; ``stride`` 0 and ``samples`` None for a page not
    rendered, see :data:`PIXELS`), ``("page", PageResult)`` (a raster image) or
    ``("page_error", reason, detail, page_no)``; then ``("end",)``."""
    from airflow_provider_deepocr.core.render import PDF, RawPage

    try:
        media_type, page_count, pages = _open(job)
    except errors.DeepOcrError as exc:
        yield ("doc_error", exc.reason, exc.detail)
        return
    yield ("open", media_type, page_count)
    for item in pages:
        t0 = time.perf_counter()
        if isinstance(item, errors.PageError):
            yield ("page_error", item.reason, item.detail, item.page_no)
        elif isinstance(item, RawPage):
            blocks, text_error, extras = _page_extras(job, item.page, item.page_no)
            usable = _usable(job, blocks) if item.samples is None else None
            if item.samples is None and _wants_pixels(job, usable):
                failed = item.render()
                if failed is not None:
                    yield ("page_error", failed.reason, failed.detail, failed.page_no)
                    continue
            page = PageImage(
                job.doc.doc_id, item.page_no, None, item.dpi, item.width, item.height, PDF, flags=item.flags
            )
            result = PageResult(page, blocks, text_error, extras, time.perf_counter() - t0, usable)
            yield ("raw", result, item.stride, item.samples)
        else:
            blocks, text_error, extras = _page_extras(job, None, item.page_no)
            yield ("page", PageResult(item, blocks, text_error, extras, time.perf_counter() - t0))
    yield ("end",)


def _image(page: PageImage, stride: int, samples: Any) -> Any:
    """The PIL image of raw RGB rows (one copy, as ``render_pages`` makes)."""
    from PIL import Image

    return Image.frombuffer("RGB", (page.width, page.height), samples, "raw", "RGB", stride, 1)


def _send(conn: Any, msg: tuple[Any, ...]) -> None:
    """A page goes as its metadata, then its pixels as raw bytes (no pickling of the image);
    a page without pixels (``stride`` 0) as its metadata alone."""
    if msg[0] == "raw":
        conn.send(msg[:3])
        if msg[3] is not None:
            conn.send_bytes(msg[3])
        return
    if msg[0] != "page":
        conn.send(msg)
        return
    result: PageResult = msg[1]
    image = result.page.image
    result.page.image = None
    conn.send(("page", result, image.mode, image.size))
    conn.send_bytes(image.tobytes())


def _without_layout_analyzer() -> None:
    """Keep ``import pymupdf`` from loading ``pymupdf.layout`` and ``pymupdf4llm`` (PyMuPDF 2
    imports both when installed: ONNX models and pandas-sized imports, seconds of CPU per child
    start). Nothing here calls ``Page.get_layout`` or ``pymupdf.to_markdown``, their only users;
    text extraction and rendering do not change."""
    import os
    import sys

    os.environ.setdefault("PYMUPDF_SUGGEST_LAYOUT_ANALYZER", "0")  # and no advice on stdout
    if "pymupdf" not in sys.modules:
        for name in ("pymupdf.layout", "pymupdf4llm"):
            sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def _serve(conn: Any) -> None:
    """The child's loop: one job at a time until ``None`` or the parent goes."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _without_layout_analyzer()
    import airflow_provider_deepocr.core.render as render

    render._pymupdf()  # import PyMuPDF (quiet) before the first job's clock starts
    conn.send(("ready",))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            for msg in _stream(job):
                _send(conn, msg)
        except Exception as exc:  # a bug or a library error outside the page handling
            conn.send(("crash", type(exc).__name__))


if __name__ == "__main__":  # the child: python -m airflow_provider_deepocr.core.pageworker FD
    import sys
    from multiprocessing.connection import Connection

    from airflow_provider_deepocr.core import pageworker  # pickles name its classes, not __main__'s

    pageworker._serve(Connection(int(sys.argv[1])))
