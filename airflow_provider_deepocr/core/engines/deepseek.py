"""DeepSeek-OCR-2 through the native transformers classes (``DeepseekOcr2ForConditionalGeneration``).

torch and transformers are imported inside functions only: importing this module is cheap.
Weights load from safetensors only, without ``trust_remote_code``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_deepocr.core.engines.base import (
    MODEL_CONTEXT,
    PROMPTS,
    OcrEngine,
    cap_new_tokens,
    resolve_max_new_tokens,
)
from airflow_provider_deepocr.core.errors import ConfigError, EngineUnavailable
from airflow_provider_deepocr.core.records import OcrResult, PageImage

log = logging.getLogger(__name__)

DEFAULT_MODEL = "deepseek-community/DeepSeek-OCR-2"
GPU_EXTRA = "airflow-provider-deepocr[gpu]"

# Tokens whose repetition is legitimate (table cells repeat by nature); exempt from the n-gram ban.
# The authors' whitelist: {128821, 128822} = <td>, </td> in their tokenizer (no <tr>/</tr>).
NGRAM_WHITELIST_TOKENS: tuple[str, ...] = ("<td>", "</td>")

# batch_size="auto": where the batch starts; CUDA out-of-memory halves it (and it stays halved).
# On CUDA the start depends on the GPU memory free once the weights are loaded (AUTO_BATCH_CUDA).
AUTO_BATCH = {"mps": 8, "cpu": 4}

# (free GiB after loading the weights, batch): the first row whose GiB the free memory reaches.
# PROVISIONAL, not yet measured on a GPU: sized from the KV cache of the published model (12 layers x
# 10 heads x 128 x 2 x bf16 = 60 KiB a token; a dense A4 page's ~1,100 prompt tokens + 4,096 output
# tokens = ~0.3 GiB a page) plus the vision encoder's activations at prefill, so batch 128 needs
# ~70 GiB free (an H200 has ~130 after loading), 64 fits an 80 GB card, 32 a 40-48 GB one.
# `bench/gpu_throughput.py` prints where pages/s peaks; set these from its sweep.
AUTO_BATCH_CUDA: tuple[tuple[float, int], ...] = ((100, 128), (56, 64), (28, 32), (14, 16), (7, 8), (0, 4))

_DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16"}
_DTYPES.update({"half": "float16", "float32": "float32", "fp32": "float32", "float": "float32"})


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~", "file:")) or "\\" in model or model.count("/") > 1


def weights_available(model: str, revision: str | None = None) -> bool:
    """Whether the weights of ``model`` are here without any network call.

    ``model`` is a local directory (needs ``config.json`` and safetensors weights) or a hub id,
    which counts when its config and safetensors weights are in the local Hugging Face cache.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return (path / "config.json").is_file() and any(path.glob("*.safetensors"))
    if path.exists() or _looks_like_path(model):
        return False
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        config = try_to_load_from_cache(model, "config.json", revision=revision)
        if not isinstance(config, str):
            return False
        for name in ("model.safetensors.index.json", "model.safetensors"):
            if isinstance(try_to_load_from_cache(model, name, revision=revision), str):
                return True
    except Exception:  # invalid repo id and the like: not available
        return False
    return False


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (``HF_ENDPOINT``) answers a TCP connection within ``timeout``;
    False at once under ``HF_HUB_OFFLINE``. A download's own retries take minutes without network."""
    import socket
    from urllib.parse import urlsplit

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout).close()
    except OSError:
        return False
    return True


def check_weights(model: str, revision: str | None = None) -> None:
    """Refuse in one line, in seconds, weights that are neither here nor downloadable:
    :class:`EngineUnavailable` naming what is missing and how to get it."""
    if weights_available(model, revision):
        return
    how = (
        f"download them where there is network (huggingface-cli download {DEFAULT_MODEL} --local-dir DIR) "
        "and point --model (engine option model) at DIR"
    )
    path = Path(model).expanduser()
    if path.exists() or _looks_like_path(model):
        raise EngineUnavailable(
            f"no DeepSeek-OCR weights at {model} (needs config.json and *.safetensors): {how}"
        )
    if not hub_reachable():
        raise EngineUnavailable(
            f"DeepSeek-OCR weights {model} are not in the local Hugging Face cache "
            f"and the hub is unreachable: {how}"
        )


