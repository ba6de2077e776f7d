"""The engine registry: one builder per engine name, and :func:`get_engine`, which resolves the
arguments every engine shares once (:class:`EngineRequest`) and hands them to the builder.

Register an engine with ``@register("name")`` on a function ``(EngineRequest) -> OcrEngine``; it
imports its engine module inside (nothing heavy is imported until an engine is built).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_deepocr.core.engines.base import PROMPTS, OcrEngine, resolve_max_new_tokens
from airflow_provider_deepocr.core.errors import ConfigError, EngineUnavailable

log = logging.getLogger(__name__)

DEFAULT_MODEL = "deepseek-community/DeepSeek-OCR-2"
ALIASES = {
    "deepseek-ocr2": "deepseek",
    "deepseek-ocr-2": "deepseek",
    "rapid": "rapidocr",
    "openai-server": "server",
    "openai": "server",
}
VLLM_EXTRA = "airflow-provider-deepocr[vllm]"
_SERVER_KWARGS = frozenset(
    {
        "max_concurrency",
        "timeout",
        "retries",
        "backoff",
        "max_backoff",
        "ngram_size",
        "ngram_window",
        "whitelist_token_ids",
        "extra_body",
        "image_format",
    }
)
# DeepSeek-OCR-2 (transformers) and RapidOCR options that mean nothing to vLLM
_NOT_FOR_VLLM = frozenset({"params", "local_files_only", "attn_implementation"})

# Pages per call for engines whose batch is only a hand-off size (the server keeps this many
# requests in flight; vLLM schedules them itself), and for RapidOCR under batch_size="auto".
IN_FLIGHT_MIN = 64
RAPID_AUTO_BATCH = 8

BatchSize = int | Literal["auto"]


def parse_batch_size(value: Any) -> BatchSize:
    """``batch_size`` from a flag, a connection extra or an operator argument: an int >= 1 or
    ``"auto"`` (DeepSeek-OCR-2: on CUDA by free GPU memory, 4 to 128, halved on out-of-memory; 4 on
    CPU). Raises :class:`ConfigError` otherwise."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return "auto"
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"batch_size must be an integer >= 1 or 'auto', got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"batch_size must be an integer >= 1 or 'auto', got {value!r}")
    return value


def weights_available(model: str, revision: str | None = None) -> bool:
    """See :func:`airflow_provider_deepocr.core.engines.deepseek.weights_available`."""
    from airflow_provider_deepocr.core.engines.deepseek import weights_available as _wa

    return _wa(model, revision)


