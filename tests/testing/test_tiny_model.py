"""The tiny DeepSeek-OCR-2 checkpoint loads through the same Auto classes as the real one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from airflow_provider_deepocr.testing import tiny_model


@pytest.fixture(scope="module")
def loaded(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, use_safetensors=True).eval()
    return processor, model


def test_files_written(tiny_model_dir: Path) -> None:
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= names


def test_reload_through_auto_classes(loaded) -> None:  # type: ignore[no-untyped-def]
    from transformers import DeepseekOcr2ForConditionalGeneration, DeepseekOcr2ImageProcessorPil

    processor, model = loaded
    assert isinstance(model, DeepseekOcr2ForConditionalGeneration)
    assert isinstance(processor.image_processor, DeepseekOcr2ImageProcessorPil)
    ip = processor.image_processor
    assert (ip.size["height"], ip.tile_size, ip.min_patches, ip.max_patches) == (1024, 768, 2, 6)

    cfg = model.config
    sam = cfg.vision_config.sam_config
    assert (sam.image_size, sam.patch_size) == (1024, 16)
    assert sam.downsample_channels[-1] == cfg.vision_config.encoder_config.hidden_size

    tok = processor.tokenizer
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<image>") == processor.image_token_id
    assert tok.padding_side == "left"
    for special in tiny_model.SPECIAL_TOKENS:
        ids = tok(special, add_special_tokens=False).input_ids
        assert len(ids) == 1, special
    assert None not in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id)
    assert cfg.text_config.eos_token_id == tok.eos_token_id

    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < 1_000_000


def test_generate_runs(loaded) -> None:  # type: ignore[no-untyped-def]
    import torch
    from PIL import Image

    processor, model = loaded
    inputs = processor(
        images=[Image.new("RGB", (640, 200), "white")], text=["<image>\nFree OCR."], return_tensors="pt"
    )
    with torch.inference_mode():
        out = model.generate(**inputs, do_sample=False, max_new_tokens=5)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 5


def test_deterministic_and_cli(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tiny_model.main([str(tmp_path / "again")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "again")

    def digest(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert digest(tmp_path / "again" / name) == digest(tiny_model_dir / name), name


def test_the_builder_makes_tokenizers_with_and_without_bos_and_table_tokens() -> None:
    """The default tokenizer adds BOS and has <td>/</td> as single tokens, like the real one; the
    variants that the engines' load checks must catch lack one of them."""
    from airflow_provider_deepocr.testing.tiny_model import BOS, _build_tokenizer

    prompt = "<image>\n<|grounding|>Convert the document to markdown."
    good, no_bos, no_td = (
        _build_tokenizer(),
        _build_tokenizer(bos=False),
        _build_tokenizer(table_tokens=False),
    )
    assert good(prompt)["input_ids"][0] == good.convert_tokens_to_ids(BOS)
    assert no_bos(prompt)["input_ids"][0] != no_bos.convert_tokens_to_ids(BOS)
    for tok, single in ((good, True), (no_bos, True), (no_td, False)):
        for cell in ("<td>", "</td>"):
            ids = tok.encode(cell, add_special_tokens=False)
            assert (len(ids) == 1) is single
            assert tok.decode(ids) == cell  # spelled in pieces, it still reads back
