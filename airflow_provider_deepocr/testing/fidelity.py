"""Documents with known truth for fidelity checks (``bench/fidelity.py``, the reading-path tests).

Every generator returns ``list[TruthCase]`` (see ``testing.truth``): the file's bytes and, per
page, its lines in reading order and its tables as rows of cell texts. Everything is drawn here
with PyMuPDF from fixed text, so the truth is exact and the bytes are the same on every run.

- :func:`born_digital_cases` — the project's balance sheet (ruled), a filing with an unruled and
  a ruled table, a table continued over two pages, two columns with figures, captions, running
  header and footer and hyphenated line ends, a table of contents with dot leaders, a short form,
  a one-word page, a CJK page.
- :func:`scan_cases` — pages of those rendered to noisy grey images (upright and turned by
  90/180/270 degrees) for the OCR path.
- :func:`real_cases` — the small public PDFs under ``tests/data/fidelity`` with their expected
  tables (see ``SOURCES.md`` there).
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path
from typing import Any

from airflow_provider_deepocr.testing import samples
from airflow_provider_deepocr.testing.truth import Table, TruthCase, TruthPage

A4 = (595.0, 842.0)
LEFT, RIGHT = 56.0, A4[0] - 56.0
_WORDS = (
    "revenue grew across every region while operating costs were held flat through careful "
    "procurement and the consolidation of two distribution centres into one automated facility "
    "management expects demand to remain resilient although currency movements and interest "
    "rates add uncertainty to the outlook for the coming financial year"
).split()
_LONG = ["internationalisation", "responsibilities", "infrastructure", "characteristically"]
DATA_DIR = Path(__file__).resolve().parents[2] / "tests" / "data" / "fidelity"


def _doc() -> Any:
    return samples._pymupdf().open()


def _save(doc: Any, title: str) -> bytes:
    return samples._pdf_bytes(doc, title)


def _prose(seed: int, n_words: int) -> list[str]:
    rng = random.Random(seed)
    words = [rng.choice(_WORDS) for _ in range(n_words)]
    for k in range(8, n_words, 23):  # long words, so some lines end hyphenated
        words[k] = _LONG[(seed + k) % len(_LONG)]
    words[0] = words[0].capitalize()
    return words


def _write_paragraph(
    page: Any, words: list[str], x: float, y: float, width: float, size: float = 9.5
) -> float:
    """Words set left-aligned in lines of ``width``; a long word that does not fit is hyphenated."""
    pymupdf = samples._pymupdf()
    length = pymupdf.get_text_length
    line = ""
    lines: list[str] = []
    for w in words:
        trial = f"{line} {w}" if line else w
        if length(trial, fontsize=size) <= width:
            line = trial
            continue
        if len(w) >= 10:
            for cut in range(len(w) - 4, 3, -1):
                head = f"{line} {w[:cut]}-" if line else f"{w[:cut]}-"
                if length(head, fontsize=size) <= width:
                    lines.append(head)
                    line = w[cut:]
                    break
            else:
                lines.append(line)
                line = w
        else:
            lines.append(line)
            line = w
    if line:
        lines.append(line)
    for text in lines:
        page.insert_text((x, y), text, fontsize=size)
        y += size * 1.35
    return y


def _table(page: Any, rows: Table, x_edges: list[float], y: float, ruled: bool, row_h: float = 16.0) -> float:
    """Rows of cells between ``x_edges``; the first column left-aligned, the others right-aligned."""
    pymupdf = samples._pymupdf()
    top = y - 12
    for r, row in enumerate(rows):
        font = "hebo" if r == 0 else "helv"
        for c, text in enumerate(row):
            if not text:
                continue
            if c == 0:
                x = x_edges[0] + 4
            else:
                x = x_edges[c + 1] - 4 - pymupdf.get_text_length(text, fontname=font, fontsize=9)
            page.insert_text((x, y), text, fontname=font, fontsize=9)
        if ruled:
            page.draw_line((x_edges[0], y + 5), (x_edges[-1], y + 5), width=0.4)
        y += row_h
    if ruled:
        page.draw_line((x_edges[0], top), (x_edges[-1], top), width=0.6)
        for x in x_edges:
            page.draw_line((x, top), (x, y - row_h + 5), width=0.4)
    return y


def _fmt(n: int) -> str:
    return f"{n:,}" if n >= 0 else f"({-n:,})"


def balance_sheet_case() -> TruthCase:
    """``testing.samples.make_financial_statement_pdf`` with its truth (45 figures, one ruled table)."""
    bs = samples.balance_sheet()
    rows: Table = [["", "2024", "2023"]]

    def row(label: str, a: int | None = None, b: int | None = None) -> None:
        rows.append([label, _fmt(a) if a is not None else "", _fmt(b) if b is not None else ""])

    row("ASSETS")
    row("Current assets")
    for r in samples.ASSETS_CURRENT:
        row(*r)
    row("Total current assets", *bs["total_current_assets"])
    row("Non-current assets")
    for r in samples.ASSETS_NONCURRENT:
        row(*r)
    row("Total non-current assets", *bs["total_non_current_assets"])
    row("TOTAL ASSETS", *bs["total_assets"])
    row("LIABILITIES AND EQUITY")
    row("Current liabilities")
    for r in samples.LIABILITIES_CURRENT:
        row(*r)
    row("Total current liabilities", *bs["total_current_liabilities"])
    row("Non-current liabilities")
    for r in samples.LIABILITIES_NONCURRENT:
        row(*r)
    row("Total non-current liabilities", *bs["total_non_current_liabilities"])
    row("Total liabilities", *bs["total_liabilities"])
    row("Equity")
    for r in bs["equity_rows"]:
        row(*r)
    row("Total equity", *bs["total_equity"])
    row("TOTAL LIABILITIES AND EQUITY", *bs["total_liabilities_and_equity"])
    head = [samples.COMPANY, "Consolidated Balance Sheet", "as at 31 December 2024 (in thousands of EUR)"]
    tail = ["The accompanying notes form an integral part of these financial statements.", "Page 1 of 2"]
    page1 = TruthPage([*head, *(" ".join(c for c in r if c) for r in rows), *tail], [rows])
    notes = [
        "Notes to the Consolidated Balance Sheet",
        "1. Basis of preparation",
        "The consolidated financial statements have been prepared in accordance with International "
        "Financial Reporting Standards as adopted by the European Union, on the historical cost basis "
        "except for certain financial instruments measured at fair value.",
        "2. Borrowings",
        "Short-term borrowings of EUR 15,000 thousand (2023: 18,500) are drawn under a revolving credit "
        "facility maturing in 2026. Long-term borrowings comprise a senior unsecured note with a fixed "
        "coupon of 4.25%.",
        "3. Events after the reporting period",
        "No events requiring adjustment of these financial statements occurred between the reporting "
        "date and the date of authorisation for issue.",
        "Page 2 of 2",
    ]
    data = samples.make_financial_statement_pdf()
    return TruthCase("balance_sheet", "balance_sheet.pdf", data, [page1, TruthPage(notes)])


def _income_rows(n: int, seed: int) -> Table:
    rng = random.Random(seed)
    items = ["Revenue", "Cost of sales", "Gross profit", "Distribution costs", "Administrative expenses",
             "Other income", "Operating profit", "Finance income", "Finance costs", "Share of associates",
             "Profit before tax", "Income tax", "Profit for the year", "Attributable to owners",
             "Non-controlling interests", "Basic EPS (cents)", "Diluted EPS (cents)"]  # fmt: skip
    rows = [["Line item", "2024", "2023", "Change %"]]
    for k in range(n):
        a, b = rng.randint(1_000, 90_000), rng.randint(1_000, 90_000)
        label = items[k % len(items)] + ("" if k < len(items) else f" {k // len(items) + 1}")
        rows.append([label, _fmt(a), _fmt(b), f"{(a - b) / b * 100:.1f}"])
    return rows


def filing_case() -> TruthCase:
    """An unruled income statement and a ruled segment table on one page, with prose around them."""
    doc = _doc()
    page = doc.new_page(width=A4[0], height=A4[1])
    lines: list[str] = []
    page.insert_text((LEFT, 70), "Annual Report 2024: Financial Review", fontname="hebo", fontsize=15)
    lines.append("Annual Report 2024: Financial Review")
    words = _prose(1, 60)
    y = _write_paragraph(page, words, LEFT, 100, RIGHT - LEFT)
    lines.append(" ".join(words))
    unruled = _income_rows(12, 2)
    y = _table(page, unruled, [LEFT, 300, 380, 460, RIGHT], y + 20, ruled=False)
    lines += [" ".join(c for c in r if c) for r in unruled]
    words2 = _prose(3, 40)
    y = _write_paragraph(page, words2, LEFT, y + 14, RIGHT - LEFT)
    lines.append(" ".join(words2))
    ruled: Table = [["Segment", "Units", "Revenue", "Margin %"]]
    rng = random.Random(4)
    for name in ("Industrial", "Consumer", "Healthcare", "Energy", "Services", "Other"):
        ruled.append(
            [name, f"{rng.randint(10, 999):,}", _fmt(rng.randint(1000, 50000)), f"{rng.uniform(2, 30):.1f}"]
        )
    _table(page, ruled, [LEFT, 260, 350, 450, RIGHT], y + 24, ruled=True, row_h=18)
    lines += [" ".join(c for c in r if c) for r in ruled]
    return TruthCase(
        "filing_tables", "filing_tables.pdf", _save(doc, "Filing"), [TruthPage(lines, [unruled, ruled])]
    )


def continued_table_case() -> TruthCase:
    """One table over two pages, its header row repeated on the second."""
    doc = _doc()
    rows = _income_rows(50, 5)
    pages: list[TruthPage] = []
    for part, (start, stop) in enumerate(((1, 36), (36, 51))):
        page = doc.new_page(width=A4[0], height=A4[1])
        title = "Schedule of results" + (" (continued)" if part else "")
        page.insert_text((LEFT, 70), title, fontname="hebo", fontsize=13)
        chunk = [rows[0], *rows[start:stop]]
        _table(page, chunk, [LEFT, 300, 380, 460, RIGHT], 110, ruled=part == 0)
        pages.append(TruthPage([title, *(" ".join(r) for r in chunk)], [chunk]))
    return TruthCase("continued_table", "continued_table.pdf", _save(doc, "Continued"), pages)


def two_column_case() -> TruthCase:
    """Two columns with a running header and footer, a figure and caption in each column at one height."""
    pymupdf = samples._pymupdf()
    doc = _doc()
    pages: list[TruthPage] = []
    col_w = (RIGHT - LEFT - 24) / 2
    xs = (LEFT, LEFT + col_w + 24)
    for p in range(2):
        page = doc.new_page(width=A4[0], height=A4[1])
        page.insert_text((LEFT, 30), "Northwind Quarterly Review", fontsize=8)
        lines = ["Northwind Quarterly Review"]
        if p == 0:
            page.insert_text((LEFT, 70), "Outlook and Operations", fontname="hebo", fontsize=16)
            lines.append("Outlook and Operations")
        for c, x in enumerate(xs):
            y = 100.0
            for k in range(2):
                words = _prose(10 + 4 * p + 2 * c + k, 70)
                y = _write_paragraph(page, words, x, y, col_w) + 8
                lines.append(" ".join(words))
            pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 40, 30), False)
            pix.clear_with(120 + 40 * c)
            page.insert_image(pymupdf.Rect(x, y, x + col_w, y + 90), pixmap=pix)
            caption = f"Figure {2 * p + c + 1}. Units shipped by quarter, region {c + 1}"
            page.insert_text((x, y + 104), caption, fontsize=8)
            lines.append(caption)
            words = _prose(30 + 4 * p + c, 50)
            _write_paragraph(page, words, x, y + 126, col_w)
            lines.append(" ".join(words))
        page.insert_text((A4[0] / 2 - 10, A4[1] - 30), f"- {p + 1} -", fontsize=8)
        lines.append(f"- {p + 1} -")
        pages.append(TruthPage(lines))
    return TruthCase("two_columns", "two_columns.pdf", _save(doc, "Two columns"), pages)


def toc_case() -> TruthCase:
    """A table of contents with dot leaders (mostly dots: under half letters or digits)."""
    pymupdf = samples._pymupdf()
    doc = _doc()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((LEFT, 70), "Contents", fontname="hebo", fontsize=14)
    lines = ["Contents"]
    entries = ["Chair", "Review", "Risks", "Board", "Pay", "Audit", "Notes", "Glossary"]
    y = 110.0
    for k, name in enumerate(entries):
        head, tail = f"{k + 1} {name} ", f" {3 + 4 * k}"
        dots = "." * int(
            (RIGHT - LEFT - pymupdf.get_text_length(head + tail, fontsize=10))
            / pymupdf.get_text_length(".", fontsize=10)
        )
        text = head + dots + tail
        page.insert_text((LEFT, y), text, fontsize=10)
        lines.append(text)
        y += 20
    return TruthCase("toc", "toc.pdf", _save(doc, "Contents"), [TruthPage(lines)])


def short_text_cases() -> list[TruthCase]:
    """A form's labels (under 30 characters), a page saying "Hello", one CJK line set glyph by glyph."""
    pymupdf = samples._pymupdf()
    doc = _doc()
    page = doc.new_page(width=A4[0], height=A4[1])
    labels = ["Name:", "Date:", "Sign:"]
    for k, label in enumerate(labels):
        page.insert_text((LEFT, 100 + 40 * k), label, fontsize=11)
        page.draw_line((LEFT + 50, 102 + 40 * k), (LEFT + 300, 102 + 40 * k), width=0.5)
    form = TruthCase("short_form", "short_form.pdf", _save(doc, "Form"), [TruthPage(labels)], kind="short")
    doc = _doc()
    doc.new_page(width=A4[0], height=A4[1]).insert_text((LEFT, 100), "Hello", fontsize=12)
    hello = TruthCase("hello", "hello.pdf", _save(doc, "Hello"), [TruthPage(["Hello"])], kind="short")
    doc = _doc()
    page = doc.new_page(width=A4[0], height=A4[1])
    cjk = "本年度营业收入增长百分之十二"
    x = LEFT
    for ch in cjk:  # glyph by glyph with a little tracking, as justified CJK is often set
        page.insert_text((x, 100), ch, fontname="china-s", fontsize=12)
        x += pymupdf.get_text_length(ch, fontname="china-s", fontsize=12) + 3
    cjk_case = TruthCase("cjk_line", "cjk_line.pdf", _save(doc, "CJK"), [TruthPage([cjk])], kind="short")
    return [form, hello, cjk_case]


