"""Throughput of DeepSeek-OCR-2 through ``DeepSeekOcr2Engine``, at its full published size (random weights).

No weights can be downloaded on the benchmark machine, so a checkpoint is built from a config in code
at the published size -- text: hidden 1280, intermediate 6848, 12 layers, 10 heads (head_dim 128),
64 routed + 2 shared experts, top-6, MoE intermediate 896, first layer dense, vocab 129,280; vision:
SAM ViT-B (downsample channels [512, 896]) and a Qwen2-0.5B-sized encoder (hidden 896) -- with the
tiny tokenizer and the stock image processor, saved to a temporary folder and loaded back with
``DeepSeekOcr2Engine``: the code path real weights take (safetensors, GPU preprocessing, the n-gram
ban, batching, out-of-memory halving, decode).

The sweep: batch 1 / 16 / 64 / 128 at 256 and 1,024 output tokens per page, n-gram ban on and off,
on dense A4 pages at 144 DPI (EOS is suppressed with ``min_new_tokens``, so every page makes exactly
that many tokens). Per row: pages/s and output tokens/s of ``engine.ocr`` (preprocessing, generate
and decode), ms per decode step (between the model's decode forwards, so the logits processors and
sampling are in it), prefill ms, peak GiB and GPU preprocessing ms/page. Rows that would not finish
inside ``--budget-s`` (estimated from the rows before) are skipped and say so. Then the n-gram ban on
its own: the pre-issue-11 Python ban against the vectorised one, ms per step at batch 64 x 256 /
1,024 / 4,096 generated tokens (on CUDA it also checks that the ban never synchronises with the
host). ``--cli`` adds ``deepocr run --engine deepseek --model CHECKPOINT`` on the same pages (render,
preprocess, generate, parse, validate, load into SQLite) and prints its pages/s next to the sweep's.

The last line is ``best_pages_per_s= best_output_tokens_per_s= best_vs_batch1= ngram_overhead=``
(best over the ban-on rows, what users run; ``ngram_overhead``: decode step with the ban against
without it, at the largest batch measured both ways). Everything also goes to
``$OUT/gpu_throughput.json`` when ``OUT`` is set.

Pages come from PyMuPDF when it imports; otherwise (the GPU machine has none) from PNGs rendered
ahead of time into ``bench/pages/`` (ignored by git) with ``--render-pages``.

    python bench/gpu_throughput.py --render-pages        # once, where pymupdf is installed
    OUT=/tmp/out python bench/gpu_throughput.py --cli    # CUDA, full size, ~7 min on an H200
    python bench/gpu_throughput.py --small               # the same code on CPU with the tiny config
    python bench/gpu_throughput.py --ban-only            # only the n-gram ban micro-bench (CUDA, else CPU)
    OUT=/tmp/out python bench/gpu_throughput.py --real /models/DeepSeek-OCR-2   # real weights

``--real MODEL_DIR`` (a converted checkpoint, ``deepseek-community/DeepSeek-OCR-2``, with its
config and safetensors in the folder) runs the same sweep on those weights instead of random
ones, then a fidelity check: the first 5 of the bench's own born-digital A4 pages through the
engine at its defaults (greedy, n-gram ban on, the token budget up to the context), each page's
parsed text scored against the page's text layer (PyMuPDF's, or the lines the bench wrote onto it
where PyMuPDF is absent) with :func:`airflow_provider_deepocr.testing.truth.word_f1`. It prints a
row per page and ``fidelity_word_f1=`` (the mean) before the last line, so the first GPU session
with weights gives throughput and correctness in one run. A checkpoint that is not there is a
one-line error before anything loads.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PAGES_DIR = Path(__file__).resolve().parent / "pages"
N_DISTINCT_PAGES = 16  # rendered pages; bigger batches cycle them
A100_ANCHOR_TOKENS_PER_S = 2500.0  # published: ~2,500 tokens/s on one A100-40G with vLLM
FULL_VOCAB = 129280
NGRAM_SIZE, NGRAM_WINDOW = 30, 90  # the engine's defaults (the authors' settings)
NO_PYMUPDF_ENV = "DEEPOCR_BENCH_NO_PYMUPDF"  # "1": use the PNGs even where pymupdf imports


# -- the model ------------------------------------------------------------------------------------


def full_config(vocab: int, bos: int, eos: int, pad: int, image: int):  # type: ignore[no-untyped-def]
    """The published DeepSeek-OCR-2 sizes (``vocab``: at least 129,280)."""
    from transformers import DeepseekOcr2Config

    sam = {
        "hidden_size": 768,
        "output_channels": 256,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 1024,
        "patch_size": 16,
        "window_size": 14,
        "global_attn_indexes": [2, 5, 8, 11],
        "downsample_channels": [512, 896],
        "mlp_dim": 3072,
    }
    encoder = {
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
    }
    text = {
        "vocab_size": max(vocab, FULL_VOCAB),
        "hidden_size": 1280,
        "intermediate_size": 6848,
        "num_hidden_layers": 12,
        "num_attention_heads": 10,
        "num_key_value_heads": 10,
        "head_dim": 128,
        "n_routed_experts": 64,
        "n_shared_experts": 2,
        "num_experts_per_tok": 6,
        "moe_intermediate_size": 896,
        "mlp_layer_types": ["dense"] + ["sparse"] * 11,
        "topk_method": "greedy",
        "max_position_embeddings": 8192,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
    }
    return DeepseekOcr2Config(
        vision_config={"sam_config": sam, "encoder_config": encoder}, text_config=text, image_token_id=image
    )


def write_checkpoint(out: Path, small: bool, device: str) -> dict[str, Any]:
    """A random checkpoint (full size, or the tiny test config) with the tiny tokenizer, in ``out``."""
    import torch
    from transformers import (
        DeepseekOcr2ForConditionalGeneration,
        DeepseekOcr2ImageProcessorPil,
        DeepseekOcr2Processor,
        GenerationConfig,
    )

    from airflow_provider_deepocr.testing import tiny_model

    t0 = time.perf_counter()
    tok = tiny_model._build_tokenizer()
    ids = [tok.convert_tokens_to_ids(t) for t in (tiny_model.BOS, tiny_model.EOS, tiny_model.PAD)]
    image = tok.convert_tokens_to_ids(tiny_model.IMAGE)
    build = tiny_model._build_config if small else full_config
    config = build(len(tok), *ids, image)
    torch.manual_seed(0)
    with torch.device(device):
        model = DeepseekOcr2ForConditionalGeneration(config)
    if not small:
        model = model.to(torch.bfloat16)  # what real weights ship as
    model.generation_config = GenerationConfig(
        bos_token_id=ids[0], eos_token_id=ids[1], pad_token_id=ids[2], do_sample=False
    )
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out, safe_serialization=True)
    DeepseekOcr2Processor(image_processor=DeepseekOcr2ImageProcessorPil(), tokenizer=tok).save_pretrained(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    return {"parameters": params, "bytes": size, "seconds": time.perf_counter() - t0}


# -- pages ----------------------------------------------------------------------------------------


def a4_lines(i: int) -> list[str]:
    """The 60 lines of text written onto A4 page ``i`` (its text layer)."""
    return [f"{i:03d}-{line:02d} Revenue, net of returns   1,234.{line:02d}  " * 2 for line in range(60)]


def render_a4(n: int, dpi: int = 144, with_text: bool = False) -> Any:
    """``n`` dense A4 pages of numbers and words, rendered with PyMuPDF (PIL RGB images); with
    ``with_text`` also each page's text layer as PyMuPDF reads it back: ``(images, texts)``."""
    import pymupdf
    from PIL import Image

    doc = pymupdf.open()
    for i in range(n):
        page = doc.new_page(width=595, height=842)
        for line, text in enumerate(a4_lines(i)):
            page.insert_text((40, 40 + 12.5 * line), text, fontsize=8)
    out, texts = [], []
    for page in doc:
        pix = page.get_pixmap(dpi=dpi, alpha=False)
        out.append(Image.frombytes("RGB", (pix.width, pix.height), pix.samples))
        texts.append(page.get_text())
    return (out, texts) if with_text else out


