"""Render a document's bytes into page images (the ``render`` stage).

``Document`` (bytes + sha256) -> ``PageImage`` (PIL RGB image, dpi, 1-based page number).

Failure isolation
-----------------
* Problems with the *document* raise :class:`errors.DocumentError` when :func:`render_pages` is
  called, before any page is produced: ``empty_file``, ``unsupported_type`` (decided by magic
  bytes, never by the file name; HEIC/HEIF and AVIF are recognised and named), ``encrypted``,
  ``corrupt``, ``truncated_file``, ``too_many_pages``, ``file_too_large`` (over ``max_bytes``),
  and ``image_too_large`` for a raster image whose (first) frame header declares more pixels
  than Pillow's decompression-bomb limit (or more than ``max_pixels`` with ``on_oversize="fail"``).
* Problems with one *page* do not raise: the page iterator yields an :class:`errors.PageError`
  in that page's place (its ``page_no`` attribute is set), so the caller records a failure row
  and goes on with the next page. This covers a page MuPDF cannot load or render, a later TIFF
  frame that cannot be decoded or is over the bomb limit, and, with ``on_oversize="fail"``, a
  page over ``max_pixels``.

Oversize pages
--------------
DeepSeek-OCR resizes every page to its 1024/768 tiles, so a page over ``max_pixels`` is shrunk
rather than refused (``on_oversize="downscale"``, the default): a PDF page renders at the highest
whole DPI whose image fits (decided from the page rectangle, before rendering), a raster image is
decoded (JPEG straight at a reduced scale) and resized to fit. The page carries the flag
``downscaled`` and the DPI actually used (a raster image's own DPI times the scale). Decompression
bombs, images whose header declares more than Pillow's bomb limit (``2 * Image.MAX_IMAGE_PIXELS``,
never below ``max_pixels``), are still refused before any pixel is decoded.

Raster types
------------
PNG, JPEG, TIFF, GIF, BMP, WEBP and JPEG 2000, by magic bytes. Only a TIFF has pages (one per
frame); an animated GIF or WEBP (or a JPEG carrying extra MPO frames) is read as its first frame,
flagged ``first_frame_only``.

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

import contextlib
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
from airflow_provider_deepocr.core.vocab import PageFlag

log = logging.getLogger(__name__)

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
TIFF = "image/tiff"
GIF = "image/gif"
BMP = "image/bmp"
WEBP = "image/webp"
JP2 = "image/jp2"
HEIC = "image/heic"
AVIF = "image/avif"
ZIP = "application/zip"
TEXT = "text/plain"

SUPPORTED_MEDIA_TYPES: frozenset[str] = frozenset({PDF, PNG, JPEG, TIFF, GIF, BMP, WEBP, JP2})
"""Media types :func:`render_pages` renders; others are recognised but rejected."""

_UNSUPPORTED_DETAIL = {
    HEIC: "HEIC/HEIF images are not supported (Pillow cannot decode them): convert to JPEG or PNG",
    AVIF: "AVIF images are not supported: convert to JPEG or PNG",
}

ON_OVERSIZE = ("downscale", "fail")
"""What to do with a page over ``max_pixels``: render it smaller (flagged) or fail it."""

FLAG_DOWNSCALED = PageFlag.DOWNSCALED.value
"""Page flag: rendered below the asked DPI (PDF) or shrunk (image) to fit ``max_pixels``."""
FLAG_FIRST_FRAME_ONLY = PageFlag.FIRST_FRAME_ONLY.value
FLAG_DPI_UNKNOWN = PageFlag.DPI_UNKNOWN.value
"""An image without a usable resolution (Pillow says 1 dpi for a TIFF without resolution tags): the
page row's ``dpi`` is NULL and :data:`_IMAGE_DEFAULT_DPI` stands in for sizes and coordinates."""
"""Page flag: an animated (multi-frame, non-TIFF) image was read as its first frame."""

DEFAULT_DPI = 144
MAX_DPI = 1200
_IMAGE_DEFAULT_DPI = 144
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})  # DIB header sizes
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_J2K_CODESTREAM = b"\xff\x4f\xff\x51"
_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
)
_AVIF_BRANDS = frozenset({b"avif", b"avis"})


