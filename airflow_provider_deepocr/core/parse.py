"""Parse DeepSeek-OCR grounded output into blocks, tables and markdown.

The grounded document prompt (``<image>\\n<|grounding|>Convert the document to markdown.``) makes
both DeepSeek-OCR (v1) and DeepSeek-OCR-2 write one block per layout element::

    <|ref|>LABEL<|/ref|><|det|>[[x0, y0, x1, y1]]<|/det|>
    content (markdown, HTML tables, LaTeX \\( inline \\) and \\[ display \\] formulas)

**Coordinates are on a 0..999 grid of the page image the model saw** — not pixels, not PDF
points, not fractions. ``(0, 0)`` is the top-left corner of that image and ``(999, 999)`` its
bottom-right corner, whatever its size. :attr:`Block.bbox` keeps the grid coordinates (ints);
when the caller passes the pixel size of the image the model saw, :attr:`Block.bbox_px` holds
the same box in pixels: ``(x * width / 999, y * height / 999)``.

Public API (other modules call exactly these):

- :func:`parse_page` — one page of raw model text -> :class:`ParsedPage`.
- :func:`parse_document` — pages joined by ``<--- Page Split --->`` lines -> list of pages.
- :func:`parse_structured` — engines that return structure directly (RapidOCR, PDF text layer).
- :func:`page_to_markdown`, :func:`document_markdown` — clean markdown (no ref/det tags).
- ``FLAG_*`` constants, ``PARSER_VERSION``.

Broken output never raises: it is flagged (see the ``FLAG_*`` constants) and the good part is
kept. Block flags are on :attr:`Block.flags`; :attr:`ParsedPage.flags` is the sorted set of page
flags plus the block flags that matter page-wide (:data:`PAGE_WIDE_FLAGS`).

Choices worth knowing:

- ``Block.label`` is the model's own label; text before the first tag gets label ``""`` (and
  ``no_box``). ``Block.kind`` is normalised (records.BLOCK_KINDS); a ``text`` block whose content
  is a markdown heading (``## ...``) is kind ``heading``, one that is a list line ``list_item``.
- ``Block.raw`` is the content as the model wrote it (stripped); ``Block.text`` is plain text for
  search: no HTML tags (``<center>`` unwrapped), entities decoded, LaTeX delimiters and markup
  dropped (``\\delta`` -> δ), heading hashes and list bullets removed, whitespace collapsed.
- Several boxes for one ref: the first valid one is ``bbox``, the rest ``extra_boxes`` (deduplicated,
  at most 64). Invalid boxes are dropped and flag ``bad_bbox``; their coordinates are kept nowhere.
- case04's shape (table det, caption det, caption text, then ``<table>``): the HTML moves to the
  table block and the caption is placed before the table, the order the text was written in.
- A table is linked to the caption block right before it, else right after it (each caption once,
  image captions never); an empty caption links nothing (``caption=None``).
- Repetition: a block whose tail repeats (n-gram score of the tail window, after a cheap
  precheck) is cut where the loop starts, keeping one copy of the repeated unit; an unclosed
  table ending in >= 8 identical rows, and >= 8 identical consecutive blocks, count as loops too.
- Markdown: block contents joined by blank lines; :func:`document_markdown` writes
  ``<!-- page N -->`` before each page.

Standard library only; no document text is ever logged.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from operator import attrgetter, eq
from typing import Any

from airflow_provider_deepocr.core.records import GRID, Block, ParsedPage, Table, TableCell
from airflow_provider_deepocr.core.vocab import PageFlag

PARSER_VERSION = "1"
"""Bumped whenever the parser's output for the same input changes (part of config fingerprints)."""

FLAG_REPETITION_LOOP = PageFlag.REPETITION_LOOP.value
"""The content degenerated into repetition; the good prefix is kept, the loop cut off."""
FLAG_TRUNCATED = PageFlag.TRUNCATED.value
"""The output stopped at the token limit (``finish_reason == "length"``)."""
FLAG_UNCLOSED_DET = PageFlag.UNCLOSED_DET.value
"""A ``<|det|>`` coordinate list never closed (typically the model looped in it until the limit)."""
FLAG_BAD_BBOX = PageFlag.BAD_BBOX.value
"""A box was off the 0..999 grid, empty (x0 >= x1 or y0 >= y1) or unparsable; it was dropped."""
FLAG_NO_BOX = PageFlag.NO_BOX.value
"""A block without a box: text before the first tag, or a ref the model gave no coordinates."""
FLAG_EMPTY_PAGE = PageFlag.EMPTY_PAGE.value
"""The page has no content at all (zero blocks)."""

FLAG_TABLES_SKIPPED = PageFlag.TABLES_SKIPPED.value
"""A text-layer page whose table finder raised: read without tables (its text is all there)."""

PAGE_WIDE_FLAGS = frozenset(
    {FLAG_REPETITION_LOOP, FLAG_TRUNCATED, FLAG_UNCLOSED_DET, FLAG_EMPTY_PAGE, FLAG_TABLES_SKIPPED}
)
"""Block flags copied up to :attr:`ParsedPage.flags`; ``bad_bbox`` and ``no_box`` stay on the block."""

PAGE_BREAK = "<!-- page {page_no} -->"
"""Marker :func:`document_markdown` writes before every page (an HTML comment: invisible when rendered)."""

_ENGINE_FLAGS = frozenset({FLAG_TABLES_SKIPPED})  # flags a structured engine may set on a block

