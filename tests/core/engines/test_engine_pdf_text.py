"""extract_blocks / text_layer_quality / PdfTextEngine on real PDFs written here with PyMuPDF."""

from __future__ import annotations

import json
from collections.abc import Callable

import pymupdf
import pytest

from airflow_provider_deepocr.core.engines import get_engine
from airflow_provider_deepocr.core.engines.pdf_text import (
    PdfTextEngine,
    extract_blocks,
    extract_pdf_blocks,
    page_text,
    text_layer_quality,
)
from airflow_provider_deepocr.core.errors import PageError
from airflow_provider_deepocr.core.records import PageImage
from airflow_provider_deepocr.core.render import render_pages

W, H = 595, 842  # A4 in points


def _pdf(*writers: Callable[[pymupdf.Page], None], rotation: int = 0) -> bytes:
    doc = pymupdf.open()
    for write in writers:
        page = doc.new_page(width=W, height=H)
        write(page)
        if rotation:
            page.set_rotation(rotation)
    data = doc.tobytes()
    doc.close()
    return data


def statement(page: pymupdf.Page) -> None:
    page.insert_text((72, 80), "Consolidated Statement of Income", fontsize=20)
    page.insert_text((72, 140), "Revenue                       41,200      38,950", fontsize=10)
    page.insert_text((72, 156), "Cost of sales                 (22,118)    (21,007)", fontsize=10)
    page.insert_text((320, 700), "Page 3", fontsize=10)


def image_only(page: pymupdf.Page) -> None:
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 40, 40), False)
    pix.clear_with(180)
    page.insert_image(page.rect, pixmap=pix)


def unmapped_glyphs(page: pymupdf.Page) -> None:
    """An embedded font with its ToUnicode map removed: the layer reads as glyph ids."""
    page.insert_font(fontname="F0", fontbuffer=pymupdf.Font("tiro").buffer)
    page.insert_text((72, 100), "Quarterly revenue increased by twelve percent", fontname="F0", fontsize=11)
    page.insert_text((72, 116), "to 4.2 million on higher volumes in all regions", fontname="F0", fontsize=11)


def _strip_tounicode(data: bytes) -> bytes:
    doc = pymupdf.open(stream=data, filetype="pdf")
    for xref in range(1, doc.xref_length()):
        if "ToUnicode" in doc.xref_get_keys(xref):
            doc.xref_set_key(xref, "ToUnicode", "null")
    out = doc.tobytes()
    doc.close()
    return out


def _near(box: list[int], x_pt: float, y_pt: float, w: float = W, h: float = H, tol: int = 4) -> bool:
    return abs(box[0] - x_pt / w * 999) <= tol and abs(box[1] - y_pt / h * 999) <= tol + 20


def test_a_good_text_layer_gives_blocks_on_the_grid() -> None:
    data = _pdf(statement)
    blocks = extract_blocks(data, 1, 1191, 1684)  # 144 dpi
    assert text_layer_quality(page_text(blocks))
    texts = [b["text"] for b in blocks]
    assert texts[0] == "Consolidated Statement of Income"
    assert any("Revenue" in t and "41,200" in t for t in texts)
    assert any("Cost of sales" in t for t in texts) and texts[-1] == "Page 3"
    assert blocks[0]["label"] == "title" and all(b["label"] == "text" for b in blocks[1:])
    for b in blocks:
        x0, y0, x1, y1 = b["bbox"]
        assert all(isinstance(v, int) for v in b["bbox"])
        assert 0 <= x0 < x1 <= 999 and 0 <= y0 < y1 <= 999
    # the title's baseline is at (72, 80) pt: its box starts ~121/999 across, a little above 95/999
    assert _near(blocks[0]["bbox"], 72, 80 - 18)
    assert _near(blocks[-1]["bbox"], 320, 700 - 9)
    assert extract_pdf_blocks(data) == {1: blocks}


def test_boxes_follow_page_rotation_like_the_renderer() -> None:
    data = _pdf(statement, rotation=90)
    (page,) = [p for p in render_pages_of(data)]
    assert page.width > page.height  # landscape as displayed
    blocks = extract_blocks(data, 1, page.width, page.height)
    title = blocks[0] if blocks[0]["text"].startswith("Consolidated") else blocks[-1]
    x0, y0, x1, y1 = title["bbox"]
    # rotated 90 degrees clockwise: the title (top left, horizontal) is now a tall box on the right
    assert x0 > 800 and (y1 - y0) > (x1 - x0)
    # the rendered pixels agree: dark ink inside the box, none in the mirror-image box on the left
    img = page.image.convert("L")

    def ink(box: tuple[int, int, int, int]) -> int:
        px = [round(box[0] / 999 * img.width), round(box[1] / 999 * img.height)]
        px += [round(box[2] / 999 * img.width), round(box[3] / 999 * img.height)]
        return sum(1 for v in img.crop(tuple(px)).tobytes() if v < 128)

    assert ink((x0, y0, x1, y1)) > 100 and ink((999 - x1, y0, 999 - x0, y1)) == 0
    with pytest.raises(PageError):
        extract_blocks(data, 1, page.height, page.width)  # portrait image for a landscape page