@dataclass
class RenderLimits:
    """Safety limits applied before any pixel is decoded.

    :param max_pages: a document with more pages (TIFF frames) is ``too_many_pages``.
    :param max_pixels: the largest page image, in pixels.
    :param max_bytes: a larger file is ``file_too_large``.
    :param on_oversize: ``downscale`` (default: render a larger page smaller, flagged
        ``downscaled``) or ``fail`` (the page is ``image_too_large``).
    """

    max_pages: int = 2000
    max_pixels: int = 50_000_000  # per page image
    max_bytes: int = 512 * 1024 * 1024  # whole file
    on_oversize: str = "downscale"

    def __post_init__(self) -> None:
        if self.on_oversize not in ON_OVERSIZE:
            raise errors.ConfigError(f"on_oversize must be one of {ON_OVERSIZE}, got {self.on_oversize!r}")
        if self.max_pixels < 1:
            raise errors.ConfigError("max_pixels must be >= 1")


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
    (``image/heic``, ``image/avif``, ``application/zip``, ``text/plain``).
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
    if head.startswith(_JP2_SIGNATURE) or head.startswith(_J2K_CODESTREAM):
        return JP2
    if head[4:8] == b"ftyp":  # an ISO base media file: HEIF/HEIC, AVIF (or a video)
        box = int.from_bytes(head[:4], "big")
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, min(box, len(head)) - 3, 4)}
        if brands & _AVIF_BRANDS:
            return AVIF
        if brands & _HEIF_BRANDS:
            return HEIC
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return ZIP
    if _looks_like_text(data[:4096]):
        return TEXT
    raise errors.DocumentError(errors.UNSUPPORTED_TYPE, "unrecognised file signature")


def _supported_media_type(doc: Document, limits: RenderLimits) -> str:
    media_type = detect_media_type(doc.data)
    if media_type not in SUPPORTED_MEDIA_TYPES:
        detail = _UNSUPPORTED_DETAIL.get(media_type, f"{media_type} is not supported")
        raise errors.DocumentError(errors.UNSUPPORTED_TYPE, detail)
    if len(doc.data) > limits.max_bytes:
        raise errors.DocumentError(
            errors.FILE_TOO_LARGE, f"file of {len(doc.data)} bytes exceeds max_bytes={limits.max_bytes}"
        )
    return media_type


# --------------------------------------------------------------------------------------------
# Sizes


def _pdf_pixels(width_pt: float, height_pt: float, dpi: int) -> tuple[int, int]:
    """The pixel size of a page rectangle (points) rendered at ``dpi``."""
    return math.ceil(width_pt * dpi / 72 - 1e-6), math.ceil(height_pt * dpi / 72 - 1e-6)


def _fit_dpi(width_pt: float, height_pt: float, dpi: int, max_pixels: int) -> int:
    """The highest whole DPI below ``dpi`` at which the page fits ``max_pixels`` (0: none does).

    One pixel of slack per side covers MuPDF rounding the rectangle outwards."""
    d = min(dpi - 1, math.floor(72 * math.sqrt(max_pixels / (width_pt * height_pt))))
    while d >= 1:
        w, h = _pdf_pixels(width_pt, height_pt, d)
        if (w + 1) * (h + 1) <= max_pixels:
            break
        d -= 1
    return max(d, 0)


def _fit_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest size with the aspect of ``width x height`` and at most ``max_pixels`` pixels."""
    scale = math.sqrt(max_pixels / (width * height))
    w, h = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
    while w * h > max_pixels and (w > 1 or h > 1):
        if w >= h:
            w -= 1
        else:
            h -= 1
    return w, h


def _bomb_limit(limits: RenderLimits) -> int | None:
    """Pillow's decompression-bomb limit (``DecompressionBombError`` above it), never below
    ``max_pixels``; None when Pillow's guard is switched off."""
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is None:
        return None
    return 2 * max(int(Image.MAX_IMAGE_PIXELS), limits.max_pixels)


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
        n = _pdf_page_count(pdf)
        if truncated and (repaired or n == 0):
            raise errors.DocumentError(
                errors.TRUNCATED_FILE, f"PDF ends before its %%EOF marker (repaired, {n} pages found)"
            )
        if n == 0:
            raise errors.DocumentError(errors.CORRUPT, "PDF has no pages")
        if n > limits.max_pages:
            raise errors.DocumentError(errors.TOO_MANY_PAGES, f"{n} pages > max_pages={limits.max_pages}")
    except errors.DeepOcrError:
        pdf.close()
        raise
    except Exception as exc:  # MuPDF failing on a property of a damaged file
        pdf.close()
        raise errors.DocumentError(errors.CORRUPT, f"cannot read PDF ({type(exc).__name__})") from None
    finally:
        pymupdf.TOOLS.reset_mupdf_warnings()
    return pdf