FIDELITY_PAGES = 5


def words_of(text: str) -> list[str]:
    """The words :func:`~airflow_provider_deepocr.testing.truth.word_f1` compares."""
    from airflow_provider_deepocr.testing.truth import words

    return words(text)


def fidelity_pages(folder: Path, n: int = FIDELITY_PAGES) -> tuple[list[Any], list[str], str]:
    """The first ``n`` bench pages, their text layers, and where both came from."""
    if os.environ.get(NO_PYMUPDF_ENV) != "1":
        try:
            images, texts = render_a4(n, with_text=True)
            return images, texts, "pymupdf text layer"
        except ImportError:
            pass
    images, _ = load_pages(n, folder)
    return images, ["\n".join(a4_lines(i)) for i in range(n)], "the lines written onto the pages"


_GROUNDING = re.compile(r"<\|ref\|>.*?<\|/ref\|>|<\|det\|>.*?<\|/det\|>", re.DOTALL)


def model_text(raw: str) -> str:
    """The model's text without its grounding tags (labels and boxes)."""
    return _GROUNDING.sub(" ", raw)


def fidelity_check(engine: Any, images: Sequence[Any], truths: Sequence[str]) -> dict[str, Any]:
    """OCR ``images`` with ``engine`` at its settings and score each page's text (grounding tags
    removed) against its truth with ``word_f1``: per page F1, finish reason, output tokens and the
    parser's flags (the bench's lines repeat a phrase, which the parser's loop detector may flag:
    the raw text is scored so that a flag does not hide what the model read); and the mean F1."""
    from airflow_provider_deepocr.core.parse import parse_page
    from airflow_provider_deepocr.core.records import PageImage
    from airflow_provider_deepocr.testing.truth import word_f1

    pages = [PageImage(f"{i:064x}", i + 1, im, 144, im.width, im.height) for i, im in enumerate(images)]
    t0 = time.perf_counter()
    results = engine.ocr(pages)
    seconds = time.perf_counter() - t0
    rows = []
    for page, result, truth in zip(pages, results, truths, strict=True):
        parsed = parse_page(result.raw_text, page.page_no, page.width, page.height, result.finish_reason)
        rows.append(
            {
                "page": page.page_no,
                "word_f1": word_f1(model_text(result.raw_text), truth),
                "finish_reason": result.finish_reason,
                "output_tokens": result.output_tokens,
                "flags": sorted(parsed.flags),
            }
        )
    mean = sum(r["word_f1"] for r in rows) / len(rows) if rows else None
    return {"pages": rows, "mean_word_f1": mean, "seconds": seconds}


