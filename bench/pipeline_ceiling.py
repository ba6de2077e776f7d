"""The CPU ceiling of the pipeline: N one-page documents through every stage with a 0-second engine.

Half the documents are born-digital PDFs (a text layer: ``text_layer="auto"`` sends them to
pdf-text), half are scans (image-only PDFs, rendered and sent to the sleep engine at
``seconds_per_page=0``), so what is measured is the CPU side alone: listing, rendering, OCR
bookkeeping, parse + validate, load (SQLite warehouse, local work area; the S3-with-latency case is
not measured here). The stages run one after another in this process, each timed (wall and CPU).

Validation is measured side by side in the same process, on the same documents' records: one GX
run per table per document (``validate_one``, the way before issue 22) against one run per table
per batch (``validate_documents``, what the parse stage does now). The parse + validate stage is
also run both ways (the per-document one first; its records are the same).

    .venv/bin/python bench/pipeline_ceiling.py [--docs 120]

Last line: ``e2e_pages_per_s=<f> validate_docs_per_s=<f> validate_docs_per_s_per_document_baseline=<f>
load_avg=<f>``.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_documents(folder: Path, n: int) -> None:
    """``n`` one-page documents: even ones born-digital, odd ones scanned (an image, no text)."""
    import pymupdf
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        doc = pymupdf.open()
        page = doc.new_page(width=612, height=792)
        if i % 2 == 0:
            for line in range(12):
                page.insert_text((72, 90 + 40 * line), f"Invoice {i} line {line}: amount {i * 7 + line}.00")
        else:
            img = Image.new("L", (850, 1100), 255)
            draw = ImageDraw.Draw(img)
            for line in range(12):
                draw.text((100, 120 + 60 * line), f"Scanned letter {i} line {line}", fill=0)
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            page.insert_image(page.rect, stream=buf.getvalue())
        doc.save(folder / f"doc_{i:04d}.pdf", garbage=3, deflate=True, no_new_id=True)
        doc.close()


@contextmanager
def timed(out: dict[str, tuple[float, float]], name: str) -> Iterator[None]:
    w0, c0 = time.perf_counter(), time.process_time()
    yield
    out[name] = (time.perf_counter() - w0, time.process_time() - c0)


@contextmanager
def per_document_validation() -> Iterator[None]:
    """The parse stage validating one document per GX run, as before the batches."""
    from airflow_provider_deepocr.core import validate

    batched = validate.validate_documents

    def one_by_one(results: Any, suites: Any = None, *, defaults: bool = True) -> Any:
        return [validate.validate_one(r, suites, defaults=defaults) for r in results]

    validate.validate_documents = one_by_one  # type: ignore[assignment]
    try:
        yield
    finally:
        validate.validate_documents = batched  # type: ignore[assignment]


def docs_per_s(fn: Callable[[], Any], n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/pipeline_ceiling.py", description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=120, help="one-page documents (half scans)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("great_expectations", "airflow_provider_deepocr.core.pipeline.parse_validate"):
        logging.getLogger(noisy).setLevel(logging.ERROR)  # GX's temp dir note; warn-mode verdicts

    from airflow_provider_deepocr.core import validate
    from airflow_provider_deepocr.core.engines import get_engine
    from airflow_provider_deepocr.core.pipeline import (
        OcrEntry,
        OcrSettings,
        StageContext,
        build_records,
        config_fingerprint,
        list_source,
        load_manifest,
        ocr_manifest,
        parse_manifest,
    )
    from airflow_provider_deepocr.core.sources import WorkArea, storage_for
    from airflow_provider_deepocr.core.warehouse import Warehouse

    home = Path(tempfile.mkdtemp(prefix="deepocr-ceiling-"))
    write_documents(home / "docs", args.docs)
    print(f"GX import + context: {validate.warm_up():.2f}s (once per process, not in the stages)")
    work_root = str(home / "work")
    ctx = StageContext(
        WorkArea(work_root, storage_for(work_root)), "ceiling", settings=OcrSettings(text_layer="auto")
    )
    engine = get_engine("sleep", seconds_per_page=0)
    wh = Warehouse(f"sqlite:///{home / 'wh.db'}")
    wh.create()
    st: dict[str, tuple[float, float]] = {}
    with timed(st, "list"):
        listed = list_source(
            ctx, str(home / "docs"), live_fingerprint=config_fingerprint(engine, ctx.settings)
        )
    with timed(st, "ocr"):
        ocr = ocr_manifest(ctx, listed.manifest_uri, engine)
    with timed(st, "parse_validate_per_document"), per_document_validation():
        parse_manifest(ctx, ocr.manifest_uri, on_failure="warn")
    with timed(st, "parse_validate"):
        parsed = parse_manifest(ctx, ocr.manifest_uri, on_failure="warn")
    with timed(st, "load"):
        loaded = load_manifest(ctx, parsed.manifest_uri, wh)
    pages = ocr.total_pages
    assert loaded.pages == pages == args.docs, (loaded.pages, pages, loaded.failed)
    for name, (wall, cpu) in st.items():
        print(f"stage {name:28s} {pages / wall:9.1f} pages/s  {1000 * cpu / pages:8.2f} ms CPU/page")
    e2e_wall = sum(w for k, (w, _) in st.items() if k != "parse_validate_per_document")
    e2e_cpu = sum(c for k, (_, c) in st.items() if k != "parse_validate_per_document")
    print(
        f"end to end (batched validation): {pages / e2e_wall:.1f} pages/s, "
        f"{1000 * e2e_cpu / pages:.2f} ms CPU/page"
    )

    entries = [OcrEntry.from_dict(d) for d in ctx.work.read_jsonl(ocr.manifest_uri)]
    results = [build_records(e, ctx.work) for e in entries]
    n = len(results)
    one = docs_per_s(lambda: [validate.validate_one(r) for r in results], n)
    batched = docs_per_s(lambda: validate.validate_documents(results), n)
    print(f"validate, {n} one-page documents: per document {one:.1f} docs/s, batched {batched:.1f} docs/s")
    wh.dispose()
    print(
        f"e2e_pages_per_s={pages / e2e_wall:.1f} validate_docs_per_s={batched:.1f} "
        f"validate_docs_per_s_per_document_baseline={one:.1f} load_avg={os.getloadavg()[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
