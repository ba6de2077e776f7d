"""Render a document's bytes into page images (the ``render`` stage).

``Document`` (bytes + sha256) -> ``PageImage`` (PIL RGB image, dpi, 1-based page number).

Failure isolation
-----------------
* Problems with the *document* raise :class:`errors.DocumentError` when :func:`render_pages` is
  called, before any page is produced: ``empty_file``, ``unsupported_type`` (decided by magic
  bytes, never by the file name), ``encrypted``, ``corrupt``, ``truncated_file``,
  ``too_many_pages``, and ``image_too_large`` for a raster image whose (first) frame header
  declares more than ``max_pixels`` pixels or whose file exceeds ``max_bytes`` (``file_too_large``).
* Problems with one *page* do not raise: the page iterator yields an :class:`errors.PageError`
  in that page's place (its ``page_no`` attribute is set), so the caller records a failure row
  and goes on with the next page. This covers a PDF page whose pixel count at the requested
  DPI would exceed ``max_pixels`` (checked from the page rectangle before rendering), a page
  MuPDF cannot load or render, and a later TIFF frame that is too large or cannot be decoded.

Truncated PDFs
--------------
MuPDF repairs most damaged PDFs silently, and a PDF cut short often "repairs" into fewer pages
or blank pages: silently missing content. We call a PDF truncated when the last ``%%EOF`` marker
comes before the last object in the file (or there is none) -- the file looks like the start of
a real PDF whose end is missing. Such a file is reported ``truncated_file`` when MuPDF cannot
open it, needed to repair it, or finds no pages. A file that fails to open and does not look
truncated (no PDF objects at all, e.g. a header followed by garbage) is ``corrupt``. A repaired
file that still ends with ``%%EOF`` is rendered (many producers write slightly broken xref
tables); its pages fail one by one if they must.

Nothing here logs or puts into an exception message any document text or pixel data: only ids,
page numbers, counts, sizes, exception class names and reason codes.
"""

from __future__ import annotations

import io
import logging
import math
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.records import Document, PageImage

log = logging.getLogger(__name__)

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
TIFF = "image/tiff"
GIF = "image/gif"
BMP = "image/bmp"
WEBP = "image/webp"
ZIP = "application/zip"
TEXT = "text/plain"

SUPPORTED_MEDIA_TYPES: frozenset[str] = frozenset({PDF, PNG, JPEG, TIFF})
"""Media types :func:`render_pages` renders; others are recognised but rejected."""

DEFAULT_DPI = 144
MAX_DPI = 1200
_IMAGE_DEFAULT_DPI = 144
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})  # DIB header sizes


@dataclass
class RenderLimits:
    """Safety limits applied before any pixel is decoded."""

    max_pages: int = 2000
    max_pixels: int = 50_000_000  # per page image
    max_bytes: int = 512 * 1024 * 1024  # whole file


# --------------------------------------------------------------------------------------------
# Media type detection


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is fine.
        if exc.start < len(head) - 3:
            return False
        text = head[: exc.start].decode("utf-8")
    if not text:
        return False
    printable = sum(1 for c in text if c.isprintable() or c in "\r\n\t\f")
    return printable / len(text) >= 0.95


def detect_media_type(data: bytes) -> str:
    """The media type of ``data`` by its magic bytes (never a file name).

    Returns one of the ``SUPPORTED_MEDIA_TYPES`` or a recognised but unsupported type
    (``image/gif``, ``image/bmp``, ``image/webp``, ``application/zip``, ``text/plain``).
    Raises ``DocumentError(EMPTY_FILE)`` for no bytes and ``DocumentError(UNSUPPORTED_TYPE)`` for
    bytes it does not recognise.
    """
    if not data:
        raise errors.DocumentError(errors.EMPTY_FILE, "0 bytes")
    head = data[:1024]
    if b"%PDF-" in head:
        return PDF
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # TIFF and BigTIFF
        return TIFF
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return BMP
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return ZIP
    if _looks_like_text(data[:4096]):
        return TEXT
    raise errors.DocumentError(errors.UNSUPPORTED_TYPE, "unrecognised file signature")


