"""The retry ladder: pages that loop or stop at the token limit are tried again.

A page whose output ends in a repetition loop (the parser's own detector decides, the same one
that flags ``repetition_loop`` for validation) or without end-of-sequence is retried at the next
temperature of the ladder (only the failing pages, batched together), then optionally sent to a
fallback engine. The result records ``attempts`` (all tries), the final ``finish_reason`` and the
``engine``/``model`` of the attempt that won. If every attempt fails, the best one is kept (an
attempt that ended with EOS over one that did not, else the first), so the page is still loaded
and flagged, or quarantined by the validation gate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from airflow_provider_deepocr.core.engines.base import MODEL_CONTEXT, OcrEngine
from airflow_provider_deepocr.core.records import OcrResult, PageImage

log = logging.getLogger(__name__)

DEFAULT_LADDER = (0.0, 0.2, 0.4)


def looks_looped(text: str) -> bool:
    """The parser's own repetition detector: the ``repetition_loop`` flag ``parse_page`` sets.

    It sees a loop at the end of a block's content (the n-gram repetition score of the tail),
    a table that repeats its last row, and the same block repeated; the flag is what validation
    quarantines on, so a page the ladder accepts is one validation accepts.
    """
    from airflow_provider_deepocr.core.parse import FLAG_REPETITION_LOOP, parse_page

    return FLAG_REPETITION_LOOP in parse_page(text).flags


def filled_context(result: OcrResult, context: int = MODEL_CONTEXT) -> bool:
    """The page used the model's whole context (prompt + output): a longer generation is impossible."""
    return (result.prompt_tokens or 0) + (result.output_tokens or 0) >= context


def needs_retry(result: OcrResult, loop_check: Callable[[str], bool] | None = None) -> bool:
    """True for an output that degenerated into a loop, or stopped at a token limit below the
    model's context. A page that filled the whole context without looping is a long page: it is
    flagged (``token_limit``), not generated again at the same limit."""
    if result.finish_reason == "length":
        if filled_context(result):
            return (loop_check or looks_looped)(result.raw_text)
        return True
    if result.finish_reason != "eos" or result.blocks is not None:
        return False  # errors are not retried here; structured engines do not loop
    return (loop_check or looks_looped)(result.raw_text)


def _better(a: OcrResult, b: OcrResult) -> OcrResult:
    """The attempt to keep when neither is clean: EOS beats the token limit, earlier beats later."""
    if a.finish_reason != "eos" and b.finish_reason == "eos":
        return b
    return a


class RetryingEngine(OcrEngine):
    """Wraps an engine with a temperature ladder and an optional fallback engine."""

    def __init__(
        self,
        inner: OcrEngine,
        temperatures: Sequence[float] = DEFAULT_LADDER,
        fallback: OcrEngine | None = None,
        loop_check: Callable[[str], bool] | None = None,
    ) -> None:
        """``loop_check(text)``: True when a page's text ends in a repetition loop (default: the
        parser's detector, :func:`looks_looped`). A page is retried when it loops or stops at
        the token limit (``finish_reason="length"``)."""
        if not temperatures:
            raise ValueError("the ladder needs at least one temperature")
        self.inner = inner
        self.temperatures = tuple(float(t) for t in temperatures)
        self.fallback = fallback
        self.loop_check = loop_check or looks_looped
        self.name, self.model, self.revision = inner.name, inner.model, inner.revision
        self.reads_pixels = inner.reads_pixels
        self.batch_size = inner.batch_size

    def describe(self) -> dict[str, object]:
        d = dict(self.inner.describe())
        d["retry_temperatures"] = list(self.temperatures)
        d["fallback"] = self.fallback.describe() if self.fallback is not None else None
        return d

    def device_name(self) -> str:
        return self.inner.device_name()

    def needs_pixels(self) -> bool:
        return self.inner.needs_pixels() or (self.fallback is not None and self.fallback.needs_pixels())

    def prepare(self, pages: Sequence[PageImage]) -> Any:
        return (list(pages), self.inner.prepare(pages))

    def ocr_prepared(self, prepared: Any, temperature: float = 0.0) -> list[OcrResult]:
        pages, inner_prepared = prepared
        return self._ladder(pages, inner_prepared)

    def ocr(self, pages: Sequence[PageImage], temperature: float = 0.0) -> list[OcrResult]:
        return self._ladder(list(pages), None)

    def _ladder(self, pages: list[PageImage], inner_prepared: object) -> list[OcrResult]:
        first_t = self.temperatures[0]
        if inner_prepared is not None:
            best = self.inner.ocr_prepared(inner_prepared, temperature=first_t)
        else:
            best = self.inner.ocr(pages, temperature=first_t)
        attempts = [1] * len(pages)
        todo = [i for i, r in enumerate(best) if self._bad(r)]
        for t in self.temperatures[1:]:
            if not todo:
                break
            log.info("retrying %d of %d pages at temperature %.2f", len(todo), len(pages), t)
            again = self.inner.ocr([pages[i] for i in todo], temperature=t)
            still = []
            for i, r in zip(todo, again, strict=True):
                attempts[i] += 1
                if r.finish_reason == "error":
                    still.append(i)
                elif not self._bad(r):
                    best[i] = r
                else:
                    best[i] = _better(best[i], r)
                    still.append(i)
            todo = still
        if todo and self.fallback is not None:
            log.info("sending %d pages to fallback engine %s", len(todo), self.fallback.name)
            rescued = self.fallback.ocr([pages[i] for i in todo])
            still = []
            for i, r in zip(todo, rescued, strict=True):
                attempts[i] += 1
                if r.finish_reason != "error" and not self._bad(r):
                    best[i] = r
                    continue
                if r.finish_reason != "error":
                    best[i] = _better(best[i], r)
                still.append(i)
            todo = still
        if todo:
            log.warning(
                "%d pages still loop or stop at the token limit after %d tries", len(todo), max(attempts)
            )
        for r, n in zip(best, attempts, strict=True):
            r.attempts = n
        return best

    def _bad(self, result: OcrResult) -> bool:
        return needs_retry(result, self.loop_check)

    def close(self) -> None:
        self.inner.close()
        if self.fallback is not None:
            self.fallback.close()


STRUCTURED_ENGINES = frozenset({"rapidocr", "pdf-text"})


def with_retries(
    engine: OcrEngine,
    temperatures: Sequence[float] | None = DEFAULT_LADDER,
    fallback: OcrEngine | None = None,
) -> OcrEngine:
    """Wrap a generative engine in the ladder; engines that cannot loop are returned as they are.

    ``temperatures`` None or a single rung with no fallback means no retries.
    """
    if engine.name in STRUCTURED_ENGINES or not temperatures:
        return engine
    if len(temperatures) == 1 and fallback is None:
        return engine
    return RetryingEngine(engine, temperatures, fallback)


def parse_ladder(value: str | Sequence[float] | None) -> tuple[float, ...]:
    """``"0,0.2,0.4"`` (or a sequence) -> ``(0.0, 0.2, 0.4)``; empty or ``"none"`` -> ``()``."""
    if value is None:
        return DEFAULT_LADDER
    if isinstance(value, str):
        if value.strip().lower() in ("", "none", "off"):
            return ()
        value = [float(x) for x in value.split(",") if x.strip()]
    ladder = tuple(float(x) for x in value)
    if any(t < 0 for t in ladder):
        raise ValueError("temperatures must be >= 0")
    return ladder