# Labels the models write, mapped to records.BLOCK_KINDS. Anything else -> "other".
_KIND_BY_LABEL: dict[str, str] = {
    "title": "heading",
    "sub_title": "heading",
    "subtitle": "heading",
    "section_header": "heading",
    "heading": "heading",
    "text": "text",
    "paragraph": "text",
    "line": "text",
    "list": "list_item",
    "list_item": "list_item",
    "table": "table",
    "table_caption": "caption",
    "image_caption": "caption",
    "figure_caption": "caption",
    "figure_title": "caption",
    "caption": "caption",
    "image": "figure",
    "figure": "figure",
    "chart": "figure",
    "equation": "formula",
    "formula": "formula",
    "isolate_formula": "formula",
    "footnote": "footnote",
    "table_footnote": "footnote",
    "image_footnote": "footnote",
    "header": "header",
    "page_header": "header",
    "footer": "footer",
    "page_footer": "footer",
    "page_number": "footer",
}
# Caption labels that describe an image, never linked to a table.
_NON_TABLE_CAPTIONS = frozenset({"image_caption", "figure_caption", "figure_title"})

# One block header. Group 1: label. Fast path (one well-formed box): groups 2-5. Otherwise
# group 6 is whatever coordinate text follows <|det|> and group 7 its closing tag (None when the
# model never closed it). No det at all: groups 2-7 are None.
_BLOCK_RE = re.compile(
    r"<\|ref\|>([^<\n]{0,200})<\|/ref\|>"
    r"(?:\s*<\|det\|>(?:\s*\[\[(\d{1,3}), (\d{1,3}), (\d{1,3}), (\d{1,3})\]\]<\|/det\|>"
    r"|([-\d\s,\[\]]*)(<\|/det\|>)?))?"
)
_QUAD_RE = re.compile(r"\[\s*(-?\d{1,6})\s*,\s*(-?\d{1,6})\s*,\s*(-?\d{1,6})\s*,\s*(-?\d{1,6})\s*\]")
_PAGE_SPLIT_RE = re.compile(r"^[ \t]*<--- Page Split --->[ \t]*(?:\n|$)", re.M)
# Special tokens left in the text (stray ref/det tags, vLLM's <｜end▁of▁sentence｜>, ...).
_STRAY_TOKEN_RE = re.compile(
    r"<\|(?:ref|det)\|>[^<>\n]{0,200}\Z"  # a block header cut by the token limit: drop all of it
    r"|<[|｜][^<>\n]{0,40}?[|｜]>"  # any other special token
    r"|<[|｜][^<>\n]{0,40}\Z"  # half a token at the very end
)
_FULLWIDTH_TOKEN_RE = re.compile(r"<｜[^<>\n]{0,40}?｜>|<｜[^<>\n]{0,40}\Z")
# The fast path's coordinates (1-3 digits, leading zeros allowed) -> int, without int() calls.
_INT: dict[str, int] = {f"{v:0{w}d}": v for w in (1, 2, 3) for v in range(10**w)}
_MAX_BOXES = 64  # boxes kept per block (a looping coordinate list can hold thousands)
_MAX_QUADS_SCANNED = 4096

_REFINE_FIRST = frozenset("#-*+•<0123456789")  # first characters _content_kind looks at
_HEADING_LINE_RE = re.compile(r"#{1,6}[ \t]")
_LIST_LINE_RE = re.compile(r"(?:[-*+•]|\d{1,3}[.)])[ \t]+\S")

# ---- plain text -------------------------------------------------------------------------------
_SPACES_RE = re.compile(r"[ \t]{2,}")
_SPACES_ONLY_RE = re.compile(r"  +")  # same as _SPACES_RE on text without tabs, ~6x faster (literal prefix)
_CENTER_RE = re.compile(r"</?center\s*>", re.I)
_LINE_TAG_RE = re.compile(r"<(?:br\s*/?|/(?:tr|p|div|li|h[1-6]|caption)\s*|(?:tr|li|p)\b[^<>]*)>", re.I)
_CELL_END_RE = re.compile(r"</t[dh]\s*>", re.I)
_TAG_RE = re.compile(r"</?[A-Za-z!][^<>]*>")
_HEADING_RE = re.compile(r"^[ \t]*#{1,6}[ \t]+", re.M)
_BULLET_RE = re.compile(r"^[ \t]*[-*+•][ \t]+", re.M)
_LATEX_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_LATEX_CMD_RE = re.compile(r"\\([A-Za-z]+|.)", re.S)
_LATEX_SYMBOLS: dict[str, str] = {
    **{
        g: chr(c)
        for g, c in (
            ("alpha", 0x3B1),
            ("beta", 0x3B2),
            ("gamma", 0x3B3),
            ("delta", 0x3B4),
            ("epsilon", 0x3B5),
            ("varepsilon", 0x3B5),
            ("zeta", 0x3B6),
            ("eta", 0x3B7),
            ("theta", 0x3B8),
            ("vartheta", 0x3D1),
            ("iota", 0x3B9),
            ("kappa", 0x3BA),
            ("lambda", 0x3BB),
            ("mu", 0x3BC),
            ("nu", 0x3BD),
            ("xi", 0x3BE),
            ("pi", 0x3C0),
            ("rho", 0x3C1),
            ("sigma", 0x3C3),
            ("tau", 0x3C4),
            ("upsilon", 0x3C5),
            ("phi", 0x3C6),
            ("varphi", 0x3C6),
            ("chi", 0x3C7),
            ("psi", 0x3C8),
            ("omega", 0x3C9),
            ("Gamma", 0x393),
            ("Delta", 0x394),
            ("Theta", 0x398),
            ("Lambda", 0x39B),
            ("Xi", 0x39E),
            ("Pi", 0x3A0),
            ("Sigma", 0x3A3),
            ("Phi", 0x3A6),
            ("Psi", 0x3A8),
            ("Omega", 0x3A9),
        )
    },
    "rightarrow": "→",
    "to": "→",
    "leftarrow": "←",
    "Rightarrow": "⇒",
    "Leftarrow": "⇐",
    "leftrightarrow": "↔",
    "cdot": "·",
    "times": "×",
    "div": "÷",
    "pm": "±",
    "mp": "∓",
    "leq": "≤",
    "le": "≤",
    "geq": "≥",
    "ge": "≥",
    "neq": "≠",
    "ne": "≠",
    "approx": "≈",
    "sim": "~",
    "equiv": "≡",
    "infty": "∞",
    "in": "∈",
    "notin": "∉",
    "subset": "⊂",
    "subseteq": "⊆",
    "cup": "∪",
    "cap": "∩",
    "sum": "∑",
    "prod": "∏",
    "int": "∫",
    "partial": "∂",
    "nabla": "∇",
    "sqrt": "√",
    "circ": "°",
    "degree": "°",
    "prime": "′",
    "ldots": "…",
    "cdots": "…",
    "dots": "…",
    "forall": "∀",
    "exists": "∃",
}
# Spacing, sizing and font commands: they carry no searchable text.
_LATEX_BLANK = frozenset(
    {
        "quad",
        "qquad",
        "left",
        "right",
        "big",
        "Big",
        "bigg",
        "Bigg",
        "bigl",
        "bigr",
        "Bigl",
        "Bigr",
        "biggl",
        "biggr",
        "displaystyle",
        "textstyle",
        "scriptstyle",
        "hline",
        "nonumber",
        "limits",
        "nolimits",
        "begin",
        "end",
        "hspace",
        "vspace",
        "text",
        "textrm",
        "textbf",
        "textit",
        "mathrm",
        "mathbf",
        "mathit",
        "mathbb",
        "mathcal",
        "mathsf",
        "mathtt",
        "mathfrak",
        "operatorname",
        "boldsymbol",
        "bm",
        "mbox",
        "emph",
        "underline",
        "overline",
        "hat",
        "bar",
        "vec",
        "dot",
        "ddot",
        "tilde",
        "widehat",
        "widetilde",
        "frac",
        "dfrac",
        "tfrac",
    }
)

