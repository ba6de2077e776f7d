from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_deepocr.core.engines import EngineSettings
from airflow_provider_deepocr.core.errors import ConfigError
from airflow_provider_deepocr.hooks.deepseek import DeepSeekOCRHook


def _conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, extra: dict, host: str | None = None) -> None:
    body: dict = {"conn_type": "deepseek_ocr", "extra": extra}
    if host:
        body["host"] = host
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(body))


def test_connection_extra_is_merged_with_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    _conn(monkeypatch, "ocr_a", {"engine": "deepseek", "model": "/models/x", "batch_size": 8, "unrelated": 1})
    hook = DeepSeekOCRHook("ocr_a")
    assert hook.engine_settings() == EngineSettings(engine="deepseek", model="/models/x", batch_size=8)
    assert hook.engine_settings(batch_size=2, device=None).batch_size == 2
    assert hook.engine_settings(batch_size=2, device=None).device == "auto"


def test_connection_values_are_checked_like_cli_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    _conn(monkeypatch, "ocr_bad", {"engine": "deepseek", "fallback_engine": "tesseract"})
    with pytest.raises(ConfigError, match="fallback_engine must be one of none, rapidocr"):
        DeepSeekOCRHook("ocr_bad").engine_settings()
    _conn(monkeypatch, "ocr_ladder", {"retry_temperatures": "0,hot"})
    with pytest.raises(ConfigError, match="retry_temperatures"):
        DeepSeekOCRHook("ocr_ladder").get_engine()
    body = {"conn_type": "deepseek_ocr", "host": "http://127.0.0.1:9/v1", "password": "k3y", "extra": {}}
    monkeypatch.setenv("AIRFLOW_CONN_OCR_SRV", json.dumps(body))
    settings = DeepSeekOCRHook("ocr_srv").engine_settings()
    assert (settings.server_url, settings.api_key) == ("http://127.0.0.1:9/v1", "k3y")
    assert "k3y" not in repr(settings)


def test_engine_from_connection_is_built_once_per_process(
    monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path
) -> None:
    _conn(monkeypatch, "ocr_tiny", {"engine": "deepseek", "model": str(tiny_model_dir), "max_new_tokens": 4})
    first = DeepSeekOCRHook("ocr_tiny").get_engine()
    second = DeepSeekOCRHook("ocr_tiny").get_engine()
    assert first is second
    assert first.name == "deepseek-ocr2" and first.model == str(tiny_model_dir)
    assert DeepSeekOCRHook("ocr_tiny").get_engine(max_new_tokens=5) is not first


def test_auto_batch_and_token_mapping_from_the_connection(
    monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path
) -> None:
    extra = {
        "engine": "deepseek",
        "model": str(tiny_model_dir),
        "batch_size": "auto",
        "max_new_tokens": {"markdown": 6, "figure": 3},
        "retry_temperatures": "none",
    }
    _conn(monkeypatch, "ocr_auto", extra)
    engine = DeepSeekOCRHook("ocr_auto").get_engine()
    assert (engine.batch_size, engine.auto_batch, engine.max_new_tokens) == (4, True, 6)


def test_no_connection_means_defaults_and_auto_falls_back(tmp_path: Path) -> None:
    engine = DeepSeekOCRHook(None).get_engine(model=str(tmp_path / "no-weights-here"))
    assert engine.name == "rapidocr"


def test_ui_field_behaviour_hides_unused_fields() -> None:
    ui = DeepSeekOCRHook.get_ui_field_behaviour()
    assert {"schema", "port", "login"} <= set(ui["hidden_fields"])


def test_the_page_time_limit_comes_from_the_connection_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    _conn(monkeypatch, "ocr_limit", {"engine": "rapidocr", "page_timeout_s": 7.5})
    _conn(monkeypatch, "ocr_nolimit", {"engine": "rapidocr", "page_timeout_s": 0})
    _conn(monkeypatch, "ocr_unset", {"engine": "rapidocr"})
    assert DeepSeekOCRHook("ocr_limit").page_timeout_s() == 7.5
    assert DeepSeekOCRHook("ocr_nolimit").page_timeout_s() == 0.0
    assert DeepSeekOCRHook("ocr_unset").page_timeout_s() == 60.0
    assert DeepSeekOCRHook(None).page_timeout_s() == 60.0
    # not an engine setting: the engine (and so the config fingerprint) does not see it
    assert DeepSeekOCRHook("ocr_limit").engine_settings() == DeepSeekOCRHook("ocr_unset").engine_settings()