def _pdf_page_count(pdf: Any) -> int:
    """The page count of an open PDF; ``broken_page_tree`` when MuPDF refuses it (a page tree
    whose ``/Count`` is absurd, e.g. 9999999999 in a one-page file: ``Invalid number of pages``)."""
    try:
        return int(pdf.page_count)
    except Exception as exc:
        raise errors.DocumentError(
            errors.BROKEN_PAGE_TREE, f"cannot count the pages ({type(exc).__name__})"
        ) from None


def _page_failure(exc: Exception) -> str:
    """The reason code of a page MuPDF cannot load or render: ``broken_page_tree`` when the
    page tree is at fault (a loop, a /Count larger than its kids), else ``corrupt``. Only the
    exception's message is read, never put anywhere."""
    return errors.BROKEN_PAGE_TREE if "page tree" in str(exc).lower() else errors.CORRUPT


def _pdf_plan(
    page: Any, doc: Document, page_no: int, dpi: int, limits: RenderLimits
) -> tuple[int, list[str]] | errors.PageError:
    """The DPI one loaded page renders at and its flags; or the page's error (before any pixel)."""
    rect = page.rect
    w, h = _pdf_pixels(rect.width, rect.height, dpi)
    if w <= 0 or h <= 0:
        return _page_error(errors.CORRUPT, page_no, "page has an empty rectangle")
    used, flags = dpi, []
    if w * h > limits.max_pixels:
        too_large = f"{w}x{h} px at {dpi} dpi > max_pixels={limits.max_pixels}"
        if limits.on_oversize == "fail":
            return _page_error(errors.IMAGE_TOO_LARGE, page_no, too_large)
        used = _fit_dpi(rect.width, rect.height, dpi, limits.max_pixels)
        if used < 1:
            return _page_error(errors.IMAGE_TOO_LARGE, page_no, too_large + ", even at 1 dpi")
        flags = [FLAG_DOWNSCALED]
        log.info("doc=%s page=%d: %s; rendering at %d dpi", doc.doc_id[:12], page_no, too_large, used)
    return used, flags


def _pdf_pixmap(
    pymupdf: Any, page: Any, doc: Document, page_no: int, dpi: int, limits: RenderLimits
) -> tuple[Any, int, list[str]] | errors.PageError:
    """The RGB pixmap of one loaded page, the DPI used and the flags; or the page's error."""
    plan = _pdf_plan(page, doc, page_no, dpi, limits)
    if isinstance(plan, errors.PageError):
        return plan
    used, flags = plan
    return page.get_pixmap(dpi=used, alpha=False, colorspace=pymupdf.csRGB), used, flags


def _pdf_size(pymupdf: Any, page: Any, dpi: int) -> tuple[int, int]:
    """The pixel size ``page.get_pixmap(dpi=dpi)`` gives, without rendering: MuPDF's own
    rounding (``fz_round_rect``) of the page bound scaled by ``dpi / 72``, as the pixmap's bbox."""
    box = (page.rect * pymupdf.Matrix(dpi / 72, dpi / 72)).round()
    return int(box.width), int(box.height)


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
                rendered = _pdf_pixmap(pymupdf, page, doc, page_no, dpi, limits)
                if isinstance(rendered, errors.PageError):
                    yield rendered
                    continue
                pix, used, flags = rendered
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
                yield _page_error(_page_failure(exc), page_no, f"cannot render page ({type(exc).__name__})")
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
                dpi=used,
                width=image.width,
                height=image.height,
                media_type=PDF,
                text_layer=text,
                flags=flags,
            )
    finally:
        pdf.close()


