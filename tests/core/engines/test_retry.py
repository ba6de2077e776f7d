"""The retry ladder catches loops and token-limit stops, retries them hotter, then falls back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image

from airflow_provider_deepocr.core.engines.base import OcrEngine
from airflow_provider_deepocr.core.engines.retry import RetryingEngine, needs_retry
from airflow_provider_deepocr.core.records import OcrResult, PageImage

CLEAN = "<|ref|>text<|/ref|><|det|>[[10, 10, 500, 40]]<|/det|>\nTotal due: 42.00\n"
LOOP = "<|ref|>text<|/ref|><|det|>[[10, 10, 500, 40]]<|/det|>\n" + "Total due: 42.00 and more\n" * 60


def _page(no: int, size: tuple[int, int] = (320, 120)) -> PageImage:
    return PageImage("d" * 64, no, Image.new("RGB", size, "white"), 144, size[0], size[1])


class Scripted(OcrEngine):
    """An engine whose output per (page, temperature) is scripted; it records what it was asked."""

    name, model = "scripted", "script-1"

    def __init__(self, script: dict[tuple[int, float], tuple[str, str]]) -> None:
        self.script = script
        self.calls: list[tuple[list[int], float]] = []

    def ocr(self, pages: Sequence[PageImage], temperature: float = 0.0) -> list[OcrResult]:
        self.calls.append(([p.page_no for p in pages], temperature))
        out = []
        for p in pages:
            text, finish = self.script.get((p.page_no, temperature), (CLEAN, "eos"))
            out.append(OcrResult(text, finish, self.name, self.model))
        return out


def test_the_detector_sees_loops_and_token_limits_only() -> None:
    assert needs_retry(OcrResult(LOOP, "eos", "x", "m"))
    assert needs_retry(OcrResult(CLEAN, "length", "x", "m"))
    assert not needs_retry(OcrResult(CLEAN, "eos", "x", "m"))
    assert not needs_retry(OcrResult("", "error", "x", "m"))


def test_a_page_that_filled_the_context_is_retried_only_if_it_loops() -> None:
    def full(text: str, prompt: int = 1121) -> OcrResult:  # a full A4 page's prompt, the rest output
        return OcrResult(text, "length", "x", "m", prompt_tokens=prompt, output_tokens=8192 - prompt)

    assert not needs_retry(full(CLEAN))  # a long page: flagged, not generated again at the same limit
    assert needs_retry(full(LOOP))  # a loop may break at a higher temperature
    assert needs_retry(OcrResult(CLEAN, "length", "x", "m", prompt_tokens=1121, output_tokens=2048))
    inner = Scripted({(1, 0.0): (CLEAN, "length")})
    inner.ocr = _with_tokens(inner.ocr, 1121, 8192 - 1121)  # type: ignore[method-assign]
    (result,) = RetryingEngine(inner, temperatures=(0.0, 0.2, 0.4)).ocr([_page(1)])
    assert inner.calls == [([1], 0.0)] and result.attempts == 1 and result.finish_reason == "length"


def _with_tokens(ocr, prompt: int, output: int):  # type: ignore[no-untyped-def]
    import dataclasses

    def wrapped(pages, temperature=0.0):  # type: ignore[no-untyped-def]
        return [
            dataclasses.replace(r, prompt_tokens=prompt, output_tokens=output)
            for r in ocr(pages, temperature)
        ]

    return wrapped


def test_only_looping_pages_are_retried_at_rising_temperatures() -> None:
    inner = Scripted({(2, 0.0): (LOOP, "eos"), (3, 0.0): (LOOP, "length"), (3, 0.2): (LOOP, "eos")})
    results = RetryingEngine(inner, temperatures=(0.0, 0.2, 0.4)).ocr([_page(1), _page(2), _page(3)])
    assert inner.calls == [([1, 2, 3], 0.0), ([2, 3], 0.2), ([3], 0.4)]
    assert [r.attempts for r in results] == [1, 2, 3]
    assert all(r.raw_text == CLEAN and r.finish_reason == "eos" for r in results)


def test_a_page_that_never_recovers_keeps_its_best_attempt_and_is_flagged() -> None:
    inner = Scripted({(1, t): (LOOP, "length" if t == 0.0 else "eos") for t in (0.0, 0.2)})
    (result,) = RetryingEngine(inner, temperatures=(0.0, 0.2)).ocr([_page(1)])
    assert result.attempts == 2 and result.finish_reason == "eos"  # EOS beats the token limit
    from airflow_provider_deepocr.core.parse import FLAG_REPETITION_LOOP, parse_page

    assert FLAG_REPETITION_LOOP in parse_page(result.raw_text).flags  # still flagged downstream


def test_tiny_model_at_the_token_limit_climbs_the_ladder_then_falls_back(tiny_model_dir: Path) -> None:
    from airflow_provider_deepocr.core.engines import get_engine

    tiny = get_engine("deepseek", model=str(tiny_model_dir), max_new_tokens=6, batch_size=2)
    ladder = RetryingEngine(tiny, temperatures=(0.0, 0.3, 0.6))
    results = ladder.ocr([_page(1), _page(2, (200, 260))])
    # a random model never emits EOS within 6 tokens: every rung is tried
    assert [r.attempts for r in results] == [3, 3]
    assert all(r.finish_reason == "length" and r.engine == "deepseek-ocr2" for r in results)
    assert ladder.describe()["retry_temperatures"] == [0.0, 0.3, 0.6]

    fallback = Scripted({})
    rescued = RetryingEngine(tiny, temperatures=(0.0, 0.3), fallback=fallback).ocr([_page(1)])
    assert rescued[0].attempts == 3 and rescued[0].engine == "scripted" and rescued[0].finish_reason == "eos"


def test_sampling_at_a_temperature_is_reproducible(tiny_model_dir: Path) -> None:
    from airflow_provider_deepocr.core.engines import get_engine

    tiny = get_engine("deepseek", model=str(tiny_model_dir), max_new_tokens=8)
    a = tiny.ocr([_page(1)], temperature=0.7)[0].raw_text
    b = tiny.ocr([_page(1)], temperature=0.7)[0].raw_text
    greedy = tiny.ocr([_page(1)])[0].raw_text
    assert a == b
    assert greedy == tiny.ocr([_page(1)], temperature=0.0)[0].raw_text


def test_cuda_out_of_memory_halves_the_batch_and_keeps_every_page(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_deepocr.core.engines.deepseek import DeepSeekOcr2Engine

    class OutOfMemoryError(RuntimeError):  # what torch.cuda raises, by name
        pass

    engine = DeepSeekOcr2Engine(str(tiny_model_dir), max_new_tokens=4, batch_size=4)
    expected = [r.raw_text for r in engine.ocr([_page(i) for i in range(1, 5)])]
    real = engine._generate
    sizes: list[int] = []

    def tight_memory(batch, temperature=0.0, inputs=None):  # type: ignore[no-untyped-def]
        sizes.append(len(batch))
        if len(batch) > 1:
            raise OutOfMemoryError("CUDA out of memory")
        return real(batch, temperature, inputs)

    monkeypatch.setattr(engine, "_generate", tight_memory)
    results = engine.ocr([_page(i) for i in range(1, 5)])
    assert sizes == [4, 2, 1, 1, 1, 1]
    assert [r.raw_text for r in results] == expected
    # the size that fit is kept: the next batch does not hit the wall again
    assert engine.effective_batch_size == 1
    sizes.clear()
    engine.ocr([_page(i) for i in range(1, 3)])
    assert sizes == [1, 1]


def test_a_custom_text_loop_check_and_a_fallback_that_also_loops() -> None:
    inner = Scripted({(1, 0.0): ("AAAA", "eos"), (1, 0.5): ("AAAA", "eos")})
    fallback = Scripted({(1, 0.0): ("AAAA", "eos")})
    ladder = RetryingEngine(inner, (0.0, 0.5), fallback=fallback, loop_check=lambda text: "AAAA" in text)
    (result,) = ladder.ocr([_page(1)])
    assert result.attempts == 3 and result.raw_text == "AAAA" and result.engine == "scripted"
    assert ladder.describe()["fallback"] == fallback.describe()
    assert ladder.name == inner.name and ladder.model == inner.model
    (clean,) = ladder.ocr([_page(2)])
    assert clean.attempts == 1


def test_pages_get_pixels_when_the_engine_or_its_fallback_reads_them() -> None:
    from airflow_provider_deepocr.core.engines.sleep import SleepEngine

    sleep = SleepEngine(0.0)
    assert not sleep.needs_pixels() and Scripted({}).needs_pixels()
    assert not RetryingEngine(sleep).needs_pixels()  # the OCR stage renders nothing for it
    assert RetryingEngine(sleep, fallback=Scripted({})).needs_pixels()  # its fallback reads them
    assert RetryingEngine(Scripted({})).needs_pixels()
