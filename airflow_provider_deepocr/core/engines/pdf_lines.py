"""Lines of a text layer into blocks: words into a line, lines into a block (``pdf_text`` uses these).

- :func:`join_words` — a line's words joined by spaces, except between two CJK characters.
- :func:`join_lines` — a block's lines; a word hyphenated at a line end is joined.
- :func:`merge_lines` — units (line pieces with a box, label, text and height) in reading order
  with their column ids -> blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["join_lines", "join_words", "merge_lines"]

_HYPHENS = ("-", "\u00ad", "\u2010")


def _cjk(ch: str) -> bool:
    o = ord(ch)
    return 0x2E80 <= o <= 0x9FFF or 0xAC00 <= o <= 0xD7AF or 0xF900 <= o <= 0xFAFF or 0xFF00 <= o <= 0xFF60


def join_words(parts: Sequence[str]) -> str:
    """Words of one line joined by spaces, except between two CJK characters (no spaces there)."""
    out = ""
    for w in parts:
        if out and not (_cjk(out[-1]) and _cjk(w[0])):
            out += " "
        out += w
    return out


def join_lines(lines: Sequence[str]) -> str:
    """A block's lines: a word hyphenated at a line end is joined ("eir-" + "mod" -> "eirmod")."""
    out = ""
    for line in lines:
        if not out:
            out = line
        elif out[-1] in _HYPHENS and len(out) > 1 and out[-2].isalpha() and line[:1].islower():
            out = out[:-1] + line
        elif _cjk(out[-1]) and _cjk(line[0]):
            out += line
        else:
            out += "\n" + line
    return out


_JOINS_INTO = {"text": ("text", "table_caption", "figure_caption"), "title": ("title",)}


def merge_lines(units: list[dict[str, Any]], cols: list[int]) -> list[dict[str, Any]]:
    """Consecutive units of one column with compatible labels -> one block.

    A unit on the same row as the block's last line, to its right, continues that line (a label
    and its figures); one just below it, overlapping it across, starts the block's next line;
    either only in the same type size (a caption does not swallow the paragraph under it).
    """
    out: list[dict[str, Any]] = []
    lines: list[list[str]] = []
    last_line: list[int] = []
    last_h = 0.0
    prev_col = None
    for u, col in zip(units, cols, strict=True):
        box = u["box"]
        if out and col == prev_col and out[-1]["label"] in _JOINS_INTO.get(u["label"], ()):
            block = out[-1]
            mid = (box[1] + box[3]) / 2
            line_h = max(1, box[3] - box[1])
            same_row = last_line[1] <= mid <= last_line[3] and box[0] >= last_line[2]
            gap = box[1] - last_line[3]  # lines set tight overlap a little
            below = (
                mid > last_line[3] and -0.4 * line_h <= gap <= 0.8 * line_h + 2 and box[0] < block["bbox"][2]
            )
            same_size = abs(u["h"] - last_h) <= 0.15 * max(last_h, 1e-6)
            if same_size and (same_row or (below and box[2] > block["bbox"][0])):
                if same_row:
                    lines[-1][-1] += " " + u["text"]
                    last_line = [last_line[0], min(last_line[1], box[1]), box[2], max(last_line[3], box[3])]
                else:
                    lines[-1].append(u["text"])
                    last_line = list(box)
                bb = block["bbox"]
                block["bbox"] = [
                    min(bb[0], box[0]),
                    min(bb[1], box[1]),
                    max(bb[2], box[2]),
                    max(bb[3], box[3]),
                ]
                continue
        out.append({"label": u["label"], "bbox": list(box), "text": u["text"]})
        lines.append([u["text"]])
        last_line = list(box)
        last_h = u["h"]
        prev_col = col
    for block, texts in zip(out, lines, strict=True):
        block["text"] = join_lines(texts)
    return out
