"""Rendering real bytes: the sample documents and the bad inputs made by testing.samples."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.records import Document, DocumentRef, PageImage
from airflow_provider_deepocr.core.render import (
    OpenPdf,
    RawPage,
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
    assert detect_media_type((bad / "photo.heic").read_bytes()) == "image/heic"
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


def test_oversized_pdf_page_under_fail_is_a_page_error_not_a_document_failure(sample_dir: Path) -> None:
    import pymupdf

    pdf = pymupdf.open()
    pdf.new_page(width=595, height=842)
    pdf.new_page(width=5000, height=5000)  # 10000x10000 px at 144 dpi
    pdf.new_page(width=595, height=842)
    limits = RenderLimits(max_pixels=20_000_000, on_oversize="fail")
    items = list(render_pages(_doc(pdf.tobytes()), limits=limits))
    assert [type(i).__name__ for i in items] == ["PageImage", "PageError", "PageImage"]
    err = items[1]
    assert isinstance(err, errors.PageError) and err.reason == errors.IMAGE_TOO_LARGE
    assert err.page_no == 2  # type: ignore[attr-defined]
    assert [i.page_no for i in items if isinstance(i, PageImage)] == [1, 3]


def test_image_over_small_pixel_limit_under_fail(sample_dir: Path) -> None:
    with pytest.raises(errors.DocumentError) as ei:
        render_pages(
            _sample(sample_dir, RECEIPT), limits=RenderLimits(max_pixels=100_000, on_oversize="fail")
        )
    assert ei.value.reason == errors.IMAGE_TOO_LARGE


def test_bad_arguments(sample_dir: Path) -> None:
    doc = _sample(sample_dir, FINANCE)
    with pytest.raises(errors.ConfigError):
        render_pages(doc, pages=[3])
    with pytest.raises(errors.ConfigError):
        render_pages(doc, dpi=0)


# --------------------------------------------------------------------------------------------
# Oversize pages are shrunk to fit max_pixels (on_oversize="downscale", the default)


def _pdf_page(width_pt: float, height_pt: float, text: str = "Site plan") -> bytes:
    import pymupdf

    pdf = pymupdf.open()
    page = pdf.new_page(width=width_pt, height=height_pt)
    page.insert_text((width_pt * 0.1, height_pt * 0.2), text, fontsize=width_pt / 20)
    return pdf.tobytes()


def test_a_200_inch_drawing_renders_at_the_highest_dpi_that_fits_the_default_limit() -> None:
    data = _pdf_page(14_400, 14_400)  # 200 x 200 inches: 28,800 x 28,800 px at 144 dpi
    (page,) = render_pages(_doc(data))
    assert isinstance(page, PageImage)
    assert page.flags == ["downscaled"]
    assert page.dpi == 35  # 72 * sqrt(50e6 / 14,400^2) = 35.36
    assert (page.width, page.height) == (7000, 7000) and page.image.size == (7000, 7000)
    assert page.width * page.height <= RenderLimits().max_pixels
    # one DPI more would not fit: the highest that does
    assert (200 * 36) ** 2 > RenderLimits().max_pixels
    assert page.image.convert("L").getextrema()[0] < 64  # the text is there, not a blank render


def test_a0_scan_at_a_small_limit_and_pages_that_fit_are_untouched() -> None:
    a0 = _pdf_page(2384, 3370)  # A0 in points
    limits = RenderLimits(max_pixels=2_100_000)
    (page,) = render_pages(_doc(a0), dpi=300, limits=limits)
    assert isinstance(page, PageImage) and page.flags == ["downscaled"]
    assert page.width * page.height <= 2_100_000 and page.dpi < 300
    w, h = math.ceil(2384 * (page.dpi + 1) / 72), math.ceil(3370 * (page.dpi + 1) / 72)
    assert w * h > 2_100_000  # the DPI used is the highest whole one that fits
    (small,) = render_pages(_doc(_pdf_page(595, 842)), limits=limits)
    assert small.flags == [] and small.dpi == 144


def _png_bytes(size: tuple[int, int], mode: str = "L", dpi: int | None = 300) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new(mode, size, 255 if mode in ("L", "1") else (255, 255, 255))
    ImageDraw.Draw(img).rectangle((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), fill=0)
    buf = io.BytesIO()
    img.save(buf, format="PNG", **({"dpi": (dpi, dpi)} if dpi else {}))
    return buf.getvalue()


def test_an_image_over_max_pixels_but_under_the_bomb_limit_is_shrunk() -> None:
    from PIL import Image

    # 60 M pixels: over the default max_pixels (50 M), under Pillow's bomb limit (179 M)
    data = _png_bytes((10_000, 6_000), mode="1")
    assert Image.MAX_IMAGE_PIXELS is not None and 60_000_000 < 2 * Image.MAX_IMAGE_PIXELS
    (page,) = render_pages(_doc(data))
    assert isinstance(page, PageImage) and page.flags == ["downscaled"]
    assert page.width * page.height <= 50_000_000 and page.image.mode == "RGB"
    assert abs(page.width / page.height - 10_000 / 6_000) < 1e-3
    assert page.dpi == round(300 * page.width / 10_000)  # the file's 300 dpi times the scale
    assert count_pages(_doc(data)) == 1


def test_a_big_tiff_frame_is_shrunk_and_fail_refuses_it() -> None:
    from PIL import Image

    frames = [Image.new("1", (4000, 3000), 1), Image.new("1", (800, 600), 0)]
    buf = io.BytesIO()
    frames[0].save(
        buf, format="TIFF", save_all=True, append_images=frames[1:], compression="group4", dpi=(400, 400)
    )
    doc = _doc(buf.getvalue())
    big, small = render_pages(doc, limits=RenderLimits(max_pixels=3_000_000))
    assert isinstance(big, PageImage) and big.flags == ["downscaled"] and big.width * big.height <= 3_000_000
    assert big.dpi == 200  # 400 dpi at half the size
    assert isinstance(small, PageImage) and small.flags == [] and small.dpi == 400
    with pytest.raises(errors.DocumentError) as ei:  # the first frame's header decides, before decoding
        render_pages(doc, limits=RenderLimits(max_pixels=3_000_000, on_oversize="fail"))
    assert ei.value.reason == errors.IMAGE_TOO_LARGE


def test_a_rotated_jpeg_is_decoded_small_and_keeps_its_orientation() -> None:
    from PIL import Image

    img = Image.new("RGB", (4000, 1000), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees: 1000 x 4000
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), dpi=(200, 200))
    (page,) = render_pages(_doc(buf.getvalue()), limits=RenderLimits(max_pixels=1_000_000))
    assert isinstance(page, PageImage) and page.flags == ["downscaled"]
    assert page.width < page.height and page.width * page.height <= 1_000_000
    assert page.dpi == round(200 * page.width / 1000)


def test_a_decompression_bomb_is_still_refused_before_decoding() -> None:
    from PIL import Image

    bomb = samples.make_huge_png(20_000, 20_000)  # 400 M pixels in a few KB
    assert len(bomb) < 200_000 and Image.MAX_IMAGE_PIXELS is not None
    for on_oversize in ("downscale", "fail"):
        with pytest.raises(errors.DocumentError) as ei:
            render_pages(_doc(bomb), limits=RenderLimits(on_oversize=on_oversize))
        assert ei.value.reason == errors.IMAGE_TOO_LARGE
    assert "decompression-bomb limit" in ei.value.detail


def test_on_oversize_must_be_known() -> None:
    with pytest.raises(errors.ConfigError, match="on_oversize"):
        RenderLimits(on_oversize="crop")


# --------------------------------------------------------------------------------------------
# More image types, by magic bytes


def _encode(fmt: str, size: tuple[int, int] = (300, 200), **kw: object) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, (255, 255, 255))
    ImageDraw.Draw(img).rectangle((20, 20, 120, 80), fill=(10, 10, 10))
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("fmt", "media_type"),
    [("WEBP", "image/webp"), ("GIF", "image/gif"), ("BMP", "image/bmp"), ("JPEG2000", "image/jp2")],
)
def test_webp_gif_bmp_and_jpeg2000_load(fmt: str, media_type: str) -> None:
    from PIL import features

    if fmt == "JPEG2000" and not features.check("jpg_2000"):
        pytest.skip("this Pillow has no OpenJPEG")
    data = _encode(fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    assert detect_media_type(data) == media_type
    (page,) = render_pages(_doc(data))
    assert isinstance(page, PageImage) and page.media_type == media_type
    assert page.image.mode == "RGB" and page.image.size == (300, 200) and page.flags == []
    assert page.image.getpixel((50, 50))[0] < 60 and page.image.getpixel((250, 150))[0] > 200
    # and an oversize one is shrunk like any other image
    from PIL import Image

    big = _encode(fmt, (3000, 2000), **({"lossless": True} if fmt == "WEBP" else {}))
    stored = Image.open(io.BytesIO(big)).info.get("dpi", (144, 144))[0]  # BMP stores 96; 144 if none
    (small,) = render_pages(_doc(big), limits=RenderLimits(max_pixels=1_500_000))
    assert isinstance(small, PageImage) and small.flags == ["downscaled"]
    assert (small.width, small.height) == (1500, 1000) and small.dpi == round(stored / 2)


def test_raw_jpeg2000_codestream_is_recognised() -> None:
    from PIL import features

    if not features.check("jpg_2000"):
        pytest.skip("this Pillow has no OpenJPEG")
    assert detect_media_type(_encode("JPEG2000", no_jp2=True)) == "image/jp2"


def test_an_animated_gif_is_its_first_frame_flagged() -> None:
    from PIL import Image

    frames = [Image.new("RGB", (64, 32), (255, 0, 0)), Image.new("RGB", (64, 32), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    doc = _doc(buf.getvalue())
    assert Image.open(io.BytesIO(buf.getvalue())).n_frames == 2  # really animated
    assert count_pages(doc) == 1
    (page,) = render_pages(doc)
    assert isinstance(page, PageImage) and page.flags == ["first_frame_only"] and page.page_no == 1
    assert page.image.getpixel((5, 5)) == (255, 0, 0)  # the first frame, not the second


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = b"ftyp" + major + bytes(4) + b"".join(compatible)
    return (len(body) + 4).to_bytes(4, "big") + body + bytes(32)


def test_heic_is_refused_with_a_reason_naming_heic() -> None:
    files = [samples.heic_header(), _ftyp(b"mif1", b"mif1"), _ftyp(b"heix", b"mif1", b"heix")]
    for data in files:
        assert detect_media_type(data) == "image/heic"
        with pytest.raises(errors.DocumentError) as ei:
            render_pages(_doc(data))
        assert ei.value.reason == errors.UNSUPPORTED_TYPE and "HEIC" in ei.value.detail
    assert detect_media_type(_ftyp(b"avif", b"mif1", b"avif")) == "image/avif"  # AVIF is not HEIC


def _odd_pages_pdf() -> bytes:
    """Pages whose pixel size MuPDF rounds its own way (a side a hair over a whole pixel: MuPDF
    drops up to 0.001 px, so ``ceil(points * dpi / 72)`` is one too many), a box that does not
    start at 0, a turned page, odd point sizes, and one over the pixel limit."""
    import pymupdf

    pdf = pymupdf.open()
    for i, (w, h, origin) in enumerate(
        [
            (612, 792, (0, 0)),
            (600.0004, 400.0004, (0, 0)),
            (595.3, 841.9, (10.3, 20.3)),
            (431.17, 607.33, (0.5, 0.49)),
            (2384, 3370, (3.3, 7.7)),
        ]
    ):
        page = pdf.new_page(width=w, height=h)
        page.insert_text((50, 80), f"Page {i + 1}")
        if origin != (0, 0):
            page.set_mediabox(pymupdf.Rect(origin[0], origin[1], origin[0] + w, origin[1] + h))
        if i == 3:
            page.set_rotation(90)
    return pdf.tobytes()


def test_pages_asked_without_pixels_have_the_size_dpi_and_flags_of_their_render() -> None:
    doc = _doc(_odd_pages_pdf())
    limits = RenderLimits(max_pixels=3_000_000)  # the A0 page renders downscaled
    for dpi in (72, 100, 144, 150, 200):
        rendered = list(OpenPdf(doc, limits).pages(dpi=dpi))
        sized = list(OpenPdf(doc, limits).pages(dpi=dpi, pixels=False))
        for a, b in zip(rendered, sized, strict=True):
            assert isinstance(a, RawPage) and isinstance(b, RawPage)
            got = (a.page_no, a.width, a.height, a.dpi, a.flags)
            assert (b.page_no, b.width, b.height, b.dpi, b.flags) == got, dpi
            assert a.samples is not None and b.samples is None and b.stride == 0
        assert rendered[-1].flags == ["downscaled"] and rendered[-1].dpi < dpi  # type: ignore[union-attr]
    # rendered on demand, a page gets the pixels the eager render gives
    eager, lazy = OpenPdf(doc).pages(dpi=100), OpenPdf(doc).pages(dpi=100, pixels=False)
    first, later = next(eager), next(lazy)  # each valid while its iterator is open
    assert isinstance(first, RawPage) and isinstance(later, RawPage)
    assert later.render() is None
    assert (later.width, later.height, later.stride) == (first.width, first.height, first.stride)
    assert bytes(later.samples) == bytes(first.samples)
