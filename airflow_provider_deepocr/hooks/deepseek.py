"""The ``deepseek_ocr`` connection: which engine, which model, on which device (or which server).

Connection fields:

- ``host``: base URL of an OpenAI-compatible server (``vllm serve`` / ``deepocr serve``), optional;
  when set, the server engine is used.
- ``password``: API key for that server, optional.
- ``extra`` (JSON): ``engine`` (auto | deepseek | rapidocr), ``model`` (hub id or local path),
  ``device`` (auto | cpu | cuda | cuda:N | mps), ``dtype`` (auto | bfloat16 | float16 | float32),
  ``prompt`` (markdown | free | figure | literal prompt), ``max_new_tokens`` (an int, or a
  mapping by prompt name such as ``{"markdown": 8192, "figure": 2048}``), ``batch_size`` (an int,
  or ``"auto"``: on CUDA by free GPU memory, 4 to 128, halved on out-of-memory),
  ``retry_temperatures`` (e.g. ``"0,0.2,0.4"``, the default; ``"none"`` for no retries),
  ``fallback_engine`` (``rapidocr`` or ``none``), ``gpu_hour_cost`` (what an hour of the OCR worker
  costs, in your currency: the runs table then gets each shard's ``cost``), ``page_timeout_s``
  (the time limit of one page's render and text extraction, default 60; 0: no limit).

Operator arguments override connection values; the connection overrides the defaults. The
values become one :class:`~airflow_provider_deepocr.core.engines.EngineSettings` and the engine is
built by core's one factory (:func:`~airflow_provider_deepocr.core.engines.build_engine`), the
same the CLI uses: equal settings give equal config fingerprints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.engines import EngineSettings
    from airflow_provider_deepocr.core.engines.base import OcrEngine

CONNECTION_SETTINGS = ("server_url", "api_key")
"""Engine settings that come from the connection's host and password, not its extra."""


class DeepSeekOCRHook(BaseHook):
    """Turns a ``deepseek_ocr`` connection into an OCR engine (created once per worker process)."""

    conn_name_attr = "deepseek_ocr_conn_id"
    default_conn_name = "deepseek_ocr_default"
    conn_type = "deepseek_ocr"
    hook_name = "DeepSeek-OCR"

    _engines: dict[tuple[Any, ...], OcrEngine] = {}

    def __init__(self, deepseek_ocr_conn_id: str | None = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deepseek_ocr_conn_id = deepseek_ocr_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port", "login"],
            "relabeling": {"host": "Server URL (optional)", "password": "API key (optional)"},
            "placeholders": {
                "host": "http://gpu-box:8000/v1  (leave empty to run the model in the worker)",
                "extra": '{"engine": "auto", "model": "deepseek-community/DeepSeek-OCR-2", '
                '"device": "auto", "max_new_tokens": 4096, "batch_size": 8}',
            },
        }

    def engine_settings(self, **overrides: Any) -> EngineSettings:
        """The connection's engine settings with the non-None ``overrides`` applied (operator
        arguments), checked: a bad value is a ``ConfigError`` naming it. Extra keys other than the
        engine settings (``SETTING_NAMES``, less :data:`CONNECTION_SETTINGS`) are ignored; the extra's
        ``options`` holds more engine arguments, e.g. ``{"revision": "…"}``."""
        from airflow_provider_deepocr.core.engines import SETTING_NAMES, EngineSettings

        values: dict[str, Any] = {}
        if self.deepseek_ocr_conn_id:
            conn = self.get_connection(self.deepseek_ocr_conn_id)
            extra = conn.extra_dejson or {}
            values.update({k: extra[k] for k in SETTING_NAMES if k in extra and k not in CONNECTION_SETTINGS})
            if conn.host:
                values["server_url"] = conn.host
                if conn.password:
                    values["api_key"] = conn.password
        values.update({k: v for k, v in overrides.items() if v is not None})
        return EngineSettings.from_values(**values)

    def gpu_hour_cost(self) -> float | None:
        """The connection extra ``gpu_hour_cost`` (None when unset or there is no connection)."""
        if not self.deepseek_ocr_conn_id:
            return None
        value = (self.get_connection(self.deepseek_ocr_conn_id).extra_dejson or {}).get("gpu_hour_cost")
        return None if value in (None, "") else float(value)

    def page_timeout_s(self, default: float = 60.0) -> float:
        """The connection extra ``page_timeout_s`` (``default`` when unset or there is no
        connection; 0: no limit)."""
        if not self.deepseek_ocr_conn_id:
            return default
        value = (self.get_connection(self.deepseek_ocr_conn_id).extra_dejson or {}).get("page_timeout_s")
        return default if value in (None, "") else float(value)

    def get_engine(self, **overrides: Any) -> OcrEngine:
        """The engine for this connection (see :meth:`engine_settings`), built by core's one
        factory and cached per process, so weights load once per worker."""
        from airflow_provider_deepocr.core.engines import build_engine

        settings = self.engine_settings(**overrides)
        key = settings.cache_key()
        engine = self._engines.get(key)
        if engine is None:
            engine = build_engine(settings)
            self._engines[key] = engine
        return engine