def resolve_prompt(prompt: str) -> str:
    """A prompt name from :data:`PROMPTS`, or a literal prompt that contains ``<image>``."""
    if prompt in PROMPTS:
        return PROMPTS[prompt]
    if "<image>" in prompt:
        return prompt
    raise ConfigError(f"prompt must be one of {sorted(PROMPTS)} or contain <image>")


def auto_batch_size(device: str, free_bytes: int | None = None) -> int:
    """Where ``batch_size="auto"`` starts on ``device``: by free GPU memory on CUDA, else a constant.

    ``free_bytes``: the device memory free once the weights are loaded (``torch.cuda.mem_get_info``);
    on CUDA it picks the first row of :data:`AUTO_BATCH_CUDA` whose GiB it reaches (None: 64).
    CPU starts at 4, MPS at 8. A CUDA out-of-memory still halves the batch from there.
    """
    kind = device.split(":")[0]
    if kind != "cuda":
        return AUTO_BATCH.get(kind, 4)
    if free_bytes is None:
        return 64
    free_gib = free_bytes / 2**30
    return next((batch for gib, batch in AUTO_BATCH_CUDA if free_gib >= gib), AUTO_BATCH_CUDA[-1][1])


def _pick_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _pick_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            if torch.cuda.is_bf16_supported():
                return torch.bfloat16
            log.warning(
                "this GPU has no bfloat16: dtype auto runs float16, which the authors never ran "
                "(they run bfloat16 only); pass dtype=float32 for the safe, slower choice"
            )
            return torch.float16
        if device.startswith("mps"):
            return torch.float16
        return torch.float32
    name = _DTYPES.get(dtype.lower())
    if name is None:
        raise ConfigError(f"unknown dtype {dtype!r}; use auto, bfloat16, float16 or float32")
    return getattr(torch, name)


def _pick_attention(device: str) -> str:
    """The fastest attention the DeepSeek-OCR-2 classes support here.

    ``flash_attention_2`` needs CUDA, the ``flash_attn`` package and a model class that declares
    it; otherwise PyTorch's fused ``sdpa`` (flash / memory-efficient kernels on CUDA).
    """
    try:
        from transformers import DeepseekOcr2ForConditionalGeneration as cls
    except ImportError:  # pragma: no cover - transformers without the class
        return "sdpa"
    if (
        device.startswith("cuda")
        and getattr(cls, "_supports_flash_attn", False)
        and importlib.util.find_spec("flash_attn") is not None
    ):
        return "flash_attention_2"
    return "sdpa" if getattr(cls, "_supports_sdpa", False) else "eager"


def check_tokenizer(
    tokenizer: Any, prompt_ids: Sequence[int], model: str, bos_added_elsewhere: bool = False
) -> list[int]:
    """The checks every engine makes on the tokenizer at load; returns the n-gram whitelist ids.

    ``prompt_ids``: a prompt as the engine encodes it (processor or tokenizer, special tokens
    added). It must start with BOS: the authors add BOS explicitly, and without it the model
    answers with nothing (a clean, empty page), so a tokenizer that does not add it is refused
    (:class:`EngineUnavailable`, one line). ``<td>`` and ``</td>`` (:data:`NGRAM_WHITELIST_TOKENS`)
    must each be one token of the vocabulary; if not, one warning names them and the n-gram
    ban runs without a whitelist. The whitelist ids are logged once. ``bos_added_elsewhere``: the
    caller's processor prepends BOS itself (vLLM's DeepSeek-OCR processors call
    ``tokenize_with_images(bos=True)``, as the authors do): a tokenizer without it is only a warning.
    """
    bos = getattr(tokenizer, "bos_token_id", None)
    first = int(prompt_ids[0]) if len(prompt_ids) else None
    if bos is not None and first != int(bos) and bos_added_elsewhere:
        log.warning("the tokenizer of %s does not add BOS; its processor adds it explicitly", model)
    elif bos is None or first != int(bos):
        raise EngineUnavailable(
            f"the tokenizer of {model} does not put BOS first (bos id {bos}, first prompt id {first}): "
            "DeepSeek-OCR answers with nothing without it; use a tokenizer that adds BOS"
        )
    ids: list[int] = []
    missing: list[str] = []
    for token in NGRAM_WHITELIST_TOKENS:
        encoded = tokenizer.encode(token, add_special_tokens=False)
        if len(encoded) == 1 and tokenizer.convert_ids_to_tokens(encoded[0]) == token:
            ids.append(int(encoded[0]))
        else:
            missing.append(token)
    if missing:
        log.warning(
            "the tokenizer of %s has no single token for %s: the n-gram ban runs without its whitelist "
            "(repeated table cells may be banned)",
            model,
            ", ".join(missing),
        )
        return []
    log.info("n-gram ban whitelist for %s: %s", model, dict(zip(NGRAM_WHITELIST_TOKENS, ids, strict=True)))
    return ids


