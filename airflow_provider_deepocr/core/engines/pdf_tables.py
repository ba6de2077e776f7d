"""Tables on a born-digital page, found from the geometry of its words and ruling lines.

Input: the page's words (boxes in points on the page as displayed, text) and its ruling lines
(horizontal and vertical segments from the page's vector drawings). Output: :class:`FoundTable`
s with cells on their grid positions (row, column, spans, header flag, box, text) and the
indices of the words they consumed, so the caller does not also emit those words as loose
text lines.

How (measured against PyMuPDF's ``Page.find_tables``, see ``bench/fidelity.py``: that one costs
~0.2-0.4 s a page even on pages without a table and glued words together on the project's
balance sheet; this costs ~1-3 ms a page):

1. Words are grouped into text rows (vertical overlap) and each row is cut into segments at
   wide gaps (more than :data:`GAP_RATIO` times the row's height) and at vertical rules.
2. A table is a run of rows close to each other in which at least :data:`MIN_ROWS` rows have
   two or more segments; single-segment rows inside the run (section labels such as "ASSETS")
   are rows of the table. Prose in two columns also gives two-segment rows: a run whose
   segments are long (median over :data:`MAX_MEDIAN_CELL` characters) is not a table.
3. Columns are the connected x-ranges of the segments of the multi-segment rows; each segment
   lands in the column(s) it overlaps (a segment over several columns gets a colspan).
4. Ruled tables: text rows that lie between the same two horizontal rules form one table row
   (a cell whose text wraps). The first row is a header when it holds no figure but a year.

Pure functions over plain tuples; no PyMuPDF import here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

Box = tuple[float, float, float, float]
Word = tuple[float, float, float, float, str]

GAP_RATIO = 0.75  # a gap wider than this times the row height separates two cells
NUMBER_GAP_RATIO = 0.35  # two figures further apart than this times the row height are two cells
MIN_ROWS = 3  # rows with two or more cells needed to call a run of rows a table
MAX_MEDIAN_CELL = 30  # characters: longer median cells are prose columns, not a table
PROSE_LINE = 60  # characters: a one-cell row this long is prose, not a table row
ROW_GAP_RATIO = 2.2  # a vertical gap wider than this times the row height ends a table
_NUMBER = re.compile(r"^[(\-–−]?[$€£]?\s?\d[\d,.\s]*%?\)?$")
_YEAR = re.compile(r"^(19|20)\d\d$")


@dataclass
class FoundCell:
    row: int
    col: int
    rowspan: int
    colspan: int
    is_header: bool
    text: str
    bbox: Box


@dataclass
class FoundTable:
    bbox: Box
    n_rows: int
    n_cols: int
    cells: list[FoundCell] = field(default_factory=list)
    words: set[int] = field(default_factory=set)
    """Indices (into the input word list) of the words inside the table."""


@dataclass
class _Seg:
    x0: float
    y0: float
    x1: float
    y1: float
    words: list[int]
    text: str


def _union(boxes: list[Box]) -> Box:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def text_rows(words: list[Word]) -> list[list[int]]:
    """Word indices grouped into rows by vertical overlap, each row left to right, rows top down."""
    order = sorted(range(len(words)), key=lambda i: (words[i][1] + words[i][3]) / 2)
    rows: list[list[int]] = []
    top = bottom = 0.0
    for i in order:
        x0, y0, x1, y1, _ = words[i]
        mid = (y0 + y1) / 2
        if rows and top <= mid <= bottom:
            rows[-1].append(i)
            continue
        rows.append([i])
        top, bottom = y0, y1
    for row in rows:
        row.sort(key=lambda i: words[i][0])
    return rows


def line_segments(row: list[int], words: list[Word], vrules: list[Box]) -> list[_Seg]:
    """One text row's words (indices, left to right) cut into cells at wide gaps and vertical rules.

    Two figures side by side are two cells even when closer than a wide gap.
    """
    """The words of one text row (indices, left to right) cut into cells at wide gaps and vertical rules."""
    height = max(words[i][3] - words[i][1] for i in row)
    gap_limit = GAP_RATIO * height
    segs: list[_Seg] = []
    for i in row:
        x0, y0, x1, y1, text = words[i]
        if segs:
            s = segs[-1]
            gap = x0 - s.x1
            ruled = any(s.x1 - 1 <= v[0] <= x0 + 1 and v[1] <= y1 and v[3] >= y0 for v in vrules)
            figures = gap > NUMBER_GAP_RATIO * height and _is_number(s.text) and _is_number(text)
            if gap <= gap_limit and not ruled and not figures:
                s.x1, s.y0, s.y1 = max(s.x1, x1), min(s.y0, y0), max(s.y1, y1)
                s.words.append(i)
                s.text += " " + text
                continue
        segs.append(_Seg(x0, y0, x1, y1, [i], text))
    return segs


def _columns(rows: list[list[_Seg]], width: float) -> list[tuple[float, float]]:
    """Connected x-ranges of the cells of the table's body rows.

    Body rows are those with the most common number of cells (two or more; on a tie the larger
    number): header rows whose cells span several columns ("Revenue" over two sub-columns) would
    otherwise bridge them. Cells wider than half the table are skipped.
    """
    counts: dict[int, int] = {}
    for segs in rows:
        if len(segs) > 1:
            counts[len(segs)] = counts.get(len(segs), 0) + 1
    if not counts:
        return []
    mode = max(counts, key=lambda n: (counts[n], n))
    spans = sorted(
        (s.x0, s.x1) for segs in rows if len(segs) >= mode for s in segs if s.x1 - s.x0 <= 0.5 * width
    )
    cols: list[list[float]] = []
    for x0, x1 in spans:
        if cols and x0 <= cols[-1][1]:
            cols[-1][1] = max(cols[-1][1], x1)
        else:
            cols.append([x0, x1])
    return [(a, b) for a, b in cols]


def _is_number(text: str) -> bool:
    return bool(_NUMBER.match(text.strip()))


def _looks_like_table(rows: list[list[_Seg]]) -> bool:
    multi = [segs for segs in rows if len(segs) > 1]
    if len(multi) < MIN_ROWS:
        return False
    lengths = sorted(len(s.text) for segs in multi for s in segs)
    return lengths[len(lengths) // 2] <= MAX_MEDIAN_CELL


def _runs(rows: list[list[_Seg]]) -> list[list[int]]:
    """Index runs of rows close enough to belong to one table, trimmed to start and end on multi-cell rows."""
    runs: list[list[int]] = []
    cur: list[int] = []
    for k, segs in enumerate(rows):
        if len(segs) == 1 and len(segs[0].text) > PROSE_LINE:  # a line of prose ends a table
            if cur:
                runs.append(cur)
                cur = []
            continue
        if cur:
            prev = rows[cur[-1]]
            height = max(s.y1 - s.y0 for s in prev)
            gap = min(s.y0 for s in segs) - max(s.y1 for s in prev)
            if gap > ROW_GAP_RATIO * height:
                runs.append(cur)
                cur = []
        cur.append(k)
    if cur:
        runs.append(cur)
    out = []
    for run in runs:
        multi = [k for k in run if len(rows[k]) > 1]
        if multi:
            out.append([k for k in run if multi[0] <= k <= multi[-1]])
    return out


def _row_rules(hrules: list[Box], bbox: Box, share: float = 0.5) -> list[float]:
    """Heights of horizontal rules across at least ``share`` of the table (drawn whole or cell by cell).

    Half the width: a rule under a header cell that spans most columns ("Literacy Status" over
    six of eight) separates header rows too.
    """
    width = bbox[2] - bbox[0]
    rules = sorted(
        (y, max(0.0, min(x1, bbox[2]) - max(x0, bbox[0])))
        for x0, y, x1, _ in hrules
        if bbox[1] - 20 <= y <= bbox[3] + 20
    )
    ys: list[float] = []
    cluster_y, covered = None, 0.0
    for y, length in [*rules, (float("inf"), 0.0)]:
        if cluster_y is not None and y - cluster_y <= 1.5:
            covered += length
            continue
        if cluster_y is not None and covered >= share * width:
            ys.append(cluster_y)
        cluster_y, covered = y, length
    return ys


def _ruled_above(segs: list[_Seg], hrules: list[Box], x0: float, x1: float) -> bool:
    """A rule just above this row spans half the table: the row is inside the table's frame."""
    top = min(s.y0 for s in segs)
    return any(top - 15 <= y <= top and min(b, x1) - max(a, x0) >= 0.5 * (x1 - x0) for a, y, b, _ in hrules)


