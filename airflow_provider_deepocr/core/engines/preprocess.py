"""A faster DeepSeek-OCR-2 image preprocessor for CPU workers, equal to the stock one within 1e-2.

The stock ``DeepseekOcr2ImageProcessorPil`` spends ~270 ms on a dense A4 page at 144 DPI (a global
1024 view + 6 tiles of 768): it converts the page to a float array, back to PIL for each resize,
and rescales and normalises every view in separate float32 passes. Here each view is resized once
straight from the uint8 PIL image (the same bicubic filter), the tiles are cut from one resized
canvas, and rescale + normalise is one fused multiply-add per channel in torch.

:func:`fast_image_processor` wraps a stock processor; calls it cannot reproduce exactly (other
options, numpy inputs) go to the stock code, so the wrapper is always safe to install.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_PASS_THROUGH = {"return_tensors"}
_MISSING = object()


class FastDeepseekOcr2ImageProcessor:
    """Drop-in for ``DeepseekOcr2ImageProcessorPil`` (attributes delegate to the stock object)."""

    def __init__(self, stock: Any) -> None:
        import torch

        self._stock = stock
        mean = torch.tensor(stock.image_mean, dtype=torch.float32)
        std = torch.tensor(stock.image_std, dtype=torch.float32)
        factor = float(stock.rescale_factor) if stock.do_rescale else 1.0
        if stock.do_normalize:
            self._scale = (factor / std).view(3, 1, 1)
            self._bias = (-mean / std).view(3, 1, 1)
        else:
            self._scale = torch.full((3, 1, 1), factor)
            self._bias = torch.zeros((3, 1, 1))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stock, name)

    def supports(self, images: Sequence[Any], kwargs: dict[str, Any]) -> bool:
        from PIL import Image

        s = self._stock
        bicubic = int(getattr(s, "resample", _BICUBIC)) == Image.Resampling.BICUBIC
        if not (s.do_resize and s.do_convert_rgb and bicubic):
            return False
        if any(not isinstance(im, Image.Image) for im in images):
            return False
        # the processor passes some settings explicitly; they must equal the stock ones
        return all(k in _PASS_THROUGH or v is None or getattr(s, k, _MISSING) == v for k, v in kwargs.items())

    def __call__(self, images: Any, **kwargs: Any) -> Any:
        from transformers.image_utils import make_flat_list_of_images

        flat = make_flat_list_of_images(images) if not isinstance(images, list) else images
        if not self.supports(flat, kwargs):
            return self._stock(images, **kwargs)
        return self.preprocess_fast(flat, kwargs.get("return_tensors"))

    preprocess = __call__

    def preprocess_fast(self, images: Sequence[Any], return_tensors: Any = None) -> Any:
        import torch
        from transformers import BatchFeature
        from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import (
            get_optimal_tiled_canvas,
        )

        s = self._stock
        ts = int(s.tile_size)
        globals_: list[Any] = []
        locals_: list[Any] = []
        counts: list[int] = []
        for image in images:
            img = image.convert("RGB") if image.mode != "RGB" else image
            w, h = img.size
            channels = img.split()  # bicubic works per channel: three 'L' resizes in parallel
            grid = None
            if s.crop_to_patches and max(w, h) > ts:
                grid = get_optimal_tiled_canvas((h, w), (ts, ts), s.min_patches, s.max_patches)
            target = s.size["height"] if s.crop_to_patches else ts
            scale = target / max(w, h)
            gsize = (round(w * scale), round(h * scale))
            tiles = None
            if grid is not None:
                cols, rows = grid
                tiles = torch.empty((rows * cols, 3, ts, ts), dtype=torch.float32)
            square = torch.empty((3, max(gsize), max(gsize)), dtype=torch.float32)

            def one_channel(
                c: int,
                ch: Any,
                grid: Any = grid,
                tiles: Any = tiles,
                square: Any = square,
                gsize: tuple[int, int] = gsize,
            ) -> None:
                scale_c, bias_c = float(self._scale[c]), float(self._bias[c])
                if grid is not None:
                    cols, rows = grid
                    big = torch.from_numpy(_array(ch.resize((ts * cols, ts * rows), _BICUBIC)))
                    view = big.view(rows, ts, cols, ts).permute(0, 2, 1, 3).reshape(rows * cols, ts, ts)
                    tiles[:, c].copy_(view).mul_(scale_c).add_(bias_c)
                small = torch.from_numpy(_array(ch.resize(gsize, _BICUBIC)))
                nw, nh = gsize
                sq = square[c]
                sq.fill_(float(s.background_color[c]) * scale_c + bias_c)
                if nw > nh:
                    top = (max(gsize) - nh) // 2
                    sq[top : top + nh, :].copy_(small).mul_(scale_c).add_(bias_c)
                else:
                    left = (max(gsize) - nw) // 2
                    sq[:, left : left + nw].copy_(small).mul_(scale_c).add_(bias_c)

            list(_pool().map(one_channel, range(3), channels))
            if tiles is not None:
                locals_.append(tiles)
                counts.append(tiles.shape[0])
            else:
                counts.append(0)
            globals_.append(square)
        data: dict[str, Any] = {"num_local_patches": counts}
        if str(return_tensors) in ("pt", "TensorType.PYTORCH"):
            data["pixel_values"] = torch.stack(globals_) if len(globals_) > 1 else globals_[0].unsqueeze(0)
            if locals_:
                data["pixel_values_local"] = locals_[0] if len(locals_) == 1 else torch.cat(locals_)
            data["num_local_patches"] = torch.tensor(counts)
            return BatchFeature(data=data)
        data["pixel_values"] = [g.numpy() for g in globals_]
        if locals_:
            data["pixel_values_local"] = [t.numpy() for tiles in locals_ for t in tiles]
        return BatchFeature(data=data, tensor_type=return_tensors)


_BICUBIC = 3  # PIL.Image.Resampling.BICUBIC, the stock processor's filter
_POOL: Any = None


def _pool() -> Any:
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=3, thread_name_prefix="deepocr-preprocess")
    return _POOL


def _array(img: Any) -> Any:
    import numpy as np

    return np.array(img, dtype=np.uint8, copy=True)


def fast_image_processor(stock: Any) -> Any:
    """The fast wrapper for a stock DeepSeek-OCR-2 PIL image processor; anything else unchanged."""
    if type(stock).__name__ != "DeepseekOcr2ImageProcessorPil":
        return stock
    return FastDeepseekOcr2ImageProcessor(stock)