def _supported_media_type(doc: Document, limits: RenderLimits) -> str:
    media_type = detect_media_type(doc.data)
    if media_type not in SUPPORTED_MEDIA_TYPES:
        raise errors.DocumentError(errors.UNSUPPORTED_TYPE, f"{media_type} is not supported")
    if len(doc.data) > limits.max_bytes:
        raise errors.DocumentError(
            errors.FILE_TOO_LARGE, f"file of {len(doc.data)} bytes exceeds max_bytes={limits.max_bytes}"
        )
    return media_type


# --------------------------------------------------------------------------------------------
# PDF (PyMuPDF)

_pymupdf_quiet = False


def _pymupdf() -> Any:
    """Import PyMuPDF lazily and stop it printing anything (its messages can quote content)."""
    global _pymupdf_quiet
    import pymupdf

    if not _pymupdf_quiet:
        pymupdf.TOOLS.mupdf_display_errors(False)
        pymupdf.TOOLS.mupdf_display_warnings(False)
        _pymupdf_quiet = True
    return pymupdf


def _pdf_looks_truncated(data: bytes) -> bool:
    """True when the last ``%%EOF`` comes before the last object (or is missing)."""
    last_object = max(data.rfind(b"endobj"), data.rfind(b" obj"), data.rfind(b"stream"))
    if last_object < 0:
        return False  # no PDF structure at all: garbage, not a cut-off PDF
    return data.rfind(b"%%EOF") < last_object


def _open_pdf(doc: Document, limits: RenderLimits) -> Any:
    pymupdf = _pymupdf()
    truncated = _pdf_looks_truncated(doc.data)
    try:
        pdf = pymupdf.open(stream=doc.data, filetype="pdf")
    except Exception as exc:
        reason = errors.TRUNCATED_FILE if truncated else errors.CORRUPT
        raise errors.DocumentError(reason, f"cannot open PDF ({type(exc).__name__})") from None
    finally:
        pymupdf.TOOLS.reset_mupdf_warnings()
    try:
        if pdf.needs_pass:
            raise errors.DocumentError(errors.ENCRYPTED, "PDF needs a password")
        repaired = bool(getattr(pdf, "is_repaired", False))
        n = pdf.page_count
        if truncated and (repaired or n == 0):
            raise errors.DocumentError(
                errors.TRUNCATED_FILE, f"PDF ends before its %%EOF marker (repaired, {n} pages found)"
            )
        if n == 0:
            raise errors.DocumentError(errors.CORRUPT, "PDF has no pages")
        if n > limits.max_pages:
            raise errors.DocumentError(errors.TOO_MANY_PAGES, f"{n} pages > max_pages={limits.max_pages}")
    except BaseException:
        pdf.close()
        raise
    return pdf


