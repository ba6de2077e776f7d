"""The cost of the per-page time limit on the normal path: render + text layer of born-digital
pages in this process (what the OCR stage does today: ``render_pages`` and the text layer's
``page_blocks`` of each page) vs through ``core.pagework.PageWork`` (a child process per stage,
pages sent back as raw pixels), in one run, on the same PDF.

Pages: the sample financial statement's pages repeated to ``--pages`` (default 500), rendered at
``--dpi`` (default 144, the pipeline's default). ``with`` includes starting the child once.

    .venv/bin/python bench/pagework.py [--pages 500] [--dpi 144] [--repeat 1]

Last line: ``pages=<n> dpi=<d> without_s= with_s= with_warm_s= ratio= ratio_warm=`` (the best of
``--repeat`` runs each, interleaved; ``with_s`` includes starting the child, which imports
PyMuPDF, once per OCR stage; ``with_warm_s`` is a second pass with the child already up).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def born_digital_pdf(pages: int) -> bytes:
    import pymupdf

    from airflow_provider_deepocr.testing.samples import make_financial_statement_pdf

    src = pymupdf.open(stream=make_financial_statement_pdf(), filetype="pdf")
    out = pymupdf.open()
    while out.page_count < pages:
        out.insert_pdf(src, to_page=min(src.page_count, pages - out.page_count) - 1)
    return out.tobytes(garbage=3, deflate=True)


def without(doc, dpi: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """In this process: render every page, then the text-layer blocks of each (one open)."""
    import pymupdf

    from airflow_provider_deepocr.core.engines.pdf_text import page_blocks
    from airflow_provider_deepocr.core.render import render_pages

    t0 = time.perf_counter()
    blocks = 0
    with pymupdf.open(stream=doc.data, filetype="pdf") as pdf:
        for page in render_pages(doc, dpi=dpi):
            assert page.image.size[0] > 0  # type: ignore[union-attr]
            blocks += len(page_blocks(pdf.load_page(page.page_no - 1)))  # type: ignore[union-attr]
    return time.perf_counter() - t0, blocks


def with_pagework(doc, dpi: int) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """Through PageWork: the first pass starts the child (cold), the second reuses it (warm)."""
    from airflow_provider_deepocr.core.pagework import PageResult, PageWork

    times, blocks = [], 0
    t0 = time.perf_counter()
    with PageWork(page_timeout_s=60, dpi=dpi, text_layer=True) as work:
        for _ in range(2):
            blocks = 0
            for item in work.open(doc):
                assert isinstance(item, PageResult) and item.page.image.size[0] > 0
                blocks += len(item.blocks or [])
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
    return times[0], times[1], blocks


def main(argv: list[str] | None = None) -> int:
    from airflow_provider_deepocr.core.records import Document, DocumentRef

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--dpi", type=int, default=144)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    doc = Document.from_bytes(DocumentRef(uri="mem://bench.pdf"), born_digital_pdf(args.pages))
    best = {"without": float("inf"), "cold": float("inf"), "warm": float("inf")}
    for k in range(args.repeat):
        s0, b0 = without(doc, args.dpi)
        cold, warm, b1 = with_pagework(doc, args.dpi)
        assert b0 == b1, (b0, b1)  # the same text-layer blocks both ways
        print(
            f"run {k + 1}: without {s0:.2f}s with {cold:.2f}s (child start included) {warm:.2f}s (warm child)"
        )
        for key, value in (("without", s0), ("cold", cold), ("warm", warm)):
            best[key] = min(best[key], value)
    print(
        f"pages={args.pages} dpi={args.dpi} without_s={best['without']:.2f} with_s={best['cold']:.2f} "
        f"with_warm_s={best['warm']:.2f} ratio={best['cold'] / best['without']:.3f} "
        f"ratio_warm={best['warm'] / best['without']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
