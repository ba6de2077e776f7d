"""DeepSeek-OCR (v1) and DeepSeek-OCR-2 in-process through vLLM (extra ``[vllm]``, GPU only).

v1 has no native transformers classes; vLLM (>= 0.11.1) runs it as ``DeepseekOCRForCausalLM``.
The authors' settings are applied: prefix caching off, ``mm_processor_cache_gb=0``,
``max_model_len=8192``, their n-gram repetition logits processor (``NGramPerReqLogitsProcessor``,
ngram 30 / window 90 with the ``<td>``/``</td>`` ids whitelisted, looked up in the tokenizer at
load), temperature 0, ``skip_special_tokens=False`` (the grounding tags are special tokens), and
by default no ``max_tokens`` cap below the context (vLLM stops at ``max_model_len`` minus the
prompt, ≈ 7,000 new tokens for a full page). vLLM is imported only when this engine is built.

DeepSeek-OCR-2 runs as ``DeepseekOCR2ForCausalLM`` (added by vLLM PR #33165, 2026-02-02) from the
authors' checkpoint ``deepseek-ai/DeepSeek-OCR-2`` (the converted
``deepseek-community/DeepSeek-OCR-2`` is for the transformers engine); its resolution is fixed
(mode ``v2``: a 1024 global view plus 768 tiles).

v1 resolution modes: only Gundam (``gundam``: a 1024 global view plus 640 tiles, the authors'
document setting and the default). Checked against vLLM's ``deepseek_ocr.py`` at commit 029329a8
(main, after PR #34085 of 2026-02-12): its processor takes ``base_size``/``image_size``/``crop_mode``
from ``mm_processor_kwargs``, but the prompt's image-token count
(``DeepseekOCRProcessingInfo.get_num_image_tokens``) is computed from the fixed Gundam sizes, so
Tiny/Small/Base/Large would get a placeholder count that does not match their features. Those
modes (:data:`MODES`, the authors' table) are refused at start with one line.

The pure functions :func:`mode_settings`, :func:`sampling_settings` and :func:`llm_settings`
are what the engine passes to vLLM; they are importable (and tested) without vLLM.
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
EOS_TEXT = "<｜end▁of▁sentence｜>"  # kept by skip_special_tokens=False; not page content

# DeepSeek-OCR v1 resolution modes (the authors' table): processor settings and vision tokens.
# Gundam: a 1024 global view plus 640 tiles (crop_mode), n x 100 + 256 tokens.
MODES: dict[str, dict[str, Any]] = {
    "tiny": {"base_size": 512, "image_size": 512, "crop_mode": False, "tokens": 64},
    "small": {"base_size": 640, "image_size": 640, "crop_mode": False, "tokens": 100},
    "base": {"base_size": 1024, "image_size": 1024, "crop_mode": False, "tokens": 256},
    "large": {"base_size": 1280, "image_size": 1280, "crop_mode": False, "tokens": 400},
    "gundam": {"base_size": 1024, "image_size": 640, "crop_mode": True, "tokens": None},
    # DeepSeek-OCR-2: a 1024 global view plus 2-6 tiles of 768, chosen by vLLM's own processor
    # (DeepseekOCR2ForCausalLM); nothing is passed, the model's defaults are the authors'.
    "v2": {"tokens": None},
}
V1_MODES = ("tiny", "small", "base", "large", "gundam")
SUPPORTED_V1_MODES = ("gundam",)  # what vLLM's DeepseekOCRForCausalLM counts tokens for (see above)
CONTEXT = 8192  # the authors' max_model_len


def model_version(model: str) -> str:
    """``"v2"`` for a DeepSeek-OCR-2 checkpoint (by name), else ``"v1"``."""
    name = model.lower().replace("_", "-")
    return "v2" if "ocr-2" in name or "ocr2" in name else "v1"


def default_mode(model: str) -> str:
    """Gundam for v1 (the authors' document setting), ``v2`` for DeepSeek-OCR-2."""
    return "v2" if model_version(model) == "v2" else "gundam"


def mode_settings(mode: str) -> dict[str, Any]:
    """``mm_processor_kwargs`` for a resolution mode (``tiny`` … ``gundam`` for v1, ``v2``): the
    authors' table. Which of them vLLM can run is :func:`check_mode`'s answer (Gundam only for v1).
    """
    try:
        m = MODES[mode.lower()]
    except KeyError:
        raise ConfigError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}") from None
    return {k: v for k, v in m.items() if k != "tokens"}


def check_mode(model: str, mode: str) -> None:
    """Raise :class:`ConfigError` (one line) for a mode that does not fit ``model`` or that vLLM
    does not support (v1: Gundam only, see the module docstring)."""
    if (mode == "v2") != (model_version(model) == "v2"):
        raise ConfigError(
            f"mode {mode!r} does not fit {model!r}: v1 modes are {', '.join(SUPPORTED_V1_MODES)}; "
            "DeepSeek-OCR-2 takes mode 'v2'"
        )
    if mode != "v2" and mode not in SUPPORTED_V1_MODES:
        raise ConfigError(
            f"mode {mode!r} is not supported through vLLM (its DeepSeek-OCR image-token count is fixed at "
            f"Gundam's sizes); use mode 'gundam'"
        )


