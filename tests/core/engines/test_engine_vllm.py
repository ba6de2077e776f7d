"""The vLLM engine's settings (vLLM itself needs a GPU and is not installed in CI)."""

from __future__ import annotations

import importlib.util

import pytest

from airflow_provider_deepocr.core.engines import get_engine
from airflow_provider_deepocr.core.engines.vllm import (
    MODES,
    TD_TOKEN_IDS,
    VllmEngine,
    check_mode,
    default_mode,
    llm_settings,
    mode_settings,
    model_version,
    sampling_settings,
)
from airflow_provider_deepocr.core.errors import ConfigError, EngineUnavailable


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_missing_vllm_is_a_clear_error_naming_the_extra() -> None:
    with pytest.raises(EngineUnavailable, match=r"airflow-provider-deepocr\[vllm\]"):
        get_engine("vllm")
    with pytest.raises(EngineUnavailable, match=r"airflow-provider-deepocr\[vllm\]"):
        get_engine("vllm", model="deepseek-ai/DeepSeek-OCR-2", mode="v2", gpu_memory_utilization=0.9)
    with pytest.raises(EngineUnavailable, match=r">= 0.16"):
        VllmEngine(model="deepseek-ai/DeepSeek-OCR-2")


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
    # no cap below the context: vLLM stops at max_model_len (8192) minus the prompt
    assert s["temperature"] == 0.0 and s["skip_special_tokens"] is False and s["max_tokens"] is None
    assert s["extra_args"] == {"ngram_size": 30, "window_size": 90, "whitelist_token_ids": set(TD_TOKEN_IDS)}
    llm = llm_settings("deepseek-ai/DeepSeek-OCR")
    assert llm["enable_prefix_caching"] is False and llm["mm_processor_cache_gb"] == 0
    assert llm["max_model_len"] == 8192
    assert llm["trust_remote_code"] is False


def test_model_version_picks_the_mode() -> None:
    assert (model_version("deepseek-ai/DeepSeek-OCR"), default_mode("deepseek-ai/DeepSeek-OCR")) == (
        "v1",
        "gundam",
    )
    assert (model_version("deepseek-ai/DeepSeek-OCR-2"), default_mode("/models/deepseek_ocr2")) == (
        "v2",
        "v2",
    )
    assert mode_settings("v2") == {}  # DeepSeek-OCR-2: vLLM's processor defaults are the authors'
    assert mode_settings("tiny") == {"base_size": 512, "image_size": 512, "crop_mode": False}
    assert mode_settings("large") == {"base_size": 1280, "image_size": 1280, "crop_mode": False}


@pytest.mark.parametrize("mode", ["tiny", "small", "base", "large"])
def test_v1_modes_vllm_cannot_count_are_refused_at_start_in_one_line(mode: str) -> None:
    # vLLM's DeepseekOCRProcessingInfo counts image tokens at Gundam's fixed sizes
    with pytest.raises(ConfigError) as caught:
        VllmEngine(model="deepseek-ai/DeepSeek-OCR", mode=mode)
    assert f"mode {mode!r} is not supported through vLLM" in str(caught.value)
    assert "\n" not in str(caught.value)
    check_mode("deepseek-ai/DeepSeek-OCR", "gundam")  # supported: no error
    check_mode("deepseek-ai/DeepSeek-OCR-2", "v2")


def test_a_v1_mode_on_a_v2_model_is_a_config_error_before_vllm_is_needed() -> None:
    with pytest.raises(ConfigError, match="v2"):
        VllmEngine(model="deepseek-ai/DeepSeek-OCR-2", mode="tiny")
    with pytest.raises(ConfigError):
        VllmEngine(model="deepseek-ai/DeepSeek-OCR", mode="v2")


def test_sampling_settings_for_a_retry() -> None:
    s = sampling_settings(4096, temperature=0.4, ngram_size=20, ngram_window=50, whitelist_token_ids=[7])
    assert (s["temperature"], s["max_tokens"]) == (0.4, 4096)
    assert s["extra_args"] == {"ngram_size": 20, "window_size": 50, "whitelist_token_ids": {7}}
    assert llm_settings("m", gpu_memory_utilization=0.8)["gpu_memory_utilization"] == 0.8
