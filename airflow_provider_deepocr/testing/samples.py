"""Realistic sample documents made in code (no downloads), for ``make demo`` and the tests.

Every file is deterministic: the same code writes the same bytes (PDFs are saved with fixed
metadata and no fresh /ID; noise comes from a seeded generator). All people, companies and
numbers are synthetic.

``python -m airflow_provider_deepocr.testing.samples DIR [--bad]`` writes the samples into DIR
and, with ``--bad``, the bad inputs into ``DIR/bad/`` (printing the expected reason codes).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.render import RenderLimits

SEED = 20240611
COMPANY = "Northwind Example Holdings plc"
_FIXED_DATE = "D:20240131120000Z"
A4 = (595, 842)  # points

BAD_INPUT_LIMITS = RenderLimits()
"""The limits under which :func:`write_bad_inputs`' reason codes hold (the defaults)."""


def _pymupdf() -> Any:
    import pymupdf

    pymupdf.TOOLS.mupdf_display_errors(False)
    pymupdf.TOOLS.mupdf_display_warnings(False)
    return pymupdf


def _pdf_bytes(doc: Any, title: str, **save_kwargs: Any) -> bytes:
    doc.set_metadata(
        {
            "title": title,
            "author": "airflow-provider-deepocr samples",
            "creator": "airflow_provider_deepocr.testing.samples",
            "producer": "PyMuPDF",
            "creationDate": _FIXED_DATE,
            "modDate": _FIXED_DATE,
        }
    )
    return doc.tobytes(garbage=3, deflate=True, no_new_id=True, **save_kwargs)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------------------------
# (1) Born-digital financial statement

ASSETS_CURRENT = [
    ("Cash and cash equivalents", 48_215, 41_030),
    ("Trade and other receivables", 36_904, 33_587),
    ("Inventories", 22_118, 24_906),
    ("Prepaid expenses", 3_472, 3_115),
]
ASSETS_NONCURRENT = [
    ("Property, plant and equipment", 118_640, 112_275),
    ("Intangible assets and goodwill", 54_300, 56_850),
    ("Deferred tax assets", 4_129, 3_804),
]
LIABILITIES_CURRENT = [
    ("Trade and other payables", 29_811, 27_460),
    ("Accrued liabilities", 11_207, 10_384),
    ("Short-term borrowings", 15_000, 18_500),
    ("Current tax payable", 4_316, 3_902),
]
LIABILITIES_NONCURRENT = [
    ("Long-term borrowings", 72_500, 75_000),
    ("Lease liabilities", 9_845, 10_610),
    ("Provisions", 3_260, 2_915),
]
EQUITY_SHARE = [("Share capital", 50_000, 50_000), ("Share premium", 12_500, 12_500)]


def balance_sheet() -> dict[str, Any]:
    """The balance sheet's numbers (thousands), with totals computed so they add up."""

    def total(rows: list[tuple[str, int, int]]) -> tuple[int, int]:
        return sum(r[1] for r in rows), sum(r[2] for r in rows)

    tca, tnca = total(ASSETS_CURRENT), total(ASSETS_NONCURRENT)
    ta = (tca[0] + tnca[0], tca[1] + tnca[1])
    tcl, tncl = total(LIABILITIES_CURRENT), total(LIABILITIES_NONCURRENT)
    tl = (tcl[0] + tncl[0], tcl[1] + tncl[1])
    share = total(EQUITY_SHARE)
    retained = (ta[0] - tl[0] - share[0], ta[1] - tl[1] - share[1])
    equity_rows = [*EQUITY_SHARE, ("Retained earnings", *retained)]
    te = total(equity_rows)
    return {
        "total_current_assets": tca,
        "total_non_current_assets": tnca,
        "total_assets": ta,
        "total_current_liabilities": tcl,
        "total_non_current_liabilities": tncl,
        "total_liabilities": tl,
        "equity_rows": equity_rows,
        "total_equity": te,
        "total_liabilities_and_equity": (tl[0] + te[0], tl[1] + te[1]),
    }


def _fmt(n: int) -> str:
    return f"{n:,}" if n >= 0 else f"({-n:,})"