def render_pages_to(folder: Path, n: int = N_DISTINCT_PAGES) -> list[Path]:
    """Write the A4 pages as ``a4-000.png``... into ``folder`` (for machines without pymupdf)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(render_a4(n)):
        path = folder / f"a4-{i:03d}.png"
        image.save(path, format="PNG")
        paths.append(path)
    return paths


def load_pages(n: int, folder: Path) -> tuple[list[Any], str]:
    """``n`` A4 page images and where they came from (``"pymupdf"`` or ``"png"``), cycling 16 pages.

    PyMuPDF renders them when it imports (and ``DEEPOCR_BENCH_NO_PYMUPDF`` is not ``1``); otherwise
    they are read from the PNGs in ``folder`` that ``--render-pages`` wrote.
    """
    from PIL import Image

    distinct = min(n, N_DISTINCT_PAGES)
    images: list[Any] = []
    source = "png"
    if os.environ.get(NO_PYMUPDF_ENV) != "1":
        try:
            images, source = render_a4(distinct), "pymupdf"
        except ImportError:
            pass
    if not images:
        files = sorted(folder.glob("a4-*.png"))[:distinct]
        if not files:
            sys.exit(
                f"no pymupdf and no pages in {folder}: run `python bench/gpu_throughput.py --render-pages` "
                "where pymupdf is installed, and bring that folder along"
            )
        for f in files:
            with Image.open(f) as im:
                images.append(im.convert("RGB"))
    return [images[i % len(images)] for i in range(n)], source


# -- the n-gram ban micro-bench -------------------------------------------------------------------


def python_ban(input_ids: Any, scores: Any, n: int, window: int, prompt_len: int, whitelist: set[int]) -> Any:
    """The n-gram ban before issue 11 (host lists, a Python loop per row), kept here to time it.

    Same code as the reference in tests/core/engines/test_engine_deepseek.py; :func:`ban_bench`
    also checks that it bans what the engine's vectorised ban does on the timed inputs.
    """
    if n <= 0 or input_ids.shape[1] - prompt_len < n - 1:
        return scores
    for row, generated in enumerate(input_ids[:, prompt_len:].tolist()):
        recent = list(generated[-window:]) if window > 0 else list(generated)
        banned: set[int] = set()
        if n == 1:
            banned = set(recent)
        else:
            prefix = recent[len(recent) - (n - 1) :]
            for i in range(len(recent) - (n - 1)):
                if recent[i : i + n - 1] == prefix:
                    banned.add(recent[i + n - 1])
        banned -= whitelist
        if banned:
            scores[row, sorted(banned)] = float("-inf")
    return scores


def ban_bench(
    device: str, lengths: Sequence[int] = (256, 1024, 4096), batch: int = 64, min_s: float = 0.3
) -> list[dict[str, Any]]:
    """ms per step of the old Python ban and the vectorised one, at ``batch`` x each length.

    Half the rows loop with period 7 (so bans happen), half are random; the vocabulary is the
    published 129,280. On CUDA the vectorised ban runs once under ``set_sync_debug_mode("error")``,
    which raises on any host synchronisation.
    """
    import torch

    from airflow_provider_deepocr.core.engines.deepseek import NgramRepetitionBan

    whitelist = {5, 6, 7, 8}
    prompt_len = 1100
    rows = []
    gen = torch.Generator().manual_seed(0)
    for steps in lengths:
        ids = torch.randint(0, FULL_VOCAB, (batch, prompt_len + steps), generator=gen)
        loop = torch.randint(0, FULL_VOCAB, (7,), generator=gen)
        ids[::2, prompt_len:] = loop.repeat(steps // 7 + 1)[:steps]
        scores = torch.randn(batch, FULL_VOCAB, generator=gen)
        ids, scores = ids.to(device), scores.to(device)
        vectorised = NgramRepetitionBan(NGRAM_SIZE, NGRAM_WINDOW, prompt_len, sorted(whitelist))
        same = torch.equal(
            vectorised(ids, scores.clone()),
            python_ban(ids, scores.clone(), NGRAM_SIZE, NGRAM_WINDOW, prompt_len, whitelist),
        )
        if not same:
            raise AssertionError(f"vectorised ban differs from the Python ban at {batch} x {steps}")
        no_sync = None
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                vectorised(ids, scores)
                no_sync = True
            except RuntimeError:
                no_sync = False
            finally:
                torch.cuda.set_sync_debug_mode("default")
        args = (ids, scores)
        old_ms = _ms_per_call(
            lambda a=args: python_ban(*a, NGRAM_SIZE, NGRAM_WINDOW, prompt_len, whitelist), device, min_s
        )
        new_ms = _ms_per_call(lambda a=args, ban=vectorised: ban(*a), device, min_s)
        rows.append(
            {
                "batch": batch,
                "generated": steps,
                "python_ms": old_ms,
                "vectorised_ms": new_ms,
                "no_sync": no_sync,
            }
        )
    return rows


def _ms_per_call(fn: Callable[[], Any], device: str, min_s: float = 0.3) -> float:
    """Best of 3 rounds of the mean ms per call (each round about ``min_s`` long)."""
    import torch

    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    reps = max(3, min(2000, int(min_s / max(time.perf_counter() - t0, 1e-6))))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t0) / reps * 1000)
    return best


# -- the sweep ------------------------------------------------------------------------------------


class StepClock:
    """Times the decode steps of each ``generate()`` of the engine's model.

    ``generate`` and ``prepare_inputs_for_generation`` (called once per forward, outside any
    compiled region) are wrapped on the model instance: the last ``tokens - 1`` calls of the
    latter start the decode steps, and ``generate`` returns after a device synchronisation, so
    ms per step = (return - start of the first decode step) / (tokens - 1), logits processors and
    sampling included. Prefill = start of ``generate`` to the first decode step (vision encoder,
    prefill forward, the first token).
    """

    def __init__(self, model: Any, device: str) -> None:
        import functools

        import torch

        self.runs: list[dict[str, Any]] = []
        generate, prepare = model.generate, model.prepare_inputs_for_generation

        @functools.wraps(generate)
        def timed_generate(*args: Any, **kwargs: Any) -> Any:
            run: dict[str, Any] = {"start": time.perf_counter(), "stamps": []}
            self.runs.append(run)
            out = generate(*args, **kwargs)
            if device == "cuda":
                torch.cuda.synchronize()
            run["end"] = time.perf_counter()
            run["tokens"] = (
                int(out.shape[1] - kwargs["input_ids"].shape[1]) if "input_ids" in kwargs else None
            )
            return out

        @functools.wraps(prepare)
        def timed_prepare(*args: Any, **kwargs: Any) -> Any:
            if self.runs:
                self.runs[-1]["stamps"].append(time.perf_counter())
            return prepare(*args, **kwargs)

        model.generate = timed_generate
        model.prepare_inputs_for_generation = timed_prepare

    def reset(self) -> None:
        self.runs = []

    def last(self) -> tuple[float | None, float | None]:
        """(prefill ms, decode ms per step) of the last ``generate()`` (None when too short)."""
        if not self.runs or "end" not in self.runs[-1] or not self.runs[-1]["tokens"]:
            return None, None
        run = self.runs[-1]
        decode = run["tokens"] - 1
        if decode < 1 or len(run["stamps"]) < decode:
            return None, None
        first = run["stamps"][-decode]
        return (first - run["start"]) * 1000, (run["end"] - first) * 1000 / decode


def sweep_row(
    engine: Any, clock: StepClock, pages: list[Any], new_tokens: int, ngram: bool, device: str
) -> dict:
    """One timed ``engine.ocr`` of ``pages`` (prepare and ocr_prepared timed apart)."""
    import torch

    from airflow_provider_deepocr.core.records import PageImage

    batch = [
        PageImage(doc_id=f"{i:064x}", page_no=1, image=im, dpi=144, width=im.width, height=im.height)
        for i, im in enumerate(pages)
    ]
    engine.batch_size = len(batch)
    engine._oom_cap = None
    engine.max_new_tokens = new_tokens
    engine._model.generation_config.min_new_tokens = new_tokens  # EOS suppressed until then
    engine.ngram_size = NGRAM_SIZE if ngram else 0
    clock.reset()
    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    prepared = engine.prepare(batch)
    if cuda:
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    results = engine.ocr_prepared(prepared)
    if cuda:
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    prefill_ms, step_ms = clock.last()
    tokens = sum(r.output_tokens for r in results)
    errors = sum(r.finish_reason == "error" for r in results)
    return {
        "batch": len(batch),
        "new_tokens": new_tokens,
        "ngram": ngram,
        "effective_batch": engine.effective_batch_size,
        "seconds": t2 - t0,
        "pages_per_s": len(batch) / (t2 - t0),
        "output_tokens_per_s": tokens / (t2 - t0),
        "output_tokens": tokens,
        "ms_per_step": step_ms,
        "prefill_ms": prefill_ms,
        "preprocess_ms_per_page": (t1 - t0) * 1000 / len(batch),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
        "errors": errors,
        "all_full_length": all(r.output_tokens == new_tokens for r in results),
    }


def estimate_seconds(done: list[dict], batch: int, new_tokens: int, ngram: bool) -> float | None:
    """A row's likely seconds from the rows measured before (None: nothing to go on)."""
    same = [r for r in done if r["batch"] == batch and r["ngram"] == ngram and r.get("ms_per_step")]
    if same:
        r = same[-1]
        fixed = r["seconds"] - r["new_tokens"] * r["ms_per_step"] / 1000
        return fixed + new_tokens * r["ms_per_step"] / 1000
    smaller = [r for r in done if r["batch"] < batch and r["new_tokens"] == new_tokens and r.get("seconds")]
    if smaller:
        r = max(smaller, key=lambda r: r["batch"])
        return r["seconds"] * batch / r["batch"]  # linear in the batch: an upper bound on a GPU
    return None