def _build(rows: list[list[_Seg]], hrules: list[Box]) -> FoundTable | None:
    boxes = [(s.x0, s.y0, s.x1, s.y1) for segs in rows for s in segs]
    bbox = _union(boxes)
    cols = _columns(rows, bbox[2] - bbox[0])
    if len(cols) < 2:
        return None
    # Ruled rows: text rows between the same two horizontal rules (within the table) merge.
    ys = _row_rules(hrules, bbox)
    if len(ys) < 0.5 * len(rows):  # rules under the header or round the edge only: rows are text rows
        ys = []
    groups: list[list[list[_Seg]]] = []
    band_of_prev = None
    for segs in rows:
        mid = (min(s.y0 for s in segs) + max(s.y1 for s in segs)) / 2
        band = sum(1 for y in ys if y < mid) if len(ys) >= 2 else None
        if groups and band is not None and band == band_of_prev:
            groups[-1].append(segs)
        else:
            groups.append([segs])
        band_of_prev = band
    cells: list[FoundCell] = []
    table = FoundTable(bbox, len(groups), len(cols))
    for r, group in enumerate(groups):
        slots: dict[tuple[int, int], list[_Seg]] = {}
        for segs in group:
            for s in segs:
                hit = [c for c, (a, b) in enumerate(cols) if s.x0 < b and s.x1 > a]
                if not hit:  # in a gap between columns: the nearest one
                    centre = (s.x0 + s.x1) / 2
                    hit = [min(range(len(cols)), key=lambda c: abs((cols[c][0] + cols[c][1]) / 2 - centre))]
                slots.setdefault((hit[0], hit[-1]), []).append(s)
                table.words.update(s.words)
        taken: set[int] = set()
        for (c0, c1), segs in sorted(slots.items()):
            if c0 in taken:
                continue
            taken.update(range(c0, c1 + 1))
            box = _union([(s.x0, s.y0, s.x1, s.y1) for s in segs])
            cells.append(FoundCell(r, c0, 1, c1 - c0 + 1, False, " ".join(s.text for s in segs), box))
    first = [c for c in cells if c.row == 0]
    if len(groups) > 1 and not any(_is_number(c.text) and not _YEAR.match(c.text) for c in first):
        if any(_is_number(c.text) for c in cells if c.row > 0) or len(ys) >= 2:
            for c in first:
                c.is_header = True
    table.cells = cells
    return table