def make_financial_statement_pdf() -> bytes:
    pymupdf = _pymupdf()
    bs = balance_sheet()
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    left, right = 56, A4[0] - 56
    col_2024, col_2023 = right - 95, right  # right edges of the numeric columns

    def text(x: float, y: float, s: str, size: float = 9.5, bold: bool = False, align: str = "left") -> None:
        font = "hebo" if bold else "helv"
        if align == "right":
            x -= pymupdf.get_text_length(s, fontname=font, fontsize=size)
        elif align == "center":
            x -= pymupdf.get_text_length(s, fontname=font, fontsize=size) / 2
        page.insert_text((x, y), s, fontname=font, fontsize=size, color=(0, 0, 0))

    text(A4[0] / 2, 70, COMPANY, size=13, bold=True, align="center")
    text(A4[0] / 2, 92, "Consolidated Balance Sheet", size=16, bold=True, align="center")
    text(A4[0] / 2, 110, "as at 31 December 2024 (in thousands of EUR)", size=9.5, align="center")

    y = 140
    row_h = 17.0
    page.draw_rect(
        pymupdf.Rect(left, y - 12, right, y + 5), color=(0, 0, 0), fill=(0.88, 0.88, 0.88), width=0.6
    )
    text(left + 4, y, "", bold=True)
    text(col_2024 - 4, y, "2024", bold=True, align="right")
    text(col_2023 - 4, y, "2023", bold=True, align="right")
    y += row_h
    top = y - 12

    def line(yy: float, width: float = 0.4) -> None:
        page.draw_line((left, yy), (right, yy), color=(0, 0, 0), width=width)

    def row(
        label: str, a: int | None = None, b: int | None = None, bold: bool = False, indent: int = 0
    ) -> None:
        nonlocal y
        text(left + 4 + indent, y, label, bold=bold)
        if a is not None and b is not None:
            text(col_2024 - 4, y, _fmt(a), bold=bold, align="right")
            text(col_2023 - 4, y, _fmt(b), bold=bold, align="right")
        line(y + 5, 0.8 if bold else 0.3)
        y += row_h

    row("ASSETS", bold=True)
    row("Current assets", bold=True, indent=6)
    for label, a, b in ASSETS_CURRENT:
        row(label, a, b, indent=14)
    row("Total current assets", *bs["total_current_assets"], bold=True, indent=6)
    row("Non-current assets", bold=True, indent=6)
    for label, a, b in ASSETS_NONCURRENT:
        row(label, a, b, indent=14)
    row("Total non-current assets", *bs["total_non_current_assets"], bold=True, indent=6)
    row("TOTAL ASSETS", *bs["total_assets"], bold=True)
    row("LIABILITIES AND EQUITY", bold=True)
    row("Current liabilities", bold=True, indent=6)
    for label, a, b in LIABILITIES_CURRENT:
        row(label, a, b, indent=14)
    row("Total current liabilities", *bs["total_current_liabilities"], bold=True, indent=6)
    row("Non-current liabilities", bold=True, indent=6)
    for label, a, b in LIABILITIES_NONCURRENT:
        row(label, a, b, indent=14)
    row("Total non-current liabilities", *bs["total_non_current_liabilities"], bold=True, indent=6)
    row("Total liabilities", *bs["total_liabilities"], bold=True)
    row("Equity", bold=True, indent=6)
    for label, a, b in bs["equity_rows"]:
        row(label, a, b, indent=14)
    row("Total equity", *bs["total_equity"], bold=True, indent=6)
    row("TOTAL LIABILITIES AND EQUITY", *bs["total_liabilities_and_equity"], bold=True)
    bottom = y - row_h + 5
    for x in (left, col_2024 - 95, col_2024, right):  # vertical rules of the table grid
        page.draw_line((x, top), (x, bottom), color=(0, 0, 0), width=0.6)
    page.draw_line((left, top), (right, top), color=(0, 0, 0), width=0.8)

    text(left, y + 14, "The accompanying notes form an integral part of these financial statements.", size=8)
    text(A4[0] / 2, A4[1] - 40, "Page 1 of 2", size=8, align="center")

    notes = doc.new_page(width=A4[0], height=A4[1])
    paragraphs = [
        ("1. Basis of preparation", "The consolidated financial statements have been prepared in accordance "
         "with International Financial Reporting Standards as adopted by the European Union, on the "
         "historical cost basis except for certain financial instruments measured at fair value."),
        ("2. Borrowings", f"Short-term borrowings of EUR {_fmt(15_000)} thousand (2023: {_fmt(18_500)}) are "
         "drawn under a revolving credit facility maturing in 2026. Long-term borrowings comprise a "
         "senior unsecured note with a fixed coupon of 4.25%."),
        ("3. Events after the reporting period", "No events requiring adjustment of these financial "
         "statements occurred between the reporting date and the date of authorisation for issue."),
    ]  # fmt: skip
    rect_y = 72.0
    notes.insert_text((left, rect_y), "Notes to the Consolidated Balance Sheet", fontname="hebo", fontsize=13)
    rect_y += 24
    for heading, body in paragraphs:
        notes.insert_text((left, rect_y), heading, fontname="hebo", fontsize=10.5)
        rect_y += 6
        box = pymupdf.Rect(left, rect_y, right, rect_y + 80)
        notes.insert_textbox(box, body, fontname="helv", fontsize=9.5, align=pymupdf.TEXT_ALIGN_JUSTIFY)
        rect_y += 90
    notes.insert_text((A4[0] / 2 - 20, A4[1] - 40), "Page 2 of 2", fontname="helv", fontsize=8)
    return _pdf_bytes(doc, "Consolidated Balance Sheet")