def summarise(rows: list[dict]) -> dict[str, Any]:
    """best_pages_per_s, best_output_tokens_per_s, best_vs_batch1, ngram_overhead over the rows."""
    measured = [r for r in rows if "pages_per_s" in r]
    on = [r for r in measured if r["ngram"]] or measured
    if not on:
        return {"best_pages_per_s": None, "best_output_tokens_per_s": None, "best_vs_batch1": None}
    best = max(on, key=lambda r: r["pages_per_s"])
    ones = [r for r in on if r["batch"] == 1 and r["new_tokens"] == best["new_tokens"]]
    out: dict[str, Any] = {
        "best_pages_per_s": best["pages_per_s"],
        "best_batch": best["batch"],
        "best_new_tokens": best["new_tokens"],
        "best_output_tokens_per_s": max(r["output_tokens_per_s"] for r in on),
        "best_vs_batch1": best["pages_per_s"] / ones[0]["pages_per_s"] if ones else None,
    }
    pairs = []
    for r in measured:
        if r["ngram"] and r.get("ms_per_step"):
            off = [
                o
                for o in measured
                if not o["ngram"] and o["batch"] == r["batch"] and o["new_tokens"] == r["new_tokens"]
            ]
            if off and off[0].get("ms_per_step"):
                pairs.append((r["batch"], r["new_tokens"], r["ms_per_step"], off[0]["ms_per_step"]))
    if pairs:
        batch, new_tokens, step_on, step_off = max(pairs)
        out["ngram_overhead"] = (step_on - step_off) / step_off
        out["ngram_overhead_at"] = {"batch": batch, "new_tokens": new_tokens}
    else:
        out["ngram_overhead"] = None
    return out