# ---- repetition -------------------------------------------------------------------------------
_LOOP_MIN_CHARS = 200  # shorter contents cannot hold a loop worth cutting
_LOOP_TAIL_CHARS = 2048  # the tail window the cheap precheck and the n-gram score look at
_LOOP_PROBE = 12  # precheck: a 12-char slice near the end that recurs >= 3 times in the tail
_LOOP_PROBE_MIN = 3
_NGRAM = 4
_NGRAM_WINDOW = 256  # tokens
_LOOP_SCORE = 0.5  # fraction of repeated 4-grams in the window that suggests a loop
_LOOP_MIN_RUN = 40  # repeated 4-grams the loop must span (the same line 20 times, 1000s of \qquad)
_LOOP_MAX_GAP = 2 * _NGRAM  # fresh 4-grams tolerated inside a loop (a varying counter, a cut token)
_TOKEN_RE = re.compile(r"\\[A-Za-z]+|\w+|[^\w\s]")
_PUNCT_RE = re.compile(r"[^\w\s]+")
_TABLE_ROW_LOOP_MIN = 8  # identical consecutive rows at the end of an unclosed table
_BLOCK_LOOP_MIN = 8  # identical consecutive blocks
_RAW = attrgetter("raw")

# ---- tables -----------------------------------------------------------------------------------
# Splits a table into [before, tag, attrs, body, tag, attrs, body, ...] at every <tr>/<td>/<th>.
_TABLE_SPLIT_RE = re.compile(r"<(tr|t[dh])\b([^>]*)>")
_ROWSPAN_RE = re.compile(r"rowspan\s*=\s*[\"']?\s*(\d{1,5})", re.I)
_COLSPAN_RE = re.compile(r"colspan\s*=\s*[\"']?\s*(\d{1,5})", re.I)
_MAX_COLSPAN = 1000  # the HTML limit
_MAX_SPAN_AREA = 1 << 16  # rowspan x colspan of one cell, so a garbage span cannot stall the grid

_BoxT = tuple[int, int, int, int]


# ================================================================================================
# public API
# ================================================================================================