# --------------------------------------------------------------------------------------------
# (2) Scanned clinic note (image-only PDF)

CLINIC_NOTE = """Riverside Family Clinic (SYNTHETIC TEST DATA)
Outpatient Visit Note

Patient: Jane Sample            MRN: 000-TEST-01
DOB: 01/01/1970                 Visit date: 2024-03-14
Clinician: Dr. Alex Example, MD

Chief complaint: Persistent dry cough for two weeks.

History: Non-smoker. No fever. Mild fatigue. No known drug
allergies. Current medication: none.

Vitals: BP 122/78 mmHg   HR 72 bpm   Temp 36.8 C   SpO2 98%

Assessment: Post-viral cough, likely self-limiting.

Plan:
  1. Honey and warm fluids; avoid irritants.
  2. Return if symptoms persist beyond 3 weeks.
  3. Chest X-ray if new fever or shortness of breath.

Signed: A. Example, MD"""


def _page_to_pil(page: Any, dpi: int, gray: bool = False) -> Any:
    from PIL import Image

    pymupdf = _pymupdf()
    pix = page.get_pixmap(dpi=dpi, alpha=False, colorspace=pymupdf.csGRAY if gray else pymupdf.csRGB)
    mode = "L" if gray else "RGB"
    return Image.frombytes(mode, (pix.width, pix.height), pix.samples)


def _noise(size: tuple[int, int], rng: random.Random) -> Any:
    from PIL import Image

    return Image.frombytes("L", size, rng.randbytes(size[0] * size[1]))


def make_scanned_clinic_note_pdf() -> bytes:
    from PIL import Image, ImageChops, ImageFilter

    pymupdf = _pymupdf()
    rng = random.Random(SEED + 2)
    src = pymupdf.open()
    page = src.new_page(width=A4[0], height=A4[1])
    page.insert_textbox(
        pymupdf.Rect(60, 60, A4[0] - 60, A4[1] - 60), CLINIC_NOTE, fontname="cour", fontsize=10.5
    )
    dpi = 150
    img = _page_to_pil(page, dpi, gray=True)
    src.close()
    # Degrade: slight skew, blur, grey paper, speckle noise.
    img = img.rotate(0.8, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=255)
    img = img.filter(ImageFilter.GaussianBlur(0.7))
    paper = Image.new("L", img.size, 232)
    img = ImageChops.darker(img, paper)  # white -> grey paper, ink stays dark
    noise = _noise(img.size, rng).point(lambda v: 0 if v < 2 else 255)  # ~0.8% dark speckles
    img = ImageChops.darker(img, noise.filter(ImageFilter.MaxFilter(1)))
    grain = _noise(img.size, rng).point(lambda v: 255 - v // 16)  # light grain
    img = ImageChops.multiply(img, grain)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=72, dpi=(dpi, dpi))
    out = pymupdf.open()
    opage = out.new_page(width=A4[0], height=A4[1])
    opage.insert_image(opage.rect, stream=buf.getvalue())
    return _pdf_bytes(out, "Scanned document")


