"""Great Expectations validation speed with the default suite: 100k and 1M block rows.

GX is imported (and its ephemeral context built) once per process; that cost is printed apart.
Each size is one document with 1,000 blocks per page, validated by ``validate_document`` exactly
as the pipeline does (pages, blocks; no tables).

    .venv/bin/python bench/validate.py

Last line: ``rows_per_s_1m=<float> import_seconds=<float>``.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def document(n_pages: int, blocks: int = 1000):  # type: ignore[no-untyped-def]
    from airflow_provider_deepocr.core.records import (
        Block,
        DocumentRef,
        DocumentResult,
        PageRecord,
        ParsedPage,
    )

    doc_id = "b" * 64
    result = DocumentResult(DocumentRef("s3://bench/big.pdf"), doc_id, "application/pdf", n_pages, "fp")
    for p in range(1, n_pages + 1):
        bl = [
            Block(i, "text", "text", (10, i % 990, 900, i % 990 + 8), None, f"row {i}", f"row {i}")
            for i in range(blocks)
        ]
        parsed = ParsedPage(p, bl, [], "page text", [])
        result.pages.append(
            PageRecord(
                doc_id,
                p,
                "s3://bench/big.pdf",
                None,
                1191,
                1684,
                144,
                "deepseek-ocr2",
                "m",
                None,
                None,
                None,
                "eos",
                1,
                1,
                1,
                0.1,
                "fp",
                parsed,
            )  # fmt: skip
        )
    return result


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    from airflow_provider_deepocr.core import validate

    t0 = time.perf_counter()
    validate.warm_up()
    import_s = time.perf_counter() - t0
    print(f"GX import + ephemeral context: {import_s:.2f}s (once per worker process)")
    rps = 0.0
    for n_pages in (100, 1000):
        doc = document(n_pages)
        n = n_pages * 1000
        t0 = time.perf_counter()
        report = validate.validate_document(doc)
        sec = time.perf_counter() - t0
        rps = n / sec
        print(
            f"{n:>9,} block rows: {sec:.2f}s, {rps:,.0f} rows/s, "
            f"{len(report.rows)} expectations, passed={report.passed}"
        )
    print(f"rows_per_s_1m={rps:.0f} import_seconds={import_s:.2f}")


if __name__ == "__main__":
    main()
