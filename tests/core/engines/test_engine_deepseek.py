"""DeepSeekOcr2Engine on the tiny random checkpoint: the real processor, model and generate path."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from airflow_provider_deepocr.core.engines.base import PROMPTS
from airflow_provider_deepocr.core.engines.deepseek import (
    DeepSeekOcr2Engine,
    NgramRepetitionBan,
    resolve_prompt,
    weights_available,
)
from airflow_provider_deepocr.core.errors import ConfigError
from airflow_provider_deepocr.core.records import PageImage

MAX_NEW = 8


def _page(page_no: int, width: int, height: int, seed: int) -> PageImage:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
    return PageImage(doc_id="x" * 64, page_no=page_no, image=image, dpi=144, width=width, height=height)


@pytest.fixture(scope="module")
def pages() -> list[PageImage]:
    # different sizes: no local tiles, 3 tall tiles, 6 tiles
    return [_page(1, 640, 200, 1), _page(2, 300, 900, 2), _page(3, 1000, 1400, 3)]


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> DeepSeekOcr2Engine:
    return DeepSeekOcr2Engine(str(tiny_model_dir), max_new_tokens=MAX_NEW, batch_size=1)


@pytest.fixture(scope="module")
def unbatched(engine: DeepSeekOcr2Engine, pages: list[PageImage]):  # type: ignore[no-untyped-def]
    engine.batch_size = 1
    return engine.ocr(pages)


def test_one_result_per_page(engine: DeepSeekOcr2Engine, unbatched, tiny_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    assert len(unbatched) == 3
    for r in unbatched:
        assert r.finish_reason in {"eos", "length"}
        assert r.prompt_tokens > 257  # BOS + 256 global queries + separator + text
        assert 0 < r.output_tokens <= MAX_NEW
        assert r.seconds > 0
        assert r.engine == "deepseek-ocr2"
        assert r.model == str(tiny_model_dir)
        assert r.prompt == PROMPTS["markdown"]
        assert r.mode
    # more local tiles -> more image tokens in the prompt
    assert unbatched[0].prompt_tokens < unbatched[1].prompt_tokens < unbatched[2].prompt_tokens
    assert engine.describe()["engine"] == "deepseek-ocr2"


def test_max_new_tokens_respected(unbatched) -> None:  # type: ignore[no-untyped-def]
    for r in unbatched:
        if r.finish_reason == "length":
            assert r.output_tokens == MAX_NEW
        else:
            assert r.output_tokens <= MAX_NEW


def test_batched_equals_unbatched(engine: DeepSeekOcr2Engine, pages: list[PageImage], unbatched) -> None:  # type: ignore[no-untyped-def]
    engine.batch_size = 3
    try:
        batched = engine.ocr(pages)
    finally:
        engine.batch_size = 1
    assert [r.raw_text for r in batched] == [r.raw_text for r in unbatched]
    assert [r.output_tokens for r in batched] == [r.output_tokens for r in unbatched]
    assert [r.finish_reason for r in batched] == [r.finish_reason for r in unbatched]
    assert [r.prompt_tokens for r in batched] == [r.prompt_tokens for r in unbatched]


def test_error_page_does_not_lose_the_batch(
    engine: DeepSeekOcr2Engine,
    pages: list[PageImage],
    unbatched,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    from PIL import Image

    # 1 x 5000: the processor's global view rounds the width to 0 and raises inside the batch
    sliver = PageImage(
        doc_id="x" * 64, page_no=7, image=Image.new("RGB", (1, 5000)), dpi=144, width=1, height=5000
    )
    missing = PageImage(doc_id="x" * 64, page_no=8, image=None, dpi=144, width=0, height=0)
    engine.batch_size = 3
    try:
        with caplog.at_level(logging.WARNING):
            out = engine.ocr([pages[0], sliver, missing, pages[1]])
    finally:
        engine.batch_size = 1
    assert [r.finish_reason for r in out] == [
        unbatched[0].finish_reason,
        "error",
        "error",
        unbatched[1].finish_reason,
    ]
    assert out[0].raw_text == unbatched[0].raw_text
    assert out[3].raw_text == unbatched[1].raw_text
    assert out[1].raw_text == "" and out[2].raw_text == ""
    assert "ValueError" in caplog.text


def test_eos_finish(tiny_model_dir: Path, pages: list[PageImage], unbatched) -> None:  # type: ignore[no-untyped-def]
    """Make the token the model emits third the EOS: generation stops there, reason 'eos'."""
    eng = DeepSeekOcr2Engine(str(tiny_model_dir), max_new_tokens=MAX_NEW, ngram_size=0)
    import torch

    inputs = eng._processor(images=[pages[0].image], text=[eng.prompt], return_tensors="pt")
    with torch.inference_mode():
        ids = eng._model.generate(**inputs, do_sample=False, max_new_tokens=3)
    first = ids[0, inputs["input_ids"].shape[1] :].tolist()
    eng.eos_token_ids = {first[2]}
    (r,) = eng.ocr(pages[:1])
    assert r.finish_reason == "eos"
    assert r.output_tokens <= 3
    assert len(r.raw_text) < len(unbatched[0].raw_text)


def test_decode_keeps_grounding_tags(engine: DeepSeekOcr2Engine) -> None:
    tok = engine._processor.tokenizer
    text = "<|ref|>title<|/ref|><|det|>[[12, 34, 567, 890]]<|/det|>\n# Title"
    ids = tok(text, add_special_tokens=False).input_ids
    eos, pad = tok.eos_token_id, tok.pad_token_id
    decoded, finish, n = engine.decode([*ids, eos, pad, pad])
    assert (decoded, finish, n) == (text, "eos", len(ids) + 1)
    decoded, finish, n = engine.decode([tok.bos_token_id, *ids])
    assert (decoded, finish, n) == (text, "length", len(ids) + 1)


def test_prompts() -> None:
    assert resolve_prompt("free") == PROMPTS["free"]
    assert resolve_prompt("<image>\nDescribe.") == "<image>\nDescribe."
    with pytest.raises(ConfigError):
        resolve_prompt("no image token here")
    with pytest.raises(ConfigError):
        DeepSeekOcr2Engine("/nonexistent", prompt="nonsense")


def test_weights_available(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert weights_available(str(tiny_model_dir))
    assert not weights_available(str(tmp_path / "missing"))
    assert not weights_available(str(tmp_path))  # a dir without config + safetensors
    assert not weights_available("nobody-here/not-a-cached-model")

    # a hub id in a (fake) local HF cache counts, without any network call
    import huggingface_hub.constants as hf_constants

    commit = "a" * 40
    repo = tmp_path / "hub" / "models--org--tiny-ocr"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    (snap / "config.json").write_text("{}")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert not weights_available("org/tiny-ocr")  # config only
    (snap / "model.safetensors").write_bytes(b"")
    assert weights_available("org/tiny-ocr")


def test_ngram_ban() -> None:
    ban = NgramRepetitionBan(ngram_size=3, window=100, prompt_len=0, whitelist=[9])
    # prefix (1, 2) was followed by 3 -> 3 is banned next
    assert ban.banned([1, 2, 3, 4, 1, 2]) == {3}
    assert ban.banned([1, 2, 9, 4, 1, 2]) == set()  # whitelisted
    assert ban.banned([1, 2]) == set()
    # window: the earlier occurrence slid out
    assert NgramRepetitionBan(3, 4, 0).banned([1, 2, 3, 4, 5, 1, 2]) == set()
    assert NgramRepetitionBan(0, 90, 0).banned([1, 1, 1, 1]) == set()

    import torch

    ids = torch.tensor([[7, 7, 1, 2, 3, 1, 2], [7, 7, 5, 6, 7, 8, 9]])
    scores = torch.zeros(2, 12)
    out = NgramRepetitionBan(3, 90, prompt_len=2)(ids, scores)
    assert out[0, 3] == float("-inf")
    assert torch.isfinite(out[0, [0, 1, 2, 4]]).all()
    assert torch.isfinite(out[1]).all()


def test_tile_counts_are_recorded_per_page(unbatched) -> None:  # type: ignore[no-untyped-def]
    # 640x200: no tiles; 300x900: a 1x3 grid; 1000x1400: 6 tiles
    assert [r.mode.rsplit(";tiles=", 1)[1] for r in unbatched] == ["0", "3", "6"]
    assert all(r.mode.startswith("dynamic-1024-768;") for r in unbatched)


def test_one_processor_call_sliced_into_smaller_generate_batches(
    engine: DeepSeekOcr2Engine, pages: list[PageImage], unbatched
) -> None:  # type: ignore[no-untyped-def]
    """prepare() runs the processor once; batches of 2 take slices of it, output unchanged."""
    from airflow_provider_deepocr.core.engines.deepseek import _slice_inputs

    prepared = engine.prepare(pages)
    alone = engine._inputs([pages[1], pages[2]])
    sliced = _slice_inputs(prepared.inputs, [1, 2])
    assert set(sliced.keys()) == set(alone.keys())
    for key in alone:
        assert sliced[key].shape == alone[key].shape, key
        assert (sliced[key] == alone[key]).all(), key
    engine.batch_size = 2
    try:
        out = engine.ocr_prepared(prepared)
    finally:
        engine.batch_size = 1
    assert [r.raw_text for r in out] == [r.raw_text for r in unbatched]


def test_auto_batch_and_token_budgets_by_prompt(tiny_model_dir: Path) -> None:
    eng = DeepSeekOcr2Engine(
        str(tiny_model_dir), batch_size="auto", prompt="figure", max_new_tokens={"figure": 5, "default": 9}
    )
    assert eng.auto_batch and eng.batch_size == 4  # CPU
    assert eng.max_new_tokens == 5
    assert eng.attn_implementation == "sdpa"
    assert DeepSeekOcr2Engine(str(tiny_model_dir), max_new_tokens={"default": 9}).max_new_tokens == 9
    with pytest.raises(ConfigError):
        DeepSeekOcr2Engine(str(tiny_model_dir), batch_size="big")
    with pytest.raises(ConfigError):
        DeepSeekOcr2Engine(str(tiny_model_dir), max_new_tokens=0)
