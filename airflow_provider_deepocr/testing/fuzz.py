"""A seeded corpus of damaged documents: valid PDFs, TIFFs, PNGs and JPEGs, then mutated.

Mutations: truncation at random offsets; byte flips anywhere and, in PDFs, in the xref table (or
xref stream), the trailer and inside object streams; absurd ``/Count`` and ``/MediaBox`` values;
absurd image sizes in PNG, JPEG and TIFF headers (PNG CRCs fixed, so the size is what is read);
page trees that loop; zero bytes; duplicate files; and one page built to be slow (a content
stream of millions of tiny text runs). The same ``seed`` gives the same bytes.

``python -m airflow_provider_deepocr.testing.fuzz OUT_DIR [--seed N]`` writes the files.
"""

from __future__ import annotations

import io
import random
import re
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

SLOW_PAGE_NAME = "slow-text-runs.pdf"


def build_pdf(objects: list[bytes], root: int = 1) -> bytes:
    """A PDF of ``objects`` (numbered from 1) with a classic xref table and trailer."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root {root} 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def _stream(data: bytes, compress: bool = False) -> bytes:
    if compress:
        data = zlib.compress(data, 9)
        return f"<< /Length {len(data)} /Filter /FlateDecode >>\nstream\n".encode() + data + b"\nendstream"
    return f"<< /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream"


def text_pdf(pages: int = 3) -> bytes:
    """A born-digital PDF: ``pages`` Letter pages of Helvetica text (objects: 1 catalog, 2 pages,
    3 font, then a page and its content per page)."""
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i in range(pages):
        lines = [f"Page {i + 1}: invoice 2024-{i + 7:03d}, total due 1,{i + 2}34.56 EUR"] + [
            f"Line {k}: item {k * 7 + i} delivered, amount {k * 13 + i}.50" for k in range(1, 12)
        ]
        ops = "BT /F1 11 Tf 72 720 Td 14 TL " + " ".join(f"({t}) Tj T*" for t in lines) + " ET"
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {5 + 2 * i} 0 R "
            "/Resources << /Font << /F1 3 0 R >> >> >>".encode()
        )
        objects.append(_stream(ops.encode()))
    return build_pdf(objects)


def slow_page_pdf(runs: int = 6_000_000) -> bytes:
    """One page whose content stream is ``runs`` tiny text runs on the page (about 280 KB
    compressed): seconds of MuPDF time to render and to extract its text."""
    ops = b"BT /F1 1 Tf 50 400 Td " + b"0.0002 0 Td (a) Tj " * runs + b"ET"
    return build_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            _stream(ops, compress=True),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )


def objstm_pdf(data: bytes) -> bytes:
    """``data`` saved by PyMuPDF with object streams and an xref stream."""
    import pymupdf

    with pymupdf.open(stream=data, filetype="pdf") as doc:
        return doc.tobytes(garbage=1, deflate=True, use_objstms=1, no_new_id=True)


def _picture(size: tuple[int, int] = (240, 120), mode: str = "RGB") -> object:
    from PIL import Image, ImageDraw

    img = Image.new(mode, size, "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((10, 10, size[0] - 10, 40), outline="black")
    draw.text((14, 50), "TOTAL 1,234.56", fill="black")
    return img


def image_bytes(fmt: str) -> bytes:
    """A small picture with a box and a line of text, as PNG, JPEG or (two-frame) TIFF."""
    buf = io.BytesIO()
    img = _picture()
    if fmt == "TIFF":
        img.save(buf, format="TIFF", save_all=True, append_images=[_picture((120, 240))])
    else:
        img.save(buf, format=fmt)
    return buf.getvalue()


def seeds() -> dict[str, bytes]:
    plain = text_pdf(3)
    return {
        "plain.pdf": plain,
        "objstm.pdf": objstm_pdf(plain),
        "picture.png": image_bytes("PNG"),
        "picture.jpg": image_bytes("JPEG"),
        "picture.tif": image_bytes("TIFF"),
    }


# --------------------------------------------------------------------------------------------
# Mutations


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(0, len(data))]


def flip(data: bytes, rng: random.Random, lo: int = 0, hi: int | None = None) -> bytes:
    """1 to 8 random bytes in ``data[lo:hi]`` replaced by random values."""
    hi = len(data) if hi is None else hi
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(lo, max(lo + 1, hi))] = rng.randrange(256)
    return bytes(out)


def pdf_region(data: bytes, region: str, rng: random.Random) -> tuple[int, int]:
    """Where a PDF region lies: ``xref`` (the table, or the xref stream), ``trailer`` (from the
    trailer or startxref to the end) or ``stream`` (inside a random stream)."""
    if region == "xref":
        start = data.rfind(b"\nxref")
        if start < 0:
            start = data.rfind(b"/XRef")
        end = data.find(b"trailer", start)
        return start, end if end > start else max(start + 1, len(data) - 30)
    if region == "trailer":
        start = data.rfind(b"trailer")
        return (start if start >= 0 else data.rfind(b"startxref")), len(data)
    spans = [(m.end(), data.find(b"endstream", m.end())) for m in re.finditer(rb"stream\r?\n", data)]
    spans = [(a, b) for a, b in spans if b > a]
    return rng.choice(spans) if spans else (0, len(data))


def set_count(data: bytes, value: str) -> bytes:
    return re.sub(rb"/Count \d+", f"/Count {value}".encode(), data, count=1)


def set_mediabox(data: bytes, box: str) -> bytes:
    return re.sub(rb"/MediaBox \[[^\]]*\]", f"/MediaBox [{box}]".encode(), data)


def loop_page_tree(data: bytes, variant: int) -> bytes:
    """A page tree of :func:`text_pdf` bytes made to loop (objects 2: the root, 4: page 1)."""
    if variant == 0:  # the root lists itself as a kid
        return re.sub(rb"/Kids \[", b"/Kids [2 0 R ", data, count=1)
    if variant == 1:  # page 1 is an intermediate node whose kid is the root
        return data.replace(
            b"<< /Type /Page /Parent 2 0 R", b"<< /Type /Pages /Kids [2 0 R] /Count 3 /Parent 2 0 R", 1
        )
    if variant == 2:  # the same kid three times
        return re.sub(rb"/Kids \[[^\]]*\]", b"/Kids [4 0 R 4 0 R 4 0 R]", data, count=1)
    return data.replace(b"/Pages 2 0 R", b"/Pages 4 0 R", 1).replace(  # root is a page whose parent is a node
        b"/Type /Pages /Kids", b"/Type /Pages /Parent 4 0 R /Kids", 1
    )


def png_size(data: bytes, width: int, height: int) -> bytes:
    """The IHDR's size replaced (its CRC recomputed, so readers believe it)."""
    out = bytearray(data)
    out[16:24] = struct.pack(">II", width, height)
    out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])))
    return bytes(out)