# --------------------------------------------------------------------------------------------
# (3) PNG receipt

RECEIPT_ITEMS = [
    ("Whole milk 1L", 2, 1.19),
    ("Sourdough loaf", 1, 3.45),
    ("Free-range eggs x12", 1, 4.29),
    ("Bananas (kg)", 1, 1.87),
    ("Coffee beans 500g", 1, 8.99),
    ("Dish soap", 1, 2.35),
]
RECEIPT_TAX_RATE = 0.07


def receipt_totals() -> dict[str, float]:
    subtotal = round(sum(q * p for _, q, p in RECEIPT_ITEMS), 2)
    tax = round(subtotal * RECEIPT_TAX_RATE, 2)
    return {"subtotal": subtotal, "tax": tax, "total": round(subtotal + tax, 2)}


def make_receipt_png() -> bytes:
    pymupdf = _pymupdf()
    totals = receipt_totals()
    width_chars = 32
    lines = [
        "CORNER GROCER EXAMPLE".center(width_chars),
        "12 Sample Street, Testville".center(width_chars),
        "VAT No. XX-000000-TEST".center(width_chars),
        "-" * width_chars,
        "2024-05-17 18:42   Till 3",
        "-" * width_chars,
    ]
    for name, qty, price in RECEIPT_ITEMS:
        label = f"{qty} x {name}" if qty > 1 else name
        amount = f"{qty * price:.2f}"
        lines.append(label[: width_chars - len(amount) - 1].ljust(width_chars - len(amount)) + amount)
    lines.append("-" * width_chars)
    for key, title in (("subtotal", "SUBTOTAL"), ("tax", f"TAX {RECEIPT_TAX_RATE:.0%}"), ("total", "TOTAL")):
        amount = f"{totals[key]:.2f}"
        lines.append(title.ljust(width_chars - len(amount)) + amount)
    lines += ["-" * width_chars, "CARD  **** 0000", "Thank you for shopping!".center(width_chars)]
    fontsize = 9.0
    line_h = fontsize * 1.35
    width = 20 + pymupdf.get_text_length("M" * width_chars, fontname="cour", fontsize=fontsize)
    height = 30 + line_h * len(lines)
    doc = pymupdf.open()
    page = doc.new_page(width=width, height=height)
    y = 20.0
    for i, s in enumerate(lines):
        bold = i == 0 or s.startswith("TOTAL")
        page.insert_text((10, y), s, fontname="cobo" if bold else "cour", fontsize=fontsize)
        y += line_h
    pix = page.get_pixmap(dpi=200, alpha=False)
    pix.set_dpi(200, 200)
    return pix.tobytes("png")


# --------------------------------------------------------------------------------------------
# (4) Two-page faxed letter (TIFF, CCITT group 4)

FAX_PAGES = [
    """FAX  -  Example Logistics Ltd.                   Page 1/2

To:      Accounts Department, Northwind Example Holdings
From:    M. Placeholder, Example Logistics Ltd.
Date:    2024-02-09
Re:      Invoice INV-2024-0042 (synthetic)

Dear Sir or Madam,

Please find below the summary of our invoice INV-2024-0042 for
freight services rendered in January 2024.

  Shipments handled .................. 18
  Freight charges ............ EUR 7,420.00
  Fuel surcharge ............... EUR 612.50
  Total due .................. EUR 8,032.50

Payment terms are 30 days net. Bank details follow on page 2.""",
    """FAX  -  Example Logistics Ltd.                   Page 2/2

Bank details (test data only):
  Account name:  Example Logistics Ltd.
  IBAN:          XX00 TEST 0000 0000 0000 00
  BIC:           TESTXXXX

Should you have any questions regarding this invoice, please
contact our accounts team at the number above.

Yours faithfully,

M. Placeholder
Accounts Receivable""",
]


