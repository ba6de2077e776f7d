"""Reading order of a page from its boxes alone (any engine: text layer lines, OCR lines).

:func:`reading_order` takes boxes on the 0..999 grid of the page and returns the order to read
them in and a column id per box. It is a recursive XY cut: a region is cut at vertical
whitespace (a gutter between columns) when there is one, else at horizontal whitespace (between
lines or sections), and each part is ordered the same way. So columns are read one after the
other, a full-width heading or table between two-column sections stays between them, and a
caption stays next to the figure or table it sits under or over in its column.

A vertical gap is not a gutter when the two sides are narrow and line up row by row (a form's
labels and values, a key/value list): those are read row by row.

Column ids: the index (left to right, from 0) of the gutter-separated part of its section the
box lies in; a box in a region that was never cut vertically has id 0.

Pure Python; the caller decides the granularity (lines or blocks).

Chosen by measurement (``testing.fidelity``'s two-column document, balance sheet and filing;
order similarity against the truth, time per page on the dev machine): this XY cut over the
text layer's lines 0.993 / 1.000 / 1.000 in 11-31 ms a page (the whole text-layer read);
``get_text(sort=True)`` (before) 0.506 on two columns; ``pymupdf4llm.to_markdown`` with
``pymupdf.layout`` (PyMuPDF 2's layout model) 1.000 / 0.995 / 0.981 but 0.9-2.1 s a page (and
it starts RapidOCR itself), far over the text path's budget of 20 pages/s.
"""

from __future__ import annotations

from collections.abc import Sequence

GRID = 999
MIN_GUTTER = 8  # grid units of whitespace needed between two columns
MIN_COLUMN_WIDTH = 200  # grid units: narrower sides that line up row by row are not columns

BoxT = Sequence[float]


def _gaps(idx: list[int], boxes: Sequence[BoxT], lo: int, hi: int, min_gap: float) -> list[list[int]]:
    """Split ``idx`` into groups separated by whitespace along axis (lo, hi) of at least ``min_gap``."""
    order = sorted(idx, key=lambda i: (boxes[i][lo], boxes[i][hi]))
    groups: list[list[int]] = []
    end = None
    for i in order:
        if end is None or boxes[i][lo] - end >= min_gap:
            groups.append([i])
            end = boxes[i][hi]
        else:
            groups[-1].append(i)
            end = max(end, boxes[i][hi])
    return groups


def _row_aligned(left: list[int], right: list[int], boxes: Sequence[BoxT]) -> bool:
    """Most boxes on the left have a box on the right at the same height (form rows)."""
    hits = 0
    for i in left:
        mid = (boxes[i][1] + boxes[i][3]) / 2
        hits += any(boxes[j][1] <= mid <= boxes[j][3] for j in right)
    return hits >= 0.6 * len(left)


def _is_gutter(parts: list[list[int]], boxes: Sequence[BoxT]) -> bool:
    for a, b in zip(parts, parts[1:], strict=False):
        wa = max(boxes[i][2] for i in a) - min(boxes[i][0] for i in a)
        wb = max(boxes[i][2] for i in b) - min(boxes[i][0] for i in b)
        if min(wa, wb) < MIN_COLUMN_WIDTH and _row_aligned(a, b, boxes) and _row_aligned(b, a, boxes):
            return False
    return True


def _has_columns(idx: list[int], boxes: Sequence[BoxT]) -> bool:
    parts = _gaps(idx, boxes, 0, 2, MIN_GUTTER)
    return len(parts) > 1 and _is_gutter(parts, boxes)


def _sections(rows: list[list[int]], boxes: Sequence[BoxT]) -> list[list[int]]:
    """Consecutive rows that share a gutter join one section (a two-column stretch); others stay alone.

    Without this, two columns set on the same leading cut into rows of one line from each column,
    read alternately.
    """
    out: list[list[int]] = []
    for row in rows:
        if out and _has_columns(out[-1] + row, boxes):
            out[-1] = out[-1] + row
        else:
            out.append(list(row))
    return out


def _cut(idx: list[int], boxes: Sequence[BoxT], order: list[int], cols: dict[int, int], col: int) -> None:
    if len(idx) == 1:
        order.append(idx[0])
        cols[idx[0]] = col
        return
    parts = _gaps(idx, boxes, 0, 2, MIN_GUTTER)
    if len(parts) > 1 and _is_gutter(parts, boxes):
        for k, part in enumerate(parts):
            _cut(part, boxes, order, cols, k)
        return
    rows = _gaps(idx, boxes, 1, 3, 0.0)
    if len(rows) > 1:
        for part in _sections(rows, boxes):
            _cut(part, boxes, order, cols, col)
        return
    # Neither cut: overlapping boxes, or side-by-side cells of one row. Top-down, left to right.
    for i in sorted(idx, key=lambda i: (boxes[i][1], boxes[i][0])):
        order.append(i)
        cols[i] = col


def reading_order(boxes: Sequence[BoxT]) -> tuple[list[int], list[int]]:
    """``(order, column_ids)``: the indices of ``boxes`` in reading order, and each box's column id.

    ``boxes`` are ``(x0, y0, x1, y1)`` on the 0..999 grid (any numbers work; the thresholds assume
    the grid). ``column_ids[i]`` belongs to ``boxes[i]``.
    """
    if not boxes:
        return [], []
    order: list[int] = []
    cols: dict[int, int] = {}
    _cut(list(range(len(boxes))), boxes, order, cols, 0)
    return order, [cols[i] for i in range(len(boxes))]
