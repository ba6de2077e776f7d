"""The vLLM engine's settings (vLLM itself needs a GPU and is not installed in CI)."""

from __future__ import annotations

import importlib.util

import pytest

from airflow_provider_deepocr.core.engines import get_engine
from airflow_provider_deepocr.core.engines.vllm import (
    MODES,
    TD_TOKEN_IDS,
    llm_settings,
    mode_settings,
    sampling_settings,
)
from airflow_provider_deepocr.core.errors import ConfigError, EngineUnavailable


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_missing_vllm_is_a_clear_error_naming_the_extra() -> None:
    with pytest.raises(EngineUnavailable, match=r"airflow-provider-deepocr\[vllm\]"):
        get_engine("vllm")


def test_resolution_modes_match_the_published_table() -> None:
    assert {m: (MODES[m]["base_size"], MODES[m]["tokens"]) for m in ("tiny", "small", "base", "large")} == {
        "tiny": (512, 64),
        "small": (640, 100),
        "base": (1024, 256),
        "large": (1280, 400),
    }
    assert mode_settings("Gundam") == {"base_size": 1024, "image_size": 640, "crop_mode": True}
    with pytest.raises(ConfigError):
        mode_settings("huge")


def test_the_authors_sampling_and_engine_settings() -> None:
    s = sampling_settings(8192)
    assert s["temperature"] == 0.0 and s["skip_special_tokens"] is False and s["max_tokens"] == 8192
    assert s["extra_args"] == {"ngram_size": 30, "window_size": 90, "whitelist_token_ids": set(TD_TOKEN_IDS)}
    llm = llm_settings("deepseek-ai/DeepSeek-OCR")
    assert llm["enable_prefix_caching"] is False and llm["mm_processor_cache_gb"] == 0
    assert llm["trust_remote_code"] is False
