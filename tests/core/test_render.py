"""Rendering real bytes: the sample documents and the bad inputs made by testing.samples."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.records import Document, DocumentRef, PageImage
from airflow_provider_deepocr.core.render import (
    RenderLimits,
    count_pages,
    detect_media_type,
    render_pages,
)
from airflow_provider_deepocr.testing import samples


def _doc(data: bytes, name: str = "x") -> Document:
    return Document.from_bytes(DocumentRef(uri=f"file:///mem/{name}"), data)


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("samples")
    samples.write_samples(out)
    return out


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    out = tmp_path_factory.mktemp("bad")
    return out, samples.write_bad_inputs(out)


def _sample(sample_dir: Path, name: str) -> Document:
    return _doc((sample_dir / name).read_bytes(), name)


FINANCE = "finance/consolidated_balance_sheet_2024.pdf"
CLINIC = "clinic/visit_note_scan.pdf"
RECEIPT = "receipts/receipt_0001.png"
FAX = "letters/fax_invoice_letter.tiff"


def test_detect_media_type_on_real_bytes(sample_dir: Path, bad_dir: tuple[Path, dict[str, str]]) -> None:
    assert detect_media_type((sample_dir / FINANCE).read_bytes()) == "application/pdf"
    assert detect_media_type((sample_dir / CLINIC).read_bytes()) == "application/pdf"
    assert detect_media_type((sample_dir / RECEIPT).read_bytes()) == "image/png"
    assert detect_media_type((sample_dir / FAX).read_bytes()) == "image/tiff"
    bad, _ = bad_dir
    assert detect_media_type((bad / "notes.pdf").read_bytes()) == "text/plain"
    assert detect_media_type((bad / "animation.gif").read_bytes()) == "image/gif"
    assert detect_media_type((bad / "report.docx").read_bytes()) == "application/zip"

    from PIL import Image

    def encode(fmt: str, **kw: object) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format=fmt, **kw)
        return buf.getvalue()

    assert detect_media_type(encode("JPEG")) == "image/jpeg"
    assert detect_media_type(encode("TIFF")) == "image/tiff"
    assert detect_media_type(encode("BMP")) == "image/bmp"
    assert detect_media_type(encode("WEBP")) == "image/webp"
    assert detect_media_type(b"junk before header " * 10 + b"%PDF-1.4\n") == "application/pdf"
    with pytest.raises(errors.DocumentError) as ei:
        detect_media_type(b"")
    assert ei.value.reason == errors.EMPTY_FILE
    with pytest.raises(errors.DocumentError) as ei:
        detect_media_type(bytes(range(256)) * 4)
    assert ei.value.reason == errors.UNSUPPORTED_TYPE


def test_every_bad_input_gives_its_reason(bad_dir: tuple[Path, dict[str, str]]) -> None:
    out, expected = bad_dir
    assert set(expected.values()) >= {
        errors.CORRUPT,
        errors.TRUNCATED_FILE,
        errors.ENCRYPTED,
        errors.EMPTY_FILE,
        errors.UNSUPPORTED_TYPE,
        errors.IMAGE_TOO_LARGE,
        errors.TOO_MANY_PAGES,
    }
    got = {}
    for name in expected:
        doc = _doc((out / name).read_bytes(), name)
        with pytest.raises(errors.DocumentError) as ei:
            render_pages(doc, limits=samples.BAD_INPUT_LIMITS)  # raises before any page
        got[name] = ei.value.reason
        with pytest.raises(errors.DocumentError):
            count_pages(doc, limits=samples.BAD_INPUT_LIMITS)
    assert got == expected


def test_messages_never_carry_document_text(bad_dir: tuple[Path, dict[str, str]]) -> None:
    out, expected = bad_dir
    for name in ("notes.pdf", "truncated.pdf", "corrupt.pdf"):
        with pytest.raises(errors.DocumentError) as ei:
            render_pages(_doc((out / name).read_bytes(), name))
        assert "Meeting" not in str(ei.value) and "Quarterly" not in str(ei.value)


def test_pdf_renders_at_dpi_with_text_layer(sample_dir: Path) -> None:
    doc = _sample(sample_dir, FINANCE)
    assert count_pages(doc) == 2
    pages = list(render_pages(doc, dpi=144, with_text_layer=True))
    assert [p.page_no for p in pages] == [1, 2]
    for p in pages:
        assert isinstance(p, PageImage)
        assert abs(p.width - 1191) <= 1 and abs(p.height - 1684) <= 1  # A4 at 144 dpi
        assert p.image.mode == "RGB" and p.image.size == (p.width, p.height)
        assert p.dpi == 144 and p.media_type == "application/pdf" and p.doc_id == doc.sha256
    assert pages[0].text_layer and "Consolidated Balance Sheet" in pages[0].text_layer
    assert "287,778" in pages[0].text_layer
    (p72,) = render_pages(doc, dpi=72, pages=[2])
    assert isinstance(p72, PageImage) and p72.page_no == 2 and (p72.width, p72.height) == (595, 842)
    assert p72.text_layer is None  # not asked for
    # the page has ink: it is not a blank render
    assert p72.image.convert("L").getextrema()[0] < 64


def test_scanned_pdf_has_no_text_layer(sample_dir: Path) -> None:
    (page,) = render_pages(_sample(sample_dir, CLINIC), with_text_layer=True)
    assert isinstance(page, PageImage) and page.text_layer is None
    assert abs(page.width - 1191) <= 1


def test_multipage_tiff_yields_each_page(sample_dir: Path) -> None:
    doc = _sample(sample_dir, FAX)
    assert count_pages(doc) == 2
    pages = list(render_pages(doc))
    assert [p.page_no for p in pages] == [1, 2]
    for p in pages:
        assert isinstance(p, PageImage) and p.image.mode == "RGB"
        assert p.dpi == 200 and p.media_type == "image/tiff" and p.text_layer is None
    assert pages[0].image.tobytes() != pages[1].image.tobytes()
    (second,) = render_pages(doc, pages=[2])
    assert second.image.tobytes() == pages[1].image.tobytes()


def test_png_keeps_its_pixel_size(sample_dir: Path) -> None:
    from PIL import Image

    data = (sample_dir / RECEIPT).read_bytes()
    (page,) = render_pages(_doc(data), dpi=300)
    assert isinstance(page, PageImage)
    assert page.image.size == Image.open(io.BytesIO(data)).size and page.dpi == 200


def test_jpeg_exif_orientation_and_alpha_png() -> None:
    from PIL import Image

    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    (page,) = render_pages(_doc(buf.getvalue()))
    assert isinstance(page, PageImage) and page.image.size == (20, 40)
    buf = io.BytesIO()
    img.save(buf, format="JPEG")  # no resolution stored anywhere
    (page,) = render_pages(_doc(buf.getvalue()))
    assert page.image.size == (40, 20) and page.dpi == 144

    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    (page,) = render_pages(_doc(buf.getvalue()))
    assert page.image.mode == "RGB" and page.image.getpixel((5, 5)) == (255, 255, 255)


def test_max_pages_and_max_bytes(sample_dir: Path) -> None:
    doc = _sample(sample_dir, FINANCE)
    with pytest.raises(errors.DocumentError) as ei:
        render_pages(doc, limits=RenderLimits(max_pages=1))
    assert ei.value.reason == errors.TOO_MANY_PAGES
    with pytest.raises(errors.DocumentError) as ei:
        render_pages(_sample(sample_dir, FAX), limits=RenderLimits(max_pages=1))
    assert ei.value.reason == errors.TOO_MANY_PAGES
    assert len(list(render_pages(doc, limits=RenderLimits(max_pages=2)))) == 2
    with pytest.raises(errors.DocumentError) as ei:
        render_pages(doc, limits=RenderLimits(max_bytes=1000))
    assert ei.value.reason == errors.FILE_TOO_LARGE


def test_oversized_pdf_page_is_a_page_error_not_a_document_failure(sample_dir: Path) -> None:
    import pymupdf

    pdf = pymupdf.open()
    pdf.new_page(width=595, height=842)
    pdf.new_page(width=5000, height=5000)  # 10000x10000 px at 144 dpi
    pdf.new_page(width=595, height=842)
    items = list(render_pages(_doc(pdf.tobytes()), limits=RenderLimits(max_pixels=20_000_000)))
    assert [type(i).__name__ for i in items] == ["PageImage", "PageError", "PageImage"]
    err = items[1]
    assert isinstance(err, errors.PageError) and err.reason == errors.IMAGE_TOO_LARGE
    assert err.page_no == 2  # type: ignore[attr-defined]
    assert [i.page_no for i in items if isinstance(i, PageImage)] == [1, 3]


def test_image_over_small_pixel_limit(sample_dir: Path) -> None:
    with pytest.raises(errors.DocumentError) as ei:
        render_pages(_sample(sample_dir, RECEIPT), limits=RenderLimits(max_pixels=100_000))
    assert ei.value.reason == errors.IMAGE_TOO_LARGE


def test_bad_arguments(sample_dir: Path) -> None:
    doc = _sample(sample_dir, FINANCE)
    with pytest.raises(errors.ConfigError):
        render_pages(doc, pages=[3])
    with pytest.raises(errors.ConfigError):
        render_pages(doc, dpi=0)
