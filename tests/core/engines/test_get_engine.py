"""get_engine: names, the auto fallback, missing extras, and no heavy imports at module level."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_deepocr.core import engines
from airflow_provider_deepocr.core.engines import get_engine
from airflow_provider_deepocr.core.errors import ConfigError, EngineUnavailable


def test_auto_falls_back_to_rapidocr(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from airflow_provider_deepocr.core.engines.rapid import RapidOcrEngine

    missing = str(tmp_path / "no-weights-here")
    with caplog.at_level(logging.INFO, logger="airflow_provider_deepocr.core.engines"):
        eng = get_engine("auto", model=missing)
    assert isinstance(eng, RapidOcrEngine)
    assert eng.name == "rapidocr"
    assert (
        f"DeepSeek-OCR-2 weights not found at/for {missing}; falling back to RapidOCR on CPU" in caplog.text
    )


def test_auto_picks_deepseek_for_local_weights(tiny_model_dir: Path) -> None:
    from airflow_provider_deepocr.core.engines.deepseek import DeepSeekOcr2Engine

    eng = get_engine("auto", model=str(tiny_model_dir), max_new_tokens=4, prompt="free", batch_size=2)
    assert isinstance(eng, DeepSeekOcr2Engine)
    assert (eng.name, eng.model, eng.max_new_tokens, eng.batch_size) == (
        "deepseek-ocr2",
        str(tiny_model_dir),
        4,
        2,
    )
    assert eng.prompt == engines.PROMPTS["free"]
    assert eng.device == "cpu"


def test_unknown_engine() -> None:
    with pytest.raises(ConfigError):
        get_engine("tesseract")


def test_missing_extra_names_the_pip_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def fake(name: str, *a: object, **k: object) -> object:
        if name in ("rapidocr", "transformers"):
            return None
        return real(name, *a, **k)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    with pytest.raises(EngineUnavailable, match=r"airflow-provider-deepocr\[cpu-ocr\]"):
        get_engine("rapidocr")
    with pytest.raises(EngineUnavailable, match=r"airflow-provider-deepocr\[gpu\]"):
        get_engine("deepseek", model="/nowhere")


def test_no_heavy_imports_at_module_level() -> None:
    code = (
        "import sys\n"
        "import airflow_provider_deepocr.core.engines\n"
        "import airflow_provider_deepocr.core.engines.deepseek\n"
        "import airflow_provider_deepocr.core.engines.rapid\n"
        "names = ('torch', 'transformers', 'rapidocr', 'onnxruntime', 'airflow')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(
    ("given", "expected"), [(1, 1), ("8", 8), (" Auto ", "auto"), ("auto", "auto"), (64, 64)]
)
def test_parse_batch_size_accepts_ints_and_auto(given: object, expected: object) -> None:
    assert engines.parse_batch_size(given) == expected


@pytest.mark.parametrize("given", [0, -2, "0", "many", 2.5, True, None, ""])
def test_parse_batch_size_rejects_the_rest(given: object) -> None:
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1 or 'auto'"):
        engines.parse_batch_size(given)


def test_auto_batch_and_token_mapping_reach_deepseek(tiny_model_dir: Path) -> None:
    eng = get_engine(
        "deepseek",
        model=str(tiny_model_dir),
        batch_size="auto",
        prompt="figure",
        max_new_tokens={"markdown": 300, "figure": 7},
    )
    # CPU: "auto" starts at 4 pages per generate(); the mapping's entry for the prompt applies
    assert (eng.batch_size, eng.auto_batch, eng.max_new_tokens) == (4, True, 7)


def test_auto_batch_for_engines_with_a_plain_batch() -> None:
    rapid = get_engine("rapidocr", batch_size="auto")
    assert rapid.batch_size == engines.RAPID_AUTO_BATCH
    server = get_engine("server", server_url="http://127.0.0.1:9/v1", batch_size="auto", max_new_tokens=None)
    assert server.batch_size == engines.IN_FLIGHT_MIN
    assert server.max_new_tokens == 8192  # the context; the server caps it minus the prompt
    big = get_engine("server", server_url="http://127.0.0.1:9/v1", batch_size=100, prompt="figure")
    assert (big.batch_size, big.max_new_tokens) == (100, 2048)
    with pytest.raises(ConfigError):
        get_engine("rapidocr", batch_size="lots")


# --------------------------------------------------------------------------------------------
# The one factory: EngineSettings -> build_engine


def test_engine_settings_normalise_loose_values_and_name_what_is_wrong() -> None:
    from airflow_provider_deepocr.core.engines import EngineSettings

    loose = EngineSettings.from_values(
        engine="RapidOCR-2".replace("-2", ""),
        batch_size="8",
        max_new_tokens='{"figure": 7, "default": 100}',
        prompt="figure",
        retry_temperatures="0, 0.3",
        fallback_engine="rapid",
        device=None,
    )
    assert (loose.engine, loose.batch_size, loose.max_new_tokens) == ("rapidocr", 8, 7)
    assert (loose.retry_temperatures, loose.fallback_engine, loose.device) == ((0.0, 0.3), "rapidocr", "auto")
    # "not set" equals the default it stands for: one token default, by prompt
    assert EngineSettings(prompt="figure") == EngineSettings(prompt="figure", max_new_tokens=2048)
    assert EngineSettings().max_new_tokens == 8192
    assert EngineSettings(prompt="<image>\nDescribe.").max_new_tokens == 8192
    assert EngineSettings(retry_temperatures="none").retry_temperatures == ()
    for bad, match in (
        ({"engine": "tesseract"}, "unknown engine"),
        ({"fallback_engine": "server"}, "fallback_engine must be one of none, rapidocr"),
        ({"retry_temperatures": "0,-1"}, "retry_temperatures: temperatures must be >= 0"),
        ({"retry_temperatures": "cold"}, "retry_temperatures"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_new_tokens": "lots"}, "max_new_tokens"),
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ({"temperature": 0.3}, "unknown engine settings: temperature"),
    ):
        with pytest.raises(ConfigError, match=match):
            EngineSettings.from_values(**bad)
    assert EngineSettings(engine="rapidocr").replace(batch_size=None, prompt="free").prompt == "free"
    assert "k3y" not in repr(EngineSettings(api_key="k3y"))


def test_build_engine_wraps_the_ladder_and_fallback(tiny_model_dir: Path) -> None:
    from airflow_provider_deepocr.core.engines import EngineSettings, build_engine
    from airflow_provider_deepocr.core.engines.rapid import RapidOcrEngine
    from airflow_provider_deepocr.core.engines.retry import RetryingEngine

    settings = EngineSettings(
        engine="deepseek", model=str(tiny_model_dir), prompt="figure", fallback_engine="rapidocr"
    )
    engine = build_engine(settings)
    assert isinstance(engine, RetryingEngine) and isinstance(engine.fallback, RapidOcrEngine)
    described = engine.describe()
    assert described["max_new_tokens"] == 2048  # figure's budget, from the one default
    assert described["retry_temperatures"] == [0.0, 0.2, 0.4]
    assert described["fallback"] == engine.fallback.describe()
    # a structured engine cannot loop: no ladder, and no fallback is built for it
    rapid = build_engine(EngineSettings(engine="rapidocr", fallback_engine="rapidocr"))
    assert isinstance(rapid, RapidOcrEngine)
    # no ladder at all: the bare engine
    bare = build_engine(settings.replace(retry_temperatures="none", fallback_engine="none"))
    assert not isinstance(bare, RetryingEngine) and bare.describe()["max_new_tokens"] == 2048


def test_build_engine_turns_an_engines_value_error_into_config_error() -> None:
    from airflow_provider_deepocr.core.engines import EngineSettings, build_engine

    settings = EngineSettings(
        engine="server", server_url="http://127.0.0.1:9/v1", options={"timeout": "soon"}
    )
    with pytest.raises(ConfigError, match=r"engine server: ValueError"):
        build_engine(settings)