def _pdf_pages(
    pdf: Any,
    doc: Document,
    numbers: list[int],
    dpi: int,
    limits: RenderLimits,
    with_text_layer: bool,
) -> Iterator[PageImage | errors.PageError]:
    from PIL import Image

    pymupdf = _pymupdf()
    try:
        for page_no in numbers:
            t0 = time.perf_counter()
            try:
                page = pdf.load_page(page_no - 1)
                rect = page.rect
                w = math.ceil(rect.width * dpi / 72 - 1e-6)
                h = math.ceil(rect.height * dpi / 72 - 1e-6)
                if w <= 0 or h <= 0:
                    yield _page_error(errors.CORRUPT, page_no, "page has an empty rectangle")
                    continue
                if w * h > limits.max_pixels:
                    yield _page_error(
                        errors.IMAGE_TOO_LARGE,
                        page_no,
                        f"{w}x{h} px at {dpi} dpi > max_pixels={limits.max_pixels}",
                    )
                    continue
                pix = page.get_pixmap(dpi=dpi, alpha=False, colorspace=pymupdf.csRGB)
                # No PNG round trip: wrap the raw samples (a bytes copy the image keeps alive).
                image = Image.frombuffer(
                    "RGB", (pix.width, pix.height), pix.samples, "raw", "RGB", pix.stride, 1
                )
                text = None
                if with_text_layer:
                    text = page.get_text("text") or None
                    if text is not None and not text.strip():
                        text = None
            except Exception as exc:
                yield _page_error(errors.CORRUPT, page_no, f"cannot render page ({type(exc).__name__})")
                continue
            finally:
                pymupdf.TOOLS.reset_mupdf_warnings()
            log.debug(
                "rendered doc=%s page=%d %dx%d in %.1f ms",
                doc.doc_id[:12],
                page_no,
                image.width,
                image.height,
                (time.perf_counter() - t0) * 1000,
            )
            yield PageImage(
                doc_id=doc.doc_id,
                page_no=page_no,
                image=image,
                dpi=dpi,
                width=image.width,
                height=image.height,
                media_type=PDF,
                text_layer=text,
            )
    finally:
        pdf.close()


# --------------------------------------------------------------------------------------------
# Raster images (Pillow)


def _open_image(doc: Document, limits: RenderLimits) -> tuple[Any, int]:
    """Open lazily (header only), check frame count and the first frame's size."""
    from PIL import Image

    # Pillow's own bomb guard fires inside Image.open; make sure it never fires *below* our
    # limit (it only ever gets raised), and turn its error into our reason code.
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < limits.max_pixels:
        Image.MAX_IMAGE_PIXELS = limits.max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(doc.data))
    except Image.DecompressionBombError:
        raise errors.DocumentError(
            errors.IMAGE_TOO_LARGE, f"image header exceeds max_pixels={limits.max_pixels}"
        ) from None
    except Exception as exc:
        raise errors.DocumentError(errors.CORRUPT, f"cannot open image ({type(exc).__name__})") from None
    try:
        w, h = img.size
        if w * h > limits.max_pixels:
            raise errors.DocumentError(errors.IMAGE_TOO_LARGE, f"{w}x{h} px > max_pixels={limits.max_pixels}")
        n = int(getattr(img, "n_frames", 1) or 1)
        if n > limits.max_pages:
            raise errors.DocumentError(errors.TOO_MANY_PAGES, f"{n} frames > max_pages={limits.max_pages}")
    except errors.DocumentError:
        img.close()
        raise
    except Exception as exc:
        img.close()
        raise errors.DocumentError(errors.CORRUPT, f"cannot read image ({type(exc).__name__})") from None
    return img, n


def _image_dpi(img: Any) -> int:
    dpi = img.info.get("dpi")
    try:
        value = round(float(dpi[0]))
    except (TypeError, ValueError, IndexError):
        return _IMAGE_DEFAULT_DPI
    return value if 1 <= value <= MAX_DPI * 4 else _IMAGE_DEFAULT_DPI


def _to_rgb(img: Any) -> Any:
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        img = img.convert("I")
    if img.mode == "I":
        return img.point(lambda v: v * (1 / 256)).convert("L").convert("RGB")
    if img.mode == "F":
        return img.convert("L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _image_pages(
    img: Any, n_frames: int, doc: Document, media_type: str, numbers: list[int], limits: RenderLimits
) -> Iterator[PageImage | errors.PageError]:
    from PIL import Image, ImageOps

    try:
        for page_no in numbers:
            try:
                img.seek(page_no - 1)
                w, h = img.size
                if w * h > limits.max_pixels:
                    yield _page_error(
                        errors.IMAGE_TOO_LARGE, page_no, f"{w}x{h} px > max_pixels={limits.max_pixels}"
                    )
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    img.load()
                    frame = ImageOps.exif_transpose(img) if media_type == JPEG else img
                    rgb = _to_rgb(frame)
                    if rgb is img:
                        rgb = img.copy()  # detach from the file's frame pointer
            except Image.DecompressionBombError:
                yield _page_error(errors.IMAGE_TOO_LARGE, page_no, "frame exceeds Pillow's pixel limit")
                continue
            except Exception as exc:
                reason = errors.TRUNCATED_FILE if "truncated" in str(exc).lower() else errors.CORRUPT
                yield _page_error(reason, page_no, f"cannot decode image ({type(exc).__name__})")
                continue
            yield PageImage(
                doc_id=doc.doc_id,
                page_no=page_no,
                image=rgb,
                dpi=_image_dpi(img),
                width=rgb.width,
                height=rgb.height,
                media_type=media_type,
                text_layer=None,
            )
    finally:
        img.close()