def parse_page(
    raw: str,
    page_no: int = 1,
    width: int | None = None,
    height: int | None = None,
    finish_reason: str | None = None,
) -> ParsedPage:
    """Parse one page of raw DeepSeek-OCR text into a :class:`ParsedPage`.

    :param raw: the model's text for one page, special tokens kept (``<|ref|>``, ``<|det|>``).
    :param page_no: 1-based page number recorded on the page.
    :param width: width in pixels of the page image the model saw. With ``height`` it fills
        :attr:`Block.bbox_px`; the model's own coordinates are always on the 0..999 grid of that
        image and stay in :attr:`Block.bbox`.
    :param height: height in pixels of that image.
    :param finish_reason: the engine's finish reason; ``"length"`` (stopped at the token limit)
        flags the page and its last block ``truncated``.

    Never raises on malformed model output: problems become flags (``FLAG_*``).
    """
    truncated = finish_reason == "length"
    page_flags: set[str] = {FLAG_TRUNCATED} if truncated else set()
    if not raw or raw.isspace():
        return _finish([], page_no, width, height, page_flags)
    # Multi-character needles scan byte by byte; a one-character one first is a memchr (~20x faster).
    if "｜" in raw and "<｜" in raw:  # vLLM with skip_special_tokens=False leaves <｜end▁of▁sentence｜>
        raw = _FULLWIDTH_TOKEN_RE.sub("", raw)

    blocks: list[Block] = []
    # [lead, label, x0, y0, x1, y1, det, close, content, label, ...]: one C pass, no match objects.
    parts = _BLOCK_RE.split(raw)
    it = iter(parts)
    lead = next(it)
    if lead:
        lead = _clean_content(lead)
        if lead:
            lead_flags = [FLAG_NO_BOX]
            if len(lead) >= _LOOP_MIN_CHARS:  # untagged output (e.g. the free OCR prompt) loops too
                cut = _loop_cut(lead)
                if cut is not None:
                    lead = lead[:cut].rstrip()
                    lead_flags.append(FLAG_REPETITION_LOOP)
            blocks.append(Block(0, "", _content_kind("text", lead), None, None, lead, "", lead_flags))
    kinds = _KIND_BY_LABEL
    append = blocks.append
    for label, x0s, y0s, x1s, y1s, det, close, content in zip(it, it, it, it, it, it, it, it, strict=True):
        if "|" in content and "<|" in content:
            content = _STRAY_TOKEN_RE.sub("", content)
        content = content.strip()
        kind = kinds.get(label)
        if kind is None:
            label = label.strip()
            kind = kinds.get(label) or kinds.get(label.lower(), "other")
        if kind == "text" and content and content[0] in _REFINE_FIRST:
            kind = _content_kind(kind, content)
        flags: list[str] = []
        if x0s is not None:  # fast path: one well-formed box
            try:
                x0, y0, x1, y1 = _INT[x0s], _INT[y0s], _INT[x1s], _INT[y1s]
            except KeyError:  # \d also matches non-ASCII digits (fullwidth "１"), which int() reads
                x0, y0, x1, y1 = int(x0s), int(y0s), int(x1s), int(y1s)
            if x0 < x1 <= GRID and y0 < y1 <= GRID:
                bbox: _BoxT | None = (x0, y0, x1, y1)
            else:
                bbox = None
                flags.append(FLAG_BAD_BBOX)
            extra: list[_BoxT] = []
        else:
            bbox = None
            extra = []
            if det is None:
                flags.append(FLAG_NO_BOX)
            else:
                closed = close is not None
                if not closed:
                    flags.append(FLAG_UNCLOSED_DET)
                boxes, bad = _parse_boxes(det)
                if bad or (closed and not boxes):
                    flags.append(FLAG_BAD_BBOX)
                if boxes:
                    bbox = boxes[0]
                    extra = boxes[1:]
        if len(content) >= _LOOP_MIN_CHARS and not (kind == "table" and content.endswith("</table>")):
            cut = _loop_cut(content)
            if cut is not None:
                content = content[:cut].rstrip()
                flags.append(FLAG_REPETITION_LOOP)
        append(Block(0, label, kind, bbox, None, content, "", flags, extra))

    if truncated and blocks:
        blocks[-1].flags.append(FLAG_TRUNCATED)
    return _finish(blocks, page_no, width, height, page_flags)


def parse_document(
    raw: str,
    first_page_no: int = 1,
    width: int | None = None,
    height: int | None = None,
    finish_reason: str | None = None,
) -> list[ParsedPage]:
    """Split raw text on ``<--- Page Split --->`` lines and parse each page.

    Pages are numbered from ``first_page_no``. ``width``/``height`` (pixels of the page images the
    model saw; boxes themselves are on the 0..999 grid) apply to every page. ``finish_reason``
    applies to the last page only (a run that hit the token limit cut its last page). Empty input
    gives one empty page.
    """
    parts = _PAGE_SPLIT_RE.split(raw) if "<--- Page Split --->" in raw else [raw]
    last = len(parts) - 1
    return [
        parse_page(part, first_page_no + i, width, height, finish_reason if i == last else None)
        for i, part in enumerate(parts)
    ]


def parse_structured(
    blocks: Sequence[dict[str, Any]],
    page_no: int,
    width: int | None,
    height: int | None,
) -> ParsedPage:
    """Build a :class:`ParsedPage` from blocks an engine produced directly (RapidOCR, PDF text).

    Each dict has ``label`` (str), ``bbox`` (``[x0, y0, x1, y1]`` on the 0..999 grid of the page
    image, or None) and ``text``. Labels map to kinds as for DeepSeek output; a ``table`` block
    whose text is HTML yields a :class:`Table`. Off-grid or empty boxes are dropped and flagged
    ``bad_bbox``; a missing box is flagged ``no_box``. A dict may carry ``flags`` (engine flags
    such as ``tables_skipped``; others are ignored). Never raises on bad entries.
    """
    out: list[Block] = []
    for d in blocks:
        if not isinstance(d, dict):
            continue
        label_v = d.get("label")
        label = label_v.strip() if isinstance(label_v, str) and label_v.strip() else "text"
        text_v = d.get("text")
        content = _clean_content(
            text_v if isinstance(text_v, str) else ("" if text_v is None else str(text_v))
        )
        flags_v = d.get("flags")
        flags: list[str] = [f for f in flags_v if f in _ENGINE_FLAGS] if isinstance(flags_v, list) else []
        bbox_v = d.get("bbox")
        box = None
        if bbox_v is None:
            flags.append(FLAG_NO_BOX)
        else:
            box = _coerce_box(bbox_v)
            if box is None:
                flags.append(FLAG_BAD_BBOX)
        kind = _KIND_BY_LABEL.get(label) or _KIND_BY_LABEL.get(label.lower(), "other")
        if kind == "text" and content:
            kind = _content_kind(kind, content)
        out.append(Block(0, label, kind, box, None, content, "", flags))
    return _finish(out, page_no, width, height, set())


