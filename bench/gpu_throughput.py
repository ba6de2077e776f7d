"""GPU throughput of batched DeepSeek-OCR-2 at its full published size (random weights).

No weights can be downloaded on the benchmark machine, so the model is built from a config in
code at the published size — text: hidden 1280, intermediate 6848, 12 layers, 10 heads (head_dim
128), 64 routed + 2 shared experts, top-6, MoE intermediate 896, first layer dense, vocab 129,280;
vision: SAM ViT-B (downsample channels [512, 896]) and a Qwen2-0.5B-sized encoder (hidden 896).
Every page is forced to the same output length (EOS suppressed by ``min_new_tokens``) on A4 pages
rendered at 144 DPI, sweeping batch sizes; it prints pages/s, output tokens/s and peak GPU memory
per batch size, the best batch against batch 1, and output tokens/s next to the published anchor
(~2,500 tokens/s on one A100-40G with vLLM). Results also go to ``$OUT/gpu_throughput.json``.

    python bench/gpu_throughput.py                   # CUDA, full size
    python bench/gpu_throughput.py --small           # CPU check with the tiny config
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

A100_ANCHOR_TOKENS_PER_S = 2500.0


def full_config(vocab: int, bos: int, eos: int, pad: int, image: int):  # type: ignore[no-untyped-def]
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
        "vocab_size": max(vocab, 129280),
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


def a4_pages(n: int, dpi: int = 144) -> list:
    import pymupdf
    from PIL import Image

    doc = pymupdf.open()
    for i in range(n):
        page = doc.new_page(width=595, height=842)
        for line in range(60):
            page.insert_text(
                (40, 40 + 12.5 * line),
                f"{i:03d}-{line:02d} Revenue, net of returns   1,234.{line:02d}  " * 2,
                fontsize=8,
            )
    out = []
    for page in doc:
        pix = page.get_pixmap(dpi=dpi, alpha=False)
        out.append(Image.frombytes("RGB", (pix.width, pix.height), pix.samples))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true", help="tiny config on CPU (a check that the script runs)")
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes")
    ap.add_argument("--new-tokens", type=int, default=None)
    args = ap.parse_args()

    import torch
    from transformers import (
        DeepseekOcr2ForConditionalGeneration,
        DeepseekOcr2ImageProcessorPil,
        DeepseekOcr2Processor,
    )

    from airflow_provider_deepocr.testing import tiny_model

    tok = tiny_model._build_tokenizer()
    ids = {
        t: tok.convert_tokens_to_ids(t)
        for t in (tiny_model.BOS, tiny_model.EOS, tiny_model.PAD, tiny_model.IMAGE)
    }
    args_ids = (ids[tiny_model.BOS], ids[tiny_model.EOS], ids[tiny_model.PAD], ids[tiny_model.IMAGE])
    if args.small:
        device, dtype = "cpu", torch.float32
        config = tiny_model._build_config(len(tok), *args_ids)
        batches = [int(b) for b in (args.batches or "1,2").split(",")]
        new_tokens = args.new_tokens or 8
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --small for a CPU check")
        device, dtype = "cuda", torch.bfloat16
        config = full_config(len(tok), *args_ids)
        batches = [int(b) for b in (args.batches or "1,2,4,8,16,32,64").split(",")]
        new_tokens = args.new_tokens or 1000
    torch.manual_seed(0)
    t0 = time.perf_counter()
    config._attn_implementation = "sdpa"  # what the engine picks (flash-attn is not supported)
    with torch.device(device):
        model = DeepseekOcr2ForConditionalGeneration(config).to(dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {params / 1e6:.0f}M parameters on {device} ({str(dtype)[6:]}), "
        f"built in {time.perf_counter() - t0:.1f}s"
    )
    processor = DeepseekOcr2Processor(image_processor=DeepseekOcr2ImageProcessorPil(), tokenizer=tok)
    tok.padding_side = "left"
    prompt = "<image>\n<|grounding|>Convert the document to markdown."
    images = a4_pages(max(batches))
    import copy

    from airflow_provider_deepocr.core.engines.preprocess import fast_image_processor

    fast = copy.copy(processor)
    fast.image_processor = fast_image_processor(processor.image_processor, device=device)
    processor(images=images[:1], text=[prompt], return_tensors="pt")  # warm
    fast(images=images[:1], text=[prompt], return_tensors="pt")
    t0 = time.perf_counter()
    inputs_all = processor(images=images[:1], text=[prompt], return_tensors="pt")
    pre_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast(images=images[:1], text=[prompt], return_tensors="pt")
    if device == "cuda":
        torch.cuda.synchronize()
    fast_s = time.perf_counter() - t0
    print(
        f"A4 page at 144 dpi: {images[0].size[0]}x{images[0].size[1]} px, "
        f"{inputs_all['input_ids'].shape[1]} prompt tokens; preprocess {pre_s * 1000:.0f} ms/page "
        f"(stock PIL processor, CPU), {fast_s * 1000:.0f} ms/page (fast, {device})"
    )

    rows = []
    for b in batches:
        inputs = fast(images=images[:b], text=[prompt] * b, return_tensors="pt", padding=True).to(
            device, dtype=dtype
        )
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                out = model.generate(
                    **inputs,
                    do_sample=False,
                    max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens,  # EOS suppressed: every page makes new_tokens
                    pad_token_id=ids[tiny_model.PAD],
                )
        except torch.OutOfMemoryError:
            print(f"batch {b:3d}: out of memory; sweep stops here")
            del inputs
            torch.cuda.empty_cache()
            break
        if device == "cuda":
            torch.cuda.synchronize()
        sec = time.perf_counter() - t0
        gen = out.shape[1] - inputs["input_ids"].shape[1]
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0
        row = {
            "batch": b,
            "seconds": sec,
            "pages_per_s": b / sec,
            "output_tokens_per_s": b * gen / sec,
            "peak_gib": peak,
            "new_tokens": gen,
        }
        rows.append(row)
        print(
            f"batch {b:3d}: {row['pages_per_s']:7.3f} pages/s  "
            f"{row['output_tokens_per_s']:9.1f} output tokens/s  peak {peak:6.1f} GiB"
        )
        del out, inputs
    best = max(rows, key=lambda r: r["pages_per_s"])
    summary = {
        "rows": rows,
        "best_batch": best["batch"],
        "best_vs_batch1": best["pages_per_s"] / rows[0]["pages_per_s"],
        "best_output_tokens_per_s": best["output_tokens_per_s"],
        "vs_a100_anchor": best["output_tokens_per_s"] / A100_ANCHOR_TOKENS_PER_S,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
    }
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_throughput.json").write_text(json.dumps(summary, indent=2))
    print(
        f"best batch {best['batch']}: {summary['best_vs_batch1']:.2f}x batch 1; "
        f"{best['output_tokens_per_s']:.0f} output tokens/s vs the ~2,500 tokens/s A100 anchor "
        f"({summary['vs_a100_anchor']:.2f}x)"
    )


if __name__ == "__main__":
    main()
