"""DeepSeekOcr2Engine on the tiny random checkpoint: the real processor, model and generate path."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from airflow_provider_deepocr.core.engines.base import PROMPTS
from airflow_provider_deepocr.core.engines.deepseek import (
    AUTO_BATCH_CUDA,
    DeepSeekOcr2Engine,
    NgramRepetitionBan,
    auto_batch_size,
    ban_repeated_ngrams,
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
    assert eng.auto_batch and eng.batch_size == auto_batch_size("cpu") == 4  # CPU
    assert eng.max_new_tokens == 5
    assert eng.attn_implementation == "sdpa"
    assert DeepSeekOcr2Engine(str(tiny_model_dir), max_new_tokens={"default": 9}).max_new_tokens == 9
    with pytest.raises(ConfigError):
        DeepSeekOcr2Engine(str(tiny_model_dir), batch_size="big")
    with pytest.raises(ConfigError):
        DeepSeekOcr2Engine(str(tiny_model_dir), max_new_tokens=0)


def test_auto_batch_by_free_gpu_memory() -> None:
    gib = 2**30
    assert auto_batch_size("cuda", 130 * gib) == 128  # an H200 after loading the weights
    assert auto_batch_size("cuda:1", 72 * gib) == 64  # an 80 GB card
    assert auto_batch_size("cuda", 32 * gib) == 32  # a 40 GB card
    assert auto_batch_size("cuda", 20 * gib) == 16
    assert auto_batch_size("cuda", 10 * gib) == 8
    assert auto_batch_size("cuda", 1 * gib) == auto_batch_size("cuda", 0) == 4
    assert auto_batch_size("cuda") == 64  # free memory unknown
    assert auto_batch_size("cpu", 500 * gib) == 4 and auto_batch_size("mps") == 8
    # each row's threshold gives its batch; one byte less gives the next row's
    for (gib_at, batch), (_, smaller) in zip(AUTO_BATCH_CUDA, AUTO_BATCH_CUDA[1:], strict=False):
        assert auto_batch_size("cuda", int(gib_at * gib)) == batch
        assert auto_batch_size("cuda", int(gib_at * gib) - 1) == smaller
    batches = [b for _, b in AUTO_BATCH_CUDA]
    assert batches == sorted(batches, reverse=True)


def test_static_kv_cache_gives_the_same_pages(
    tiny_model_dir: Path, pages: list[PageImage], unbatched
) -> None:  # type: ignore[no-untyped-def]
    eng = DeepSeekOcr2Engine(
        str(tiny_model_dir), max_new_tokens=MAX_NEW, batch_size=3, cache_implementation="static"
    )
    out = eng.ocr(pages)
    assert [r.raw_text for r in out] == [r.raw_text for r in unbatched]
    assert [r.output_tokens for r in out] == [r.output_tokens for r in unbatched]


# -- the n-gram ban against the implementation it replaced ------------------------------------------


def _reference_banned(generated: list[int], n: int, window: int, whitelist: frozenset[int]) -> set[int]:
    """NgramRepetitionBan.banned before issue 11, verbatim: the reference the vectorised ban must equal."""
    if n <= 0 or len(generated) < n - 1:
        return set()
    recent = list(generated[-window:]) if window > 0 else list(generated)
    if n == 1:
        return set(recent) - whitelist
    prefix = recent[len(recent) - (n - 1) :]
    out: set[int] = set()
    for i in range(len(recent) - (n - 1)):
        if recent[i : i + n - 1] == prefix:
            out.add(recent[i + n - 1])
    return out - whitelist


def _reference_call(input_ids, scores, n: int, window: int, prompt_len: int, whitelist: frozenset[int]):  # type: ignore[no-untyped-def]
    """NgramRepetitionBan.__call__ before issue 11, verbatim (host lists, a loop per row)."""
    if n <= 0 or input_ids.shape[1] - prompt_len < n - 1:
        return scores
    rows = input_ids[:, prompt_len:].tolist()
    for row, generated in enumerate(rows):
        banned = _reference_banned(generated, n, window, whitelist)
        if banned:
            scores[row, sorted(banned)] = float("-inf")
    return scores


@st.composite
def _token_rows(draw, vocab: int, length: int) -> list[int]:  # type: ignore[no-untyped-def]
    """Random tokens, or a loop with a few edits (so long n-grams repeat), of ``length`` tokens."""
    tokens = st.integers(0, vocab - 1)
    if draw(st.booleans()):
        return draw(st.lists(tokens, min_size=length, max_size=length))
    period = draw(st.lists(tokens, min_size=1, max_size=6))
    row = (period * (length // len(period) + 1))[:length]
    for _ in range(draw(st.integers(0, 3))):
        if row:
            row[draw(st.integers(0, len(row) - 1))] = draw(tokens)
    return row


@st.composite
def _ban_case(draw):  # type: ignore[no-untyped-def]
    """n (0..7, n = 1 often), window (0 = all; around n - 1), whitelist, and one row of any length."""
    n = draw(st.one_of(st.just(1), st.integers(0, 7)))
    window = draw(st.one_of(st.just(0), st.integers(max(0, n - 3), n + 2), st.integers(1, 40)))
    vocab = draw(st.integers(2, 12))
    whitelist = frozenset(draw(st.sets(st.integers(0, vocab - 1), max_size=3)))
    return n, window, vocab, whitelist


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_ban_case(), data=st.data(), stacked=st.booleans())
@example(case=(3, 3, 5, frozenset()), data=None, stacked=False).via("window = n: one position to compare")
@example(case=(4, 2, 5, frozenset()), data=None, stacked=True).via("window < n - 1: nothing banned")
@example(case=(1, 0, 5, frozenset({1})), data=None, stacked=False).via("n = 1, the whole sequence")
def test_vectorised_ban_equals_the_python_ban_on_one_row(case, data, stacked: bool) -> None:  # type: ignore[no-untyped-def]
    """Rows of every length (0 to beyond the window) give the bans the old implementation gave."""
    import torch

    n, window, vocab, whitelist = case
    rows = [[0, 1, 2, 0, 1, 2, 0, 1], [], [3], [1, 1, 1, 1, 1, 1]]  # the @example cases
    if data is not None:
        rows = [data.draw(_token_rows(vocab, data.draw(st.integers(0, 50)))) for _ in range(3)]
    for row in rows:
        expected = _reference_banned(row, n, window, whitelist)
        assert NgramRepetitionBan(n, window, 0, sorted(whitelist)).banned(row) == expected
        ids = torch.tensor([row], dtype=torch.long).reshape(1, -1)
        scores = ban_repeated_ngrams(
            torch.zeros(1, vocab), ids, n, window, torch.tensor(sorted(whitelist), dtype=torch.long), stacked
        )
        assert {int(t) for t in torch.isneginf(scores[0]).nonzero().flatten()} == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_ban_case(), data=st.data(), stacked=st.booleans())
def test_vectorised_ban_equals_the_python_ban_in_a_batch(case, data, stacked: bool) -> None:  # type: ignore[no-untyped-def]
    """The logits processor on a generate() batch: left-padded prompts, rows that stopped at
    different steps (EOS, then pad), finite scores left as they were except the bans."""
    import torch

    n, window, vocab, whitelist = case
    batch = data.draw(st.integers(1, 5))
    prompt_len = data.draw(st.integers(0, 4))
    steps = data.draw(st.integers(0, 45))
    eos, pad = vocab, vocab + 1  # outside the random tokens, inside the scores
    rows = []
    for _ in range(batch):
        prompt = data.draw(st.lists(st.integers(0, vocab + 1), min_size=prompt_len, max_size=prompt_len))
        body = data.draw(_token_rows(vocab, steps))
        stop = data.draw(st.integers(0, steps))  # where this row ended (== steps: still running)
        if stop < steps:
            body = body[:stop] + [eos] + [pad] * (steps - stop - 1)
        rows.append(prompt + body)
    input_ids = torch.tensor(rows, dtype=torch.long).reshape(batch, prompt_len + steps)
    scores = torch.randn(batch, vocab + 2, generator=torch.Generator().manual_seed(steps))
    expected = _reference_call(input_ids, scores.clone(), n, window, prompt_len, whitelist)
    ban = NgramRepetitionBan(n, window, prompt_len, sorted(whitelist))
    if stacked:  # the path CUDA takes, forced here on CPU tensors
        got = ban_repeated_ngrams(
            scores.clone(), input_ids[:, prompt_len:], n, window, ban._whitelist_tensor("cpu"), stacked=True
        )
    else:
        got = ban(input_ids, scores.clone())
    assert torch.equal(got, expected)


def test_vectorised_ban_no_slower_than_the_python_ban_on_cpu() -> None:
    """batch 64 x 4,096 generated tokens, the published vocabulary, half the rows looping: the
    vectorised ban reads only the window, the old one copied every row to the host."""
    import time

    import torch

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 129280, (64, 1100 + 4096), generator=gen)
    ids[::2, 1100:] = torch.randint(0, 129280, (7,), generator=gen).repeat(4096 // 7 + 1)[:4096]
    scores = torch.randn(64, 129280, generator=gen)
    whitelist = frozenset({5, 6, 7, 8})
    ban = NgramRepetitionBan(30, 90, 1100, sorted(whitelist))
    assert torch.equal(
        ban(ids, scores.clone()), _reference_call(ids, scores.clone(), 30, 90, 1100, whitelist)
    )

    def best_ms(fn) -> float:  # type: ignore[no-untyped-def]
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times) * 1000

    new = best_ms(lambda: ban(ids, scores))
    old = best_ms(lambda: _reference_call(ids, scores, 30, 90, 1100, whitelist))
    print(f"\n[bench] n-gram ban 64 x 4096 on CPU: Python {old:.2f} ms/step, vectorised {new:.2f} ms/step")
    assert new <= old


# -- the authors' n-gram ban, written independently from their description ----------------------


def _authors_banned(output_ids: list[int], n: int, window: int, whitelist: frozenset[int]) -> set[int]:
    """DeepSeek-OCR's ``NoRepeatNGramLogitsProcessor`` (deepseek-ai/DeepSeek-OCR-2,
    ``DeepSeek-OCR2-vllm/process/ngram_norepeat.py``; the same in vLLM's ``deepseek_ocr.py``), from
    its definition: over the generated ids only, nothing before ``n`` ids; the n-grams starting at
    ``max(0, len - window)`` .. ``len - n`` whose first ``n - 1`` ids equal the last ``n - 1`` ids
    ban their last id; whitelisted ids are never banned."""
    size = len(output_ids)
    if size < n:
        return set()
    prefix = output_ids[size - (n - 1) :]
    banned = set()
    for start in range(max(0, size - window), size - n + 1):
        if output_ids[start : start + n - 1] == prefix:
            banned.add(output_ids[start + n - 1])
    return banned - whitelist


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(2, 8),
    window=st.integers(1, 40),
    vocab=st.integers(2, 10),
    data=st.data(),
)
@example(n=3, window=3, vocab=5, data=None).via("window = n: one n-gram fits")
@example(n=4, window=3, vocab=5, data=None).via("window < n: nothing fits")
def test_the_ban_equals_the_authors_algorithm(n: int, window: int, vocab: int, data) -> None:  # type: ignore[no-untyped-def]
    """For the parameters the engines use (n >= 2, window >= 1; the engine turns the ban off at
    0), the project's ban gives exactly the authors' bans, row by row, whitelist included.
    (n = 1 differs by design: the authors' prefix slice ``ids[-0:]`` is the whole row, so it
    never bans; the engines never run n = 1.)"""
    rows = [[0, 1, 2, 0, 1, 2, 0, 1], [0, 0, 0, 0, 0], [], [4]]
    whitelist = frozenset({1})
    if data is not None:
        rows = [data.draw(_token_rows(vocab, data.draw(st.integers(0, 60)))) for _ in range(3)]
        whitelist = frozenset(data.draw(st.sets(st.integers(0, vocab - 1), max_size=2)))
    for row in rows:
        expected = _authors_banned(row, n, window, whitelist)
        assert NgramRepetitionBan(n, window, 0, sorted(whitelist)).banned(row) == expected


@pytest.mark.parametrize(("n", "window"), [(30, 90), (20, 50), (20, 90)])  # ours; the authors' pdf, image
def test_the_ban_equals_the_authors_on_long_loops_in_a_batch(n: int, window: int) -> None:
    """The logits processor on a left-padded generate() batch of 600-token rows (loops of
    period 7 and 31, a table row that repeats <td>, random text): the same -inf as the authors'."""
    import torch

    gen = torch.Generator().manual_seed(n * window)
    vocab, td, end_td, prompt_len = 500, 11, 12, 5
    loop7 = torch.randint(20, vocab, (7,), generator=gen).tolist() * 90
    loop31 = torch.randint(20, vocab, (31,), generator=gen).tolist() * 20
    table = [td, 40, end_td, td, 41, end_td] * 100
    rows = [loop7[:600], loop31[:600], table[:600], torch.randint(0, vocab, (600,), generator=gen).tolist()]
    prompt = [[2] * prompt_len for _ in rows]
    whitelist = frozenset({td, end_td})
    for steps in (n - 1, n, window, 599, 600):
        ids = torch.tensor([p + r[:steps] for p, r in zip(prompt, rows, strict=True)])
        scores = torch.randn(len(rows), vocab, generator=gen)
        got = NgramRepetitionBan(n, window, prompt_len, sorted(whitelist))(ids, scores.clone())
        for row, generated in enumerate(rows):
            banned = _authors_banned(generated[:steps], n, window, whitelist)
            assert {int(t) for t in torch.isneginf(got[row]).nonzero().flatten()} == banned
    # the loops are caught once the window holds a repeat; the table's <td>/</td> never are
    assert _authors_banned(loop7[:600], n, window, whitelist) and not (
        _authors_banned(table[:600], n, window, whitelist) & whitelist
    )