def render_pages_of(data: bytes) -> list[PageImage]:
    from airflow_provider_deepocr.core.records import Document, DocumentRef

    doc = Document.from_bytes(DocumentRef("mem://t.pdf"), data)
    return [p for p in render_pages(doc, dpi=144) if isinstance(p, PageImage)]


def test_image_only_and_garbage_layers_are_rejected() -> None:
    assert extract_blocks(_pdf(image_only), 1) == []
    assert not text_layer_quality(page_text([]))

    good = _pdf(unmapped_glyphs)
    assert text_layer_quality(page_text(extract_blocks(good, 1)))  # with its ToUnicode map: fine
    garbled = page_text(extract_blocks(_strip_tounicode(good), 1))
    assert "revenue" not in garbled and not text_layer_quality(garbled)

    assert text_layer_quality("short text")  # short real text is text (issue 21)
    assert not text_layer_quality("\ufffd" * 4 + " Balance sheet for the year ended 31 December 2025")
    assert not text_layer_quality("(cid:12)(cid:7) Balance sheet for the year ended 31 December 2025")
    assert not text_layer_quality("\ue000\ue001\ue002 " * 20)
    assert not text_layer_quality("§ ¶ † ‡ ※ — · • " * 10)
    assert text_layer_quality(
        "損益計算書 売上高 四一二〇〇 百万円 営業利益 前年同期比 増加 当期純利益 三八九五〇"
    )


def test_bad_page_numbers_and_bytes() -> None:
    data = _pdf(statement, statement)
    assert extract_blocks(data, 2) == extract_blocks(data, 1)
    for bad in (0, 3):
        with pytest.raises(PageError):
            extract_blocks(data, bad)
    with pytest.raises(PageError):
        extract_blocks(b"%PDF-1.7 not really", 1)


def test_engine_emits_the_blocks_the_pipeline_attached() -> None:
    blocks = extract_blocks(_pdf(statement), 1)
    pages = [
        PageImage("d" * 64, 1, None, 144, 1191, 1684, text_layer=json.dumps(blocks)),
        PageImage("d" * 64, 2, None, 144, 1191, 1684, text_layer="not json"),
        PageImage("d" * 64, 3, None, 144, 1191, 1684, text_layer='{"a": 1}'),
    ]
    engine = get_engine("pdf-text")
    assert isinstance(engine, PdfTextEngine) and engine.model == f"pymupdf-{pymupdf.__version__}"
    ok, not_json, not_blocks = engine.ocr(pages, temperature=0.4)
    assert (ok.engine, ok.finish_reason, ok.mode) == ("pdf-text", "eos", "text-layer")
    assert ok.blocks == blocks and ok.raw_text == page_text(blocks)
    assert not_json.finish_reason == "error" and not_blocks.finish_reason == "error"
    assert not_json.raw_text == "" and not_json.engine == "pdf-text"


# Folded in from the former test_pdf_text.py (same module, one test file).


def test_born_digital_title_block_is_labelled_and_placed() -> None:
    def write(page: pymupdf.Page) -> None:
        page.insert_text((72, 80), "Consolidated Balance Sheet", fontsize=20)
        page.insert_text((72, 140), "Cash and cash equivalents      12,400      11,950", fontsize=10)
        page.insert_text((72, 160), "Accounts receivable            30,118      28,007", fontsize=10)

    blocks = extract_pdf_blocks(_pdf(write))[1]
    assert text_layer_quality(page_text(blocks))
    title = blocks[0]
    assert title["label"] == "title" and title["text"] == "Consolidated Balance Sheet"
    assert any("Accounts receivable" in b["text"] for b in blocks[1:])
    for b in blocks:
        x0, y0, x1, y1 = b["bbox"]
        assert 0 <= x0 < x1 <= 999 and 0 <= y0 < y1 <= 999
    # the title starts about 72/595 of the width in, 80/842 of the height down (baseline)
    assert abs(title["bbox"][0] - 121) <= 3 and title["bbox"][1] < 95


