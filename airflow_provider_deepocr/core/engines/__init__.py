"""OCR engines. :func:`build_engine` builds one from :class:`EngineSettings`, with its retry
ladder and fallback (the CLI, the ``deepseek_ocr`` hook and the operators all call it, so the
same settings always give the same engine and the same config fingerprint); :func:`get_engine`
builds the bare engine by name. Nothing heavy is imported until then.

- ``deepseek``: DeepSeek-OCR-2 on the native transformers classes (extra ``[gpu]``).
- ``rapidocr``: RapidOCR on onnxruntime, CPU (extra ``[cpu-ocr]``).
- ``auto``: DeepSeek-OCR-2 when its weights are here (local dir or the HF cache), else RapidOCR.
- ``server``: an OpenAI-compatible server (``vllm serve``, ``deepocr serve``) at ``server_url``;
  ``auto`` with a ``server_url`` picks it too.
- ``vllm``: DeepSeek-OCR (v1) or -OCR-2 in-process through vLLM (extra ``[vllm]``, GPU).
- ``pdf-text``: a PDF page's own text layer (used by ``text_layer="auto"`` routing).
- ``sleep``: a fixed-latency stand-in that reads nothing (``seconds_per_page``), for measuring the
  orchestration alone (``bench/scale.py``, the cluster test); never for data.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from airflow_provider_deepocr.core.engines.base import PROMPTS, OcrEngine, resolve_max_new_tokens
from airflow_provider_deepocr.core.engines.retry import DEFAULT_LADDER, STRUCTURED_ENGINES, parse_ladder
from airflow_provider_deepocr.core.errors import ConfigError, EngineUnavailable

log = logging.getLogger(__name__)

ENGINE_NAMES = ("auto", "deepseek", "rapidocr", "server", "vllm", "pdf-text", "sleep")
DEFAULT_MODEL = "deepseek-community/DeepSeek-OCR-2"
_ALIASES = {
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

FALLBACK_ENGINES = ("none", "rapidocr")
"""Engines a page that still loops after the retry ladder can be sent to."""

__all__ = [
    "ENGINE_NAMES",
    "FALLBACK_ENGINES",
    "PROMPTS",
    "BatchSize",
    "EngineSettings",
    "OcrEngine",
    "build_engine",
    "get_engine",
    "parse_batch_size",
    "weights_available",
]


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


def _deepseek(model: str | None, **kwargs: Any) -> OcrEngine:
    _require(("torch", "transformers"), "airflow-provider-deepocr[gpu]", "DeepSeek-OCR-2")
    from airflow_provider_deepocr.core.engines.deepseek import DeepSeekOcr2Engine

    return DeepSeekOcr2Engine(model=model or DEFAULT_MODEL, **kwargs)


def _rapid(batch_size: BatchSize, **kwargs: Any) -> OcrEngine:
    _require(("rapidocr", "onnxruntime"), "airflow-provider-deepocr[cpu-ocr]", "RapidOCR")
    from airflow_provider_deepocr.core.engines.rapid import RapidOcrEngine

    return RapidOcrEngine(batch_size=RAPID_AUTO_BATCH if batch_size == "auto" else batch_size, **kwargs)


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
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in ENGINE_NAMES:
        raise ConfigError(f"unknown engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}")
    batch = parse_batch_size(batch_size)
    # engines other than DeepSeek-OCR-2 take one number; a mapping's entry for this prompt
    tokens = resolve_max_new_tokens(max_new_tokens, prompt if prompt in PROMPTS else None)
    in_flight = IN_FLIGHT_MIN if batch == "auto" else max(batch, IN_FLIGHT_MIN)
    server_url = kwargs.pop("server_url", None)
    api_key = kwargs.pop("api_key", None)
    if key == "server" or (key == "auto" and server_url):
        if not server_url:
            raise ConfigError("the server engine needs server_url (the connection's host)")
        from airflow_provider_deepocr.core.engines.openai_server import OpenAIServerEngine

        # the pipeline hands the engine batch_size pages at a time: keep enough in flight
        return OpenAIServerEngine(
            server_url,
            model=model or "deepseek-ocr",
            api_key=api_key,
            prompt=prompt,
            max_new_tokens=tokens,
            batch_size=in_flight,
            **{k: v for k, v in kwargs.items() if k in _SERVER_KWARGS},
        )
    if key == "vllm":
        _require(("vllm",), VLLM_EXTRA, "the vLLM engine (DeepSeek-OCR v1 / -OCR-2)")
        from airflow_provider_deepocr.core.engines.vllm import VllmEngine

        return VllmEngine(
            model=model or "deepseek-ai/DeepSeek-OCR",
            prompt=prompt,
            max_new_tokens=tokens,
            batch_size=in_flight,
            **({"dtype": dtype} if dtype != "auto" else {}),
            **{k: v for k, v in kwargs.items() if k not in _NOT_FOR_VLLM},
        )
    if key == "pdf-text":
        from airflow_provider_deepocr.core.engines.pdf_text import PdfTextEngine

        return PdfTextEngine()
    if key == "sleep":
        from airflow_provider_deepocr.core.engines.sleep import SleepEngine

        return SleepEngine(
            float(kwargs.get("seconds_per_page", 0.0)),
            calls_file=kwargs.get("calls_file"),
            batch_size=8 if batch == "auto" else batch,
        )
    rapid_kwargs = {k: v for k, v in kwargs.items() if k == "params"}
    if key == "rapidocr":
        return _rapid(batch, **rapid_kwargs)

    kwargs.pop("params", None)
    deepseek_kwargs = dict(
        device=device,
        dtype=dtype,
        max_new_tokens=max_new_tokens,
        prompt=prompt,
        batch_size=batch,
        **kwargs,
    )
    if key == "deepseek":
        return _deepseek(model, **deepseek_kwargs)

    # auto
    target = model or DEFAULT_MODEL
    if weights_available(target, kwargs.get("revision")):
        try:
            _require(("torch", "transformers"), "airflow-provider-deepocr[gpu]", "DeepSeek-OCR-2")
        except EngineUnavailable as exc:
            log.info(
                "DeepSeek-OCR-2 weights found for %s but %s; falling back to RapidOCR on CPU", target, exc
            )
        else:
            return _deepseek(target, **deepseek_kwargs)
    else:
        log.info("DeepSeek-OCR-2 weights not found at/for %s; falling back to RapidOCR on CPU", target)
    return _rapid(batch, **rapid_kwargs)


# --------------------------------------------------------------------------------------------
# The one factory


def _engine_key(name: str) -> str:
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in ENGINE_NAMES:
        raise ConfigError(f"unknown engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}")
    return key


def _tokens(value: Any) -> int | Mapping[str, int] | None:
    """``max_new_tokens`` as given by a flag, a connection extra or a templated argument."""
    if value is None or isinstance(value, Mapping):
        return value
    if isinstance(value, bool):
        raise ConfigError(f"max_new_tokens must be a positive integer or a mapping by prompt, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                return parsed
        value = text
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"max_new_tokens must be a positive integer or a mapping by prompt, got {value!r}"
        ) from None


@dataclass(frozen=True)
class EngineSettings:
    """Everything that picks and configures an OCR engine, checked and normalised on construction.

    The CLI (flags), the ``deepseek_ocr`` connection (its extra, host and password) and the OCR
    operator (its arguments over the connection) each build one of these, and
    :func:`build_engine` turns it into an engine, so equal settings give the same engine and the
    same config fingerprint wherever they come from. Use :meth:`from_values` for loose values
    (strings from a template or a connection extra, ``None`` for "not set").

    :param engine: ``auto`` (DeepSeek-OCR-2 when its weights are here, else RapidOCR; the server
        engine when ``server_url`` is set), ``deepseek``, ``rapidocr``, ``server``, ``vllm``,
        ``pdf-text`` or an alias; stored as the canonical name.
    :param model: model hub id or local path (None: the engine's default model).
    :param device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
    :param dtype: ``auto``, ``bfloat16``, ``float16``, ``float32``.
    :param prompt: ``markdown`` (grounded, the default), ``free``, ``figure``, or a literal prompt
        containing ``<image>``.
    :param max_new_tokens: generation limit per page. An int, a mapping by prompt name
        (``{"markdown": 8192, "figure": 2048}``) or None for :data:`.base.DEFAULT_MAX_NEW_TOKENS`
        (8192, the context, which each engine caps at the context minus the page's prompt, ≈ 7,000
        for a full page; 2048 for ``figure``); always stored as the
        one int that applies to ``prompt``, so "not set" and the default it stands for are equal.
    :param batch_size: pages per engine batch, or ``"auto"`` (see :func:`parse_batch_size`).
    :param retry_temperatures: the retry ladder for pages that loop or stop at the token limit
        (``(0.0, 0.2, 0.4)`` by default; ``"0,0.2"`` or ``"none"`` are accepted too).
    :param fallback_engine: one of :data:`FALLBACK_ENGINES` (``none`` or ``rapidocr``) for pages
        that still loop after the ladder.
    :param server_url: OpenAI-compatible server (``vllm serve``, ``deepocr serve``) for the
        ``server`` engine; selects it under ``auto``.
    :param api_key: that server's API key (never printed: not in ``repr``).
    :param options: further keyword arguments for the engine (e.g. ``revision``,
        ``local_files_only``, ``ngram_size``; see :func:`get_engine`).
    """

    engine: str = "auto"
    model: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    prompt: str = "markdown"
    max_new_tokens: int | Mapping[str, int] | None = None
    batch_size: BatchSize = 1
    retry_temperatures: tuple[float, ...] = DEFAULT_LADDER
    fallback_engine: str = "none"
    server_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("engine", _engine_key(str(self.engine)))
        put("model", str(self.model) if self.model else None)
        prompt_name = self.prompt if self.prompt in PROMPTS else None
        put("max_new_tokens", resolve_max_new_tokens(_tokens(self.max_new_tokens), prompt_name))
        put("batch_size", parse_batch_size(self.batch_size))
        try:
            ladder = parse_ladder(self.retry_temperatures)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"retry_temperatures: {exc}") from None
        put("retry_temperatures", ladder)
        fallback = str(self.fallback_engine or "none").strip().lower()
        fallback = _ALIASES.get(fallback, fallback)
        if fallback not in FALLBACK_ENGINES:
            raise ConfigError(
                f"fallback_engine must be one of {', '.join(FALLBACK_ENGINES)}, got {fallback!r}"
            )
        put("fallback_engine", fallback)
        put("server_url", self.server_url or None)
        put("api_key", self.api_key or None)
        put("options", dict(self.options or {}))

    @classmethod
    def from_values(cls, **values: Any) -> EngineSettings:
        """Settings from loose values: ``None`` means "not set" (the default applies), strings
        are parsed (``batch_size="8"``, ``max_new_tokens="2048"``, ``retry_temperatures="none"``).
        Unknown names are a :class:`ConfigError`."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown engine settings: {', '.join(unknown)}")
        return cls(**{k: v for k, v in values.items() if v is not None})

    def replace(self, **values: Any) -> EngineSettings:
        """A copy with the non-None ``values`` changed (how operator arguments override a connection)."""
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        current.update({k: v for k, v in values.items() if v is not None})
        return type(self).from_values(**current)

    def cache_key(self) -> str:
        """A string equal for equal settings (the hook caches one engine per key and process)."""
        return json.dumps(asdict(self), sort_keys=True, default=str)


def build_engine(settings: EngineSettings | None = None) -> OcrEngine:
    """The engine for ``settings``, wrapped in its retry ladder and fallback: the one factory
    the CLI, the ``deepseek_ocr`` hook and the operators use.

    Raises :class:`ConfigError` for settings an engine rejects, :class:`EngineUnavailable` when
    the engine cannot run here (missing extra, weights that cannot load).
    """
    from airflow_provider_deepocr.core.engines.retry import with_retries

    s = settings or EngineSettings()
    try:
        engine = get_engine(
            s.engine,
            model=s.model,
            device=s.device,
            dtype=s.dtype,
            max_new_tokens=s.max_new_tokens,
            prompt=s.prompt,
            batch_size=s.batch_size,
            server_url=s.server_url,
            api_key=s.api_key,
            **s.options,
        )
        fallback = None
        if s.fallback_engine != "none" and engine.name not in STRUCTURED_ENGINES:
            fallback = get_engine(s.fallback_engine)
    except (TypeError, ValueError) as exc:  # an engine's own argument checks
        raise ConfigError(f"engine {s.engine}: {type(exc).__name__}: {exc}") from None
    return with_retries(engine, s.retry_temperatures, fallback)