def born_digital_cases(quick: bool = False) -> list[TruthCase]:
    """The generated born-digital corpus (``quick``: the balance sheet, two columns, short texts)."""
    if quick:
        return [balance_sheet_case(), two_column_case(), toc_case(), *short_text_cases()]
    return [
        balance_sheet_case(),
        filing_case(),
        continued_table_case(),
        two_column_case(),
        toc_case(),
        *short_text_cases(),
    ]


def _scan(page_png: Any, rotation: int, seed: int) -> bytes:
    from PIL import ImageFilter

    img = page_png.convert("L")
    rng = random.Random(seed)
    pixels = img.load()
    for _ in range(img.width * img.height // 400):  # salt and pepper specks
        pixels[rng.randrange(img.width), rng.randrange(img.height)] = rng.choice((0, 90, 255))
    img = img.filter(ImageFilter.GaussianBlur(0.4))
    if rotation:
        img = img.rotate(-rotation, expand=True, fillcolor=255)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def scan_cases(rotations: tuple[int, ...] = (0, 90, 180, 270), dpi: int = 150) -> list[TruthCase]:
    """The balance sheet's first page as a noisy grey A4 scan, turned clockwise by each of ``rotations``."""
    src = balance_sheet_case()
    pymupdf = samples._pymupdf()
    with pymupdf.open(stream=src.data, filetype="pdf") as doc:
        image = samples._page_to_pil(doc[0], dpi, gray=True)
    out = []
    for rot in rotations:
        truth = src.pages[0]
        page = TruthPage(truth.lines, truth.tables, rotation=rot)
        out.append(
            TruthCase(
                f"balance_scan_{rot}", f"balance_scan_{rot}.png", _scan(image, rot, rot), [page], "scan"
            )
        )
    return out


def real_cases(data_dir: Path = DATA_DIR) -> list[TruthCase]:
    """Public PDFs with expected tables: ``NAME.pdf`` beside ``NAME.pN.tK.csv`` (page N, table K).

    The truth holds the tables only (a page's lines are its tables' rows), so the bench scores
    words on these by recall (the table's words read), order and cells as usual. Pages without a
    CSV get empty truth.
    """
    import pymupdf

    out = []
    for pdf in sorted(data_dir.glob("*.pdf")):
        with pymupdf.open(pdf) as doc:
            pages = [TruthPage([]) for _ in range(doc.page_count)]
        for csv_path in sorted(data_dir.glob(f"{pdf.stem}.p*.t*.csv")):
            page_no = int(csv_path.name[len(pdf.stem) + 2 :].split(".")[0])
            with csv_path.open(newline="", encoding="utf-8") as f:
                table = [list(row) for row in csv.reader(f)]
            pages[page_no - 1].tables.append(table)
            pages[page_no - 1].lines += [" ".join(c for c in row if c) for row in table]
        out.append(TruthCase(f"real_{pdf.stem}", pdf.name, pdf.read_bytes(), pages, "real"))
    return out
