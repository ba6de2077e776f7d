"""The cost of the per-page time limit on the normal path: render + text layer of born-digital
pages in this process (what the OCR stage does today: ``render_pages`` and the text layer's
``page_blocks`` of each page) vs through ``core.pagework.PageWork`` (a child process per stage,
pages sent back as raw pixels), in one run, on the same PDF.

Pages: the sample financial statement's pages repeated to ``--pages`` (default 500), rendered at
``--dpi`` (default 144, the pipeline's default). ``with`` includes starting the child once.

    .venv/bin/python bench/pagework.py [--pages 500] [--dpi 144] [--repeat 1]

Last line: ``pages=<n> dpi=<d> without_s=<float> with_s=<float> ratio=<with/without>``
(the best of ``--repeat`` runs each, interleaved).
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


def with_pagework(doc, dpi: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    from airflow_provider_deepocr.core.pagework import PageResult, PageWork

    t0 = time.perf_counter()
    blocks = 0
    with PageWork(page_timeout_s=60, dpi=dpi, text_layer=True) as work:
        for item in work.open(doc):
            assert isinstance(item, PageResult) and item.page.image.size[0] > 0
            blocks += len(item.blocks or [])
    return time.perf_counter() - t0, blocks


def main(argv: list[str] | None = None) -> int:
    from airflow_provider_deepocr.core.records import Document, DocumentRef

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--dpi", type=int, default=144)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    doc = Document.from_bytes(DocumentRef(uri="mem://bench.pdf"), born_digital_pdf(args.pages))
    best_without = best_with = float("inf")
    for k in range(args.repeat):
        s0, b0 = without(doc, args.dpi)
        s1, b1 = with_pagework(doc, args.dpi)
        assert b0 == b1, (b0, b1)  # the same text-layer blocks both ways
        print(f"run {k + 1}: without {s0:.2f}s with {s1:.2f}s ({b0} text blocks)", flush=True)
        best_without, best_with = min(best_without, s0), min(best_with, s1)
    print(
        f"pages={args.pages} dpi={args.dpi} without_s={best_without:.2f} with_s={best_with:.2f} "
        f"ratio={best_with / best_without:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