def make_fax_tiff() -> bytes:
    pymupdf = _pymupdf()
    dpi = 200
    frames = []
    doc = pymupdf.open()
    for body in FAX_PAGES:
        page = doc.new_page(width=A4[0], height=A4[1])
        page.insert_textbox(pymupdf.Rect(50, 50, A4[0] - 40, A4[1] - 50), body, fontname="cour", fontsize=10)
        gray = _page_to_pil(page, dpi, gray=True)
        frames.append(gray.point(lambda v: 255 if v > 150 else 0).convert("1"))
    doc.close()
    buf = io.BytesIO()
    frames[0].save(
        buf, format="TIFF", save_all=True, append_images=frames[1:], compression="group4", dpi=(dpi, dpi)
    )
    return buf.getvalue()


# --------------------------------------------------------------------------------------------


SAMPLE_FILES = {
    "finance/consolidated_balance_sheet_2024.pdf": make_financial_statement_pdf,
    "clinic/visit_note_scan.pdf": make_scanned_clinic_note_pdf,
    "receipts/receipt_0001.png": make_receipt_png,
    "letters/fax_invoice_letter.tiff": make_fax_tiff,
}


def write_samples(out_dir: str | Path) -> list[Path]:
    """Write the four sample documents under ``out_dir`` (in subfolders); returns their paths."""
    out = Path(out_dir)
    return [_write(out / name, make()) for name, make in SAMPLE_FILES.items()]


# --------------------------------------------------------------------------------------------
# A scanned archive (the cluster test and the hospital backfill)


def make_scanned_record_pdf(pages: int, record: int, size: tuple[int, int] = (300, 160)) -> bytes:
    """A scanned patient record of ``pages`` small pages (``size`` in points): each page is a grey,
    speckled JPEG of a few typed lines naming the record and page, so OCR has text to read."""
    from PIL import Image, ImageChops

    pymupdf = _pymupdf()
    rng = random.Random(SEED + 100 + record)
    out = pymupdf.open()
    dpi = 150
    for n in range(1, pages + 1):
        src = pymupdf.open()
        page = src.new_page(width=size[0], height=size[1])
        text = (
            f"RECORD {record:04d} PAGE {n} OF {pages}\n"
            f"Patient MRN {100000 + 7 * record}\nVisit {2000 + n} follow up\nSYNTHETIC"
        )
        page.insert_textbox(
            pymupdf.Rect(16, 16, size[0] - 16, size[1] - 16), text, fontname="cour", fontsize=11
        )
        img = _page_to_pil(page, dpi, gray=True)
        src.close()
        img = ImageChops.darker(img, Image.new("L", img.size, 236))
        img = ImageChops.darker(img, _noise(img.size, rng).point(lambda v: 0 if v < 2 else 255))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=75, dpi=(dpi, dpi))
        opage = out.new_page(width=size[0], height=size[1])
        opage.insert_image(opage.rect, stream=buf.getvalue())
    return _pdf_bytes(out, f"Scanned record {record}")


def write_scanned_archive(out_dir: str | Path, page_counts: list[int]) -> dict[str, int]:
    """One scanned record per entry of ``page_counts`` under ``out_dir`` (``record_0001.pdf`` …);
    returns ``{file name: pages}``."""
    out = Path(out_dir)
    written: dict[str, int] = {}
    for i, pages in enumerate(page_counts, start=1):
        name = f"record_{i:04d}.pdf"
        _write(out / name, make_scanned_record_pdf(pages, i))
        written[name] = pages
    return written