def ban_repeated_ngrams(
    scores: Any,
    generated: Any,
    ngram_size: int,
    window: int,
    whitelist: Any = None,
    stacked: bool | None = None,
) -> Any:
    """Set to ``-inf``, in place, the scores of tokens that would repeat a recent n-gram; return ``scores``.

    ``generated``: ``(batch, steps)`` token ids generated so far (no prompt), on the device of
    ``scores`` (``(batch, vocab)``). For each row, the last ``ngram_size - 1`` tokens are the prefix;
    every earlier occurrence of that prefix inside the last ``window`` tokens (all of them when
    ``window`` is 0) bans the token that followed it. ``ngram_size == 1`` bans every token of the
    window. ``whitelist``: a 1-D tensor of token ids (on the same device) never banned.

    Vectorised torch, only the last ``window`` steps read (a step costs the same at 256 and at 4,096
    generated tokens), no copy to the host; the bans are written with one ``scatter_reduce(amin)``
    of ``-inf`` (banned) or ``+inf`` (no change). Two ways to find the occurrences, same result:
    ``stacked`` (the default off the CPU) compares every window position with the whole prefix in
    one ``unfold`` (a few kernels, no host synchronisation); otherwise (the default on the CPU) one
    small comparison per prefix token, stopping as soon as no position still matches -- each is
    small enough to run on one thread, so it never waits on busy cores.
    """
    import torch

    n = int(ngram_size)
    steps = generated.shape[1]
    if n <= 0 or steps < n - 1:
        return scores
    recent = generated[:, -window:] if 0 < window < steps else generated
    width = recent.shape[1]
    if n == 1:
        tokens = recent
        hit = torch.ones_like(tokens, dtype=torch.bool)
    else:
        starts = width - (n - 1)  # window positions whose n-gram has its next token in the window
        if starts <= 0:
            return scores
        prefix = recent[:, starts:]
        if stacked is None:
            stacked = recent.device.type != "cpu"
        if stacked:
            # (batch, n - 1, starts): token k of the n-gram at each position vs prefix token k,
            # laid out so the sum runs over the middle axis (a reduction over a last axis of 29 is slow)
            same = recent.unfold(1, n - 1, 1)[:, :starts].transpose(1, 2) == prefix.unsqueeze(2)
            hit = same.sum(dim=1, dtype=torch.int32) == n - 1
        else:
            hit = recent[:, :starts] == prefix[:, :1]
            for k in range(1, n - 1):
                if not bool(hit.any()):  # on the CPU this costs no synchronisation
                    return scores
                hit &= recent[:, k : k + starts] == prefix[:, k : k + 1]
        tokens = recent[:, n - 1 :]
    if whitelist is not None and whitelist.numel():
        hit &= ~torch.isin(tokens, whitelist)
    fill = torch.full(tokens.shape, float("inf"), dtype=scores.dtype, device=scores.device)
    scores.scatter_reduce_(1, tokens, fill.masked_fill_(hit, float("-inf")), reduce="amin")
    return scores


