"""DeepSeek-OCR-2 preprocessing on CPU: the stock PIL image processor vs the fast path, side by side.

Pages: a dense A4 page rendered with PyMuPDF at 144 DPI (a global 1024 view + 6 tiles of 768),
plus a receipt (no tiles), a wide page (where Pillow runs its vertical pass first), a letter page,
and the A4 page with noise as a scan has (no row of one colour: the fast path skips PIL's work on
those, common on rendered pages, so the scan shows the speed without that).
The stock processor is single-threaded; the fast one uses up to 4 cores. Both run through the
full processor call (image and prompt) the engine makes; the tensors are compared element by element.

    .venv/bin/python bench/preprocess.py [--repeat 10]

Last line: ``speedup_vs_stock=<float> max_abs_diff=<float>`` (on the A4 page).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def a4_page():  # type: ignore[no-untyped-def]
    import pymupdf
    from PIL import Image

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    for i in range(60):
        page.insert_text(
            (40, 40 + 12.5 * i), "Revenue, net of returns and allowances  1,234.56  " * 2, fontsize=8
        )
    pix = page.get_pixmap(dpi=144, alpha=False)
    return Image.frombytes("RGB", (pix.width, pix.height), pix.samples)


def scan_like(page):  # type: ignore[no-untyped-def]
    """The page with +-6 grey levels of noise: no row is of one colour."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    noisy = np.asarray(page).astype(np.int16) + rng.integers(-6, 7, (page.height, page.width, 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8), "RGB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    import copy

    from transformers import AutoProcessor

    from airflow_provider_deepocr.core.engines.preprocess import fast_image_processor
    from airflow_provider_deepocr.testing.tiny_model import write_tiny_model

    d = tempfile.mkdtemp(prefix="deepocr-pre-")
    write_tiny_model(d)
    stock = AutoProcessor.from_pretrained(d)
    fast = copy.copy(stock)
    fast.image_processor = fast_image_processor(stock.image_processor)
    prompt = "<image>\n<|grounding|>Convert the document to markdown."
    page = a4_page()
    cases = {
        "A4 144dpi": page,
        "receipt 640x200": page.resize((640, 200)),
        "wide 2000x800": page.resize((2000, 800)),
        "letter 1275x1650": page.resize((1275, 1650)),
        "scan 1190x1684": scan_like(page),
    }
    import os

    print(f"{os.cpu_count()} CPU cores; fast preprocessor threads: {fast.image_processor.threads}")
    speedup = diff = 0.0
    for name, img in cases.items():
        times = {}
        outs = {}
        for label, proc in (("stock", stock), ("fast", fast)):
            proc(images=[img], text=[prompt], return_tensors="pt")  # warm
            t0 = time.perf_counter()
            for _ in range(args.repeat):
                outs[label] = proc(images=[img], text=[prompt], return_tensors="pt")
            times[label] = (time.perf_counter() - t0) / args.repeat
        a, b = outs["stock"], outs["fast"]
        assert a["input_ids"].tolist() == b["input_ids"].tolist(), "token counts differ"
        d_max = max(float((a[k] - b[k]).abs().max()) for k in a if k.startswith("pixel_values"))
        tiles = int(a["num_local_patches"].sum())
        print(
            f"{name:16s} tiles {tiles}  tokens {a['input_ids'].shape[1]:5d}  "
            f"stock {times['stock'] * 1000:6.1f} ms  fast {times['fast'] * 1000:6.1f} ms  "
            f"speedup {times['stock'] / times['fast']:.2f}x  max|diff| {d_max:.2e}"
        )
        if name.startswith("A4"):
            speedup, diff = times["stock"] / times["fast"], d_max
    print(f"speedup_vs_stock={speedup:.2f} max_abs_diff={diff:.2e}")


if __name__ == "__main__":
    main()