@dataclass
class RawPage:
    """A PDF page for :mod:`core.pagework`, which sends the pixels to another process:
    ``samples`` is a view of the pixmap's RGB rows (``stride`` bytes each) -- or None until
    :meth:`render` for a page asked without pixels (``OpenPdf.pages(pixels=False)``: its
    ``width`` and ``height`` are the size it renders at, computed, not rendered) -- and ``page``
    the open ``pymupdf.Page``, all valid until the next item."""

    page_no: int
    width: int
    height: int
    stride: int
    samples: Any
    dpi: int
    flags: list[str]
    page: Any
    pixmap: Any = None  # keeps ``samples`` alive

    def render(self) -> errors.PageError | None:
        """Render the pixels now (a page made without them); the page's error if MuPDF fails."""
        pymupdf = _pymupdf()
        try:
            pix = self.page.get_pixmap(dpi=self.dpi, alpha=False, colorspace=pymupdf.csRGB)
        except Exception as exc:
            return _page_error(_page_failure(exc), self.page_no, f"cannot render page ({type(exc).__name__})")
        finally:
            pymupdf.TOOLS.reset_mupdf_warnings()
        self.pixmap, self.samples, self.stride = pix, pix.samples_mv, pix.stride
        self.width, self.height = pix.width, pix.height
        return None


class OpenPdf:
    """A PDF opened once (the checks of :func:`render_pages`): its ``page_count``, then
    :meth:`pages` (``count_pages`` followed by a render would parse it twice). Close it
    when :meth:`pages` is not called; the page iterator closes it at its end."""

    def __init__(
        self, doc: Document, limits: RenderLimits | None = None, action: str = "count pages"
    ) -> None:
        """``action`` names the step in a typed error's message (``count pages``: what
        count_pages, which ran first before, says; ``open`` for render_pages and the page worker)."""
        self.doc, self.limits = doc, limits or RenderLimits()
        if _supported_media_type(doc, self.limits) != PDF:
            raise errors.ConfigError("OpenPdf opens PDFs only")
        with _typed(action):
            self.pdf = _open_pdf(doc, self.limits)
            try:
                self.page_count = _pdf_page_count(self.pdf)
            except BaseException:
                self.pdf.close()
                raise

    def numbers(self, pages: Iterable[int] | None) -> list[int]:
        """The page numbers asked (None: all) checked against the document; closes it on error."""
        try:
            return _page_numbers(pages, self.page_count)
        except BaseException:
            self.pdf.close()
            raise

    def pages(
        self, dpi: int = DEFAULT_DPI, pages: Iterable[int] | None = None, pixels: bool = True
    ) -> Iterator[RawPage | errors.PageError]:
        """The pages asked (None: all) as :class:`RawPage` s, :func:`render_pages`' checks and
        reasons, no copy of the pixels and no PIL image; ``pixels=False``: loaded and sized (the
        same DPI, flags and page errors before any pixel), rendered only by :meth:`RawPage.render`."""
        return _raw_pages(self.pdf, self.doc, self.numbers(pages), dpi, self.limits, pixels)

    def close(self) -> None:
        self.pdf.close()


def _raw_pages(
    pdf: Any, doc: Document, numbers: list[int], dpi: int, limits: RenderLimits, pixels: bool = True
) -> Iterator[RawPage | errors.PageError]:
    pymupdf = _pymupdf()
    try:
        for page_no in numbers:
            try:
                page = pdf.load_page(page_no - 1)
                if pixels:
                    rendered = _pdf_pixmap(pymupdf, page, doc, page_no, dpi, limits)
                else:
                    plan = _pdf_plan(page, doc, page_no, dpi, limits)
                    rendered = plan if isinstance(plan, errors.PageError) else (None, *plan)
            except Exception as exc:
                rendered = _page_error(
                    _page_failure(exc), page_no, f"cannot render page ({type(exc).__name__})"
                )
            finally:
                pymupdf.TOOLS.reset_mupdf_warnings()
            if isinstance(rendered, errors.PageError):
                yield rendered
                continue
            pix, used, flags = rendered
            if pix is None:
                width, height = _pdf_size(pymupdf, page, used)
                yield RawPage(page_no, width, height, 0, None, used, flags, page)
                continue
            yield RawPage(page_no, pix.width, pix.height, pix.stride, pix.samples_mv, used, flags, page, pix)
    finally:
        pdf.close()


# --------------------------------------------------------------------------------------------
# Raster images (Pillow)


def pillow_open(fp: Any, limits: RenderLimits) -> Any:
    """``Image.open(fp)`` (lazy: the header only) with Pillow's own bomb guard, which fires inside
    ``Image.open``, never *below* ``limits.max_pixels`` (it only ever gets raised) and its warning
    silenced. Raises what Pillow raises (``DecompressionBombError`` past :func:`_bomb_limit`)."""
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < limits.max_pixels:
        Image.MAX_IMAGE_PIXELS = limits.max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(fp)


