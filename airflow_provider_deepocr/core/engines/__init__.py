"""OCR engines. :func:`build_engine` builds one from :class:`EngineSettings`, with its retry
ladder and fallback (the CLI, the ``deepseek_ocr`` hook and the operators all call it, so the
same settings always give the same engine and the same config fingerprint); :func:`get_engine`
builds the bare engine by name from the registry (:mod:`.registry`, one builder per name).
Nothing heavy is imported until then.

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

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from airflow_provider_deepocr.core.engines.base import PROMPTS, OcrEngine, resolve_max_new_tokens
from airflow_provider_deepocr.core.engines.registry import (
    ALIASES,
    DEFAULT_MODEL,
    ENGINE_NAMES,
    IN_FLIGHT_MIN,
    RAPID_AUTO_BATCH,
    BatchSize,
    engine_key,
    get_engine,
    parse_batch_size,
    register,
    weights_available,
)
from airflow_provider_deepocr.core.engines.retry import DEFAULT_LADDER, STRUCTURED_ENGINES, parse_ladder
from airflow_provider_deepocr.core.errors import ConfigError

FALLBACK_ENGINES = ("none", "rapidocr")
"""Engines a page that still loops after the retry ladder can be sent to."""

__all__ = [
    "ENGINE_NAMES",
    "FALLBACK_ENGINES",
    "IN_FLIGHT_MIN",
    "RAPID_AUTO_BATCH",
    "SETTING_NAMES",
    "PROMPTS",
    "BatchSize",
    "EngineSettings",
    "OcrEngine",
    "DEFAULT_MODEL",
    "build_engine",
    "get_engine",
    "register",
    "parse_batch_size",
    "weights_available",
]


# --------------------------------------------------------------------------------------------
# The one factory


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

        put("engine", engine_key(str(self.engine)))
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
        fallback = ALIASES.get(fallback, fallback)
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


SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in fields(EngineSettings))
"""Every engine setting, spelled once: the CLI's flags (``--max-new-tokens``), the ``deepseek_ocr``
connection's extra keys and the OCR operator's arguments carry these names."""


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