def find_tables(
    words: list[Word], vrules: list[Box] | None = None, hrules: list[Box] | None = None
) -> list[FoundTable]:
    """Tables among ``words`` (boxes in points, page as displayed); see the module docstring.

    ``vrules``/``hrules``: vertical and horizontal ruling segments as boxes (x0, y0, x1, y1).
    """
    if not words:
        return []
    vrules = vrules or []
    hrules = hrules or []
    rows = [line_segments(r, words, vrules) for r in text_rows(words)]
    found: list[FoundTable] = []
    for run in _runs(rows):
        x0 = min(s.x0 for k in run for s in rows[k])
        x1 = max(s.x1 for k in run for s in rows[k])
        while run[0] > 0:  # header rows of one cell inside the table's frame ("Literacy Status")
            prev = rows[run[0] - 1]
            if len(prev) != 1 or len(prev[0].text) > PROSE_LINE or not _ruled_above(prev, hrules, x0, x1):
                break
            run.insert(0, run[0] - 1)
        run_rows = [rows[k] for k in run]
        if not _looks_like_table(run_rows):
            continue
        table = _build(run_rows, hrules)
        if table is not None:
            found.append(table)
    return found


def table_html(table: FoundTable) -> str:
    """The table as HTML (the form DeepSeek writes tables in; the parser turns it into cells)."""
    from html import escape

    by_row: dict[int, list[FoundCell]] = {}
    for c in table.cells:
        by_row.setdefault(c.row, []).append(c)
    out = ["<table>"]
    for r in range(table.n_rows):
        out.append("<tr>")
        col = 0
        cells = sorted(by_row.get(r, []), key=lambda c: c.col)
        empty = "<th></th>" if cells and cells[0].is_header else "<td></td>"
        for c in cells:
            while col < c.col:  # empty slots keep later cells on their columns
                out.append(empty)
                col += 1
            tag = "th" if c.is_header else "td"
            span = f' colspan="{c.colspan}"' if c.colspan > 1 else ""
            out.append(f"<{tag}{span}>{escape(c.text, quote=False)}</{tag}>")
            col += c.colspan
        while col < table.n_cols:
            out.append(empty)
            col += 1
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)
