"""A faster DeepSeek-OCR-2 image preprocessor, equal to the stock one within 1e-2.

The stock ``DeepseekOcr2ImageProcessorPil`` spends ~200-270 ms of one CPU core on a dense A4 page at
144 DPI (a global 1024 view + 6 tiles of 768): it resizes each view with PIL's bicubic filter on the
RGB image, then rescales, normalises and pads every view in separate float passes in numpy.

The fast path keeps the stock resampling where exactness needs it and does the rest in bulk:

- **Horizontal pass: PIL itself**, the same bicubic filter on the uint8 image (bit-exact), cut into
  horizontal strips that run in parallel threads (PIL releases the GIL while it resamples, and a
  row never depends on another row in this pass).
- **Vertical pass: torch's vectorised uint8 antialiased bicubic** (PIL's algorithm with lower
  fixed-point precision: at most one grey level from PIL, 0.0078 after normalisation).
- **Tiles are views** of the one resized canvas; rescale + normalise is one conversion and one
  multiply-add per cache-sized band, written straight into the output tensor; the global view is
  padded to a square with the stock background colour in the same pass.

On a CUDA device (``device="cuda"``) both passes run on the GPU in float64 (the horizontal pass
rounded to uint8 in between as PIL does) and the outputs stay on the device.

:func:`fast_image_processor` wraps a stock processor; calls it cannot reproduce (other options,
numpy or tensor inputs, a non-bicubic filter) go to the stock code, so the wrapper is always safe.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

_PASS_THROUGH = {"return_tensors"}
_MISSING = object()
_BICUBIC = 3  # PIL.Image.Resampling.BICUBIC, the stock processor's filter
_BAND = 128  # rows per normalisation band (a tile band of 3 x 128 x 768 floats stays in L2)


class FastDeepseekOcr2ImageProcessor:
    """Drop-in for ``DeepseekOcr2ImageProcessorPil`` (unknown attributes delegate to the stock object).

    ``device``: where the resizing and normalisation run and the tensors are returned (``"cpu"``, the
    default, or ``"cuda"``/``"cuda:N"``). ``threads``: parallel PIL strips on CPU (default: the
    number of CPU cores, at most 4).
    """

    def __init__(self, stock: Any, device: str = "cpu", threads: int | None = None) -> None:
        self._stock = stock
        self._stream: Any = None  # the CUDA side stream, made on first use
        self.device = str(device)
        self.threads = max(1, int(threads or min(4, os.cpu_count() or 1)))
        mean = [float(m) for m in stock.image_mean]
        std = [float(s) for s in stock.image_std]
        factor = float(stock.rescale_factor) if stock.do_rescale else 1.0
        if stock.do_normalize:
            self._affine = [(factor / s, -m / s) for m, s in zip(mean, std, strict=True)]
        else:
            self._affine = [(factor, 0.0)] * 3

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._stock, name)

    @property
    def stock(self) -> Any:
        """The wrapped stock image processor."""
        return self._stock

    def supports(self, images: Sequence[Any], kwargs: dict[str, Any]) -> bool:
        """Whether this call is one the fast path reproduces (else the stock code runs)."""
        from PIL import Image

        s = self._stock
        bicubic = int(getattr(s, "resample", _BICUBIC)) == Image.Resampling.BICUBIC
        if not (s.do_resize and s.do_convert_rgb and bicubic):
            return False
        if len(s.background_color) != 3 or len(self._affine) != 3:
            return False
        if self.device == "cpu" and _pillow_rule() is None:
            return False  # a Pillow whose pass order is unknown here: the stock code is exact
        if any(not isinstance(im, Image.Image) or im.width < 1 or im.height < 1 for im in images):
            return False
        # the processor passes some settings explicitly; they must equal the stock ones
        return all(k in _PASS_THROUGH or v is None or getattr(s, k, _MISSING) == v for k, v in kwargs.items())

    def __call__(self, images: Any, **kwargs: Any) -> Any:
        from transformers.image_utils import make_flat_list_of_images

        flat = images if isinstance(images, list) else make_flat_list_of_images(images)
        if not self.supports(flat, kwargs):
            return self._stock(images, **kwargs)
        return self.preprocess_fast(flat, kwargs.get("return_tensors"))

    preprocess = __call__

    # -- the fast path ------------------------------------------------------------------------

    def plan(self, width: int, height: int) -> tuple[tuple[int, int] | None, tuple[int, int]]:
        """(tile grid ``(cols, rows)`` or None, global view size ``(w, h)``) for an image, as the stock."""
        from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import (
            get_optimal_tiled_canvas,
        )

        s = self._stock
        ts = int(s.tile_size)
        grid = None
        if s.crop_to_patches and max(width, height) > ts:
            grid = get_optimal_tiled_canvas((height, width), (ts, ts), s.min_patches, s.max_patches)
        target = s.size["height"] if s.crop_to_patches else ts
        scale = target / max(width, height)
        return grid, (round(width * scale), round(height * scale))

    def preprocess_fast(self, images: Sequence[Any], return_tensors: Any = None) -> Any:
        import torch
        from transformers import BatchFeature

        ts = int(self._stock.tile_size)
        globals_: list[Any] = []
        locals_: list[Any] = []
        counts: list[int] = []
        device = torch.device(self.device)
        for image in images:
            img = _to_rgb(image)
            grid, gsize = self.plan(*img.size)
            if min(gsize) < 1:
                raise ValueError("image too thin for the global view")
            if device.type == "cpu":
                tiles, square = self._views_cpu(img, grid, gsize, ts)
            elif device.type == "cuda":
                # a side stream: the pipeline prepares the next batch while generate() runs on
                # the default stream; the producer thread waits for its own work only
                stream = self._stream = self._stream or torch.cuda.Stream(device)
                with torch.cuda.stream(stream):
                    tiles, square = self._views_on_device(img, grid, gsize, ts, device)
                stream.synchronize()
            else:
                tiles, square = self._views_on_device(img, grid, gsize, ts, device)
            if tiles is not None:
                locals_.append(tiles)
            counts.append(0 if tiles is None else int(tiles.shape[0]))
            globals_.append(square)
        data: dict[str, Any] = {"num_local_patches": counts}
        if str(return_tensors) in ("pt", "TensorType.PYTORCH"):
            data["pixel_values"] = torch.stack(globals_) if len(globals_) > 1 else globals_[0].unsqueeze(0)
            if locals_:
                data["pixel_values_local"] = locals_[0] if len(locals_) == 1 else torch.cat(locals_)
            data["num_local_patches"] = torch.tensor(counts)
            return BatchFeature(data=data)
        data["pixel_values"] = [g.cpu().numpy() for g in globals_]
        if locals_:
            data["pixel_values_local"] = [t.cpu().numpy() for tiles in locals_ for t in tiles]
        return BatchFeature(data=data, tensor_type=return_tensors)

    # -- CPU: PIL's first pass in parallel strips, torch's uint8 kernel for the second ---------

    def _views_cpu(
        self, img: Any, grid: tuple[int, int] | None, gsize: tuple[int, int], ts: int
    ) -> tuple[Any, Any]:
        """All work goes through the pool as a small DAG, so every core stays busy: the first
        passes (PIL, exact, in strips), then the second passes (torch uint8, calling thread) as
        each first pass completes, then the normalisation in bands (numpy, GIL released)."""
        import numpy as np
        import torch

        pool = _pool(self.threads)
        sizes = [gsize] if grid is None else [(ts * grid[0], ts * grid[1]), gsize]
        staged = []
        for size in sizes:
            order = _pass_order(img.size, size)
            buf, jobs = _first_pass(img, size, order[:1] if len(order) == 2 else order, self.threads)
            staged.append((size, order[1:] if len(order) == 2 else "", buf, [pool.submit(j) for j in jobs]))
        gw, gh = gsize
        side = max(gw, gh)
        square = np.empty((3, side, side), dtype=np.float32)
        top, left = ((side - gh) // 2, 0) if gw > gh else (0, (side - gw) // 2)
        tiles = None
        if grid is not None:
            cols, rows = grid
            tiles = np.empty((rows * cols, 3, ts, ts), dtype=np.float32)
        waits: list[Any] = []
        for k, (size, second, buf, futures) in enumerate(staged):
            for f in futures:
                f.result()
            view = _second_pass(buf, size, second).numpy()  # (3, nh, nw) uint8, maybe strided
            if tiles is not None and k == 0:
                cols, rows = grid  # type: ignore[misc]
                canvas = view.reshape(3, rows, ts, cols, ts)
                out = tiles.reshape(rows, cols, 3, ts, ts)
                for r in range(rows):
                    for y in range(0, ts, _BAND):
                        src = canvas[:, r, y : y + _BAND].transpose(2, 0, 1, 3)  # (cols, 3, band, ts)
                        waits.append(pool.submit(self._normalise, out[r, :, :, y : y + _BAND], src, 1))
                continue
            inner = square[:, top : top + gh, left : left + gw]
            for y in range(0, gh, _BAND):
                waits.append(pool.submit(self._normalise, inner[:, y : y + _BAND], view[:, y : y + _BAND], 0))
        bg = self._stock.background_color
        pads = (
            [square[:, :top, :], square[:, top + gh :, :]]
            if gw > gh
            else [square[:, :, :left], square[:, :, left + gw :]]
        )
        for c, (scale, bias) in enumerate(self._affine):
            for p in pads:
                p[c].fill(float(bg[c]) * scale + bias)
        for f in waits:
            f.result()
        return (None if tiles is None else torch.from_numpy(tiles)), torch.from_numpy(square)

    def _normalise(self, dst: Any, src: Any, channel_dim: int) -> None:
        """numpy: ``dst = src * scale + bias`` per channel (uint8 -> float32), in place in ``dst``."""
        import numpy as np

        first = self._affine[0]
        if all(a == first for a in self._affine):
            np.multiply(src, np.float32(first[0]), out=dst)
            np.add(dst, np.float32(first[1]), out=dst)
            return
        for c, (scale, bias) in enumerate(self._affine):
            d = dst.swapaxes(0, channel_dim)[c]
            np.multiply(src.swapaxes(0, channel_dim)[c], np.float32(scale), out=d)
            np.add(d, np.float32(bias), out=d)

    def _square(self, view: Any, device: Any) -> Any:
        """The global view (uint8 ``(3, h, w)``) padded to a square with the background, normalised."""
        import torch

        _, nh, nw = view.shape
        side = max(nh, nw)
        square = torch.empty((3, side, side), dtype=torch.float32, device=device)
        bg = self._stock.background_color
        if nw > nh:
            top = (side - nh) // 2
            inner = square[:, top : top + nh, :]
            pads = [square[:, :top, :], square[:, top + nh :, :]]
        else:
            left = (side - nw) // 2
            inner = square[:, :, left : left + nw]
            pads = [square[:, :, :left], square[:, :, left + nw :]]
        for c, (scale, bias) in enumerate(self._affine):
            for p in pads:
                p[c].fill_(float(bg[c]) * scale + bias)
        for y in range(0, nh, _BAND):
            self._normalise_t(inner[:, y : y + _BAND], view[:, y : y + _BAND], channel_dim=0)
        return square

    # -- a CUDA device: float64 passes on the GPU ---------------------------------------------

    def _views_on_device(
        self, img: Any, grid: tuple[int, int] | None, gsize: tuple[int, int], ts: int, device: Any
    ) -> tuple[Any, Any]:
        import torch

        tiles = None
        if grid is not None:
            cols, rows = grid
            canvas = _resize_on_device(img, (ts * cols, ts * rows), device)
            tiles = torch.empty((rows * cols, 3, ts, ts), dtype=torch.float32, device=device)
            src = canvas.view(3, rows, ts, cols, ts).permute(1, 3, 0, 2, 4)
            self._normalise_t(tiles.view(rows, cols, 3, ts, ts), src, channel_dim=2)
        return tiles, self._square(_resize_on_device(img, gsize, device), device)

    def _normalise_t(self, dst: Any, src: Any, channel_dim: int) -> None:
        """``dst = src * scale + bias`` per channel (uint8 -> float32), in place in ``dst``."""
        dst.copy_(src)
        first = self._affine[0]
        if all(a == first for a in self._affine):
            dst.mul_(first[0]).add_(first[1])
            return
        for c, (scale, bias) in enumerate(self._affine):
            dst.select(channel_dim, c).mul_(scale).add_(bias)


def _strips(extent: int, tile: int, want: int) -> list[tuple[int, int]]:
    """``want``-ish equal strips of ``0:extent``; with ``tile`` > 0 none crosses a tile edge."""
    if not tile:
        n = max(1, min(want, extent // 16))
        cuts = [extent * i // n for i in range(n + 1)]
        return [(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]
    per_tile = max(1, -(-want // max(1, extent // tile)))
    while tile % per_tile:
        per_tile += 1
    step = tile // per_tile
    return [(a, min(extent, a + step)) for a in range(0, extent, step)]


def _first_pass(img: Any, size: tuple[int, int], axis: str, threads: int) -> tuple[Any, list[Any]]:
    """A uint8 ``(h, w, 3)`` buffer that the returned jobs fill with PIL's pass along ``axis``.

    A horizontal pass treats each row on its own and a vertical pass each column, so strips of
    rows (columns) come out exactly as the same rows (columns) of the whole pass; PIL releases
    the GIL while it resamples, so the strips run in parallel. No ``axis``: the image itself.
    """
    import numpy as np

    w, h = img.size
    nw, nh = size
    if not axis:
        buf = np.empty((h, w, 3), dtype=np.uint8)

        def job_copy() -> None:
            buf[...] = np.asarray(img)

        return buf, [job_copy]
    if axis == "h":
        buf = np.empty((h, nw, 3), dtype=np.uint8)

        def job_h(a: int, b: int) -> None:
            buf[a:b] = np.asarray(img.crop((0, a, w, b)).resize((nw, b - a), _BICUBIC))

        return buf, [lambda a=a, b=b: job_h(a, b) for a, b in _strips(h, 0, threads)]
    buf = np.empty((nh, w, 3), dtype=np.uint8)

    def job_v(a: int, b: int) -> None:
        buf[:, a:b] = np.asarray(img.crop((a, 0, b, h)).resize((b - a, nh), _BICUBIC))

    return buf, [lambda a=a, b=b: job_v(a, b) for a, b in _strips(w, 0, threads)]


def _second_pass(buf: Any, size: tuple[int, int], axis: str) -> Any:
    """``buf`` (uint8 ``(h, w, 3)``) through the second pass to ``size``: a uint8 ``(3, nh, nw)``.

    torch's vectorised uint8 antialiased bicubic is PIL's algorithm with lower fixed-point
    precision: at most one grey level from PIL, given PIL's first pass as its input.
    """
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(buf).permute(2, 0, 1).unsqueeze(0)  # channels-last view, no copy
    if axis:
        x = F.interpolate(x, size=(size[1], size[0]), mode="bicubic", antialias=True, align_corners=False)
    return x[0]


def _pass_order(src: tuple[int, int], dst: tuple[int, int]) -> str:
    """The passes PIL's ``resize`` makes from ``src`` to ``dst`` (``(w, h)``), in order: "hv", "vh"...

    Pillow resamples horizontally first, except (since Pillow 13, python-pillow/Pillow#9549) when
    the height shrinks clearly more than the width: ``2 * (w - nw) < h - nh``. Which rule this
    Pillow follows is checked once on a small probe (:func:`_pillow_rule`).
    """
    (w, h), (nw, nh) = src, dst
    if nw == w and nh == h:
        return ""
    if nw == w:
        return "v"
    if nh == h:
        return "h"
    if _pillow_rule() == "pr9549" and nh < h and 2 * (w - nw) < h - nh:
        return "vh"
    return "hv"


_RULE: list[str | None] = []


def _pillow_rule() -> str | None:
    """Which pass order this Pillow uses: "pr9549" (Pillow >= 13), "hv" (always), None (neither)."""
    if _RULE:
        return _RULE[0]
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(9549)
    img = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "RGB")
    seen = set()
    for nw, nh in ((70, 40), (60, 20), (40, 60), (30, 20), (100, 120)):
        full = np.asarray(img.resize((nw, nh), _BICUBIC))
        hv = np.asarray(img.resize((nw, 64), _BICUBIC).resize((nw, nh), _BICUBIC))
        vh = np.asarray(img.resize((64, nh), _BICUBIC).resize((nw, nh), _BICUBIC))
        new_rule_vh = nh < 64 and 2 * (64 - nw) < 64 - nh
        if np.array_equal(full, hv) and not new_rule_vh:
            continue
        if np.array_equal(full, vh) and new_rule_vh:
            seen.add("pr9549")
        elif np.array_equal(full, hv):
            seen.add("hv")
        else:
            seen.add("?")
    rule = None if "?" in seen or len(seen) > 1 else (seen.pop() if seen else "hv")
    _RULE.append(rule)
    return rule


def _resize_on_device(img: Any, size: tuple[int, int], device: Any) -> Any:
    """PIL's two-pass bicubic on a torch device in float64, each pass rounded to uint8 as PIL does.

    Same pass order as PIL; matches it to one grey level (PIL's fixed-point rounding of near-ties).
    For GPUs, where float64 is cheap at these sizes and the uint8 kernel is absent.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.asarray(img).copy()).to(device, non_blocking=True)
    x = x.permute(2, 0, 1).unsqueeze(0).to(torch.float64)
    nw, nh = size
    for axis in _pass_order(img.size, size):
        h, w = x.shape[-2:]
        target = (h, nw) if axis == "h" else (nh, w)
        x = F.interpolate(x, size=target, mode="bicubic", antialias=True, align_corners=False)
        x = torch.floor(x + 0.5).clamp_(0, 255)
    return x[0].to(torch.uint8)


def _to_rgb(image: Any) -> Any:
    """RGB as the stock ``convert_to_rgb`` makes it: transparency composited onto white."""
    if image.mode == "RGB":
        return image
    from PIL import Image

    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


_POOLS: dict[int, Any] = {}


def _pool(threads: int) -> Any:
    pool = _POOLS.get(threads)
    if pool is None:
        from concurrent.futures import ThreadPoolExecutor

        pool = _POOLS[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="deepocr-pre")
    return pool


def fast_image_processor(stock: Any, device: str = "cpu", threads: int | None = None) -> Any:
    """The fast wrapper for a stock DeepSeek-OCR-2 PIL image processor; anything else unchanged."""
    if isinstance(stock, FastDeepseekOcr2ImageProcessor):
        return stock
    if type(stock).__name__ != "DeepseekOcr2ImageProcessorPil":
        return stock
    return FastDeepseekOcr2ImageProcessor(stock, device=device, threads=threads)
