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
   ``{"label": str, "bbox": [x0, y0, x1, y1], "text": str}`` (and ``"flags"`` on the first
   block when the page's table finder raised: ``tables_skipped``): ``bbox`` ints on the 0..999
   grid of the page *as rendered* (rotation and crop box applied, exactly what ``render.py``
   rasterises), ``x0 < x1``, ``y0 < y1``, clamped; blocks in reading order (columns one after
   the other: ``layout.reading_order``). Labels: ``text``, ``title``, ``header``, ``footer``,
   ``table_caption``, ``figure_caption``, ``image`` (empty text) and ``table``, whose text is
   the table as HTML (``pdf_tables``), the form DeepSeek writes tables in, so the parser makes
   the same ``Table``/``TableCell`` records from it; a table's words are not also lines.
   Hyphenated line ends are joined (the hyphenated form is not kept: block records hold one
   text), CJK characters are joined without spaces.
2. ``text_layer_quality(page_text(blocks))`` -> ``bool``: use the layer or OCR the page.
3. When it is True: ``page.text_layer = json.dumps(blocks)`` (the convention: a ``PageImage``'s
   ``text_layer`` holds the JSON list of its blocks) and send the page to
   ``PdfTextEngine().ocr([...])``, which needs no image and returns
   ``OcrResult(raw_text=page_text(blocks), finish_reason="eos", blocks=blocks,
   engine="pdf-text", model="pymupdf-<version>", mode="text-layer")``; the parser turns
   ``blocks`` into ``Block`` records (``parse.parse_structured``) like RapidOCR's.
   A ``text_layer`` that is not a JSON list of blocks gives ``finish_reason="error"``.

Not handled: right-to-left text is emitted in the order PyMuPDF extracts it (Arabic ligatures
may come out of logical order). What the quality check cannot see: a font whose ToUnicode map
is wrong but still yields valid letters (a shifted alphabet). Layers like that are rare in
exported filings; ``"never"`` is the escape hatch.
"""

from __future__ import annotations

import json
import logging
import re
import time
import unicodedata
from collections.abc import Sequence
from typing import Any

from airflow_provider_deepocr.core.engines.base import OcrEngine
from airflow_provider_deepocr.core.engines.pdf_lines import join_words, merge_lines
from airflow_provider_deepocr.core.errors import PageError
from airflow_provider_deepocr.core.records import GRID, OcrResult, PageImage
from airflow_provider_deepocr.core.vocab import PageFlag

log = logging.getLogger(__name__)

TEXT_LAYER_MODES = ("never", "auto", "only")
MIN_CHARS = 1  # letters or digits a page needs (any script); the old floor of 30 rejected short real text
MAX_BAD_SHARE = 0.02  # U+FFFD, private use, controls, unassigned, lone surrogates, (cid:N)
MIN_ALNUM_SHARE = 0.5  # letters and digits among characters that are not punctuation or space
TITLE_RATIO = 1.3  # a line this much taller than the page's body lines is a title
SCAN_IMAGE_SHARE = 0.7  # a page mostly covered by one image with a stray line of text is a scan
SCAN_MAX_CHARS = 30
HEADER_BAND = 60  # grid units from the top (bottom) edge where a short line is a running header (footer)
FLAG_TABLES_SKIPPED = PageFlag.TABLES_SKIPPED.value
TEXT_READER_VERSION = "2"
"""Bumped whenever what this engine reads from a page changes (tables, order, judgement): part of
config fingerprints, so a changed reader reads and loads its documents again."""
"""The page's table finder raised: the page was read without tables (its text is all there)."""

_CID = re.compile(r"\(cid:\d+\)")  # pdfminer-style unmapped glyph markers, from other extractors
_BAD_CATEGORIES = frozenset({"Co", "Cc", "Cs", "Cn"})
# C1 controls that are cp1252 characters in fonts with a wrong encoding (bullets, dashes, quotes).
_C1_CP1252 = {
    chr(c): bytes([c]).decode("cp1252") for c in range(0x80, 0xA0) if c not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)
}
# Private-use code points of Symbol/Wingdings bullets and boxes.
_PUA_BULLETS = dict.fromkeys(
    map(chr, (0xF0B7, 0xF0A7, 0xF0D8, 0xF076, 0xF0FC, 0xF06E, 0xF0A8, 0xF0B2)), "\u2022"
)
_FIX_CHARS = str.maketrans({**_C1_CP1252, **_PUA_BULLETS})
_CAPTION = re.compile(r"^(?:(table|tab\.)|(figure|fig\.|chart|exhibit|graph))\s*[\dIVX]+", re.I)
_FLAGS = 2 | 64 | 128  # whitespace kept, clipped to the media box, unknown glyphs as CIDs; ligatures split


