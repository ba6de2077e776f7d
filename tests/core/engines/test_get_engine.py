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
    assert server.max_new_tokens == 4096
    big = get_engine("server", server_url="http://127.0.0.1:9/v1", batch_size=100, prompt="figure")
    assert (big.batch_size, big.max_new_tokens) == (100, 2048)
    with pytest.raises(ConfigError):
        get_engine("rapidocr", batch_size="lots")