def _require(modules: tuple[str, ...], extra: str, what: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise EngineUnavailable(f"{what} needs {', '.join(missing)}: pip install '{extra}'")


@dataclass(frozen=True)
class EngineRequest:
    """What :func:`get_engine` was asked for, with the shared arguments resolved once."""

    model: str | None
    device: str
    dtype: str
    max_new_tokens: int | Mapping[str, int] | None  # as given (DeepSeek-OCR-2 resolves it per prompt)
    tokens: int  # the one limit that applies to ``prompt`` (every other engine)
    prompt: str
    batch: BatchSize
    server_url: str | None
    api_key: str | None
    options: dict[str, Any] = field(default_factory=dict)  # engine-specific keyword arguments

    @property
    def in_flight(self) -> int:
        """Pages per call for engines whose batch is only a hand-off size."""
        return IN_FLIGHT_MIN if self.batch == "auto" else max(self.batch, IN_FLIGHT_MIN)


Builder = Callable[[EngineRequest], OcrEngine]
_BUILDERS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Register the builder of the engine ``name``."""

    def add(builder: Builder) -> Builder:
        _BUILDERS[name] = builder
        return builder

    return add


def _deepseek(req: EngineRequest, model: str | None) -> OcrEngine:
    _require(("torch", "transformers"), "airflow-provider-deepocr[gpu]", "DeepSeek-OCR-2")
    from airflow_provider_deepocr.core.engines.deepseek import DeepSeekOcr2Engine

    options = {k: v for k, v in req.options.items() if k != "params"}
    return DeepSeekOcr2Engine(
        model=model or DEFAULT_MODEL,
        device=req.device,
        dtype=req.dtype,
        max_new_tokens=req.max_new_tokens,
        prompt=req.prompt,
        batch_size=req.batch,
        **options,
    )


def _rapid(req: EngineRequest) -> OcrEngine:
    _require(("rapidocr", "onnxruntime"), "airflow-provider-deepocr[cpu-ocr]", "RapidOCR")
    from airflow_provider_deepocr.core.engines.rapid import RapidOcrEngine

    params = {k: v for k, v in req.options.items() if k == "params"}
    return RapidOcrEngine(batch_size=RAPID_AUTO_BATCH if req.batch == "auto" else req.batch, **params)


@register("auto")
def _auto(req: EngineRequest) -> OcrEngine:
    """DeepSeek-OCR-2 when its weights are here and its extra is installed, else RapidOCR (the
    server engine when ``server_url`` is set: see :func:`get_engine`)."""
    target = req.model or DEFAULT_MODEL
    if weights_available(target, req.options.get("revision")):
        try:
            _require(("torch", "transformers"), "airflow-provider-deepocr[gpu]", "DeepSeek-OCR-2")
        except EngineUnavailable as exc:
            log.info(
                "DeepSeek-OCR-2 weights found for %s but %s; falling back to RapidOCR on CPU", target, exc
            )
        else:
            return _deepseek(req, target)
    else:
        log.info("DeepSeek-OCR-2 weights not found at/for %s; falling back to RapidOCR on CPU", target)
    return _rapid(req)


@register("deepseek")
def _deepseek_engine(req: EngineRequest) -> OcrEngine:
    return _deepseek(req, req.model)


@register("rapidocr")
def _rapidocr(req: EngineRequest) -> OcrEngine:
    return _rapid(req)


@register("server")
def _server(req: EngineRequest) -> OcrEngine:
    if not req.server_url:
        raise ConfigError("the server engine needs server_url (the connection's host)")
    from airflow_provider_deepocr.core.engines.openai_server import OpenAIServerEngine

    # the pipeline hands the engine batch_size pages at a time: keep enough in flight
    return OpenAIServerEngine(
        req.server_url,
        model=req.model or "deepseek-ocr",
        api_key=req.api_key,
        prompt=req.prompt,
        max_new_tokens=req.tokens,
        batch_size=req.in_flight,
        **{k: v for k, v in req.options.items() if k in _SERVER_KWARGS},
    )


@register("vllm")
def _vllm(req: EngineRequest) -> OcrEngine:
    _require(("vllm",), VLLM_EXTRA, "the vLLM engine (DeepSeek-OCR v1 / -OCR-2)")
    from airflow_provider_deepocr.core.engines.vllm import VllmEngine

    dtype: dict[str, Any] = {"dtype": req.dtype} if req.dtype != "auto" else {}
    options: dict[str, Any] = {k: v for k, v in req.options.items() if k not in _NOT_FOR_VLLM}
    return VllmEngine(
        model=req.model or "deepseek-ai/DeepSeek-OCR",
        prompt=req.prompt,
        max_new_tokens=req.tokens,
        batch_size=req.in_flight,
        **dtype,
        **options,
    )


@register("pdf-text")
def _pdf_text(req: EngineRequest) -> OcrEngine:
    from airflow_provider_deepocr.core.engines.pdf_text import PdfTextEngine

    return PdfTextEngine()


@register("sleep")
def _sleep(req: EngineRequest) -> OcrEngine:
    from airflow_provider_deepocr.core.engines.sleep import SleepEngine

    return SleepEngine(
        float(req.options.get("seconds_per_page", 0.0)),
        calls_file=req.options.get("calls_file"),
        batch_size=8 if req.batch == "auto" else req.batch,
    )


ENGINE_NAMES = tuple(_BUILDERS)


def engine_key(name: str) -> str:
    """The canonical engine name for ``name`` (an engine name or an alias, any case)."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in _BUILDERS:
        raise ConfigError(f"unknown engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}")
    return key


def get_engine(
    name: str = "auto",
    model: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    max_new_tokens: int | Mapping[str, int] | None = None,
    prompt: str = "markdown",
    batch_size: BatchSize | str = 1,
    **kwargs: Any,
) -> OcrEngine:
    """Build an engine by name (one of :data:`ENGINE_NAMES` or an alias).

    Extra ``kwargs`` go to the engine: for ``deepseek`` e.g. ``revision``, ``local_files_only``,
    ``attn_implementation``, ``ngram_size``, ``ngram_window``; for ``rapidocr`` ``params``;
    for ``server`` ``server_url`` (required; also selects the server engine under ``auto``),
    ``api_key``, ``max_concurrency``, ``timeout``, ``retries``, ``backoff``, ``max_backoff``,
    ``extra_body``, ``image_format``, ``ngram_size``, ``ngram_window``, ``whitelist_token_ids``;
    for ``vllm`` ``mode``, ``revision``, ``ngram_size``, ``ngram_window`` and any ``vllm.LLM``
    argument (``gpu_memory_utilization``, ``tensor_parallel_size``, ``max_model_len`` …).
    ``batch_size`` is an int or ``"auto"`` (see :func:`parse_batch_size`); ``max_new_tokens`` an int,
    a mapping by prompt name (``{"markdown": 8192, "figure": 2048}``), or None for the defaults
    (the whole 8,192-token context for a document, capped per page at the context minus the
    prompt, ≈ 7,000 for a full page; 2048 for ``figure``).
    Raises :class:`ConfigError` for an unknown name, :class:`EngineUnavailable` when the
    engine's extra is not installed.
    """
    key = ALIASES.get(name.lower(), name.lower())
    if key not in _BUILDERS:
        raise ConfigError(f"unknown engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}")
    batch = parse_batch_size(batch_size)
    # engines other than DeepSeek-OCR-2 take one number; a mapping's entry for this prompt
    tokens = resolve_max_new_tokens(max_new_tokens, prompt if prompt in PROMPTS else None)
    server_url = kwargs.pop("server_url", None)
    request = EngineRequest(
        model=model,
        device=device,
        dtype=dtype,
        max_new_tokens=max_new_tokens,
        tokens=tokens,
        prompt=prompt,
        batch=batch,
        server_url=server_url,
        api_key=kwargs.pop("api_key", None),
        options=kwargs,
    )
    if key == "auto" and server_url:
        key = "server"
    return _BUILDERS[key](request)
