"""The fast preprocessor gives the stock processor's tensors and tokens, and the same OCR output."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from airflow_provider_deepocr.core.engines.preprocess import (
    FastDeepseekOcr2ImageProcessor,
    fast_image_processor,
)
from airflow_provider_deepocr.core.records import PageImage

PROMPT = "<image>\n<|grounding|>Convert the document to markdown."


def _page(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    img = Image.new("RGB", size, (250, 248, 240))
    draw = ImageDraw.Draw(img)
    for y in range(10, size[1] - 10, 18):
        draw.text((8, y), f"line {y} total 1,234.{y % 100:02d}", fill=(10, 10, 10))
    return img.convert(mode)


@pytest.fixture(scope="module")
def processors(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoProcessor

    stock = AutoProcessor.from_pretrained(tiny_model_dir)
    fast = copy.copy(stock)
    fast.image_processor = fast_image_processor(stock.image_processor)
    assert isinstance(fast.image_processor, FastDeepseekOcr2ImageProcessor)
    return stock, fast


# A4 at 144 dpi (6 tiles); a receipt (no tiles); tall and wide pages, where Pillow >= 13 runs the
# vertical pass first for some views; square and exact-size edge cases
@pytest.mark.parametrize(
    "size",
    [(1191, 1684), (640, 200), (300, 900), (2000, 800), (1000, 700), (769, 769), (768, 1000), (1024, 1024)],
    ids=str,
)
def test_tensors_and_tokens_match_the_stock_processor(processors, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    stock, fast = processors
    img = _page(size)
    a = stock(images=[img], text=[PROMPT], return_tensors="pt")
    b = fast(images=[img], text=[PROMPT], return_tensors="pt")
    assert a["input_ids"].tolist() == b["input_ids"].tolist()
    assert a["num_local_patches"].tolist() == b["num_local_patches"].tolist()
    assert set(a.keys()) == set(b.keys())
    for key in a:
        if key.startswith("pixel_values"):
            assert a[key].shape == b[key].shape
            assert float((a[key] - b[key]).abs().max()) <= 1e-2


def test_a_batch_of_mixed_pages_and_a_grey_page(processors) -> None:  # type: ignore[no-untyped-def]
    stock, fast = processors
    imgs = [_page((1191, 1684)), _page((640, 200), "L"), _page((300, 900))]
    a = stock(images=imgs, text=[PROMPT] * 3, return_tensors="pt", padding=True)
    b = fast(images=imgs, text=[PROMPT] * 3, return_tensors="pt", padding=True)
    assert a["input_ids"].tolist() == b["input_ids"].tolist()
    for key in ("pixel_values", "pixel_values_local"):
        assert float((a[key] - b[key]).abs().max()) <= 1e-2


def test_unsupported_options_fall_back_to_the_stock_code(processors) -> None:  # type: ignore[no-untyped-def]
    stock, fast = processors
    img = _page((900, 700))
    assert not fast.image_processor.supports([img], {"max_patches": 3})
    a = stock.image_processor([img], max_patches=3, return_tensors="pt")
    b = fast.image_processor([img], max_patches=3, return_tensors="pt")
    assert float((a["pixel_values_local"] - b["pixel_values_local"]).abs().max()) == 0.0


def test_the_engine_reads_the_same_text_with_either_path(tiny_model_dir: Path) -> None:
    from airflow_provider_deepocr.core.engines.deepseek import DeepSeekOcr2Engine

    pages = [
        PageImage("p" * 64, i + 1, _page(s), 144, s[0], s[1])
        for i, s in enumerate([(1191, 1684), (640, 200)])
    ]
    fast = DeepSeekOcr2Engine(str(tiny_model_dir), max_new_tokens=10, batch_size=2)
    stock = DeepSeekOcr2Engine(str(tiny_model_dir), max_new_tokens=10, batch_size=2, fast_preprocess=False)
    assert isinstance(fast._processor.image_processor, FastDeepseekOcr2ImageProcessor)
    assert not isinstance(stock._processor.image_processor, FastDeepseekOcr2ImageProcessor)
    assert [r.raw_text for r in fast.ocr(pages)] == [r.raw_text for r in stock.ocr(pages)]


def test_transparency_is_composited_onto_white_like_the_stock(processors) -> None:  # type: ignore[no-untyped-def]
    stock, fast = processors
    img = _page((500, 900)).convert("RGBA")
    img.putalpha(Image.linear_gradient("L").resize((500, 900)))
    for im in (img, img.convert("LA"), _page((900, 300)).convert("P")):
        a = stock.image_processor([im], return_tensors="pt")
        b = fast.image_processor([im], return_tensors="pt")
        for key in a:
            if key.startswith("pixel_values"):
                assert float((a[key] - b[key]).abs().max()) <= 1e-2


def test_pillow_pass_order_is_known_and_the_device_path_matches_pil() -> None:
    """The GPU path (float64 passes, rounded like PIL) checked on CPU against PIL itself."""
    import numpy as np
    import torch

    from airflow_provider_deepocr.core.engines.preprocess import _pass_order, _pillow_rule, _resize_on_device

    assert _pillow_rule() in ("pr9549", "hv")
    assert _pass_order((100, 100), (100, 100)) == ""
    assert _pass_order((100, 100), (50, 100)) == "h"
    assert _pass_order((100, 100), (200, 300)) == "hv"
    img = _page((300, 220))
    for size in [(420, 180), (120, 90), (200, 400), (300, 100)]:
        pil = np.asarray(img.resize(size, Image.Resampling.BICUBIC)).astype(int)
        dev = _resize_on_device(img, size, torch.device("cpu")).permute(1, 2, 0).numpy().astype(int)
        assert np.abs(pil - dev).max() <= 1, size


def test_output_arrays_are_recycled_only_once_the_caller_lets_go(processors) -> None:  # type: ignore[no-untyped-def]
    import torch

    stock, fast = processors
    ip = fast.image_processor
    a_img, b_img = _page((1191, 1684)), _page((1191, 1684), "L").convert("RGB").rotate(180)
    a = ip([a_img], return_tensors="pt")
    keep = a["pixel_values_local"][2:4]  # a view keeps the whole array in use
    a_copy = {k: a[k].clone() for k in ("pixel_values", "pixel_values_local")}
    a_ptrs = {k: a[k].data_ptr() for k in a_copy}
    del a
    b = ip([b_img], return_tensors="pt")
    assert b["pixel_values_local"].data_ptr() != a_ptrs["pixel_values_local"]
    assert b["pixel_values"].data_ptr() == a_ptrs["pixel_values"]  # let go of: written again
    assert torch.equal(keep, a_copy["pixel_values_local"][2:4])
    del keep
    c = ip([a_img], return_tensors="pt")
    assert c["pixel_values_local"].data_ptr() == a_ptrs["pixel_values_local"]
    ref = stock.image_processor([a_img], return_tensors="pt")
    for key in a_copy:
        assert float((c[key] - a_copy[key]).abs().max()) == 0.0
        assert float((c[key] - ref[key]).abs().max()) <= 1e-2
    b_ref = stock.image_processor([b_img], return_tensors="pt")
    for key in a_copy:
        assert float((b[key] - b_ref[key]).abs().max()) <= 1e-2
    off = FastDeepseekOcr2ImageProcessor(stock.image_processor, keep_bytes=0)
    d = off([a_img], return_tensors="pt")
    assert float((d["pixel_values_local"] - ref["pixel_values_local"]).abs().max()) <= 1e-2


@pytest.mark.parametrize("size", [(1536, 300), (724, 300), (37, 300), (400, 300)], ids=str)
def test_the_first_pass_skips_flat_rows_exactly(size: tuple[int, int]) -> None:
    """Rows of one colour bypass PIL (they resample to themselves): the buffer equals PIL's pass."""
    from concurrent.futures import Future

    import numpy as np

    from airflow_provider_deepocr.core.engines.preprocess import _first_pass, _scan_rows, _strips

    rng = np.random.default_rng(7)
    arr = rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)
    for y in rng.choice(300, 200, replace=False):  # flat rows of random colours, alone and in runs
        arr[y] = rng.integers(0, 256, 3, dtype=np.uint8)
    arr[:40] = (255, 255, 255)
    arr[-1] = (0, 0, 0)
    img = Image.fromarray(arr, "RGB")
    nw = size[0]
    colw = 256 if nw > 256 else nw
    buf, jobs = _first_pass(img, (nw, 2 * 300), "hv", 4, colw)
    for job, (a, b) in zip(jobs, _strips(300, 0, 4), strict=True):
        scan: Future = Future()
        scan.set_result(_scan_rows(img, a, b))
        job(scan)
    want = np.asarray(img.resize((nw, 300), Image.Resampling.BICUBIC)).transpose(2, 0, 1)
    got = np.concatenate([buf[j, :, :, : min(colw, nw - j * colw)] for j in range(buf.shape[0])], axis=-1)
    assert np.array_equal(got, want)
