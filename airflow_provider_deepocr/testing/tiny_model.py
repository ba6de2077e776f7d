"""A tiny random DeepSeek-OCR-2 checkpoint for tests (no download, a few seconds on CPU).

``write_tiny_model(dir)`` writes config, safetensors weights, a byte-level BPE tokenizer trained in
code and the processor (``DeepseekOcr2ImageProcessorPil`` defaults), so the directory loads through
``AutoProcessor.from_pretrained`` + ``AutoModelForImageTextToText.from_pretrained``: the same code
path as the real ``deepseek-community/DeepSeek-OCR-2``. The weights are random, so the output is
gibberish; what matters is that the real processor, model and ``generate()`` run.

Run as ``python -m airflow_provider_deepocr.testing.tiny_model DIR``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

SEED = 1234

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
UNK = "<unk>"
IMAGE = "<image>"
GROUNDING = "<|grounding|>"
REF_OPEN, REF_CLOSE = "<|ref|>", "<|/ref|>"
DET_OPEN, DET_CLOSE = "<|det|>", "<|/det|>"

# Order fixes the ids: bos=0, eos=1, pad=2, unk=3, image=4, ...
SPECIAL_TOKENS = [BOS, EOS, PAD, UNK, IMAGE, GROUNDING, REF_OPEN, REF_CLOSE, DET_OPEN, DET_CLOSE]

_TRAINING_TEXT = [
    "Convert the document to markdown.",
    "Free OCR.",
    "Parse the figure.",
    "# Title\n\nSome paragraph text with numbers 0123456789 and punctuation: .,;:!?()[]{}",
    "<table><tr><td>cell</td><td>1.5</td></tr></table>",
    "\\[ E = mc^2 \\] and \\( a + b \\) <center>Figure 1</center>",
    "title text table figure caption formula header footer list_item",
    "[[12, 34, 567, 890]]",
]


TABLE_TOKENS = ["<td>", "</td>"]  # single tokens, as in the real tokenizer (the n-gram ban's whitelist)


def _build_tokenizer(bos: bool = True, table_tokens: bool = True) -> Any:
    """A byte-level BPE trained in code; every byte is in the alphabet so nothing is unknown.

    ``bos``: prepend BOS to every encoding, as the real tokenizer does (False: a broken tokenizer
    for the engines' load checks). ``table_tokens``: ``<td>``/``</td>`` are single tokens (False:
    they are spelled in pieces, and no table markup is in the training text).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = _TRAINING_TEXT if table_tokens else [t for t in _TRAINING_TEXT if "<t" not in t]
    tok.train_from_iterator(text * 4, trainer=trainer)
    if table_tokens:
        tok.add_tokens(TABLE_TOKENS)
    if bos:  # BOS is prepended like the real tokenizer does
        from tokenizers import processors

        tok.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        model_max_length=8192,
        extra_special_tokens={"image_token": IMAGE},
    )


def _build_config(vocab_size: int, bos: int, eos: int, pad: int, image: int) -> Any:
    from transformers import DeepseekOcr2Config

    sam = {
        "hidden_size": 32,
        "output_channels": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 1024,
        "patch_size": 16,
        "window_size": 14,
        "global_attn_indexes": [1],
        "downsample_channels": [32, 64],
        "mlp_dim": 64,
    }
    encoder = {
        "hidden_size": 64,  # == sam downsample_channels[-1]
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
    }
    text = {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "n_routed_experts": 4,
        "n_shared_experts": 1,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 32,
        "mlp_layer_types": ["dense", "sparse"],
        "topk_method": "greedy",
        "max_position_embeddings": 8192,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
    }
    config = DeepseekOcr2Config(
        vision_config={"sam_config": sam, "encoder_config": encoder},
        text_config=text,
        image_token_id=image,
    )
    return config


def write_tiny_model(out_dir: str | Path, bos: bool = True, table_tokens: bool = True) -> Path:
    """Write a tiny random DeepSeek-OCR-2 checkpoint to ``out_dir`` and return its path.

    Seeded and deterministic: the same transformers/torch versions write the same weights.
    ``bos``/``table_tokens``: see :func:`_build_tokenizer` (False builds a tokenizer that the
    engines' load checks must catch).
    """
    import torch
    from transformers import (
        DeepseekOcr2ForConditionalGeneration,
        DeepseekOcr2ImageProcessorPil,
        DeepseekOcr2Processor,
        GenerationConfig,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = _build_tokenizer(bos=bos, table_tokens=table_tokens)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (BOS, EOS, PAD, IMAGE)}
    config = _build_config(len(tokenizer), ids[BOS], ids[EOS], ids[PAD], ids[IMAGE])

    torch.manual_seed(SEED)
    model = DeepseekOcr2ForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids[BOS], eos_token_id=ids[EOS], pad_token_id=ids[PAD], do_sample=False
    )
    model.save_pretrained(out, safe_serialization=True)

    processor = DeepseekOcr2Processor(image_processor=DeepseekOcr2ImageProcessorPil(), tokenizer=tokenizer)
    processor.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a tiny random DeepSeek-OCR-2 checkpoint.")
    parser.add_argument("out_dir", help="directory to write (created if missing)")
    args = parser.parse_args(argv)
    print(write_tiny_model(args.out_dir))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