def test_image_only_pdf_has_no_blocks_and_junk_text_fails() -> None:
    def _image_only_pixmap(page: pymupdf.Page) -> None:
        pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 50, 50), False)
        pix.clear_with(200)
        page.insert_image(page.rect, pixmap=pix)

    assert extract_pdf_blocks(_pdf(_image_only_pixmap))[1] == []
    assert not text_layer_quality("")
    assert text_layer_quality("short")
    assert not text_layer_quality("\ufffd" * 10 + "Balance sheet for the year ended 31 December")
    assert not text_layer_quality("\ue000\ue001\ue002 " * 20)
    assert not text_layer_quality("§ ¶ † ‡ ※ " * 20)


@pytest.mark.parametrize("bad", ["not json", None])
def test_engine_without_a_text_layer_reads_nothing(bad: str | None) -> None:
    blocks = [{"label": "text", "bbox": [10, 10, 500, 40], "text": "Total assets 287,778"}]
    good = PageImage("d" * 64, 1, None, 144, 100, 100, text_layer=json.dumps(blocks))
    broken = PageImage("d" * 64, 2, None, 144, 100, 100, text_layer=bad)
    ok, other = PdfTextEngine().ocr([good, broken])
    assert ok.engine == "pdf-text" and ok.finish_reason == "eos" and ok.blocks == blocks
    assert ok.raw_text == "Total assets 287,778"
    assert other.finish_reason == ("error" if bad else "eos")


# ---- issue 21, item 5: the judgement by character classes, and the text itself ----------------


def _judged_text(data: bytes) -> list[bool]:
    return [text_layer_quality(page_text(b)) for b in extract_pdf_blocks(data).values()]


def test_short_real_text_is_text() -> None:
    from airflow_provider_deepocr.testing.fidelity import short_text_cases

    for case in short_text_cases():  # a form's three labels, "Hello", one CJK line
        assert _judged_text(case.data) == [True], case.name
        (blocks,) = extract_pdf_blocks(case.data).values()
        assert page_text(blocks) == case.pages[0].text, case.name  # CJK: no spaces between characters


def test_a_table_of_contents_with_dot_leaders_is_text() -> None:
    from airflow_provider_deepocr.testing.fidelity import toc_case

    case = toc_case()
    (blocks,) = extract_pdf_blocks(case.data).values()
    text = page_text(blocks)
    assert sum(c.isalnum() for c in text) < 0.5 * sum(not c.isspace() for c in text)  # mostly dots
    assert text_layer_quality(text) and text.split("\n") == case.pages[0].lines
    spaced = "\n".join(f"{k} Chapter {k} " + ". " * 30 + str(4 * k) for k in range(1, 9))  # spaced leaders
    assert text_layer_quality(spaced)


def test_bullets_that_extract_as_c1_controls_do_not_disqualify_a_page() -> None:
    items = "\n".join(f"\x95 Item {k} of the list, described in a few words" for k in range(8))
    share = items.count("\x95") / sum(not c.isspace() for c in items)
    assert share > 0.02  # over the bad-character limit if they counted as controls
    assert text_layer_quality(items)
    assert not text_layer_quality(items.replace("\x95", "\x01"))  # real C0 controls still do


def test_hyphenated_line_ends_are_joined() -> None:
    from airflow_provider_deepocr.testing.fidelity import two_column_case

    case = two_column_case()
    pages = extract_pdf_blocks(case.data)
    text = "\n".join(page_text(b) for b in pages.values())
    broken = [w for w in text.split() if w.endswith("-") and w != "-"]  # "- 1 -" is a footer
    assert not broken
    for word in ("internationalisation", "responsibilities", "characteristically", "infrastructure"):
        assert text.count(word) == sum(p.text.count(word) for p in case.pages)


def test_a_scan_with_a_stray_line_of_text_still_goes_to_ocr() -> None:
    """Without the length floor, a full-page scan stamped with one short line must not count as text."""

    def stamped_scan(page: pymupdf.Page) -> None:
        image_only(page)
        page.insert_text((72, 820), "Scanned 2024-03-14", fontsize=8)

    def logo_and_greeting(page: pymupdf.Page) -> None:
        pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 20, 20), False)
        pix.clear_with(90)
        page.insert_image(pymupdf.Rect(72, 40, 132, 100), pixmap=pix)
        page.insert_text((72, 140), "Hello", fontsize=12)

    assert extract_blocks(_pdf(stamped_scan), 1) == []
    blocks = extract_blocks(_pdf(logo_and_greeting), 1)
    assert text_layer_quality(page_text(blocks)) and [b["label"] for b in blocks] == ["image", "text"]