# --------------------------------------------------------------------------------------------
# Bad inputs


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def make_huge_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid, all-white 1-bit PNG of ``width`` x ``height`` that compresses to a few tens of KB."""
    row = b"\x00" + b"\xff" * ((width + 7) // 8)
    comp = zlib.compressobj(9)
    parts = [comp.compress(row * 100) for _ in range(height // 100)]
    parts.append(comp.compress(row * (height % 100)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def _small_pdf(text: str) -> Any:
    pymupdf = _pymupdf()
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_textbox(pymupdf.Rect(72, 72, A4[0] - 72, A4[1] - 72), text, fontname="helv", fontsize=11)
    return doc


def _docx_like_zip() -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in (
            ("[Content_Types].xml", '<?xml version="1.0"?><Types/>'),
            ("word/document.xml", '<?xml version="1.0"?><w:document/>'),
        ):
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            zf.writestr(info, body)
    return buf.getvalue()


def heic_header() -> bytes:
    """The start of a HEIC photo (an ISO BMFF ``ftyp`` box with brand ``heic``, then a ``meta``
    box header): what a phone writes, recognised by its magic bytes and refused as HEIC."""
    ftyp = b"ftyp" + b"heic" + (0).to_bytes(4, "big") + b"mif1heic"
    meta = b"meta" + b"\x00" * 28
    return (len(ftyp) + 4).to_bytes(4, "big") + ftyp + (len(meta) + 4).to_bytes(4, "big") + meta


def write_bad_inputs(out_dir: str | Path) -> dict[str, str]:
    """Write one file per failure mode; returns file name -> the reason code render raises.

    The codes hold under ``BAD_INPUT_LIMITS`` (the default ``RenderLimits``). Every file is
    byte-for-byte deterministic except ``encrypted.pdf``: AES encryption draws a random IV.
    """
    pymupdf = _pymupdf()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}

    rng = random.Random(SEED + 7)
    garbage = bytes(rng.choice(b"#$&*+-;<=>?@^_|~") for _ in range(4000))  # no PDF keywords possible
    _write(out / "corrupt.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + garbage)
    expected["corrupt.pdf"] = errors.CORRUPT

    whole = _pdf_bytes(_small_pdf("Quarterly filing draft. " * 40), "Truncated sample")
    _write(out / "truncated.pdf", whole[: len(whole) // 2])
    expected["truncated.pdf"] = errors.TRUNCATED_FILE

    enc = _pdf_bytes(
        _small_pdf("Confidential (synthetic)."),
        "Encrypted sample",
        encryption=pymupdf.PDF_ENCRYPT_AES_256,
        user_pw="user-secret",
        owner_pw="owner-secret",
    )
    _write(out / "encrypted.pdf", enc)
    expected["encrypted.pdf"] = errors.ENCRYPTED

    _write(out / "empty.pdf", b"")
    expected["empty.pdf"] = errors.EMPTY_FILE

    _write(out / "notes.pdf", b"Meeting notes\n- this is a plain text file with a .pdf name\n")
    expected["notes.pdf"] = errors.UNSUPPORTED_TYPE

    _write(out / "huge.png", make_huge_png())
    expected["huge.png"] = errors.IMAGE_TOO_LARGE

    _write(out / "photo.heic", heic_header())
    expected["photo.heic"] = errors.UNSUPPORTED_TYPE

    _write(out / "report.docx", _docx_like_zip())
    expected["report.docx"] = errors.UNSUPPORTED_TYPE

    many = pymupdf.open()
    for _ in range(BAD_INPUT_LIMITS.max_pages + 1):
        many.new_page(width=A4[0], height=A4[1])
    _write(out / "too_many_pages.pdf", _pdf_bytes(many, "Too many pages"))
    expected["too_many_pages.pdf"] = errors.TOO_MANY_PAGES
    return expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_deepocr.testing.samples",
        description="Write synthetic sample documents (and, with --bad, bad inputs under DIR/bad/).",
    )
    parser.add_argument("dir", help="output folder")
    parser.add_argument("--bad", action="store_true", help="also write bad inputs into DIR/bad/")
    args = parser.parse_args(argv)
    for path in write_samples(args.dir):
        print(path)
    if args.bad:
        bad_dir = Path(args.dir) / "bad"
        expected = write_bad_inputs(bad_dir)
        print(json.dumps({str(bad_dir / k): v for k, v in expected.items()}, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