def jpeg_size(data: bytes, width: int, height: int) -> bytes:
    out = bytearray(data)
    m = re.search(rb"\xff[\xc0-\xc2]", data)
    if m is None:
        return data
    out[m.start() + 5 : m.start() + 9] = struct.pack(">HH", min(height, 0xFFFF), min(width, 0xFFFF))
    return bytes(out)


def tiff_size(data: bytes, width: int, height: int) -> bytes:
    """The first IFD's ImageWidth/ImageLength replaced (little-endian TIFF, as Pillow writes)."""
    out = bytearray(data)
    ifd = struct.unpack_from("<I", data, 4)[0]
    for k in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * k
        tag, kind = struct.unpack_from("<HH", data, entry)
        if tag in (256, 257):
            value = width if tag == 256 else height
            if kind == 3:
                struct.pack_into("<H", out, entry + 8, min(value, 0xFFFF))
            else:
                struct.pack_into("<I", out, entry + 8, value)
    return bytes(out)


_COUNTS = ["0", "-1", "9999999999", "2147483648", "18446744073709551617", "5", "1.5", "x"]
_BOXES = [
    "0 0 0 0",
    "0 0 1e9 1e9",
    "0 0 -612 -792",
    "0 0 99999999 1",
    "0 0 612 0.0000001",
    "a b c d",
    "0 0 612",
    "",
]
_IMAGE_SIZES = [(0, 0), (1, 65535), (65535, 65535), (100000, 100000), (2**31 - 1, 1)]


def make_corpus(seed: int = 20) -> dict[str, bytes]:
    """Name -> bytes, at least 500 files, the same for the same ``seed``."""
    rng = random.Random(seed)
    base = seeds()
    corpus: dict[str, bytes] = {f"valid-{name}": data for name, data in base.items()}
    for name, data in base.items():
        for k in range(40):
            corpus[f"trunc-{k:02d}-{name}"] = truncate(data, rng)
        for k in range(25):
            corpus[f"flip-{k:02d}-{name}"] = flip(data, rng)
    for name in ("plain.pdf", "objstm.pdf"):
        data = base[name]
        for region in ("xref", "trailer", "stream"):
            for k in range(15):
                lo, hi = pdf_region(data, region, rng)
                corpus[f"flip-{region}-{k:02d}-{name}"] = flip(data, rng, lo, hi)
        for k, value in enumerate(_COUNTS):
            corpus[f"count-{k}-{name}"] = set_count(data, value)
        for k, box in enumerate(_BOXES):
            corpus[f"mediabox-{k}-{name}"] = set_mediabox(data, box)
    for k in range(4):
        corpus[f"loop-{k}-plain.pdf"] = loop_page_tree(base["plain.pdf"], k)
    sizers: dict[str, Callable[[bytes, int, int], bytes]] = {
        "png": png_size,
        "jpg": jpeg_size,
        "tif": tiff_size,
    }
    for ext, sizer in sizers.items():
        for k, (w, h) in enumerate(_IMAGE_SIZES):
            corpus[f"size-{k}-picture.{ext}"] = sizer(base[f"picture.{ext}"], w, h)
    corpus["zero-empty.pdf"] = b""
    corpus["zero-one.pdf"] = b"\x00"
    corpus["zero-4k.tif"] = b"\x00" * 4096
    for name, data in base.items():
        for k in range(2):
            at = rng.randrange(0, len(data))
            corpus[f"zeroed-{k}-{name}"] = data[:at] + b"\x00" * 1024 + data[at + 1024 :]
    names = sorted(corpus)
    for k in range(20):
        original = rng.choice(names)
        corpus[f"dup-{k:02d}-{original}"] = corpus[original]
    corpus[SLOW_PAGE_NAME] = slow_page_pdf()
    return corpus


def write_corpus(out_dir: str | Path, seed: int = 20) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in make_corpus(seed).items():
        path = out / name
        path.write_bytes(data)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args(argv)
    print(f"{len(write_corpus(args.out_dir, args.seed))} files in {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