class NgramRepetitionBan:
    """Logits processor: ban the token that would repeat an n-gram seen in the recent window.

    At each step, for the last ``ngram_size - 1`` generated tokens, every earlier occurrence of
    that prefix within the last ``window`` generated tokens bans the token that followed it
    (unless whitelisted). Only generated tokens count (not the prompt). This is the processor
    DeepSeek-OCR ships for vLLM, and it is what stops greedy decoding looping on a page.
    It runs on the device of the scores (:func:`ban_repeated_ngrams`): no copy to the host and
    no synchronisation per step.
    """

    def __init__(self, ngram_size: int, window: int, prompt_len: int, whitelist: Sequence[int] = ()) -> None:
        self.n = int(ngram_size)
        self.window = int(window)
        self.prompt_len = int(prompt_len)
        self.whitelist = frozenset(int(t) for t in whitelist)
        self._whitelist_on: dict[str, Any] = {}  # the whitelist as a tensor, per device

    def _whitelist_tensor(self, device: Any) -> Any:
        key = str(device)
        found = self._whitelist_on.get(key)
        if found is None:
            import torch

            found = torch.tensor(sorted(self.whitelist), dtype=torch.long, device=device)
            self._whitelist_on[key] = found
        return found

    def banned(self, generated: Sequence[int]) -> set[int]:
        """Tokens banned as the next token after ``generated`` (the generated ids of one row)."""
        import torch

        ids = torch.tensor([list(generated)], dtype=torch.long).reshape(1, -1)
        vocab = int(ids.max()) + 1 if ids.numel() else 1
        scores = ban_repeated_ngrams(
            torch.zeros(1, vocab), ids, self.n, self.window, self._whitelist_tensor("cpu")
        )
        return {int(t) for t in torch.isneginf(scores[0]).nonzero().flatten()}

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        return ban_repeated_ngrams(
            scores,
            input_ids[:, self.prompt_len :],
            self.n,
            self.window,
            self._whitelist_tensor(input_ids.device) if self.whitelist else None,
        )