def sampling_settings(
    max_new_tokens: int | None,
    temperature: float = 0.0,
    ngram_size: int = 30,
    ngram_window: int = 90,
    whitelist_token_ids: Sequence[int] = TD_TOKEN_IDS,
) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` with the authors' repetition guard.

    ``max_new_tokens`` None (or at least :data:`CONTEXT`): no cap, vLLM stops at
    ``max_model_len`` minus the prompt."""
    cap = None if max_new_tokens is None or int(max_new_tokens) >= CONTEXT else int(max_new_tokens)
    return {
        "temperature": float(temperature),
        "max_tokens": cap,
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
        "max_model_len": CONTEXT,
        "trust_remote_code": False,
        **overrides,
    }


class VllmEngine(OcrEngine):
    """Batches of pages through one in-process ``vllm.LLM`` (its scheduler batches on the GPU)."""

    name = "vllm"

    def __init__(
        self,
        model: str = "deepseek-ai/DeepSeek-OCR",
        prompt: str = "markdown",
        mode: str | None = None,
        max_new_tokens: int = CONTEXT,
        batch_size: int = 64,
        revision: str | None = None,
        ngram_size: int = 30,
        ngram_window: int = 90,
        whitelist_token_ids: Sequence[int] | None = None,
        **llm_overrides: Any,
    ) -> None:
        """``whitelist_token_ids``: the n-gram ban's whitelist (None: the ids of ``<td>``/``</td>``
        in the model's tokenizer, checked at load with BOS, :func:`.deepseek.check_tokenizer`)."""
        mode = (mode or default_mode(model)).lower()
        mm_kwargs = mode_settings(mode)
        check_mode(model, mode)
        try:
            from vllm import LLM
            from vllm.model_executor.models.deepseek_ocr import NGramPerReqLogitsProcessor
        except ImportError as exc:
            need = ">= 0.16 for DeepSeek-OCR-2" if mode == "v2" else ">= 0.11.1"
            raise EngineUnavailable(f"the vLLM engine needs vLLM {need}: pip install '{VLLM_EXTRA}'") from exc
        self.model = model
        self.revision = revision
        self.prompt = resolve_prompt(prompt)
        self.mode = mode
        self.mm_kwargs = mm_kwargs
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = int(batch_size)
        self.ngram = (int(ngram_size), int(ngram_window))
        t0 = time.perf_counter()
        self._llm = LLM(
            **llm_settings(model, revision, logits_processors=[NGramPerReqLogitsProcessor], **llm_overrides)
        )
        from airflow_provider_deepocr.core.engines.deepseek import check_tokenizer

        tok = self._llm.get_tokenizer()
        found = check_tokenizer(tok, tok(self.prompt)["input_ids"], model, bos_added_elsewhere=True)
        chosen = found if whitelist_token_ids is None else whitelist_token_ids
        self.whitelist = tuple(int(t) for t in chosen)
        log.info("vLLM loaded %s (mode %s) in %.1fs", model, mode, time.perf_counter() - t0)

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

    def device_name(self) -> str:
        import torch

        return f"cuda {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"

    def _input(self, page: PageImage) -> dict[str, Any]:
        item: dict[str, Any] = {
            "prompt": self.prompt,
            "multi_modal_data": {"image": page.image.convert("RGB")},
        }
        if self.mm_kwargs:
            item["mm_processor_kwargs"] = self.mm_kwargs
        return item

    def ocr(self, pages: Sequence[PageImage], temperature: float = 0.0) -> list[OcrResult]:
        from vllm import SamplingParams

        params = SamplingParams(
            **sampling_settings(
                self.max_new_tokens, temperature, self.ngram[0], self.ngram[1], self.whitelist
            )
        )
        results: list[OcrResult | None] = [None] * len(pages)
        inputs, idx = [], []
        for i, page in enumerate(pages):
            try:
                inputs.append(self._input(page))
                idx.append(i)
            except Exception as exc:  # not an image
                log.warning(
                    "page %s/%s: unusable image (%s)", page.doc_id[:12], page.page_no, type(exc).__name__
                )
                results[i] = self.error_result()
        t0 = time.perf_counter()
        try:
            outputs = self._llm.generate(inputs, params, use_tqdm=False) if inputs else []
        except Exception as exc:  # one bad page must not cost the batch: go page by page
            log.warning(
                "vLLM failed on a batch of %d pages (%s); retrying one by one", len(idx), type(exc).__name__
            )
            outputs = []
            for item in inputs:
                try:
                    outputs.extend(self._llm.generate([item], params, use_tqdm=False))
                except Exception as exc1:
                    log.warning("vLLM failed on one page (%s)", type(exc1).__name__)
                    outputs.append(None)
        seconds = (time.perf_counter() - t0) / max(1, len(idx))
        for i, out in zip(idx, outputs, strict=True):
            results[i] = self._result(out, seconds)
        return [r if r is not None else self.error_result() for r in results]

    def _result(self, out: Any, seconds: float) -> OcrResult:
        if out is None or not getattr(out, "outputs", None):
            return self.error_result()
        comp = out.outputs[0]
        return OcrResult(
            raw_text=comp.text.replace(EOS_TEXT, ""),
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
