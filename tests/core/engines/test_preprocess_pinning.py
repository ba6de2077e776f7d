"""Pinning: the engine's prepared inputs equal the official ``DeepseekOcr2Processor``'s.

For the same pages (A4 portrait and landscape at 144 dpi, 700x500, a tall page), what
``DeepSeekOcr2Engine.prepare`` hands to ``generate()`` (the fast preprocessor) and what the official
processor makes with its stock image processor agree: image tokens per image, tile grid, and every
pixel of the global view and the tiles within one grey level. Tokenizer-independent: the counts
are of the ``<image>`` placeholder, whose number only the image processor decides.

Both image-processor classes transformers may pick are covered. torchvision cannot be imported
beside this CPU-only torch (its C++ ops do not load), so the torchvision class
(``DeepseekOcr2ImageProcessor``) is stood in for by an object of that class name with the stock
settings whose own ``__call__`` fails: the test shows the engine wraps it in the fast
preprocessor and never calls it, so the tensors are the pinned PIL-exact ones whichever class is
picked. Run with ``-s`` to see the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from airflow_provider_deepocr.core.engines.preprocess import STOCK_CLASSES, FastDeepseekOcr2ImageProcessor
from airflow_provider_deepocr.core.records import PageImage

GREY_LEVEL = 1 / 255 / 0.5  # one grey level after the (x/255 - 0.5) / 0.5 normalisation
SIZES = {
    "A4 portrait": (1191, 1684),
    "A4 landscape": (1684, 1191),
    "700x500": (700, 500),
    "tall": (800, 3000),
}
SETTINGS = (
    "do_resize",
    "do_convert_rgb",
    "resample",
    "background_color",
    "image_mean",
    "image_std",
    "rescale_factor",
    "do_rescale",
    "do_normalize",
    "size",
    "tile_size",
    "crop_to_patches",
    "min_patches",
    "max_patches",
)


def _image(size: tuple[int, int]) -> Image.Image:
    img = Image.new("RGB", size, (252, 250, 245))
    draw = ImageDraw.Draw(img)
    for y in range(20, size[1] - 20, 22):
        draw.text((16, y), f"Invoice line {y}: 3 x widget @ 12.{y % 100:02d} = {3 * y}.00", fill=(15, 15, 15))
    draw.rectangle((size[0] // 2, 40, size[0] - 40, 120), outline=(0, 0, 0), width=2)
    return img


def _torchvision_standin(stock: Any) -> Any:
    """An object of the torchvision class's name, on the base class both backends share
    (``BaseImageProcessor``), with the stock settings; calling it fails."""
    from transformers.image_processing_utils import BaseImageProcessor

    def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the stock torchvision processor was called")

    members = {"__call__": refuse, "preprocess": refuse, "valid_kwargs": type(stock).valid_kwargs}
    members["model_input_names"] = type(stock).model_input_names
    cls = type("DeepseekOcr2ImageProcessor", (BaseImageProcessor,), members)
    obj = cls()
    for name in SETTINGS:
        setattr(obj, name, getattr(stock, name))
    return obj


@pytest.fixture(scope="module")
def official(tiny_model_dir: Path) -> Any:
    from transformers import AutoProcessor, DeepseekOcr2ImageProcessorPil, DeepseekOcr2Processor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    assert isinstance(processor, DeepseekOcr2Processor)
    assert type(processor.image_processor) is DeepseekOcr2ImageProcessorPil  # no torchvision here
    return processor


def _engine(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, picked: str) -> Any:
    from transformers import AutoProcessor

    from airflow_provider_deepocr.core.engines.deepseek import DeepSeekOcr2Engine

    if picked == "torchvision":
        original = AutoProcessor.from_pretrained

        def from_pretrained(*args: Any, **kwargs: Any) -> Any:
            processor = original(*args, **kwargs)
            processor.image_processor = _torchvision_standin(processor.image_processor)
            return processor

        monkeypatch.setattr(AutoProcessor, "from_pretrained", from_pretrained)
    return DeepSeekOcr2Engine(str(tiny_model_dir), max_new_tokens=1)


@pytest.mark.parametrize("picked", ["pil", "torchvision"])
def test_prepared_inputs_equal_the_official_processor(
    tiny_model_dir: Path, official: Any, monkeypatch: pytest.MonkeyPatch, picked: str
) -> None:
    engine = _engine(tiny_model_dir, monkeypatch, picked)
    fast = engine._processor.image_processor
    assert isinstance(fast, FastDeepseekOcr2ImageProcessor)
    assert type(fast.stock).__name__ == STOCK_CLASSES[0 if picked == "pil" else 1]
    image_token = official.image_token_id
    rows = []
    for name, size in SIZES.items():
        img = _image(size)
        page = PageImage("q" * 64, 1, img, 144, *size)
        ours = engine.prepare([page]).inputs
        theirs = official(images=[img], text=[engine.prompt], return_tensors="pt")
        tokens = (
            int((ours["input_ids"] == image_token).sum()),
            int((theirs["input_ids"] == image_token).sum()),
        )
        tiles = (int(ours["num_local_patches"][0]), int(theirs["num_local_patches"][0]))
        assert set(ours.keys()) == set(theirs.keys())
        diff = 0.0
        for key in ("pixel_values", "pixel_values_local"):
            if key in theirs:
                assert ours[key].shape == theirs[key].shape
                diff = max(diff, float((ours[key] - theirs[key]).abs().max()))
        grid = fast.plan(*size)[0]
        rows.append((name, size, tokens, tiles, grid, diff))
        assert tokens[0] == tokens[1] and tiles[0] == tiles[1]
        assert diff <= GREY_LEVEL + 1e-6
    print(f"\n{picked} image processor class: ours vs the official DeepseekOcr2Processor")
    print(
        f"{'image':<13} {'size':<11} {'image tokens':<13} {'tiles':<7} {'grid':<7} max |diff| (grey levels)"
    )
    for name, size, tokens, tiles, grid, diff in rows:
        shown = f"{size[0]}x{size[1]}"
        print(
            f"{name:<13} {shown:<11} {f'{tokens[0]}={tokens[1]}':<13} {f'{tiles[0]}={tiles[1]}':<7} "
            f"{str(grid):<7} {diff:.5f} ({diff / GREY_LEVEL:.2f})"
        )
    # the pages cover no tiles, a wide grid, a tall grid and the full six tiles
    assert {r[3][1] for r in rows} >= {0, 6} and len({r[4] for r in rows}) >= 3


def test_only_the_known_processor_classes_are_wrapped() -> None:
    from airflow_provider_deepocr.core.engines.preprocess import fast_image_processor

    class Other:
        pass

    other = Other()
    assert fast_image_processor(other) is other
    assert STOCK_CLASSES == ("DeepseekOcr2ImageProcessorPil", "DeepseekOcr2ImageProcessor")