def _open_image(doc: Document, media_type: str, limits: RenderLimits) -> tuple[Any, int]:
    """Open lazily (header only), check the first frame's size and the page count.

    Returns the image and its number of pages: a TIFF's frame count, 1 for any other type."""
    from PIL import Image

    try:
        img = pillow_open(io.BytesIO(doc.data), limits)  # Pillow's bomb error: our reason code
    except Image.DecompressionBombError:
        raise errors.DocumentError(
            errors.IMAGE_TOO_LARGE,
            f"image header exceeds the decompression-bomb limit of {_bomb_limit(limits)} px",
        ) from None
    except Exception as exc:
        raise errors.DocumentError(errors.CORRUPT, f"cannot open image ({type(exc).__name__})") from None
    bomb = _bomb_limit(limits)
    try:
        w, h = img.size
        if bomb is not None and w * h > bomb:
            raise errors.DocumentError(
                errors.IMAGE_TOO_LARGE, f"{w}x{h} px exceeds the decompression-bomb limit of {bomb} px"
            )
        if w * h > limits.max_pixels and limits.on_oversize == "fail":
            raise errors.DocumentError(errors.IMAGE_TOO_LARGE, f"{w}x{h} px > max_pixels={limits.max_pixels}")
        n = int(getattr(img, "n_frames", 1) or 1) if media_type == TIFF else 1
        if n > limits.max_pages:
            raise errors.DocumentError(errors.TOO_MANY_PAGES, f"{n} frames > max_pages={limits.max_pages}")
    except errors.DocumentError:
        img.close()
        raise
    except Exception as exc:
        img.close()
        raise errors.DocumentError(errors.CORRUPT, f"cannot read image ({type(exc).__name__})") from None
    return img, n


MIN_IMAGE_DPI = 50
"""Below this an image's resolution is taken as unknown (no scanner or fax writes less)."""


def _image_dpi(img: Any, media_type: str) -> tuple[int, bool]:
    """(the dpi to render and place boxes at, whether it is unknown). Unknown: a TIFF (a scan
    format, whose resolution tags say how big the paper was) without a believable resolution, or
    any image stating one no scanner writes (Pillow says 1 dpi for an untagged TIFF). A PNG, GIF,
    WEBP or BMP that states none is pixels only: the default applies, unflagged."""
    try:
        value = round(float(img.info["dpi"][0]))
    except (KeyError, TypeError, ValueError, IndexError):
        value = 0
    if MIN_IMAGE_DPI <= value <= MAX_DPI * 4:
        return value, False
    return _IMAGE_DEFAULT_DPI, value != 0 or media_type == TIFF


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


def _shrink(frame: Any, size: tuple[int, int]) -> Any:
    """``frame`` resized to ``size`` (a reducing box filter first, then Lanczos)."""
    from PIL import Image

    if frame.mode == "1":
        frame = frame.convert("L")  # resampling needs grey levels; 8x the memory of the bitmap
    elif frame.mode not in ("L", "RGB", "RGBA"):
        frame = _to_rgb(frame)
    return frame.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


_EXIF_ORIENTATION = 0x0112
_TRANSPOSED = frozenset({5, 6, 7, 8})  # orientations that swap width and height