def text_layer_quality(text: str | None, min_chars: int = MIN_CHARS) -> bool:
    """True when a page's text layer is worth trusting instead of OCR: judged by character classes.

    Needs ``min_chars`` letters or digits (any script: "Hello", one CJK line and a form's labels
    are text); at most 2 % bad characters (U+FFFD, private use, controls, unassigned, lone
    surrogates, ``(cid:N)`` markers: what unmapped glyphs turn into); and letters or digits at
    least half of the characters that are not punctuation or space (symbols count against it:
    a layer of stray symbols is garbage). Punctuation is neutral, so a table of contents whose
    dot leaders outnumber its letters passes. Bullets that fonts map to C1 controls or
    private-use code points are fixed by :func:`page_blocks` before this check sees them (and
    are fixed here too, for text from elsewhere).
    """
    if not text:
        return False
    if "(cid:" in text:
        text = _CID.sub("\ufffd", text)
    text = text.translate(_FIX_CHARS)
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return False
    bad = sum(1 for c in chars if c == "\ufffd" or unicodedata.category(c) in _BAD_CATEGORIES)
    if bad > MAX_BAD_SHARE * len(chars):
        return False
    alnum = sum(1 for c in chars if c.isalnum())
    counted = sum(1 for c in chars if not unicodedata.category(c).startswith("P"))
    return alnum >= min_chars and alnum >= MIN_ALNUM_SHARE * counted


def _grid(v: float, extent: float) -> int:
    return max(0, min(GRID, round(v / extent * GRID))) if extent > 0 else 0


def _box(rect: Any, width: float, height: float) -> list[int]:
    box = [_grid(rect[0], width), _grid(rect[1], height), _grid(rect[2], width), _grid(rect[3], height)]
    for lo, hi in ((0, 2), (1, 3)):  # a zero-width box (one thin glyph): one grid unit wide
        if box[hi] <= box[lo]:
            box[hi] = min(GRID, box[lo] + 1)
            box[lo] = box[hi] - 1
    return box


def _rules(
    page: Any,
) -> tuple[list[tuple[float, float, float, float]], list[tuple[float, float, float, float]]]:
    """Vertical and horizontal ruling segments of the page (as displayed) from its vector drawings."""
    import pymupdf

    vertical: list[tuple[float, float, float, float]] = []
    horizontal: list[tuple[float, float, float, float]] = []
    for path in page.get_drawings():
        for item in path["items"]:
            if item[0] == "l":
                r = pymupdf.Rect(item[1], item[2])
                r.normalize()
                rects = [r]
            elif item[0] == "re":
                r = pymupdf.Rect(item[1])
                thin = min(r.width, r.height) <= 2
                if not thin and path.get("color") is None:
                    continue  # a filled cell background: no rule
                rects = [r] if thin else [
                    pymupdf.Rect(r.x0, r.y0, r.x1, r.y0), pymupdf.Rect(r.x0, r.y1, r.x1, r.y1),
                    pymupdf.Rect(r.x0, r.y0, r.x0, r.y1), pymupdf.Rect(r.x1, r.y0, r.x1, r.y1),
                ]  # fmt: skip
            else:
                continue
            for r in rects:
                if r.width <= 2 and r.height > 4:
                    vertical.append(((r.x0 + r.x1) / 2, r.y0, (r.x0 + r.x1) / 2, r.y1))
                elif r.height <= 2 and r.width > 4:
                    horizontal.append((r.x0, (r.y0 + r.y1) / 2, r.x1, (r.y0 + r.y1) / 2))
    return vertical, horizontal


