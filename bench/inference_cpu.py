"""Inference throughput on CPU with the tiny DeepSeek-OCR-2: batch sizes, and overlap on vs off.

Prints pages/s for batch 1, 2, 4, 8 (prefetch on), then for one batch size the wall time with the
render/preprocess thread on and off, next to each stage alone (render+preprocess alone, generate
alone on prepared batches). With overlap the wall time should approach the slowest stage.

    .venv/bin/python bench/inference_cpu.py [--pages 24] [--max-new-tokens 24]

Last line: ``overlap_ratio=<wall with overlap / slowest stage alone>``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_inbox(root: Path, pages: int) -> None:
    """One multi-page PDF of letter-sized text pages (render cost like a real scan at 144 dpi)."""
    import pymupdf

    doc = pymupdf.open()
    for i in range(pages):
        page = doc.new_page(width=420, height=300)
        for line in range(12):
            page.insert_text(
                (30, 30 + 20 * line), f"Invoice {i:04d} line {line:02d}  amount {i * 7 + line}.00"
            )
    root.mkdir(parents=True, exist_ok=True)
    doc.save(root / "batch.pdf")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=24)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--overlap-batch", type=int, default=4)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from airflow_provider_deepocr.core.engines import get_engine
    from airflow_provider_deepocr.core.pipeline import OcrSettings, ocr_documents
    from airflow_provider_deepocr.core.records import Document
    from airflow_provider_deepocr.core.render import render_pages
    from airflow_provider_deepocr.core.sources import WorkArea, list_documents, read_document, storage_for
    from airflow_provider_deepocr.testing.tiny_model import write_tiny_model

    tmp = Path(tempfile.mkdtemp(prefix="deepocr-bench-"))
    write_tiny_model(tmp / "tiny")
    make_inbox(tmp / "inbox", args.pages)
    refs = list_documents(str(tmp / "inbox"))

    def run(batch: int, prefetch: int, tag: str) -> float:
        engine = get_engine(
            "deepseek", model=str(tmp / "tiny"), max_new_tokens=args.max_new_tokens, batch_size=batch
        )
        work = WorkArea(str(tmp / f"work-{tag}"), storage_for(str(tmp)))
        t0 = time.perf_counter()
        entries = ocr_documents(refs, engine, work, OcrSettings(prefetch=prefetch), f"fp-{tag}")
        wall = time.perf_counter() - t0
        assert sum(len(e.pages_ok) for e in entries) == args.pages, entries[0].failures
        return wall

    run(1, 0, "warmup")
    print(
        f"tiny DeepSeek-OCR-2 on CPU, {args.pages} pages of 420x300 pt at 144 dpi, "
        f"{args.max_new_tokens} new tokens"
    )
    base = None
    for batch in (1, 2, 4, 8):
        wall = run(batch, 2, f"b{batch}")
        pps = args.pages / wall
        base = base or pps
        print(f"batch {batch}: {pps:6.2f} pages/s  ({pps / base:.2f}x batch 1)")

    b = args.overlap_batch
    engine = get_engine("deepseek", model=str(tmp / "tiny"), max_new_tokens=args.max_new_tokens, batch_size=b)
    doc: Document = read_document(refs[0], storage_for(refs[0].uri))
    t0 = time.perf_counter()
    pages = list(render_pages(doc, dpi=144))
    prepared = [engine.prepare(pages[i : i + b]) for i in range(0, len(pages), b)]  # type: ignore[attr-defined]
    produce_alone = time.perf_counter() - t0
    t0 = time.perf_counter()
    for p in prepared:
        engine.ocr_prepared(p)  # type: ignore[attr-defined]
    generate_alone = time.perf_counter() - t0
    off = run(b, 0, "off")
    on = run(b, 2, "on")
    slowest = max(produce_alone, generate_alone)
    print(f"batch {b}: render+preprocess alone {produce_alone:.2f}s, generate alone {generate_alone:.2f}s")
    print(f"batch {b}: overlap off {off:.2f}s, overlap on {on:.2f}s (speedup {off / on:.2f}x)")
    print(f"overlap_ratio={on / slowest:.3f}")


if __name__ == "__main__":
    main()
