"""DeepSeek-OCR (v1) and DeepSeek-OCR-2 in-process through vLLM (extra ``[vllm]``, GPU only).

v1 has no native transformers classes; vLLM (>= 0.11.1) runs it as ``DeepseekOCRForCausalLM``.
The authors' settings are applied: prefix caching off, ``mm_processor_cache_gb=0``, their n-gram
repetition logits processor (``NGramPerReqLogitsProcessor``, ngram 30 / window 90 with the
``<td>``/``</td>`` ids whitelisted), temperature 0, ``skip_special_tokens=False`` (the grounding
tags are special tokens). vLLM is imported only when this engine is built.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from airflow_provider_deepocr.core.engines.base import OcrEngine
from airflow_provider_deepocr.core.engines.deepseek import resolve_prompt
from airflow_provider_deepocr.core.errors import ConfigError, EngineUnavailable
from airflow_provider_deepocr.core.records import OcrResult, PageImage

log = logging.getLogger(__name__)

VLLM_EXTRA = "airflow-provider-deepocr[vllm]"
TD_TOKEN_IDS = (128821, 128822)  # <td>, </td> in the DeepSeek-OCR tokenizer

# DeepSeek-OCR v1 resolution modes: (base_size, image_size, crop_mode) and vision tokens per view.
MODES: dict[str, dict[str, Any]] = {
    "tiny": {"base_size": 512, "image_size": 512, "crop_mode": False, "tokens": 64},
    "small": {"base_size": 640, "image_size": 640, "crop_mode": False, "tokens": 100},
    "base": {"base_size": 1024, "image_size": 1024, "crop_mode": False, "tokens": 256},
    "large": {"base_size": 1280, "image_size": 1280, "crop_mode": False, "tokens": 400},
    "gundam": {"base_size": 1024, "image_size": 640, "crop_mode": True, "tokens": None},
    # DeepSeek-OCR-2: a global 1024 view plus 768 tiles (2-6), chosen by the model's processor
    "v2": {"base_size": 1024, "image_size": 768, "crop_mode": True, "tokens": None},
}


def mode_settings(mode: str) -> dict[str, Any]:
    """Processor settings for a resolution mode (``tiny`` … ``gundam`` for v1, ``v2``)."""
    try:
        m = MODES[mode.lower()]
    except KeyError:
        raise ConfigError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}") from None
    return {k: v for k, v in m.items() if k != "tokens"}


def sampling_settings(
    max_new_tokens: int,
    temperature: float = 0.0,
    ngram_size: int = 30,
    ngram_window: int = 90,
    whitelist_token_ids: Sequence[int] = TD_TOKEN_IDS,
) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` with the authors' repetition guard."""
    return {
        "temperature": float(temperature),
        "max_tokens": int(max_new_tokens),
        "skip_special_tokens": False,
        "extra_args": {
            "ngram_size": int(ngram_size),
            "window_size": int(ngram_window),
            "whitelist_token_ids": set(whitelist_token_ids),
        },
    }


def llm_settings(model: str, revision: str | None = None, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM`` (the authors' settings; ``overrides`` win)."""
    return {
        "model": model,
        "revision": revision,
        "enable_prefix_caching": False,
        "mm_processor_cache_gb": 0,
        "trust_remote_code": False,
        **overrides,
    }


class VllmEngine(OcrEngine):
    """Batches of pages through one in-process ``vllm.LLM``."""

    name = "vllm"

    def __init__(
        self,
        model: str = "deepseek-ai/DeepSeek-OCR",
        prompt: str = "markdown",
        mode: str = "gundam",
        max_new_tokens: int = 8192,
        batch_size: int = 64,
        revision: str | None = None,
        ngram_size: int = 30,
        ngram_window: int = 90,
        **llm_overrides: Any,
    ) -> None:
        try:
            from vllm import LLM
            from vllm.model_executor.models.deepseek_ocr import NGramPerReqLogitsProcessor
        except ImportError as exc:
            raise EngineUnavailable(
                f"the vLLM engine needs vLLM >= 0.11.1: pip install '{VLLM_EXTRA}'"
            ) from exc
        self.model = model
        self.revision = revision
        self.prompt = resolve_prompt(prompt)
        self.mode = mode
        self.mm_kwargs = mode_settings(mode)
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = int(batch_size)
        self.ngram = (int(ngram_size), int(ngram_window))
        t0 = time.perf_counter()
        self._llm = LLM(
            **llm_settings(model, revision, logits_processors=[NGramPerReqLogitsProcessor], **llm_overrides)
        )
        log.info("vLLM loaded %s in %.1fs", model, time.perf_counter() - t0)

    def describe(self) -> dict[str, object]:
        return {
            "engine": self.name,
            "model": self.model,
            "revision": self.revision,
            "prompt": self.prompt,
            "mode": self.mode,
            "max_new_tokens": self.max_new_tokens,
            "ngram": list(self.ngram),
        }

    def ocr(self, pages: Sequence[PageImage], temperature: float = 0.0) -> list[OcrResult]:
        from vllm import SamplingParams

        params = SamplingParams(
            **sampling_settings(self.max_new_tokens, temperature, self.ngram[0], self.ngram[1])
        )
        inputs = [
            {
                "prompt": self.prompt,
                "multi_modal_data": {"image": p.image.convert("RGB")},
                "mm_processor_kwargs": self.mm_kwargs,
            }
            for p in pages
        ]
        t0 = time.perf_counter()
        try:
            outputs = self._llm.generate(inputs, params, use_tqdm=False)
        except Exception as exc:
            log.warning("vLLM failed on a batch of %d pages: %s", len(pages), type(exc).__name__)
            return [self.error_result() for _ in pages]
        seconds = (time.perf_counter() - t0) / max(1, len(pages))
        results = []
        for out in outputs:
            comp = out.outputs[0]
            results.append(
                OcrResult(
                    raw_text=comp.text.replace("<｜end▁of▁sentence｜>", ""),
                    finish_reason="length" if comp.finish_reason == "length" else "eos",
                    engine=self.name,
                    model=self.model,
                    prompt_tokens=len(out.prompt_token_ids or []),
                    output_tokens=len(comp.token_ids),
                    seconds=seconds,
                    revision=self.revision,
                    prompt=self.prompt,
                    mode=self.mode,
                )
            )
        return results