def page_to_markdown(page: ParsedPage) -> str:
    """Clean markdown of one page: block contents in reading order, separated by blank lines.

    No ref/det tags; headings as the model wrote them; tables as HTML; formulas as LaTeX;
    ``<center>`` wrappers removed. A display formula or table left open (loop cut, token limit)
    is closed so the rest of a document still renders. Blocks without content (an ``image``)
    write nothing.
    """
    return "\n\n".join([md for md in map(_block_markdown, page.blocks) if md])


def document_markdown(pages: Iterable[ParsedPage]) -> str:
    """Markdown of a whole document: each page preceded by a ``<!-- page N -->`` line.

    Pages are separated by a blank line before and after the marker, e.g.
    ``<!-- page 1 -->\\n\\n...page 1...\\n\\n<!-- page 2 -->\\n\\n...page 2...``. An empty page
    contributes its marker only.
    """
    out: list[str] = []
    for p in pages:
        out.append(PAGE_BREAK.format(page_no=p.page_no))
        if p.markdown:
            out.append(p.markdown)
    return "\n\n".join(out)


# ================================================================================================
# internals
# ================================================================================================


def _clean_content(s: str) -> str:
    """Strip a block's content and remove stray special tokens."""
    if ("|" in s and "<|" in s) or ("｜" in s and "<｜" in s):
        s = _STRAY_TOKEN_RE.sub("", s)
    return s.strip()


def _content_kind(kind: str, content: str) -> str:
    """Refine a ``text`` block by its content: a markdown heading, a list line, an HTML table."""
    c0 = content[0]
    if c0 == "#":
        if _HEADING_LINE_RE.match(content):
            return "heading"
    elif c0 in "-*+•" or c0.isdigit():
        if _LIST_LINE_RE.match(content):
            return "list_item"
    elif c0 == "<" and content.startswith("<table"):
        return "table"
    return kind


def _parse_boxes(det: str) -> tuple[list[_BoxT], bool]:
    """Boxes in a coordinate list (possibly unclosed or looping). Returns (valid boxes, any bad).

    Valid boxes are on the 0..999 grid with x0 < x1 and y0 < y1; duplicates are dropped and at
    most ``_MAX_BOXES`` are kept (a looping list can hold thousands).
    """
    boxes: list[_BoxT] = []
    bad = False
    seen: set[_BoxT] = set()
    for k, q in enumerate(_QUAD_RE.finditer(det)):
        if k >= _MAX_QUADS_SCANNED or len(boxes) >= _MAX_BOXES:
            break
        box = (int(q.group(1)), int(q.group(2)), int(q.group(3)), int(q.group(4)))
        if 0 <= box[0] < box[2] <= GRID and 0 <= box[1] < box[3] <= GRID:
            if box not in seen:
                seen.add(box)
                boxes.append(box)
        else:
            bad = True
    return boxes, bad


def _coerce_box(v: Any) -> _BoxT | None:
    """A structured engine's box as ints on the grid, or None if it is not a valid grid box."""
    if not isinstance(v, list | tuple) or len(v) != 4:
        return None
    try:
        x0, y0, x1, y1 = (int(round(float(c))) for c in v)
    except (TypeError, ValueError, OverflowError):
        return None
    if 0 <= x0 < x1 <= GRID and 0 <= y0 < y1 <= GRID:
        return (x0, y0, x1, y1)
    return None


@lru_cache(maxsize=64)
def _scale(pixels: int) -> tuple[float, ...]:
    """Grid value -> pixels for an image side of ``pixels``: ``round(v * pixels / 999, 2)``."""
    return tuple(round(v * pixels / GRID, 2) for v in range(GRID + 1))


# ---- repetition -------------------------------------------------------------------------------


def _loop_cut(s: str) -> int | None:
    """Where a repetition loop at the end of ``s`` starts, or None if there is none.

    Cheap precheck first (a short slice near the end recurring in the tail, C-speed
    ``str.count``); only then the n-gram repetition score of the tail window (fraction of token
    4-grams already seen in the window); only then a full token scan to find where the run of
    repeated 4-grams reaching the end begins. The returned offset keeps the good prefix and one
    copy of the repeated unit.
    """
    n = len(s)
    tail = s[-_LOOP_TAIL_CHARS:] if n > _LOOP_TAIL_CHARS else s
    t = len(tail)
    p = _LOOP_PROBE
    for off in (0, p, 3 * p):
        if t - off - p < 0:
            return None
        if tail.count(tail[t - off - p : t - off]) >= _LOOP_PROBE_MIN:
            break
    else:
        return None
    if "<" in tail:
        tail = _TAG_RE.sub(" ", tail)
    toks = _TOKEN_RE.findall(tail)[-_NGRAM_WINDOW:]
    if len(toks) < _LOOP_MIN_RUN:
        return None
    grams = list(zip(toks, toks[1:], toks[2:], toks[3:], strict=False))
    if 1.0 - len(set(grams)) / len(grams) < _LOOP_SCORE:
        return None
    return _loop_start(s)