# -- load checks: BOS, the whitelist tokens, dtype ---------------------------------------------


def test_a_tokenizer_without_bos_is_refused_at_load(tmp_path: Path) -> None:
    from airflow_provider_deepocr.core.errors import EngineUnavailable
    from airflow_provider_deepocr.testing.tiny_model import write_tiny_model

    model = write_tiny_model(tmp_path / "no-bos", bos=False)
    with pytest.raises(EngineUnavailable) as caught:
        DeepSeekOcr2Engine(str(model), max_new_tokens=2)
    assert "does not put BOS first" in str(caught.value) and "\n" not in str(caught.value)


def test_whitelist_ids_come_from_the_tokenizer_and_a_missing_td_is_one_warning(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow_provider_deepocr.testing.tiny_model import write_tiny_model

    with caplog.at_level(logging.INFO, logger="airflow_provider_deepocr.core.engines.deepseek"):
        good = DeepSeekOcr2Engine(str(tiny_model_dir), max_new_tokens=2)
    tok = good._processor.tokenizer
    assert good._ngram_whitelist == [tok.convert_tokens_to_ids("<td>"), tok.convert_tokens_to_ids("</td>")]
    assert "<tr>" not in tok.get_vocab() or tok.convert_tokens_to_ids("<tr>") not in good._ngram_whitelist
    assert sum("whitelist" in r.getMessage() for r in caplog.records) == 1  # logged once
    caplog.clear()

    model = write_tiny_model(tmp_path / "no-td", table_tokens=False)
    with caplog.at_level(logging.WARNING, logger="airflow_provider_deepocr.core.engines.deepseek"):
        bare = DeepSeekOcr2Engine(str(model), max_new_tokens=2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "<td>, </td>" in warnings[0] and "without its whitelist" in warnings[0]
    assert bare._ngram_whitelist == []


def test_auto_dtype_without_bf16_warns_and_float32_is_honoured(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch

    from airflow_provider_deepocr.core.engines.deepseek import _pick_dtype

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    with caplog.at_level(logging.WARNING):
        assert _pick_dtype("auto", "cuda") is torch.float16
        assert _pick_dtype("float32", "cuda") is torch.float32
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "float16" in warnings[0] and "authors" in warnings[0]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert _pick_dtype("auto", "cuda") is torch.bfloat16


def test_new_tokens_are_capped_at_the_context_minus_the_prompt(
    engine: DeepSeekOcr2Engine, pages: list[PageImage], unbatched
) -> None:  # type: ignore[no-untyped-def]
    from airflow_provider_deepocr.core.engines.base import DEFAULT_MAX_NEW_TOKENS, cap_new_tokens

    assert DEFAULT_MAX_NEW_TOKENS["markdown"] == 8192 and engine.context == 8192
    assert cap_new_tokens(8192, 1100) == 7092 and cap_new_tokens(2048, 1100) == 2048
    assert cap_new_tokens(8192, 9000) == 1
    saved = engine.max_new_tokens, engine.context
    try:  # a context 3 tokens past the prompt: 3 new tokens, stopped at the limit
        engine.max_new_tokens, engine.context = 50, unbatched[0].prompt_tokens + 3
        (result,) = engine.ocr(pages[:1])
    finally:
        engine.max_new_tokens, engine.context = saved
    assert result.output_tokens <= 3 and (result.finish_reason == "length" or result.output_tokens < 3)


def test_check_tokenizer_on_built_tokenizers(caplog: pytest.LogCaptureFixture) -> None:
    """The check the vLLM engine makes too (on vLLM's tokenizer): no BOS refused, unless the
    engine's processor adds BOS itself (vLLM's), which is a warning; no <td> is a bare ban."""
    from airflow_provider_deepocr.core.engines.deepseek import check_tokenizer
    from airflow_provider_deepocr.core.errors import EngineUnavailable
    from airflow_provider_deepocr.testing.tiny_model import _build_tokenizer

    prompt = PROMPTS["markdown"]
    good = _build_tokenizer()
    assert check_tokenizer(good, good(prompt)["input_ids"], "m") == good.convert_tokens_to_ids(
        ["<td>", "</td>"]
    )
    no_bos = _build_tokenizer(bos=False)
    with pytest.raises(EngineUnavailable, match="does not put BOS first"):
        check_tokenizer(no_bos, no_bos(prompt)["input_ids"], "m")
    with caplog.at_level(logging.WARNING):
        assert check_tokenizer(no_bos, no_bos(prompt)["input_ids"], "m", bos_added_elsewhere=True)
    assert "adds it explicitly" in caplog.text
    no_td = _build_tokenizer(table_tokens=False)
    assert check_tokenizer(no_td, no_td(prompt)["input_ids"], "m") == []


# -- weights that are not here: refused in seconds, in one line ------------------------------


def test_missing_weights_are_refused_in_seconds_naming_what_to_do(
    tmp_path: Path, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from airflow_provider_deepocr.core.errors import EngineUnavailable

    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port}")  # a hub that does not answer
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    for model, says in (
        (str(tmp_path / "no-such-folder"), "no DeepSeek-OCR weights at"),
        (
            "deepseek-community/DeepSeek-OCR-2",
            "not in the local Hugging Face cache and the hub is unreachable",
        ),
    ):
        t0 = time.monotonic()
        with pytest.raises(EngineUnavailable) as caught:
            DeepSeekOcr2Engine(model, max_new_tokens=2)
        assert time.monotonic() - t0 < 10
        text = str(caught.value)
        assert says in text and "huggingface-cli download" in text and "--model" in text and "\n" not in text