def _image_pages(
    img: Any, n_frames: int, doc: Document, media_type: str, numbers: list[int], limits: RenderLimits
) -> Iterator[PageImage | errors.PageError]:
    from PIL import Image, ImageOps

    try:  # a GIF/WEBP counts its frames by reading them all: a damaged one can fail here
        animated = media_type != TIFF and int(getattr(img, "n_frames", 1) or 1) > 1
    except Exception:
        animated = False
    bomb = _bomb_limit(limits)
    try:
        for page_no in numbers:
            flags = [FLAG_FIRST_FRAME_ONLY] if animated else []
            try:
                img.seek(page_no - 1)
                w, h = img.size
                if bomb is not None and w * h > bomb:
                    yield _page_error(
                        errors.IMAGE_TOO_LARGE, page_no, f"{w}x{h} px exceeds the decompression-bomb limit"
                    )
                    continue
                dpi, unknown = _image_dpi(img, media_type)
                if unknown:
                    flags.append(FLAG_DPI_UNKNOWN)
                target = None  # the size to shrink to, in display orientation
                oriented_w = w
                if w * h > limits.max_pixels:
                    if limits.on_oversize == "fail":
                        yield _page_error(
                            errors.IMAGE_TOO_LARGE, page_no, f"{w}x{h} px > max_pixels={limits.max_pixels}"
                        )
                        continue
                    stored = _fit_size(w, h, limits.max_pixels)
                    target = stored
                    if media_type == JPEG:
                        if img.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSED:  # shown turned 90 degrees
                            target, oriented_w = (stored[1], stored[0]), h
                        img.draft(img.mode, stored)  # decode at 1/2, 1/4 or 1/8 scale if still larger
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    img.load()
                    frame = ImageOps.exif_transpose(img) if media_type == JPEG else img
                    if target is not None:
                        frame = _shrink(frame, target)
                        dpi = max(1, round(dpi * target[0] / oriented_w))
                        flags.append(FLAG_DOWNSCALED)
                        log.info(
                            "doc=%s page=%d: %dx%d px > max_pixels=%d; shrunk to %dx%d",
                            doc.doc_id[:12],
                            page_no,
                            w,
                            h,
                            limits.max_pixels,
                            *target,
                        )
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
                dpi=dpi,
                width=rgb.width,
                height=rgb.height,
                media_type=media_type,
                text_layer=None,
                flags=sorted(flags),
            )
    finally:
        img.close()


# --------------------------------------------------------------------------------------------
# Public API


def _page_error(reason: str, page_no: int, detail: str) -> errors.PageError:
    return errors.PageError(reason, f"page {page_no}: {detail}", page_no=page_no)


@contextlib.contextmanager
def _typed(action: str) -> Iterator[None]:
    """Any exception but our own typed ones becomes ``DocumentError(corrupt)``: no library error
    on a document's bytes escapes as an unhandled exception (``MemoryError`` included: a
    header that asks for more than there is)."""
    try:
        yield
    except errors.DeepOcrError:
        raise
    except Exception as exc:
        raise errors.DocumentError(errors.CORRUPT, f"cannot {action} ({type(exc).__name__})") from None


def _page_numbers(pages: Iterable[int] | None, n: int) -> list[int]:
    if pages is None:
        return list(range(1, n + 1))
    numbers = list(pages)
    bad = [p for p in numbers if not isinstance(p, int) or p < 1 or p > n]
    if bad:
        raise errors.ConfigError(f"page numbers out of range 1..{n}: {bad[:5]}")
    return numbers


def count_pages(doc: Document, limits: RenderLimits | None = None) -> int:
    """Number of pages (PDF) or frames (TIFF; 1 for every other image type) without rendering any.

    Raises the same ``DocumentError`` s :func:`render_pages` raises for the document.
    """
    limits = limits or RenderLimits()
    media_type = _supported_media_type(doc, limits)
    if media_type == PDF:
        pdf = OpenPdf(doc, limits)
        pdf.close()
        return pdf.page_count
    with _typed("count pages"):
        img, n = _open_image(doc, media_type, limits)
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
    stored in the file (144 when absent). A page over ``limits.max_pixels`` is rendered smaller
    and flagged ``downscaled`` (or is an ``image_too_large`` page error with
    ``limits.on_oversize="fail"``); ``PageImage.dpi`` is the DPI used. With ``with_text_layer``
    PDF pages carry the PDF text layer in ``PageImage.text_layer`` (``None`` when the page has
    no text, e.g. a scan).
    ``max_pages`` applies to the whole document, whichever ``pages`` are selected.
    """
    limits = limits or RenderLimits()
    if not isinstance(dpi, int) or not 1 <= dpi <= MAX_DPI:
        raise errors.ConfigError(f"dpi must be an integer in 1..{MAX_DPI}, got {dpi!r}")
    media_type = _supported_media_type(doc, limits)
    if media_type == PDF:
        opened = OpenPdf(doc, limits, action="open")
        numbers = opened.numbers(pages)
        log.debug("rendering doc=%s pdf pages=%d dpi=%d", doc.doc_id[:12], len(numbers), dpi)
        return _pdf_pages(opened.pdf, doc, numbers, dpi, limits, with_text_layer)
    with _typed("open"):
        img, n = _open_image(doc, media_type, limits)
        try:
            numbers = _page_numbers(pages, n)
        except BaseException:
            img.close()
            raise
        log.debug("rendering doc=%s %s frames=%d", doc.doc_id[:12], media_type, len(numbers))
        return _image_pages(img, n, doc, media_type, numbers, limits)