def _label(text: str, box: list[int], height: float, body: float) -> str:
    if box[3] <= HEADER_BAND and len(text) <= 120:
        return "header"
    if box[1] >= GRID - HEADER_BAND and len(text) <= 120:
        return "footer"
    m = _CAPTION.match(text)
    if m:
        return "table_caption" if m.group(1) else "figure_caption"
    return "title" if body and height >= TITLE_RATIO * body else "text"


def _tables(
    words: list[Any], page: Any, width: float, height: float
) -> tuple[list[dict[str, Any]], set[int], list[str]]:
    """Table blocks of the page and the words they hold; a finder that raises gives none and a flag."""
    from airflow_provider_deepocr.core.engines.pdf_tables import find_tables, table_html

    try:
        vertical, horizontal = _rules(page)
        found = find_tables(words, vertical, horizontal)
    except Exception:  # noqa: BLE001 - any failure of table finding: read the page without tables
        return [], set(), [FLAG_TABLES_SKIPPED]
    blocks = [{"label": "table", "bbox": _box(t.bbox, width, height), "text": table_html(t)} for t in found]
    used: set[int] = set().union(*(t.words for t in found)) if found else set()
    return blocks, used, []


def page_blocks(page: Any, tables: bool = True) -> list[dict[str, Any]]:
    """Blocks of one open ``pymupdf.Page`` on the 0..999 grid of the rendered page, in reading order.

    Boxes are mapped through ``page.rotation_matrix`` to the page as displayed (what rendering
    rasterises). Words are read once; tables found from their geometry and the page's rules
    (``pdf_tables``) become ``table`` blocks whose text is HTML, and their words are not also
    emitted as lines. The other words form lines, cut at wide gaps (so two columns never share
    a line); lines are put in reading order by ``layout.reading_order`` (columns one after the
    other) together with tables and images, then lines next to each other in one column with
    the same label join into a block (a hyphenated line end joined). Labels: ``header`` /
    ``footer`` (short lines in the top / bottom band), ``table_caption`` / ``figure_caption``
    ("Table 3", "Figure 2"), ``title`` (lines taller than the body's), ``text``; ``image`` for
    pictures. A block may carry ``flags`` (``tables_skipped``). A page covered by one image with
    a stray line of text is a scan: no blocks (it goes to OCR).
    """
    import pymupdf

    from airflow_provider_deepocr.core.engines.layout import reading_order
    from airflow_provider_deepocr.core.engines.pdf_tables import line_segments

    # Everything is worked out on the page unrotated (where its text runs left to right), on a
    # 0..999 grid of that; boxes are mapped to the page as displayed at the end.
    rect = page.rect
    matrix = page.rotation_matrix
    unrotated = rect * ~matrix
    width, height = abs(unrotated.width), abs(unrotated.height)
    words: list[Any] = []
    ids: list[tuple[int, int]] = []
    for w in page.get_text(
        "words",
        flags=pymupdf.TEXT_MEDIABOX_CLIP
        | pymupdf.TEXT_CID_FOR_UNKNOWN_UNICODE
        | pymupdf.TEXT_PRESERVE_WHITESPACE,
    ):
        words.append((*w[:4], w[4].translate(_FIX_CHARS)))
        ids.append((w[5], w[6]))
    if words and not text_layer_quality(page.get_text("text", flags=_FLAGS)):
        return []  # garbage layer (words drop the control characters unmapped glyphs turn into)
    images = [i["bbox"] for i in page.get_image_info() if i.get("bbox")]
    area = width * height
    if images and area:
        if (
            max(pymupdf.Rect(b).get_area() for b in images) >= SCAN_IMAGE_SHARE * area
            and sum(len(w[4]) for w in words) < SCAN_MAX_CHARS
        ):
            return []
    table_blocks, used, flags = _tables(words, page, width, height) if tables else ([], set(), [])
    lines: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(ids):
        if i not in used:
            lines.setdefault(key, []).append(i)
    units: list[dict[str, Any]] = []
    for idx in lines.values():
        idx.sort(key=lambda i: words[i][0])
        for seg in line_segments(idx, words, []):
            text = join_words([words[i][4] for i in seg.words])
            units.append(
                {
                    "box": _box((seg.x0, seg.y0, seg.x1, seg.y1), width, height),
                    "text": text,
                    "h": seg.y1 - seg.y0,
                }
            )
    heights = sorted(u["h"] for u in units)
    body = heights[len(heights) // 2] if heights else 0.0
    for u in units:
        u["label"] = _label(u["text"], u["box"], u["h"], body)
    units += [{"box": b["bbox"], "label": "table", "text": b["text"], "h": 0.0} for b in table_blocks]
    for b in images:
        units.append({"box": _box(b, width, height), "label": "image", "text": "", "h": 0.0})
    order, cols = reading_order([u["box"] for u in units])
    out = merge_lines([units[i] for i in order], [cols[i] for i in order])
    if page.rotation:
        for b in out:
            r = pymupdf.Rect(
                [v / GRID * e for v, e in zip(b["bbox"], (width, height, width, height), strict=True)]
            )
            r = r * matrix
            r.normalize()
            b["bbox"] = _box(r, rect.width, rect.height)
    if flags and out:
        out[0]["flags"] = flags
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
    """Text blocks of every page of a PDF: ``{page_no: [block, ...]}`` (see :func:`page_blocks`).

    One page that cannot be read costs only itself: it is read again without table finding
    (flagged ``tables_skipped``), and if that fails too it gets no blocks (it goes to OCR).
    """
    import pymupdf

    out: dict[int, list[dict[str, Any]]] = {}
    with pymupdf.open(stream=data, filetype="pdf") as doc:
        for index, page in enumerate(doc):
            out[index + 1] = _page_blocks_isolated(page, index + 1)
    return out


def _page_blocks_isolated(page: Any, page_no: int) -> list[dict[str, Any]]:
    try:
        return page_blocks(page)
    except Exception as exc:  # noqa: BLE001 - one page's failure must not cost the document its layer
        log.warning("text layer of page %d: read without tables (%s)", page_no, type(exc).__name__)
    try:
        blocks = page_blocks(page, tables=False)
    except Exception as exc:  # noqa: BLE001
        log.warning("text layer of page %d unreadable (%s): sent to OCR", page_no, type(exc).__name__)
        return []
    if blocks:
        blocks[0]["flags"] = [FLAG_TABLES_SKIPPED]
    return blocks


_TAG = re.compile(r"<[^<>]*>")
_ROW_END = re.compile(r"</tr>", re.I)
_CELL_END = re.compile(r"</t[dh]>", re.I)


def page_text(blocks: Sequence[dict[str, Any]]) -> str:
    """The plain text of a page's blocks, in reading order (what the quality check reads).

    A table block (HTML) gives a line per row, its cell texts separated by spaces.
    """
    import html

    out = []
    for b in blocks:
        if not isinstance(b, dict):
            continue
        text = str(b.get("text", ""))
        if b.get("label") == "table" and text.startswith("<table"):
            text = _CELL_END.sub(" ", _ROW_END.sub("\n", text))
            text = "\n".join(" ".join(line.split()) for line in html.unescape(_TAG.sub("", text)).split("\n"))
            text = text.strip()
        out.append(text)
    return "\n".join(t for t in out if t)


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