class DeepSeekOcr2Engine(OcrEngine):
    """DeepSeek-OCR-2 on the native transformers classes; greedy, batched with left padding."""

    name = "deepseek-ocr2"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        device: str = "auto",
        dtype: str = "auto",
        prompt: str = "markdown",
        max_new_tokens: int | Mapping[str, int] | None = None,
        batch_size: int | str = 1,
        revision: str | None = None,
        local_files_only: bool | None = None,
        attn_implementation: str | None = None,
        ngram_size: int = 30,
        ngram_window: int = 90,
        seed: int = 0,
        fast_preprocess: bool = True,
        gpu_preprocess: bool = True,
        cache_implementation: str | None = None,
    ) -> None:
        """``max_new_tokens``: an int, or a mapping by prompt name (``{"markdown": 8192,
        "figure": 2048}``; None: :data:`.base.DEFAULT_MAX_NEW_TOKENS`: the whole context for a
        document, 2048 for a figure); each batch is capped at the context (8,192, or the model's
        ``max_position_embeddings`` if smaller) minus its prompt, ≈ 7,000 for a full page.
        ``batch_size``: pages per ``generate()``, or ``"auto"`` (on CUDA by the GPU memory free
        after loading, :func:`auto_batch_size`; 4 on CPU), which halves on CUDA out-of-memory and
        keeps the smaller size. ``attn_implementation``: None picks the fastest the model supports
        (``flash_attention_2`` when installed on CUDA, else ``sdpa``). ``ngram_size``,
        ``ngram_window``: the repetition ban (:class:`NgramRepetitionBan`; 0 turns it off).
        ``seed``: the seed of sampled retries (``temperature > 0``). ``fast_preprocess``: the fast
        image preprocessor (same tensors as the stock one within 1e-2); with ``gpu_preprocess`` it
        runs on the GPU on a CUDA device. ``cache_implementation``: passed to ``generate()``
        (None: transformers' dynamic KV cache; ``"static"`` preallocates it, and on CUDA
        transformers then compiles the decoding step with ``torch.compile``). Off by default: not
        yet measured faster on a GPU (``bench/gpu_throughput.py --static-cache`` tries it).
        """
        if ngram_size < 0 or ngram_window < 0:
            raise ConfigError("ngram_size and ngram_window must be >= 0")
        self.model = str(model)
        self.prompt_name = prompt if prompt in PROMPTS else None
        self.prompt = resolve_prompt(prompt)
        self.max_new_tokens = resolve_max_new_tokens(max_new_tokens, self.prompt_name)
        self.auto_batch = isinstance(batch_size, str)
        if self.auto_batch and str(batch_size).lower() != "auto":
            raise ConfigError("batch_size must be an int >= 1 or 'auto'")
        if not self.auto_batch and int(batch_size) < 1:
            raise ConfigError("batch_size must be >= 1")
        self.batch_size = 1 if self.auto_batch else int(batch_size)
        self.ngram_size = int(ngram_size)
        self.ngram_window = int(ngram_window)
        self.seed = int(seed)
        self.cache_implementation = cache_implementation

        try:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as exc:
            raise EngineUnavailable(
                f"DeepSeek-OCR-2 needs torch and transformers: pip install '{GPU_EXTRA}'"
            ) from exc

        self.device = _pick_device(device)
        self.torch_dtype = _pick_dtype(dtype, self.device)
        if local_files_only is None:
            # Cached hub weights (or a local dir) load without touching the network; weights
            # that are neither here nor downloadable are refused now, not after minutes of retries.
            check_weights(self.model, revision)
            local_files_only = weights_available(self.model, revision)

        common: dict[str, Any] = {"revision": revision, "local_files_only": local_files_only}
        common["trust_remote_code"] = False
        self.attn_implementation = attn_implementation or _pick_attention(self.device)
        on_cuda = self.device.startswith("cuda")
        t0 = time.perf_counter()
        try:
            self._processor = AutoProcessor.from_pretrained(self.model, **common)
            extra: dict[str, Any] = {"attn_implementation": self.attn_implementation}
            if on_cuda and importlib.util.find_spec("accelerate") is not None:
                extra["device_map"] = self.device  # weights load straight onto the GPU
            self._model = AutoModelForImageTextToText.from_pretrained(
                self.model, dtype=self.torch_dtype, use_safetensors=True, **common, **extra
            )
        except (OSError, ValueError) as exc:
            raise EngineUnavailable(
                f"cannot load DeepSeek-OCR-2 weights for {self.model} ({type(exc).__name__})"
            ) from exc
        if "device_map" not in extra:
            self._model.to(self.device)
        self._model.eval()
        self._torch = torch
        if self.auto_batch:
            free = torch.cuda.mem_get_info(self.device)[0] if on_cuda else None
            self.batch_size = auto_batch_size(self.device, free)

        if fast_preprocess:
            from airflow_provider_deepocr.core.engines.preprocess import fast_image_processor

            pre_device = self.device if (on_cuda and gpu_preprocess) else "cpu"
            self._processor.image_processor = fast_image_processor(
                self._processor.image_processor, device=pre_device
            )
        self._setup_tokens()

        cfg_hash = getattr(self._model.config, "_commit_hash", None)
        self.revision = cfg_hash or revision
        ip = self._processor.image_processor
        self.mode = (
            f"dynamic-{ip.size['height']}-{ip.tile_size}" if ip.crop_to_patches else f"base-{ip.tile_size}"
        )
        log.info(
            "loaded %s (revision %s) on %s/%s, attention %s, batch %s%s, in %.1fs",
            self.model,
            self.revision,
            self.device,
            str(self.torch_dtype).removeprefix("torch."),
            self.attn_implementation,
            self.batch_size,
            " (auto)" if self.auto_batch else "",
            time.perf_counter() - t0,
        )

    def _setup_tokens(self) -> None:
        """EOS, pad and the texts decode strips; the load checks (BOS, whitelist); the context."""
        tok = self._processor.tokenizer
        tok.padding_side = "left"
        gen = self._model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else tok.eos_token_id
        self.eos_token_ids: set[int] = set(eos if isinstance(eos, list) else [eos]) - {None}
        pad = tok.pad_token_id if tok.pad_token_id is not None else gen.pad_token_id
        if pad is None:
            pad = next(iter(self.eos_token_ids))
        self.pad_token_id = int(pad)
        self._strip_texts = [t for t in (tok.bos_token, tok.eos_token, tok.pad_token) if t]
        self._ngram_whitelist = check_tokenizer(tok, self._probe_prompt_ids(), self.model)
        text_cfg = getattr(self._model.config, "text_config", self._model.config)
        positions = int(getattr(text_cfg, "max_position_embeddings", 0) or MODEL_CONTEXT)
        self.context = min(MODEL_CONTEXT, positions)

    def _probe_prompt_ids(self) -> list[int]:
        """The prompt's ids as the processor makes them for a small blank page (the BOS check)."""
        from PIL import Image

        probe = self._processor(
            images=[Image.new("RGB", (64, 64), "white")], text=[self.prompt], return_tensors="pt"
        )
        return [int(t) for t in probe["input_ids"][0].tolist()]

    # -- public -----------------------------------------------------------------------------

    def describe(self) -> dict[str, object]:
        return {
            "engine": self.name,
            "model": self.model,
            "revision": self.revision,
            "prompt": self.prompt,
            "mode": self.mode,
            "max_new_tokens": self.max_new_tokens,
            "dtype": str(self.torch_dtype).removeprefix("torch."),
            "ngram_size": self.ngram_size,
            "ngram_window": self.ngram_window,
        }

    def device_name(self) -> str:
        if self.device.startswith("cuda"):
            import torch

            return f"{self.device} {torch.cuda.get_device_name(self.device)}"
        return self.device

    def ocr(self, pages: Sequence[PageImage], temperature: float = 0.0) -> list[OcrResult]:
        return self.ocr_prepared(self.prepare(pages), temperature=temperature)

    def prepare(self, pages: Sequence[PageImage]) -> _Prepared:
        """CPU work for a batch (image checks and the processor), split from :meth:`ocr_prepared`.

        The pipeline calls this in its render thread, so preprocessing of the next batch runs
        while the current batch is in ``generate()``. The processor runs once for the whole
        batch; smaller ``generate()`` batches (``batch_size``, or halved after an out-of-memory)
        take slices of it. A batch whose processor call fails is left unprepared and goes page
        by page in :meth:`ocr_prepared`.
        """
        prepared = _Prepared(list(pages), [None] * len(pages), [])
        for i, page in enumerate(pages):
            if not _is_image(page.image):
                prepared.results[i] = self._error(page, "InvalidImage")
            else:
                prepared.todo.append(i)
        if prepared.todo:
            try:
                prepared.inputs = self._inputs([pages[i] for i in prepared.todo])
            except Exception:
                prepared.inputs = None
        return prepared

    @property
    def effective_batch_size(self) -> int:
        """Pages per ``generate()`` now: ``batch_size``, or less after a CUDA out-of-memory."""
        cap = getattr(self, "_oom_cap", None)
        return self.batch_size if cap is None else max(1, min(self.batch_size, cap))

    def ocr_prepared(self, prepared: _Prepared, temperature: float = 0.0) -> list[OcrResult]:
        pages, results = prepared.pages, prepared.results
        todo = prepared.todo
        size = self.effective_batch_size
        start = 0
        while start < len(todo):
            idx = todo[start : start + size]
            batch = [pages[i] for i in idx]
            inputs = None
            if prepared.inputs is not None:
                rows = list(range(start, start + len(idx)))
                inputs = prepared.inputs if len(idx) == len(todo) else _slice_inputs(prepared.inputs, rows)
            try:
                out = self._generate(batch, temperature, inputs)
            except Exception as exc:
                if _is_oom(exc) and len(batch) > 1:
                    size = max(1, len(batch) // 2)
                    self._oom_cap = size  # later batches start at the size that fit
                    log.warning("CUDA out of memory at batch %d; retrying with batch %d", len(batch), size)
                    self._empty_cache()
                    continue  # same pages, smaller batches
                if len(batch) == 1:
                    if _is_oom(exc):
                        self._empty_cache()
                    out = [self._error(batch[0], type(exc).__name__)]
                else:
                    log.warning(
                        "batch of %d pages failed (%s); retrying one by one", len(batch), type(exc).__name__
                    )
                    out = []
                    for page in batch:
                        try:
                            out.extend(self._generate([page], temperature))
                        except Exception as exc1:
                            out.append(self._error(page, type(exc1).__name__))
            for i, res in zip(idx, out, strict=True):
                results[i] = res
            start += len(idx)
        return [r for r in results if r is not None]

    def _empty_cache(self) -> None:
        torch = self._torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def close(self) -> None:
        model = getattr(self, "_model", None)
        if model is None:
            return
        self._model = None
        del model
        torch = self._torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- internals --------------------------------------------------------------------------

    def _error(self, page: PageImage, exc_name: str) -> OcrResult:
        log.warning("OCR failed on doc %s page %s: %s", page.doc_id[:12], page.page_no, exc_name)
        return self.error_result()

    def _inputs(self, batch: Sequence[PageImage]) -> Any:
        images = [_rgb(p.image) for p in batch]
        return self._processor(
            images=images, text=[self.prompt] * len(batch), return_tensors="pt", padding=True
        )

    def _generate(
        self, batch: Sequence[PageImage], temperature: float = 0.0, inputs: Any = None
    ) -> list[OcrResult]:
        torch = self._torch
        from transformers import LogitsProcessorList

        t0 = time.perf_counter()
        if inputs is None:
            inputs = self._inputs(batch)
        inputs = inputs.to(self.device, dtype=self.torch_dtype)
        prompt_len = int(inputs["input_ids"].shape[1])
        processors = LogitsProcessorList()
        if self.ngram_size > 0 and self.ngram_window > 0:
            processors.append(
                NgramRepetitionBan(self.ngram_size, self.ngram_window, prompt_len, self._ngram_whitelist)
            )
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            # seeded, so a retry at a given temperature is reproducible run to run
            torch.manual_seed(self.seed)
            sampling = {"do_sample": True, "temperature": float(temperature), "top_k": 0, "top_p": 1.0}
        cache = {"cache_implementation": self.cache_implementation} if self.cache_implementation else {}
        with torch.inference_mode():
            out = self._model.generate(
                **inputs,
                **sampling,
                num_beams=1,
                max_new_tokens=cap_new_tokens(self.max_new_tokens, prompt_len, self.context),
                eos_token_id=sorted(self.eos_token_ids),
                pad_token_id=self.pad_token_id,
                logits_processor=processors,
                **cache,
            )
        seconds = (time.perf_counter() - t0) / len(batch)
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        tiles = inputs.get("num_local_patches")
        tiles = [0] * len(batch) if tiles is None else [int(t) for t in tiles.tolist()]
        generated = out[:, prompt_len:].tolist()

        results = []
        for row, ids in enumerate(generated):
            text, finish, n_out = self.decode(ids)
            results.append(
                OcrResult(
                    raw_text=text,
                    finish_reason=finish,
                    engine=self.name,
                    model=self.model,
                    prompt_tokens=int(prompt_tokens[row]),
                    output_tokens=n_out,
                    seconds=seconds,
                    revision=self.revision,
                    prompt=self.prompt,
                    mode=f"{self.mode};tiles={tiles[row]}",
                )
            )
        return results

    def decode(self, ids: Sequence[int]) -> tuple[str, str, int]:
        """Generated ids of one row -> (text, finish_reason, output_tokens).

        Text up to the first EOS, special tokens kept (the ``<|ref|>``/``<|det|>`` grounding tags
        are special in the real tokenizer) and only BOS/EOS/pad text removed. ``output_tokens``
        counts the EOS but not the padding that follows it in a batch.
        """
        ids = [int(t) for t in ids]
        eos_at = next((k for k, t in enumerate(ids) if t in self.eos_token_ids), None)
        if eos_at is None:
            kept, finish, n_out = ids, "length", len(ids)
        else:
            kept, finish, n_out = ids[:eos_at], "eos", eos_at + 1
        text = self._processor.tokenizer.decode(
            kept, skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        for s in self._strip_texts:
            text = text.replace(s, "")
        return text, finish, n_out


@dataclass
class _Prepared:
    """A batch after :meth:`DeepSeekOcr2Engine.prepare`: processor outputs and early errors."""

    pages: list[PageImage]
    results: list[OcrResult | None]
    todo: list[int]
    inputs: Any = None


def _slice_inputs(inputs: Any, rows: Sequence[int]) -> Any:
    """The processor outputs for some rows of a batch, as the processor would make them alone.

    Rows of ``input_ids``/``attention_mask``/``pixel_values``; the rows' tiles of
    ``pixel_values_local`` (by ``num_local_patches``); left-padding columns that no kept row
    needs are dropped.
    """
    from transformers import BatchFeature

    torch_rows = list(rows)
    mask = inputs["attention_mask"][torch_rows]
    used = mask.sum(dim=0) > 0
    first = int(used.nonzero()[0]) if bool(used.any()) else 0
    data: dict[str, Any] = {}
    for key, value in inputs.items():
        if key in ("input_ids", "attention_mask", "token_type_ids"):
            data[key] = value[torch_rows][:, first:]
        elif key == "pixel_values":
            data[key] = value[torch_rows]
        elif key == "num_local_patches":
            data[key] = value[torch_rows]
        elif key == "pixel_values_local":
            counts = [int(c) for c in inputs["num_local_patches"].tolist()]
            offsets = [0]
            for c in counts:
                offsets.append(offsets[-1] + c)
            parts = [value[offsets[r] : offsets[r + 1]] for r in torch_rows if counts[r]]
            if parts:
                import torch

                data[key] = torch.cat(parts) if len(parts) > 1 else parts[0]
        else:
            data[key] = value
    return BatchFeature(data=data)


def _is_oom(exc: BaseException) -> bool:
    """CUDA out-of-memory, recognised without importing torch where it is absent."""
    name = type(exc).__name__
    return name == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def _is_image(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a core dependency
        return obj is not None
    return isinstance(obj, Image.Image) and obj.width > 0 and obj.height > 0


def _rgb(image: Any) -> Any:
    return image if image.mode == "RGB" else image.convert("RGB")
