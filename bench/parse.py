"""Benchmark the grounded-output parser against a bare regex pass (the floor).

Run: ``.venv/bin/python bench/parse.py [--mb 50]``

Pages are the real DeepSeek-OCR fixtures (``../shared/fixtures/deepseek_raw``, or
``$DEEPOCR_FIXTURES/deepseek_raw``) repeated until the total reaches ``--mb`` megabytes (UTF-8).
The floor is ``re.finditer`` of the ref/det pattern over every page, reading the label and the
coordinate text of each match: what any parser of this format must at least do. The parser does
everything else too (boxes, kinds, plain text, tables, captions, repetition checks, markdown).

Last line, for scripts: ``pages_per_s=<float> fraction_of_floor=<float>``.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from airflow_provider_deepocr.core.parse import parse_page  # noqa: E402

FIXTURES = Path(os.environ.get("DEEPOCR_FIXTURES", REPO.parent / "shared" / "fixtures")) / "deepseek_raw"
FLOOR_RE = re.compile(r"<\|ref\|>(.*?)<\|/ref\|>\s*<\|det\|>(.*?)<\|/det\|>", re.S)


def floor_pass(pages: list[str]) -> int:
    n = 0
    for page in pages:
        for m in FLOOR_RE.finditer(page):
            m.group(1)
            m.group(2)
            n += 1
    return n


def parse_pass(pages: list[str]) -> int:
    n = 0
    for i, page in enumerate(pages):
        n += len(parse_page(page, i + 1, 1654, 2339).blocks)
    return n


def best_of(fn, pages: list[str], repeat: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn(pages)
        best = min(best, time.perf_counter() - t0)
    return best


def per_fixture_us(texts: list[str], repeat: int, n: int = 300) -> list[float]:
    """Best-of-``repeat`` microseconds per page for each fixture parsed ``n`` times in a row."""
    return [best_of(parse_pass, [text] * n, repeat) / n * 1e6 for text in texts]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=50.0, help="total size of the pages parsed (MB)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs; the best counts")
    args = ap.parse_args()

    paths = sorted(FIXTURES.glob("*.txt"))
    texts = [p.read_text(encoding="utf-8") for p in paths]
    if not texts:
        sys.exit(f"no fixtures under {FIXTURES}")
    unit = sum(len(t.encode("utf-8")) for t in texts)
    reps = max(1, int(args.mb * 1e6 / unit) + 1)
    pages = texts * reps
    total_mb = unit * reps / 1e6

    floor_s = best_of(floor_pass, pages, args.repeat)
    parse_s = best_of(parse_pass, pages, args.repeat)
    floor_mbs = total_mb / floor_s
    parse_mbs = total_mb / parse_s
    pages_per_s = len(pages) / parse_s
    fraction = floor_s / parse_s
    for path, text, us in zip(paths, texts, per_fixture_us(texts, args.repeat), strict=True):
        print(f"  {path.name}: {len(text.encode('utf-8')):6d} bytes  {us:7.1f} us/page")
    print(f"pages: {len(pages)} ({len(texts)} fixtures x {reps}), {total_mb:.1f} MB")
    print(f"floor (regex ref/det pass): {floor_mbs:8.1f} MB/s  {len(pages) / floor_s:10.0f} pages/s")
    print(f"parse_page:                 {parse_mbs:8.1f} MB/s  {pages_per_s:10.0f} pages/s")
    print(f"pages_per_s={pages_per_s:.1f} fraction_of_floor={fraction:.3f}")


if __name__ == "__main__":
    main()
