"""Ruled tables on scanned pages, on CPU, without a model (OpenCV line detection).

The ink of a page is opened with long thin kernels: what survives a horizontal kernel a
:data:`_LINE_FRACTION` of the page wide is a horizontal rule, likewise vertically. A connected
group of rules with at least two of each is a table; its row and column boundaries are the rules'
positions. Cells are the grid's slots, merged where the rule between two slots is missing (a
rowspan or colspan). The text comes from the OCR engine's lines: each line goes to the cell that
holds most of its box.

:func:`tables_from_lines` returns the table blocks (label ``table``, HTML text with
``rowspan``/``colspan``, the same records DeepSeek's tables become in core.parse) and the indices
of the lines they absorbed, which the caller drops from the loose text. Unruled tables (only
whitespace between columns) are not found here.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

_LINE_FRACTION = 30  # a rule is at least 1/30 of the page's width (height)
_MIN_CELL = 8  # pixels: rules closer than this are one rule
_GAP_FILL = 0.6  # share of a boundary that must be ruled for it to separate two slots

Box = Sequence[float]


@dataclass
class ScanTable:
    """A table found on a page: its pixel box, boundaries and cell texts."""

    box: tuple[int, int, int, int]
    rows: list[int]  # y of each horizontal rule, top to bottom
    cols: list[int]  # x of each vertical rule, left to right
    cells: list[tuple[int, int, int, int]] = field(default_factory=list)  # row, col, rowspan, colspan
    texts: dict[tuple[int, int], list[tuple[float, float, str]]] = field(default_factory=dict)

    def html(self) -> str:
        out = ["<table>"]
        for r in range(len(self.rows) - 1):
            out.append("<tr>")
            for row, col, rs, cs in self.cells:
                if row != r:
                    continue
                parts = sorted(self.texts.get((row, col), []))
                text = html.escape(" ".join(t for _, _, t in parts))
                span = (f' rowspan="{rs}"' if rs > 1 else "") + (f' colspan="{cs}"' if cs > 1 else "")
                out.append(f"<td{span}>{text}</td>")
            out.append("</tr>")
        out.append("</table>")
        return "".join(out)


def _positions(profile: Any, min_len: int) -> list[int]:
    """Centres of the runs of ``profile`` at or over ``min_len``, runs closer than _MIN_CELL merged."""
    idx = [i for i, v in enumerate(profile) if v >= min_len]
    groups: list[list[int]] = []
    for i in idx:
        if groups and i - groups[-1][-1] <= _MIN_CELL:
            groups[-1].append(i)
        else:
            groups.append([i])
    return [(g[0] + g[-1]) // 2 for g in groups]


def find_tables(gray: Any) -> list[ScanTable]:
    """Ruled tables in a grey page image (numpy, 0..255)."""
    import cv2
    import numpy as np

    _, ink = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV | cv2.THRESH_OTSU)
    h, w = ink.shape
    hk = cv2.getStructuringElement(cv2.MORPH_RECT, (max(10, w // _LINE_FRACTION), 1))
    vk = cv2.getStructuringElement(cv2.MORPH_RECT, (1, max(10, h // _LINE_FRACTION)))
    horiz = cv2.morphologyEx(ink, cv2.MORPH_OPEN, hk)
    vert = cv2.morphologyEx(ink, cv2.MORPH_OPEN, vk)
    grid = cv2.dilate(horiz | vert, np.ones((3, 3), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(grid, connectivity=8)
    tables = []
    for x, y, bw, bh, _a in stats[1:]:
        if bw < w // 10 or bh < _MIN_CELL * 2:
            continue
        hs = horiz[y : y + bh, x : x + bw] > 0
        vs = vert[y : y + bh, x : x + bw] > 0
        rows = _positions(hs.sum(axis=1), bw // 4)
        cols = _positions(vs.sum(axis=0), bh // 4)
        if len(rows) < 2 or len(cols) < 2:
            continue
        t = ScanTable(
            (int(x), int(y), int(x + bw), int(y + bh)), [y + r for r in rows], [x + c for c in cols]
        )
        t.cells = _cells(t, hs, vs, int(x), int(y))
        tables.append(t)
    return tables


def _ruled(mask: Any, fixed: int, lo: int, hi: int, along_rows: bool) -> bool:
    """Whether the rule at ``fixed`` (a row of ``mask`` if ``along_rows``, else a column) is drawn
    over most of ``lo..hi``."""
    band = slice(max(0, fixed - 2), fixed + 3)
    seg = mask[band, lo:hi] if along_rows else mask[lo:hi, band]
    if seg.size == 0:
        return False
    drawn = seg.any(axis=0 if along_rows else 1)
    return bool(drawn.mean() >= _GAP_FILL)


def _cells(t: ScanTable, hs: Any, vs: Any, ox: int, oy: int) -> list[tuple[int, int, int, int]]:
    """Grid slots merged into cells where the rule between them is missing."""
    n_r, n_c = len(t.rows) - 1, len(t.cols) - 1
    rows = [r - oy for r in t.rows]
    cols = [c - ox for c in t.cols]
    taken: set[tuple[int, int]] = set()
    cells = []
    for r in range(n_r):
        for c in range(n_c):
            if (r, c) in taken:
                continue
            cs = 1
            while c + cs < n_c and not _ruled(vs, cols[c + cs], rows[r], rows[r + 1], False):
                cs += 1
            rs = 1
            while r + rs < n_r and not _ruled(hs, rows[r + rs], cols[c], cols[c + cs], True):
                rs += 1
            for rr in range(r, r + rs):
                for cc in range(c, c + cs):
                    taken.add((rr, cc))
            cells.append((r, c, rs, cs))
    return cells


def _overlap(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def tables_from_lines(
    gray: Any, rects: Sequence[Box], texts: Sequence[str]
) -> tuple[list[tuple[ScanTable, Box]], set[int]]:
    """Tables of ``gray`` filled with the OCR lines (``rects`` in pixels, ``texts``); returns
    ``[(table, pixel box)]`` and the indices of the lines now inside a table."""
    used: set[int] = set()
    out: list[tuple[ScanTable, Box]] = []
    for t in find_tables(gray):
        slots = {(r, c): (t.cols[c], t.rows[r], t.cols[c + cs], t.rows[r + rs]) for r, c, rs, cs in t.cells}
        for i, (rect, text) in enumerate(zip(rects, texts, strict=True)):
            area = max(1.0, (rect[2] - rect[0]) * (rect[3] - rect[1]))
            best = max(slots, key=lambda k: _overlap(rect, slots[k]), default=None)
            if best is None or _overlap(rect, slots[best]) < 0.5 * area:
                continue
            t.texts.setdefault(best, []).append((rect[1], rect[0], text))
            used.add(i)
        out.append((t, t.box))
    return out, used