def cli_run(checkpoint: Path, images: list[Any], work: Path, new_tokens: int, device: str) -> dict[str, Any]:
    """``deepocr run --engine deepseek --model CHECKPOINT`` on the pages as PNG files (a subprocess)."""
    src = work / "cli-pages"
    src.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        im.save(src / f"page-{i:03d}.png", format="PNG")
    cmd = [
        sys.executable,
        "-m",
        "airflow_provider_deepocr.cli",
        "run",
        str(src),
        "--warehouse",
        f"sqlite:///{work / 'cli.db'}",
        "--engine",
        "deepseek",
        "--model",
        str(checkpoint),
        "--device",
        device,
        "--max-new-tokens",
        str(new_tokens),
        "--batch-size",
        "auto",
        "--retry-temperatures",
        "0",
        "--on-validation-failure",
        "warn",  # random weights write random text: load it anyway (the load is part of the path)
        "--work-dir",
        str(work / "cli-work"),
        "--json",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"ok": False, "returncode": proc.returncode, "why": " | ".join(tail), "wall_s": wall}
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "ok": True,
        "pages": summary["pages"],
        "loaded_pages": summary["ok"],
        "failed": summary["failed"],
        "seconds": summary["seconds"],
        "pages_per_s": summary["pages"] / summary["seconds"] if summary["seconds"] else None,
        "wall_s": wall,
    }


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--small", action="store_true", help="tiny config on CPU: the same code, a check that it runs"
    )
    ap.add_argument(
        "--batches", default=None, help="comma-separated batch sizes (default 1,16,64,128; small 1,2)"
    )
    ap.add_argument("--new-tokens", default=None, help="output tokens per page (default 256,1024; small 8)")
    ap.add_argument("--ngram", default="on,off", help="n-gram ban settings to sweep: on,off | on | off")
    ap.add_argument("--budget-s", type=float, default=400.0, help="skip rows estimated to end after this")
    ap.add_argument("--pages-dir", type=Path, default=PAGES_DIR, help="pre-rendered A4 PNGs (fallback)")
    ap.add_argument("--render-pages", action="store_true", help="write the A4 PNGs to --pages-dir and exit")
    ap.add_argument("--ban-only", action="store_true", help="only the n-gram ban bench (CUDA, else CPU)")
    ap.add_argument("--no-ban-bench", action="store_true", help="skip the n-gram ban micro-bench")
    ap.add_argument("--cli", action="store_true", help="also time `deepocr run` on the saved checkpoint")
    ap.add_argument("--attn", default=None, help="attention implementation (default: the engine's pick)")
    ap.add_argument(
        "--real",
        type=Path,
        default=None,
        metavar="MODEL_DIR",
        help="sweep real weights from this folder (config + safetensors) and check fidelity on 5 pages",
    )
    ap.add_argument(
        "--fidelity-tokens",
        type=int,
        default=None,
        help="token budget of the fidelity check (default: the engine's, up to the context)",
    )
    ap.add_argument(
        "--static-cache",
        action="store_true",
        help="generate with a static KV cache (torch.compile on CUDA); unmeasured, off by default",
    )
    args = ap.parse_args(argv)
    started = time.perf_counter()
    if args.render_pages:
        paths = render_pages_to(args.pages_dir)
        size = sum(p.stat().st_size for p in paths)
        print(f"wrote {len(paths)} A4 pages (144 dpi PNG, {size / 2**20:.1f} MiB) to {args.pages_dir}")
        return 0
    batches = [int(b) for b in (args.batches or ("1,2" if args.small else "1,16,64,128")).split(",")]
    lengths = [int(t) for t in (args.new_tokens or ("8" if args.small else "256,1024")).split(",")]
    settings = [v.strip() for v in args.ngram.split(",")]
    if not settings or not set(settings) <= {"on", "off"} or min(batches) < 1 or min(lengths) < 3:
        ap.error("--ngram takes on and/or off; batches >= 1; new tokens >= 3")
    ngrams = [v == "on" for v in settings]
    if args.real is not None:
        from airflow_provider_deepocr.core.engines.deepseek import weights_available

        if not weights_available(str(args.real)):
            sys.exit(f"--real {args.real}: no config.json and safetensors weights there")
    report: dict[str, Any] = {"small": args.small, "real": str(args.real) if args.real else None}
    images: list[Any] = []
    if not args.ban_only:  # pages first: a missing folder fails before torch loads
        images, report["pages_source"] = load_pages(max(batches), args.pages_dir)
        if args.small:  # a third of the size (no tiles): the tiny model's vision encoder is slow on CPU
            images = [im.reduce(3) for im in images]

    import torch
    import transformers

    if args.small:
        device = "cpu"
    elif torch.cuda.is_available():
        device = "cuda"
    elif args.ban_only:
        device = "cpu"
    else:
        sys.exit("no CUDA device: run with --small for a CPU check")
    report["device"] = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    report["torch"], report["transformers"] = torch.__version__, transformers.__version__
    ban_min_s = 0.05 if args.small else 0.3
    if args.ban_only:
        report["ngram_ban"] = _print_ban_bench(device, ban_min_s)
        _write(report)
        return 0
    print(
        f"device {report['device']} (torch {torch.__version__}, transformers {transformers.__version__}); "
        f"A4 pages {images[0].width}x{images[0].height} px from {report['pages_source']}"
    )

    from airflow_provider_deepocr.core.engines.deepseek import DeepSeekOcr2Engine, auto_batch_size

    with tempfile.TemporaryDirectory(prefix="deepocr-bench-") as tmp:
        if args.real is not None:
            ckpt = args.real
            size = sum(f.stat().st_size for f in ckpt.glob("*.safetensors"))
            info = {"parameters": None, "bytes": size, "seconds": 0.0, "real": True}
            print(f"checkpoint: real weights in {ckpt}, {size / 2**30:.2f} GiB safetensors")
        else:
            ckpt = Path(tmp, "checkpoint")
            info = write_checkpoint(ckpt, args.small, device)
            print(
                f"checkpoint: {info['parameters'] / 1e6:.0f}M parameters, {info['bytes'] / 2**30:.2f} GiB "
                f"safetensors, written in {info['seconds']:.1f}s"
            )
        t0 = time.perf_counter()
        engine = DeepSeekOcr2Engine(
            str(ckpt),
            device=device,
            max_new_tokens=max(lengths),
            batch_size=1,
            attn_implementation=args.attn,
            cache_implementation="static" if args.static_cache else None,
        )
        free = torch.cuda.mem_get_info()[0] if device == "cuda" else None
        report["checkpoint"] = {**info, "load_seconds": time.perf_counter() - t0}
        report["engine"] = {
            "attention": engine.attn_implementation,
            "dtype": str(engine.torch_dtype).removeprefix("torch."),
            "static_cache": args.static_cache,
            "free_gib_after_load": free / 2**30 if free is not None else None,
            "auto_batch": auto_batch_size(device, free),
        }
        print(
            f"engine loaded in {report['checkpoint']['load_seconds']:.1f}s: {engine.attn_implementation}, "
            f"{report['engine']['dtype']}, static cache {'on' if args.static_cache else 'off'}; "
            f"batch_size='auto' would start at {report['engine']['auto_batch']}"
            + (f" ({free / 2**30:.0f} GiB free)" if free is not None else "")
        )
        clock = StepClock(engine._model, device)
        rows = run_sweep(engine, clock, images, batches, lengths, ngrams, device, args, started)
        report["rows"] = rows
        engine.close()
        if args.real is not None:
            report["fidelity"] = run_fidelity(ckpt, args.pages_dir, device, args.attn, args.fidelity_tokens)
        del engine
        if device == "cuda":
            torch.cuda.empty_cache()
        if not args.no_ban_bench:
            report["ngram_ban"] = _print_ban_bench(device, ban_min_s)
        summary = summarise(rows)
        report["summary"] = summary
        if args.cli:
            report["cli"] = cli_run(ckpt, images[:N_DISTINCT_PAGES], Path(tmp), lengths[0], device)
            c = report["cli"]
            if c["ok"]:
                print(
                    f"deepocr run --engine deepseek: {c['pages']} pages ({c['loaded_pages']} loaded, failed "
                    f"{c['failed'] or 'none'}) in {c['seconds']:.1f}s = {c['pages_per_s']:.3f} pages/s at "
                    f"{lengths[0]} tokens/page, batch auto; bench best "
                    f"{_fmt(summary['best_pages_per_s'], '.3f')} pages/s "
                    f"(batch {summary.get('best_batch')}, {summary.get('best_new_tokens')} tokens)"
                )
            else:
                print(f"deepocr run --engine deepseek failed (exit {c['returncode']}): {c['why']}")
    if summary.get("best_output_tokens_per_s") and not args.small:
        print(
            f"best output tokens/s {summary['best_output_tokens_per_s']:.0f} vs the ~2,500 tokens/s "
            "A100 anchor "
            f"({summary['best_output_tokens_per_s'] / A100_ANCHOR_TOKENS_PER_S:.2f}x)"
        )
    report["seconds"] = time.perf_counter() - started
    _write(report)
    print(
        f"best_pages_per_s={_fmt(summary['best_pages_per_s'], '.3f')} "
        f"best_output_tokens_per_s={_fmt(summary['best_output_tokens_per_s'], '.1f')} "
        f"best_vs_batch1={_fmt(summary['best_vs_batch1'], '.2f')} "
        f"ngram_overhead={_fmt(summary['ngram_overhead'], '.4f')}"
    )
    return 0