def _loop_start(s: str) -> int | None:
    """Full scan of a suspected loop: start offset of the repeated run reaching the end, or None."""
    if "<" in s:
        # Tags count as blanks (so a table's own markup is not a "loop"); offsets stay intact.
        s = _TAG_RE.sub(lambda m: " " * len(m.group()), s)
    starts: list[int] = []
    toks: list[str] = []
    for m in _TOKEN_RE.finditer(s):
        starts.append(m.start())
        toks.append(m.group())
    ng = len(toks) - _NGRAM + 1
    if ng < _LOOP_MIN_RUN:
        return None
    seen: set[tuple[str, ...]] = set()
    rep = bytearray(ng)
    punct = _PUNCT_RE.fullmatch
    for i in range(ng):
        g = (toks[i], toks[i + 1], toks[i + 2], toks[i + 3])
        if g in seen:
            # Repeated punctuation alone (dot leaders, rules) is layout, not a loop.
            if not (punct(g[0]) and punct(g[1]) and punct(g[2]) and punct(g[3])):
                rep[i] = 1
        else:
            seen.add(g)
    start = -1
    count = 0
    gap = 0
    for i in range(ng - 1, -1, -1):
        if rep[i]:
            start = i
            count += 1
            gap = 0
        else:
            gap += 1
            if gap > _LOOP_MAX_GAP:
                break
    if start < 0 or count < _LOOP_MIN_RUN:
        return None
    cut = starts[start]
    # The loop's phase is ambiguous by up to n-1 tokens; prefer cutting at a line break.
    ahead = s[cut : starts[min(start + _NGRAM - 1, len(starts) - 1)]]
    nl = ahead.find("\n")
    return cut + nl if nl >= 0 else cut


def _table_row_loop_cut(content: str) -> int | None:
    """An unclosed table ending in many identical rows (the model looping on a row): cut offset."""
    t0 = content.rfind("<table")
    if t0 < 0 or "</table>" in content[t0:]:
        return None
    rows = content[t0:].split("<tr")
    if len(rows) < _TABLE_ROW_LOOP_MIN + 2:
        return None
    # The last chunk may be cut mid-row; compare the complete ones before it.
    last = len(rows) - 2
    unit = rows[last]
    i = last
    while i > 1 and rows[i - 1] == unit:
        i -= 1
    if last - i + 1 < _TABLE_ROW_LOOP_MIN:
        return None
    # Keep everything up to and including the first copy of the repeated row.
    return t0 + sum(len(r) for r in rows[: i + 1]) + 3 * i  # 3 = len('<tr')


# ---- plain text -------------------------------------------------------------------------------


def _plain(s: str, kind: str) -> str:
    """Searchable plain text: no HTML tags, no LaTeX markup, entities decoded, no heading hashes.

    Runs of spaces collapse to one, empty lines are dropped and the whole text is stripped
    (a line keeps a single leading or trailing space where the raw line had some).
    """
    if not s:
        return s
    multiline = "\n" in s
    if not multiline and "<" not in s and "\\" not in s and "&" not in s and "\t" not in s:
        # One plain line (most blocks): only heading hashes / a list bullet / double spaces. On one
        # line the re.M patterns can only match at 0, so match + slice is their sub.
        c0 = s[0]
        if c0 == "#" and kind != "table":
            m = _HEADING_RE.match(s)
            if m:
                s = s[m.end() :]
        elif kind == "list_item":
            m = _BULLET_RE.match(s)
            if m:
                s = s[m.end() :]
        if "  " in s:
            s = _SPACES_ONLY_RE.sub(" ", s)
        return s.strip()
    if "<" in s:
        s = _LINE_TAG_RE.sub("\n", s)
        s = _CELL_END_RE.sub(" ", s)
        s = _TAG_RE.sub("", s)
    if "\\" in s:
        s = _latex_plain(s)
    if "&" in s:
        s = html.unescape(s)
    if "#" in s and kind != "table" and _some_line_starts_with(s, "#"):
        s = _HEADING_RE.sub("", s)
    if kind == "list_item":
        s = _BULLET_RE.sub("", s)
    if "\t" in s:
        s = s.replace("\t", " ")
    if "  " in s:
        s = _SPACES_ONLY_RE.sub(" ", s)
    if "\n" in s:
        return "\n".join([line for line in s.split("\n") if line and not line.isspace()]).strip()
    return s.strip()


def _some_line_starts_with(s: str, ch: str) -> bool:
    """Whether a line of ``s`` starts with ``ch`` after optional spaces and tabs.

    A cheap exact precheck for the ``^[ \\t]*CH`` regexes (``re.M`` patterns have no literal prefix,
    so the regex engine tries every position of a long text).
    """
    prev = -1
    i = s.find(ch)
    while i >= 0:
        # Look back for the line start only as far as the previous ``ch``: linear in len(s).
        k = s.rfind("\n", prev + 1, i)
        if (k >= 0 or prev < 0) and not s[k + 1 : i].strip(" \t"):
            return True
        prev = i
        i = s.find(ch, i + 1)
    return False


def _latex_plain(t: str) -> str:
    """LaTeX -> searchable text in one pass over the whole string.

    Delimiters ``\\( \\) \\[ \\]`` and spacing/font/wrapper commands become spaces, symbols become
    Unicode (``\\delta`` -> δ, ``\\rightarrow`` -> →), other commands keep their name, braces go.
    """
    if "frac" in t:
        t = _LATEX_FRAC_RE.sub(_frac_plain, t)
    # [text, name, text, name, ...]: the replacements by dict lookup, no callback per command.
    parts = _LATEX_CMD_RE.split(t)
    repl = _LATEX_REPL
    for i in range(1, len(parts), 2):  # in place: cheaper than a comprehension and a slice assignment
        n = parts[i]
        parts[i] = repl[n] if n in repl else _latex_cmd(n)
    t = "".join(parts)
    if "{" in t:
        t = t.replace("{", "")
    if "}" in t:
        t = t.replace("}", "")
    return t


def _frac_plain(m: re.Match[str]) -> str:
    return f"{m.group(1)}/{m.group(2)}"


def _latex_cmd(name: str) -> str:
    """The plain-text replacement of the LaTeX command ``\\name`` (``name`` may be one character)."""
    sym = _LATEX_SYMBOLS.get(name)
    if sym is not None:
        return sym
    if len(name) == 1 and not name.isalpha():  # \% \& \_ \, \; \\ ...
        return name if name in "%&_$#|" else ("" if name in ")]" else " ")
    return " " if name in _LATEX_BLANK else name


