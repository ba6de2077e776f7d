"""A faster DeepSeek-OCR-2 image preprocessor, equal to the stock one within 1e-2.

The stock ``DeepseekOcr2ImageProcessorPil`` spends ~150-270 ms of one CPU core on a dense A4 page at
144 DPI (a global 1024 view + 6 tiles of 768): it resizes each view with PIL's bicubic filter on the
RGB image, then rescales, normalises and pads every view in separate float passes in numpy.

The fast path keeps the stock resampling where exactness needs it and does the rest in bulk:

- **First pass: PIL itself**, the same bicubic filter on the uint8 image (bit-exact), cut into
  strips that run in parallel threads (PIL releases the GIL while it resamples, and a row never
  depends on another row in a horizontal pass). Rows of one colour (margins, the gaps between
  lines of a rendered page) come out of that pass unchanged, so PIL only sees the others.
- **Second pass: torch's vectorised uint8 antialiased bicubic** (PIL's algorithm with lower
  fixed-point precision: at most one grey level from PIL, 0.0078 after normalisation), on colour
  planes, one job per tile column.
- **Tiles are views** of the resized canvas; rescale + normalise is one conversion and one
  multiply-add per cache-sized band, written once, straight into the batch's output array; the
  global view is padded to a square with the stock background colour. Output arrays the caller
  has let go of are written again by the next call (fresh pages cost the kernel ~5-10 ms a page).
- The jobs form a small DAG on a priority pool: a view's second pass and normalisation go ahead
  of the first passes still queued, so the cores stay busy to the end.

On a CUDA device (``device="cuda"``) both passes run on the GPU in float64 (the horizontal pass
rounded to uint8 in between as PIL does) and the outputs stay on the device.

:func:`fast_image_processor` wraps a stock processor; calls it cannot reproduce (other options,
numpy or tensor inputs, a non-bicubic filter) go to the stock code, so the wrapper is always safe.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

_PASS_THROUGH = {"return_tensors"}
_MISSING = object()
_BICUBIC = 3  # PIL.Image.Resampling.BICUBIC, the stock processor's filter
_BAND = 64  # rows per normalisation band (a tile band of 3 x 64 x 768 floats stays in L2)


class FastDeepseekOcr2ImageProcessor:
    """Drop-in for ``DeepseekOcr2ImageProcessorPil`` or the torchvision ``DeepseekOcr2ImageProcessor``
    (unknown attributes delegate to the stock object).

    ``device``: where the resizing and normalisation run and the tensors are returned (``"cpu"``, the
    default, or ``"cuda"``/``"cuda:N"``). ``threads``: parallel PIL strips on CPU (default: the
    number of CPU cores, at most 4). ``keep_bytes``: on CPU, output arrays the caller has let go
    of are kept, up to this many bytes, and written again by a later call of the same shapes
    (fresh pages cost the kernel ~5-10 ms of zeroing per A4 page); 0 keeps none.
    """

    def __init__(
        self, stock: Any, device: str = "cpu", threads: int | None = None, keep_bytes: int = 256 << 20
    ) -> None:
        self._stock = stock
        self._outputs = _OutputArrays(keep_bytes)
        self._stream: Any = None  # the CUDA side stream, made on first use
        self.device = str(device)
        self.threads = max(1, int(threads or min(4, _cpus())))
        mean = [float(m) for m in stock.image_mean]
        std = [float(s) for s in stock.image_std]
        factor = float(stock.rescale_factor) if stock.do_rescale else 1.0
        if stock.do_normalize:
            self._affine = [(factor / s, -m / s) for m, s in zip(mean, std, strict=True)]
        else:
            self._affine = [(factor, 0.0)] * 3
        import numpy as np

        self._scale = np.array([a for a, _ in self._affine], dtype=np.float32).reshape(-1, 1, 1)
        self._bias = np.array([b for _, b in self._affine], dtype=np.float32).reshape(-1, 1, 1)

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
        bicubic = _is_bicubic(getattr(s, "resample", _BICUBIC))
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
        plans = []
        for image in images:
            img = _to_rgb(image)
            grid, gsize = self.plan(*img.size)
            if min(gsize) < 1:
                raise ValueError("image too thin for the global view")
            plans.append((img, grid, gsize))
        counts = [0 if grid is None else grid[0] * grid[1] for _, grid, _ in plans]
        device = torch.device(self.device)
        if device.type == "cpu":
            globals_, locals_ = self._views_cpu(plans, ts)
        else:
            globals_, tiles_ = [], []
            for img, grid, gsize in plans:
                if device.type == "cuda":
                    # a side stream: the pipeline prepares the next batch while generate() runs on
                    # the default stream; the producer thread waits for its own work only
                    stream = self._stream = self._stream or torch.cuda.Stream(device)
                    with torch.cuda.stream(stream):
                        tiles, square = self._views_on_device(img, grid, gsize, ts, device)
                    stream.synchronize()
                else:
                    tiles, square = self._views_on_device(img, grid, gsize, ts, device)
                if tiles is not None:
                    tiles_.append(tiles)
                globals_.append(square)
            locals_ = (tiles_[0] if len(tiles_) == 1 else torch.cat(tiles_)) if tiles_ else None
        data: dict[str, Any] = {"num_local_patches": counts}
        if str(return_tensors) in ("pt", "TensorType.PYTORCH"):
            data["pixel_values"] = globals_ if torch.is_tensor(globals_) else torch.stack(globals_)
            if locals_ is not None:
                data["pixel_values_local"] = locals_
            data["num_local_patches"] = torch.tensor(counts)
            return BatchFeature(data=data)
        data["pixel_values"] = [g.cpu().numpy() for g in globals_]
        if locals_ is not None:
            data["pixel_values_local"] = list(locals_.cpu().numpy())
        return BatchFeature(data=data, tensor_type=return_tensors)

    # -- CPU: PIL's first pass in parallel strips, torch's uint8 kernel for the second ---------

    def _views_cpu(self, plans: list[Any], ts: int) -> tuple[Any, Any]:
        """All views of all images, written once, as float32, into the batch's output arrays.

        A small DAG on the pool, so that every core stays busy: per image a scan for flat rows,
        then every first pass (PIL, exact, in strips), and as soon as a view's first pass is done,
        ahead of the first passes still queued, its second pass (torch uint8, per tile column for
        the tiles) and the normalisation (numpy, GIL released) in cache-sized bands straight into
        the output: the tiles are views of the resized canvas, the global view lands inside its
        square, whose padding the calling thread fills first.

        Returns (``(N, 3, S, S)`` tensor, or a list of ``(3, S, S)`` tensors if the sides differ;
        ``(T, 3, ts, ts)`` tensor of all tiles, or None).
        """
        import numpy as np
        import torch

        pool = _pool(self.threads)
        sides = {max(gsize) for _, _, gsize in plans}
        empty = self._outputs.empty
        if len(sides) == 1:
            batch = empty((len(plans), 3, *(2 * [sides.pop()])))
            squares = list(batch)
        else:
            batch = None
            squares = [empty((3, max(g), max(g))) for _, _, g in plans]
        n_tiles = sum(0 if grid is None else grid[0] * grid[1] for _, grid, _ in plans)
        tiles = empty((n_tiles, 3, ts, ts)) if n_tiles else None
        staged = []  # (image, size, column width, [(dst, y, x), ...])
        first_tile = 0
        bg = np.asarray(self._stock.background_color, dtype=np.float32).reshape(3, 1, 1)
        fill = bg * self._scale + self._bias
        for (img, grid, gsize), square in zip(plans, squares, strict=True):
            if grid is not None and tiles is not None:
                cols, rows = grid
                out = tiles[first_tile : first_tile + cols * rows]
                first_tile += cols * rows
                targets = [(out[r * cols + c], r * ts, c * ts) for c in range(cols) for r in range(rows)]
                staged.append((img, (ts * cols, ts * rows), ts, targets))
            gw, gh = gsize
            side = square.shape[-1]
            top, left = ((side - gh) // 2, 0) if gw > gh else (0, (side - gw) // 2)
            inner = square[:, top : top + gh, left : left + gw]
            step = max(_BAND, -(-gh // self.threads))
            staged.append((img, gsize, gw, [(inner[:, y : y + step], y, 0) for y in range(0, gh, step)]))
            pads = [(slice(None), slice(0, top)), (slice(None), slice(top + gh, None))]
            if gw <= gh:
                pads = [(slice(0, left), slice(None)), (slice(left + gw, None), slice(None))]
            for xs, ys in pads:
                square[:, ys, xs] = fill
        firsts = []
        scans: dict[int, list[Any]] = {}  # per image, its flat rows, by strip
        for img, size, colw, targets in staged:
            order = _pass_order(img.size, size)
            buf, jobs = _first_pass(img, size, order, 2 * self.threads, colw)
            if order[:1] == "h":
                if id(img) not in scans:
                    strips = _strips(img.height, 0, 2 * self.threads)
                    scans[id(img)] = [pool.submit(_scan_rows, img, a, b, priority=0) for a, b in strips]
                futures = [
                    pool.after([f], job, f, priority=1) for job, f in zip(jobs, scans[id(img)], strict=True)
                ]
            else:
                futures = [pool.submit(job) for job in jobs]
            firsts.append((size, order, buf, futures, targets, colw))
        waits: list[Any] = []
        for size, order, buf, deps, targets, colw in firsts:
            if order[:1] != "h":  # one job for the whole view
                waits.append(pool.after(deps, self._finish, buf, size, order, 0, targets, pool))
                continue
            for col in range(buf.shape[0]):  # a job per column, its own planes
                mine = [(dst, y, x - col * colw) for dst, y, x in targets if x // colw == col]
                waits.append(pool.after(deps, self._finish, buf, size, order, col, mine, pool))
        while waits:
            more = waits.pop(0).result()
            waits.extend(more or ())
        globals_ = torch.from_numpy(batch) if batch is not None else [torch.from_numpy(s) for s in squares]
        return globals_, (None if tiles is None else torch.from_numpy(tiles))

    def _finish(
        self, buf: Any, size: tuple[int, int], order: str, col: int, targets: Any, pool: _Pool
    ) -> list[Any]:
        """A pool job once the first pass is done: the second pass of column ``col`` of the view
        (the whole view where the columns do not go separately), then its normalisation into
        ``targets`` (``(dst, y, x)``: ``dst`` from the planes at ``(y, x)``), all but the first
        handed to the pool (their futures returned)."""
        planes = _second_pass(buf, size, order, col)  # uint8 (3, h, w)
        jobs = [pool.submit(self._normalise_at, planes, *t, priority=0) for t in targets[1:]]
        for dst, y, x in targets[:1]:
            self._normalise_at(planes, dst, y, x)
        return jobs

    def _normalise_at(self, planes: Any, dst: Any, y: int, x: int) -> None:
        _, h, w = dst.shape
        self._normalise(dst, planes[:, y : y + h, x : x + w])

    def _normalise(self, dst: Any, src: Any) -> None:
        """numpy: ``dst = src * scale + bias`` per channel, uint8 ``(3, h, w)`` to float32, in place in
        ``dst``, in bands that stay in cache (numpy releases the GIL)."""
        for y in range(0, src.shape[1], _BAND):
            d = dst[:, y : y + _BAND]
            d[...] = src[:, y : y + _BAND]
            d *= self._scale
            d += self._bias

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


def _is_bicubic(resample: Any) -> bool:
    """PIL's ``BICUBIC`` (an int or enum), or torchvision's ``InterpolationMode.BICUBIC``."""
    try:
        return int(resample) == _BICUBIC
    except (TypeError, ValueError):
        return str(getattr(resample, "value", resample)).lower() == "bicubic"


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


def _first_pass(img: Any, size: tuple[int, int], order: str, strips: int, colw: int) -> tuple[Any, list[Any]]:
    """The buffer that the returned jobs fill with PIL's first pass (of ``order``), exactly.

    A horizontal pass treats each row on its own and a vertical pass each column, so strips of
    rows (columns) come out exactly as the same rows (columns) of the whole pass; PIL releases
    the GIL while it resamples, so the strips run in parallel. PIL splits each strip into its
    bands: the buffer holds uint8 planes, ``(columns, 3, h, colw)`` after a horizontal pass, each
    column of the output (``colw`` wide, rounded up to a multiple of 4) contiguous for
    :func:`_second_pass`; ``(1, 3, h, w)`` after a vertical pass or none. Only where torch's
    second pass is horizontal (order "vh") it is an interleaved ``(h, w, 3)`` buffer.
    """
    import numpy as np

    w, h = img.size
    nw, nh = size
    axis = order[:1]
    if not axis:
        buf = np.empty((1, 3, h, w), dtype=np.uint8)

        def job_copy() -> None:
            for c, band in enumerate(img.split()):
                buf[0, c] = np.asarray(band)

        return buf, [job_copy]
    if axis == "h":
        ncols = -(-nw // colw)
        buf = np.empty((ncols, 3, h, -(-colw // 4) * 4), dtype=np.uint8)
        spans = [(j, j * colw, min(nw, (j + 1) * colw)) for j in range(ncols)]

        def job_h(a: int, b: int, scan: Any) -> None:
            # the strip's flat rows are filled with their colour; only the others go through PIL
            strip, keep, flat, values = scan.result()  # _scan_rows of rows a:b
            for c in range(3 if len(flat) else 0):
                buf[:, c, a + flat, :] = values[:, c, None]
            if strip is None:
                return
            rows = a + keep
            for c, band in enumerate(strip.resize((nw, strip.height), _BICUBIC).split()):
                arr = np.asarray(band)
                for j, x0, x1 in spans:
                    buf[j, c, rows, : x1 - x0] = arr[:, x0:x1]

        return buf, [lambda scan, a=a, b=b: job_h(a, b, scan) for a, b in _strips(h, 0, strips)]
    interleaved = order == "vh"
    buf = np.empty((nh, w, 3) if interleaved else (1, 3, nh, w), dtype=np.uint8)

    def job_v(a: int, b: int) -> None:
        strip = img.crop((a, 0, b, h)).resize((b - a, nh), _BICUBIC)
        if interleaved:
            buf[:, a:b] = np.asarray(strip)
            return
        for c, band in enumerate(strip.split()):
            buf[0, c, :, a:b] = np.asarray(band)

    return buf, [lambda a=a, b=b: job_v(a, b) for a, b in _strips(w, 0, strips)]


def _scan_rows(img: Any, a: int, b: int) -> tuple[Any, Any, Any, Any]:
    """Rows ``a:b`` of an RGB image for :func:`_first_pass`: (an image of the rows that are not
    flat (of one colour), or None; their indices; the flat rows' indices; their colours).

    A flat row goes through PIL's horizontal pass unchanged: every output pixel is
    ``(2^21 + v * sum(k)) >> 22`` with the fixed-point weights ``k`` summing to ``2^22`` within
    the filter's few taps, so exactly ``v``. Rendered pages have many (margins, the gaps between
    lines), and those PIL need not resample; the others are packed into one image (the pass
    treats each row on its own), so PIL is called once a strip.
    """
    import numpy as np
    from PIL import Image

    strip = img.crop((0, a, img.width, b))
    arr = np.asarray(strip)
    rows = arr.reshape(b - a, -1)
    is_flat = (rows[:, 3:] == rows[:, :-3]).all(axis=1)
    keep, flat = np.flatnonzero(~is_flat), np.flatnonzero(is_flat)
    if len(flat) and len(keep):
        strip = Image.fromarray(arr[keep], "RGB")
    return (strip if len(keep) else None), keep, flat, arr[flat, 0, :]


def _second_pass(buf: Any, size: tuple[int, int], order: str, col: int) -> Any:
    """Column ``col`` of ``buf`` (from :func:`_first_pass`) through torch's second pass (of
    ``order``), as uint8 planes ``(3, nh, w)`` (a numpy view, maybe strided, maybe wider than the
    view: the caller cuts). Order "vh" (one column): the whole view; no second pass: the planes.

    torch's vectorised uint8 antialiased bicubic is PIL's algorithm with lower fixed-point
    precision: at most one grey level from PIL, given PIL's first pass as its input. It runs on
    channels-last tensors only, and only with a full batch stride (``unsqueeze`` before
    ``permute``; a batch stride of 3 sends torch to its generic kernel, ~6x slower). A vertical
    pass treats every column alike, so the planes go through it as a batch of 3 images of 4
    interleaved channels ``(h, w/4, 4)``: no interleaving and de-interleaving of the colours.
    """
    import torch
    import torch.nn.functional as F

    nw, nh = size
    if len(order) < 2:
        return buf[col]  # planes: only order "vh" interleaves
    if order[1] == "v":
        _, h, w4 = buf[col].shape
        x = torch.from_numpy(buf[col]).view(3, h, w4 // 4, 4).permute(0, 3, 1, 2)
        y = F.interpolate(x, size=(nh, w4 // 4), mode="bicubic", antialias=True, align_corners=False)
        return y.permute(0, 2, 3, 1).reshape(3, nh, w4).numpy()
    x = torch.from_numpy(buf).unsqueeze(0).permute(0, 3, 1, 2)  # channels-last NCHW, no copy
    y = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
    return y[0].numpy()


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


class _OutputArrays:
    """float32 arrays for the CPU outputs, recycled once the caller has let go of them.

    A returned tensor (``torch.from_numpy``), any view of it and any numpy array made from it
    hold a reference to the array it was made from; an array only this cache refers to is idle,
    and no other code can reach it, so it can be handed out again. Idle arrays beyond
    ``keep_bytes`` are let go, the least recently used first.
    """

    def __init__(self, keep_bytes: int) -> None:
        self.keep_bytes = int(keep_bytes)
        self._arrays: list[Any] = []
        self._lock = threading.Lock()
        self._idle_refs = _refs([object()], 0)  # the count of an object only a list refers to

    def empty(self, shape: tuple[int, ...]) -> Any:
        import numpy as np

        shape = tuple(int(n) for n in shape)
        if self.keep_bytes <= 0:
            return np.empty(shape, dtype=np.float32)
        with self._lock:
            arrays = self._arrays
            idle = [i for i in range(len(arrays)) if _refs(arrays, i) <= self._idle_refs]
            pick = next((i for i in reversed(idle) if arrays[i].shape == shape), None)
            spare, drop = 0, set()
            for i in reversed(idle):  # the most recently used first
                if i == pick:
                    continue
                spare += arrays[i].nbytes
                if spare > self.keep_bytes:
                    drop.add(i)
            kept = [a for i, a in enumerate(arrays) if i != pick and i not in drop]
            out = arrays[pick] if pick is not None else np.empty(shape, dtype=np.float32)
            self._arrays = [*kept, out]
            return out


def _refs(arrays: list[Any], i: int) -> int:
    import sys

    return sys.getrefcount(arrays[i])


class _Pool:
    """A thread pool whose queue runs the jobs of a lower ``priority`` first (FIFO among equals),
    with jobs that start once others are done (:meth:`after`): a view's second pass and
    normalisation start as soon as its first pass is done, ahead of the first passes still queued,
    so they overlap those instead of trailing them."""

    def __init__(self, threads: int) -> None:
        import itertools
        import queue

        self._queue: Any = queue.PriorityQueue()
        self._seq = itertools.count()
        self._lock = threading.Lock()
        for i in range(threads):
            threading.Thread(target=self._work, name=f"deepocr-pre_{i}", daemon=True).start()

    def submit(self, fn: Any, *args: Any, priority: int = 1) -> Any:
        from concurrent.futures import Future

        future: Any = Future()
        self._queue.put((priority, next(self._seq), future, fn, args))
        return future

    def after(self, deps: list[Any], fn: Any, *args: Any, priority: int = 0) -> Any:
        """``fn(*args)``, queued once every future in ``deps`` is done (failed: its exception)."""
        from concurrent.futures import Future

        future: Any = Future()
        state: list[Any] = [len(deps), None, fn, args]  # deps left, the first error, the job
        # the callbacks stay on the deps (and may form cycles with them): the job is taken out
        # when it is queued, so that nothing keeps ``args`` (views of the output arrays, which are
        # recycled once nothing refers to them) alive after it ran

        def ready(dep: Any) -> None:
            with self._lock:
                error = dep.exception() if dep is not None else None
                state[1] = state[1] or error
                state[0] -= 1
                if state[0] > 0:
                    return
                error, job, job_args = state[1], state[2], state[3]
                state[1:] = [None, None, None]
            if error is not None:
                future.set_exception(error)
            else:
                self._queue.put((priority, next(self._seq), future, job, job_args))

        if not deps:
            state[0] = 1
            ready(None)
        for d in deps:
            d.add_done_callback(ready)
        return future

    def _work(self) -> None:
        while True:
            _, _, future, fn, args = self._queue.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)
            del future, fn, args  # the job's arguments must not outlive it (see _OutputArrays)


_POOLS: dict[int, _Pool] = {}
_POOLS_LOCK = threading.Lock()


def _pool(threads: int) -> _Pool:
    with _POOLS_LOCK:
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = _Pool(threads)
        return pool


def _cpus() -> int:
    """The CPUs this process may run on (its affinity), else the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


STOCK_CLASSES = ("DeepseekOcr2ImageProcessorPil", "DeepseekOcr2ImageProcessor")
"""The stock image processors the fast one wraps: transformers picks the torchvision one
(``DeepseekOcr2ImageProcessor``) where torchvision is installed, else the PIL one. Both make
the same views (same plan, tile order, padding, normalisation); they differ only in the resampling
kernel (torchvision's antialiased bicubic vs PIL's, about one grey level apart). The fast path
reproduces PIL's resampling, the authors' (their ``image_process.py`` resizes with PIL), whichever
class was picked, so the tensors never depend on whether torchvision happens to be installed."""


def fast_image_processor(stock: Any, device: str = "cpu", threads: int | None = None) -> Any:
    """The fast wrapper for a stock DeepSeek-OCR-2 image processor (either of
    :data:`STOCK_CLASSES`); anything else unchanged."""
    if isinstance(stock, FastDeepseekOcr2ImageProcessor):
        return stock
    if type(stock).__name__ not in STOCK_CLASSES:
        return stock
    return FastDeepseekOcr2ImageProcessor(stock, device=device, threads=threads)