def run_sweep(
    engine: Any,
    clock: StepClock,
    images: list[Any],
    batches: Sequence[int],
    lengths: Sequence[int],
    ngrams: Sequence[bool],
    device: str,
    args: argparse.Namespace,
    started: float,
) -> list[dict]:
    """Every (tokens, batch, ban) row in that order, printed as it ends; rows past the budget skipped."""
    sweep_row(engine, clock, images[:1], 4, True, device)  # warm-up: kernels, allocator, GPU preprocessing
    warm = {1}
    rows: list[dict] = []
    print(
        f"{'batch':>5} {'tokens':>6} {'ngram':>5} {'pages/s':>8} {'out tok/s':>9} {'ms/step':>8} "
        f"{'prefill ms':>10} {'pre ms/pg':>9} {'peak GiB':>8}"
    )
    for new_tokens in lengths:
        for b in batches:
            for ngram in ngrams:
                label = f"{b:5d} {new_tokens:6d} {'on' if ngram else 'off':>5}"
                est = estimate_seconds(rows, b, new_tokens, ngram)
                left = args.budget_s - (time.perf_counter() - started)
                if est is not None and est > left:
                    rows.append({"batch": b, "new_tokens": new_tokens, "ngram": ngram, "skipped": "budget"})
                    print(f"{label}  skipped: needs ~{est:.0f}s, {left:.0f}s of the budget left")
                    continue
                if b not in warm:  # a first batch of this size pays for allocations and kernel choices
                    sweep_row(engine, clock, images[:b], 4, ngram, device)
                    warm.add(b)
                if args.static_cache:
                    sweep_row(engine, clock, images[:b], new_tokens, ngram, device)  # compiles this shape
                row = sweep_row(engine, clock, images[:b], new_tokens, ngram, device)
                rows.append(row)
                note = ""
                if row["effective_batch"] < b:
                    note += f"  (out of memory: ran at {row['effective_batch']})"
                if row["errors"] or not row["all_full_length"]:
                    note += f"  ({row['errors']} errors; not every page made {new_tokens} tokens)"
                print(
                    f"{label} {row['pages_per_s']:8.3f} {row['output_tokens_per_s']:9.1f} "
                    f"{_fmt(row['ms_per_step'], '8.2f')} {_fmt(row['prefill_ms'], '10.0f')} "
                    f"{row['preprocess_ms_per_page']:9.1f} {row['peak_gib']:8.1f}{note}"
                )
    return rows