# Replacements of the common commands, precomputed (the rest go through _latex_cmd).
_LATEX_REPL: dict[str, str] = {
    n: _latex_cmd(n) for n in (*_LATEX_SYMBOLS, *_LATEX_BLANK, *"()[]{},;:!%&_$#| \\\n")
}


# ---- tables -----------------------------------------------------------------------------------


def _parse_tables(content: str) -> list[tuple[int, int, list[TableCell], str]]:
    """Every ``<table>`` in a block's content as (n_rows, n_cols, cells, row lines)."""
    out: list[tuple[int, int, list[TableCell], str]] = []
    start = content.find("<table")
    while start >= 0:
        end = content.find("</table>", start)
        out.append(_parse_table(content[start : end if end >= 0 else len(content)]))
        if end < 0:
            break
        start = content.find("<table", end)
    return out


def _parse_table(seg: str) -> tuple[int, int, list[TableCell], str]:
    """One HTML table -> cells on their true grid positions (an occupancy grid for spans).

    A cell covered by another's rowspan/colspan is not invented; each real cell lands on the
    first column of its row not yet taken by a span from above. ``<th>`` cells and cells inside
    ``<thead>`` are headers. LaTeX in cells is kept. Works on truncated tables (no closing tags).
    The fourth item is the table's text before :func:`_table_plain`: a line per row, the row's
    non-empty cell texts joined by spaces.
    """
    parts = _TABLE_SPLIT_RE.split(seg)
    if len(parts) < 4:
        return 0, 0, [], ""
    # parts = [before, tag, attrs, body, tag, attrs, body, ...]; a body ends at its first "</t".
    tags = parts[1::3]
    bodies = [b.partition("</t")[0] for b in parts[3::3]]
    joined = "\0".join(bodies)
    if "<" in joined or "&" in joined or "\n" in joined or "  " in joined:
        texts = [
            _cell_text(b) if "<" in b or "&" in b or "\n" in b or "  " in b else b.strip() for b in bodies
        ]
    else:
        texts = [b.strip() for b in bodies]
    implicit = tags[0] != "tr"  # cells before any <tr>: one implicit row
    head_rows = seg.count("<tr", 0, seg.find("</thead")) if "<thead" in seg else 0
    cells: list[TableCell] = []
    append = cells.append
    lines: list[str] = []  # the plain text: a row's non-empty cell texts per line
    row: list[str] = []
    r = 0 if implicit else -1
    c = 0
    n_cols = 0
    n_rows = 0  # rows reached by rowspans
    if head_rows == 0 and "span" not in seg:  # the common case: a plain grid
        for tag, text in zip(tags, texts, strict=True):
            if tag == "tr":
                if c > n_cols:
                    n_cols = c
                r += 1
                c = 0
                if row:
                    lines.append(" ".join(row))
                    row = []
            else:
                append(TableCell(r, c, 1, 1, tag == "th", text))
                c += 1
                if text:
                    row.append(text)
    else:
        n_decl = seg.count("<tr") + implicit  # rows that exist: rowspans are clipped to them
        occupied: list[set[int]] | None = None
        occ: set[int] | None = None
        in_head = implicit and head_rows > 0
        spans: dict[str, tuple[int | None, int]] = {}  # attrs -> (rowspan value, colspan)
        for tag, attrs, text in zip(tags, parts[2::3], texts, strict=True):
            if tag == "tr":
                if c > n_cols:
                    n_cols = c
                r += 1
                c = 0
                occ = occupied[r] if occupied is not None and r < n_decl else None
                in_head = r < head_rows
                if row:
                    lines.append(" ".join(row))
                    row = []
                continue
            if text:
                row.append(text)
            if occ:
                while c in occ:
                    c += 1
            if "span" not in attrs:
                append(TableCell(r, c, 1, 1, in_head or tag == "th", text))
                c += 1
                continue
            span = spans.get(attrs)
            if span is None:
                mr = _ROWSPAN_RE.search(attrs)
                mc = _COLSPAN_RE.search(attrs)
                span = spans[attrs] = (
                    int(mr.group(1)) if mr else None,
                    max(1, min(int(mc.group(1)), _MAX_COLSPAN)) if mc else 1,
                )
            v, cs = span
            rs = 1 if v is None else n_decl - r if v == 0 else max(1, min(v, n_decl - r))
            if rs * cs > _MAX_SPAN_AREA:
                rs = max(1, _MAX_SPAN_AREA // cs)
            if rs > 1:
                if occupied is None:
                    occupied = [set() for _ in range(n_decl)]
                for rr in range(r + 1, r + rs):
                    occupied[rr].update(range(c, c + cs))
                if r + rs > n_rows:
                    n_rows = r + rs
            append(TableCell(r, c, rs, cs, in_head or tag == "th", text))
            c += cs
    if c > n_cols:
        n_cols = c
    if cells and cells[-1].row >= n_rows:  # rows only grow: the last cell is on the last row
        n_rows = cells[-1].row + 1
    if row:
        lines.append(" ".join(row))
    return n_rows, n_cols, cells, "\n".join(lines)


def _table_plain(text: str) -> str:
    """A table's row lines -> searchable text: LaTeX dropped, spaces collapsed."""
    if "\\" in text:
        text = _latex_plain(text)
        if "  " in text:
            text = (_SPACES_RE if "\t" in text else _SPACES_ONLY_RE).sub(" ", text)
        text = text.strip()
    return text


def _cell_text(body: str) -> str:
    """A cell's text: inner tags removed (``<br>`` -> space), entities decoded, LaTeX kept."""
    if "<" in body:
        body = _TAG_RE.sub(" ", body)
    if "&" in body:
        body = html.unescape(body)
    return " ".join(body.split())  # the same as collapsing \\s+ runs and stripping


# ---- assembling a page ------------------------------------------------------------------------


def _attach_split_tables(blocks: list[Block]) -> None:
    """case04's shape: table det -> caption det -> caption text -> ``<table>``.

    The model wrote the table's HTML after the caption's text, so it lands in the caption's
    content and the table block is empty. Move the HTML to the table block and put the caption
    before the table, the order in which the text was written (and the caption sits above it).
    """
    i = 0
    n = len(blocks) - 1
    while i < n:
        t = blocks[i]
        if t.kind == "table" and not t.raw:
            c = blocks[i + 1]
            if c.kind == "caption" and c.label not in _NON_TABLE_CAPTIONS and "<table" in c.raw:
                k = c.raw.find("<table")
                t.raw = c.raw[k:]
                c.raw = c.raw[:k].rstrip()
                blocks[i], blocks[i + 1] = c, t
                i += 1
        i += 1


def _collapse_repeated_blocks(blocks: list[Block]) -> list[Block]:
    """Runs of >= 8 identical consecutive blocks (the model looping on whole blocks) -> one."""
    n = len(blocks)
    if n < _BLOCK_LOOP_MIN:
        return blocks
    # A run of 8 starts at some i with raw[i] == raw[i + 7]: one cheap pass (all in C) rules most
    # pages out. It also lets through equal empty raws, which the full pass below never joins.
    raws = list(map(_RAW, blocks))
    if not any(map(eq, raws, raws[_BLOCK_LOOP_MIN - 1 :])):
        return blocks
    out: list[Block] = []
    i = 0
    while i < n:
        b = blocks[i]
        j = i + 1
        if b.raw:
            while j < n and blocks[j].raw == b.raw and blocks[j].label == b.label:
                j += 1
        if j - i >= _BLOCK_LOOP_MIN:
            if FLAG_REPETITION_LOOP not in b.flags:
                b.flags.append(FLAG_REPETITION_LOOP)
            for dropped in blocks[i + 1 : j]:  # keep what the dropped copies said about the page
                for f in dropped.flags:
                    if f in PAGE_WIDE_FLAGS and f not in b.flags:
                        b.flags.append(f)
            out.append(b)
        else:
            out.extend(blocks[i:j])
        i = j
    return out


def _finish(
    blocks: list[Block], page_no: int, width: int | None, height: int | None, page_flags: set[str]
) -> ParsedPage:
    """Post-process blocks (split tables, block loops), then index, plain text, tables, markdown."""
    if blocks:
        _attach_split_tables(blocks)
        blocks = _collapse_repeated_blocks(blocks)
    xs = ys = None
    if width and height and width > 0 and height > 0:
        xs = _scale(int(width))
        ys = _scale(int(height))
    tables: list[Table] = []
    markdown: list[str] = []
    plain = _plain
    for i, b in enumerate(blocks):
        b.index = i
        kind = b.kind
        if kind == "table" and "<table" in b.raw:
            cut = _table_row_loop_cut(b.raw)
            if cut is not None:
                b.raw = b.raw[:cut]
                if FLAG_REPETITION_LOOP not in b.flags:
                    b.flags.append(FLAG_REPETITION_LOOP)
            parsed = _parse_tables(b.raw)
            for n_rows, n_cols, cells, _ in parsed:
                tables.append(Table(i, None, n_rows, n_cols, cells))
            raw = b.raw
            if len(parsed) == 1 and raw.startswith("<table") and raw.endswith("</table>"):
                b.text = _table_plain(parsed[0][3])
            else:
                b.text = plain(raw, kind)
        else:
            b.text = plain(b.raw, kind)
        bb = b.bbox
        if xs is not None and bb is not None:
            b.bbox_px = (xs[bb[0]], ys[bb[1]], xs[bb[2]], ys[bb[3]])  # type: ignore[index]
        if b.flags:
            for f in b.flags:
                if f in PAGE_WIDE_FLAGS:
                    page_flags.add(f)
        # page_to_markdown, inline. Without "<" or "\\[" _block_markdown returns raw unchanged (only
        # a table's loop cut can leave raw unstripped, and a table has "<").
        md = b.raw
        if md and ("<" in md or ("\\" in md and "\\[" in md)):
            md = _block_markdown(b)
        if md:
            markdown.append(md)
    if tables:
        _link_captions(blocks, tables)
    if not blocks:
        page_flags.add(FLAG_EMPTY_PAGE)
    return ParsedPage(page_no, blocks, tables, "\n\n".join(markdown), sorted(page_flags))


def _link_captions(blocks: list[Block], tables: list[Table]) -> None:
    """Link each table to the caption block right before it, else right after it (each caption once).

    Image captions are never linked. A caption that is empty (case02: content is one space)
    gives ``caption=None``.
    """
    n = len(blocks)
    used: set[int] = set()
    for step in (-1, 1):  # first the caption right before each table, then right after
        for t in tables:
            if t.caption is not None:
                continue
            j = t.block_index + step
            if 0 <= j < n and j not in used:
                b = blocks[j]
                if b.kind == "caption" and b.label not in _NON_TABLE_CAPTIONS and b.text:
                    t.caption = b.text
                    used.add(j)


def _block_markdown(b: Block) -> str:
    s = b.raw
    if not s:
        return ""
    if "center" in s:
        s = _CENTER_RE.sub("", s).strip()
    if "\\[" in s and s.count("\\[") > s.count("\\]"):
        s += "\n\\]"
    if "<table" in s and s.count("<table") > s.count("</table>"):
        s += "</table>"
    return s
