"""Known truth for fidelity checks, and the metrics that compare a reading with it.

A :class:`TruthCase` is one file (PDF, PNG or TIFF bytes) with what each of its pages says: its
lines in reading order and its tables as rows of cell texts. Generators that make documents
return these; ``bench/fidelity.py`` and the reading-path tests score an engine's records against
them with the functions below (content, not counts).

Metrics (all in 0..1, 1 is perfect):

- :func:`word_f1` — bag-of-words F1 between the words read and the true words.
- :func:`order_similarity` — how well the order of the words read matches the true order
  (``difflib`` ratio over the word sequences).
- :func:`cell_accuracy` — share of true cells whose text is found at the same (row, column) of
  the best-matching table read from that page.
- :func:`tables_found` — how many true tables were read as a table whose cells match at least
  half of the true cells.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

Table = list[list[str]]
"""A table as rows of cell texts (a spanning cell repeats its text in every slot it covers)."""


@dataclass
class TruthPage:
    lines: list[str]
    """The page's text lines in reading order, tables' text included (row by row)."""
    tables: list[Table] = field(default_factory=list)
    rotation: int = 0
    """Degrees the page image was turned (clockwise) when made, for rotated-scan cases."""

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class TruthCase:
    name: str
    filename: str
    """A file name with the right extension (``.pdf``, ``.png``, ``.tif``)."""
    data: bytes
    pages: list[TruthPage]
    kind: str = "born-digital"
    """``born-digital`` (a text layer), ``scan`` (image only), or another label for reports."""


_PUNCT = re.compile(r"[^\w%$€£.,/-]+", re.UNICODE)


def normalise(text: str) -> str:
    """Casefolded NFKC text with punctuation other than number signs dropped and spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _PUNCT.sub(" ", text)
    # A trailing full stop or comma is sentence punctuation, not part of the word.
    words = [w.strip(".,") if not re.fullmatch(r"[\d.,]+", w) else w for w in text.split()]
    return " ".join(w for w in words if w)


def words(text: str) -> list[str]:
    return normalise(text).split()


def word_f1(read: str, truth: str) -> float:
    got, want = Counter(words(read)), Counter(words(truth))
    if not want and not got:
        return 1.0
    overlap = sum((got & want).values())
    if not overlap:
        return 0.0
    precision = overlap / sum(got.values())
    recall = overlap / sum(want.values())
    return 2 * precision * recall / (precision + recall)


def word_recall(read: str, truth: str) -> float:
    got, want = Counter(words(read)), Counter(words(truth))
    if not want:
        return 1.0
    return sum((got & want).values()) / sum(want.values())


def order_similarity(read: str, truth: str) -> float:
    a, b = words(read), words(truth)
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _cell_match(read: Table, truth: Table) -> float:
    cells = [(r, c, normalise(t)) for r, row in enumerate(truth) for c, t in enumerate(row)]
    if not cells:
        return 1.0
    hits = 0
    for r, c, want in cells:
        got = read[r][c] if r < len(read) and c < len(read[r]) else None
        hits += got is not None and normalise(got) == want
    return hits / len(cells)


def best_table(read: Sequence[Table], truth: Table) -> tuple[int | None, float]:
    """The index of the read table that matches ``truth`` best, and its cell accuracy."""
    best, score = None, 0.0
    for i, table in enumerate(read):
        s = _cell_match(table, truth)
        if best is None or s > score:
            best, score = i, s
    return best, score


def cell_accuracy(read: Sequence[Table], truth: Sequence[Table]) -> float:
    """Mean over true tables of the best read table's cell accuracy (1.0 when there are none)."""
    if not truth:
        return 1.0
    return sum(best_table(read, t)[1] for t in truth) / len(truth)


def tables_found(read: Sequence[Table], truth: Sequence[Table], floor: float = 0.5) -> int:
    return sum(1 for t in truth if best_table(read, t)[1] >= floor)