# --------------------------------------------------------------------------------------------
# Public API


def _page_error(reason: str, page_no: int, detail: str) -> errors.PageError:
    return errors.PageError(reason, f"page {page_no}: {detail}", page_no=page_no)


def _page_numbers(pages: Iterable[int] | None, n: int) -> list[int]:
    if pages is None:
        return list(range(1, n + 1))
    numbers = list(pages)
    bad = [p for p in numbers if not isinstance(p, int) or p < 1 or p > n]
    if bad:
        raise errors.ConfigError(f"page numbers out of range 1..{n}: {bad[:5]}")
    return numbers


def count_pages(doc: Document, limits: RenderLimits | None = None) -> int:
    """Number of pages (PDF) or frames (TIFF; 1 for PNG/JPEG) without rendering any.

    Raises the same ``DocumentError`` s :func:`render_pages` raises for the document.
    """
    limits = limits or RenderLimits()
    media_type = _supported_media_type(doc, limits)
    if media_type == PDF:
        pdf = _open_pdf(doc, limits)
        try:
            return int(pdf.page_count)
        finally:
            pdf.close()
    img, n = _open_image(doc, limits)
    img.close()
    return n


def render_pages(
    doc: Document,
    dpi: int = DEFAULT_DPI,
    limits: RenderLimits | None = None,
    pages: Iterable[int] | None = None,
    with_text_layer: bool = False,
) -> Iterator[PageImage | errors.PageError]:
    """Open ``doc`` and return an iterator of its pages, in the order asked (1-based ``pages``).

    Document-level checks run *now*, so ``DocumentError`` is raised by this call itself, before
    any page. Each item of the iterator is a ``PageImage`` (RGB PIL image) or, for a page that
    cannot be rendered, an ``errors.PageError`` (not raised) carrying ``page_no``.

    PDF pages render at ``dpi``; raster images keep their own pixel size and report the DPI
    stored in the file (144 when absent). With ``with_text_layer`` PDF pages carry the PDF text
    layer in ``PageImage.text_layer`` (``None`` when the page has no text, e.g. a scan).
    ``max_pages`` applies to the whole document, whichever ``pages`` are selected.
    """
    limits = limits or RenderLimits()
    if not isinstance(dpi, int) or not 1 <= dpi <= MAX_DPI:
        raise errors.ConfigError(f"dpi must be an integer in 1..{MAX_DPI}, got {dpi!r}")
    media_type = _supported_media_type(doc, limits)
    if media_type == PDF:
        pdf = _open_pdf(doc, limits)
        try:
            numbers = _page_numbers(pages, pdf.page_count)
        except BaseException:
            pdf.close()
            raise
        log.debug("rendering doc=%s pdf pages=%d dpi=%d", doc.doc_id[:12], len(numbers), dpi)
        return _pdf_pages(pdf, doc, numbers, dpi, limits, with_text_layer)
    img, n = _open_image(doc, limits)
    try:
        numbers = _page_numbers(pages, n)
    except BaseException:
        img.close()
        raise
    log.debug("rendering doc=%s %s frames=%d", doc.doc_id[:12], media_type, len(numbers))
    return _image_pages(img, n, doc, media_type, numbers, limits)