def run_fidelity(
    ckpt: Path, pages_dir: Path, device: str, attn: str | None, max_new_tokens: int | None = None
) -> dict[str, Any]:
    """The fidelity check on real weights: a fresh engine at its defaults (``max_new_tokens``
    None: up to the context), 5 pages, one batch."""
    from airflow_provider_deepocr.core.engines.deepseek import DeepSeekOcr2Engine

    images, truths, source = fidelity_pages(pages_dir)
    engine = DeepSeekOcr2Engine(
        str(ckpt),
        device=device,
        batch_size=len(images),
        attn_implementation=attn,
        max_new_tokens=max_new_tokens,
    )
    try:
        report = fidelity_check(engine, images, truths)
    finally:
        engine.close()
    report["truth"] = source
    print(f"fidelity on {len(images)} born-digital pages (truth: {source}), {report['seconds']:.1f}s:")
    for r in report["pages"]:
        f1, finish, tokens = r["word_f1"], r["finish_reason"], r["output_tokens"]
        flags = ", ".join(r["flags"]) or "none"
        print(f"  page {r['page']}: word F1 {f1:.3f}, {finish}, {tokens} tokens, parser flags: {flags}")
    print(f"fidelity_word_f1={_fmt(report['mean_word_f1'], '.3f')}")
    return report


def _print_ban_bench(device: str, min_s: float) -> list[dict[str, Any]]:
    rows = ban_bench(device, min_s=min_s)
    for r in rows:
        sync = "" if r["no_sync"] is None else (", no host sync" if r["no_sync"] else ", SYNCS WITH THE HOST")
        print(
            f"n-gram ban at {r['batch']} x {r['generated']} generated ({device}): Python "
            f"{r['python_ms']:.3f} ms/step, vectorised {r['vectorised_ms']:.3f} ms/step "
            f"({r['python_ms'] / r['vectorised_ms']:.1f}x){sync}"
        )
    return rows


def _write(report: dict[str, Any]) -> None:
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_throughput.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
