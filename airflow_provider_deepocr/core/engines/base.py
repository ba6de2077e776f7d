"""The engine interface: page images in, raw model text and accounting out."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_deepocr.core.errors import ConfigError
from airflow_provider_deepocr.core.records import OcrResult, PageImage

PROMPTS: dict[str, str] = {
    "markdown": "<image>\n<|grounding|>Convert the document to markdown.",
    "free": "<image>\nFree OCR.",
    "figure": "<image>\nParse the figure.",
}
"""Prompts by name. ``markdown`` is the grounded document prompt (the default)."""

MODEL_CONTEXT = 8192
"""The context of DeepSeek-OCR and -OCR-2 as the authors run them (vLLM ``max_model_len=8192``,
``max_tokens=8192``): prompt (≈ 1,100 tokens for a full page at 6 tiles) plus output."""

# Token budgets by prompt name. A document page may use the whole context: the engines cap the
# budget at ``MODEL_CONTEXT`` minus the page's prompt (≈ 7,000 new tokens for a full page, the
# authors' setting), so the default is "up to the context". A figure description is shorter.
DEFAULT_MAX_NEW_TOKENS: dict[str, int] = {"markdown": MODEL_CONTEXT, "free": MODEL_CONTEXT, "figure": 2048}


def resolve_max_new_tokens(value: int | Mapping[str, int] | None, prompt_name: str | None) -> int:
    """One token budget: an int as is; a mapping's entry for ``prompt_name`` (else its
    ``"default"``, else :data:`MODEL_CONTEXT`); None: :data:`DEFAULT_MAX_NEW_TOKENS`. Raises
    :class:`ConfigError` below 1. Engines cap it per page with :func:`cap_new_tokens`."""
    if value is None:
        value = DEFAULT_MAX_NEW_TOKENS
    if isinstance(value, Mapping):
        table = {str(k): int(v) for k, v in value.items()}
        n = table.get(prompt_name or "", table.get("default", MODEL_CONTEXT))
    else:
        n = int(value)
    if n < 1:
        raise ConfigError("max_new_tokens must be >= 1")
    return n


def cap_new_tokens(max_new_tokens: int, prompt_tokens: int, context: int = MODEL_CONTEXT) -> int:
    """The new tokens a page may generate: ``max_new_tokens``, at most what the context leaves
    after the prompt (never below 1)."""
    return max(1, min(int(max_new_tokens), int(context) - int(prompt_tokens)))


class OcrEngine(abc.ABC):
    """Turns page images into :class:`OcrResult`.

    ``name`` is what lands in the ``engine`` column, ``model`` in the ``model`` column.
    Engines may hold heavy state (weights on a GPU); create them once per worker process.
    """

    name: str = "engine"
    model: str = ""
    revision: str | None = None
    batch_size: int = 1
    #: Whether its boxes come from the pixels, so a page's coverage (core.coverage) says something.
    reads_pixels: bool = True

    def needs_pixels(self) -> bool:
        """Whether it looks at the page images at all. False (the sleep engine): the OCR stage
        does not render its PDF pages nor prepare them (core.pageprep), they come with the size,
        DPI and flags their render would give."""
        return self.reads_pixels

    @abc.abstractmethod
    def ocr(self, pages: Sequence[PageImage], temperature: float = 0.0) -> list[OcrResult]:
        """OCR a batch of pages; one result per page, in order.

        ``temperature`` 0 is greedy decoding (the default and the authors' setting); a retry
        ladder raises it for pages that looped. Engines without sampling ignore it.
        A page that fails must come back as an ``OcrResult`` with ``finish_reason="error"``
        and empty text, never as an exception that loses the rest of the batch.
        """

    def prepare(self, pages: Sequence[PageImage]) -> Any:
        """CPU work for a batch, split from :meth:`ocr_prepared` so it can run ahead.

        The pipeline calls this in its render thread while the previous batch is being OCR'd,
        then hands the result to :meth:`ocr_prepared`. An engine with preprocessing worth
        overlapping (DeepSeek-OCR-2's image processor) overrides both; the default only keeps
        the pages. If ``prepare`` raises, the pipeline calls :meth:`ocr` on the pages instead.
        """
        return list(pages)

    def ocr_prepared(self, prepared: Any, temperature: float = 0.0) -> list[OcrResult]:
        """OCR a batch made by :meth:`prepare`; same contract as :meth:`ocr`. The default runs
        :meth:`ocr` on the pages the default :meth:`prepare` kept."""
        return self.ocr(prepared, temperature=temperature)

    def error_result(self, **extra: object) -> OcrResult:
        """The result for a page this engine could not read: empty text, ``finish_reason="error"``."""
        fields: dict[str, object] = {"revision": self.revision, "prompt": getattr(self, "prompt", None)}
        if isinstance(getattr(self, "mode", None), str):
            fields["mode"] = self.mode  # type: ignore[attr-defined]
        fields.update(extra)
        return OcrResult("", "error", self.name, self.model, **fields)  # type: ignore[arg-type]

    def describe(self) -> dict[str, object]:
        """Everything about the engine that changes its output (goes into the config fingerprint)."""
        return {"engine": self.name, "model": self.model, "revision": self.revision}

    def device_name(self) -> str:
        """What runs the model, for the runs table: a GPU's name, ``cpu``, or a server."""
        return "cpu"

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (GPU memory, sessions)."""
