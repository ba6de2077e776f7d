"""OCR through an OpenAI-compatible server (``vllm serve``, SGLang, or ``deepocr serve``).

The Airflow worker stays CPU-only and waits on the network: pages are PNG-encoded (lossless, so
the server sees exactly the rendered pixels; encoding runs in worker threads, off the event loop)
and sent as data URLs to ``/chat/completions`` with bounded concurrency (default 64 in flight).
429, 5xx, connection errors and timeouts are retried with exponential backoff and jitter, so a
server restart in the middle of a batch costs time, not pages. A page that exhausts its retries
comes back with ``finish_reason="error"``; the rest of the batch is unaffected.

The authors' n-gram repetition guard is passed to vLLM as ``vllm_xargs`` (set ``extra_body`` to
override or ``{}`` to omit it for servers that reject unknown fields).
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

from airflow_provider_deepocr.core.engines.base import OcrEngine
from airflow_provider_deepocr.core.engines.deepseek import resolve_prompt
from airflow_provider_deepocr.core.errors import EngineUnavailable
from airflow_provider_deepocr.core.records import OcrResult, PageImage

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def encode_png(image: Any) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class OpenAIServerEngine(OcrEngine):
    """Pages to ``{server_url}/chat/completions``; results in page order."""

    name = "openai-server"

    def __init__(
        self,
        server_url: str,
        model: str = "deepseek-ocr",
        api_key: str | None = None,
        prompt: str = "markdown",
        max_new_tokens: int = 4096,
        max_concurrency: int = 64,
        timeout: float = 300.0,
        retries: int = 8,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        ngram_size: int = 30,
        ngram_window: int = 90,
        whitelist_token_ids: Sequence[int] = (128821, 128822),
        extra_body: dict[str, Any] | None = None,
        batch_size: int = 64,
        **_: Any,
    ) -> None:
        try:
            import httpx  # noqa: F401
        except ImportError as exc:  # pragma: no cover - httpx comes with Airflow
            raise EngineUnavailable("the server engine needs httpx: pip install httpx") from exc
        self.server_url = server_url.rstrip("/")
        self.model = model
        self.revision = None
        self.api_key = api_key
        self.prompt = resolve_prompt(prompt)
        self.max_new_tokens = int(max_new_tokens)
        self.max_concurrency = max(1, int(max_concurrency))
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.batch_size = int(batch_size)
        if extra_body is None:
            extra_body = {
                "skip_special_tokens": False,
                "vllm_xargs": {
                    "ngram_size": ngram_size,
                    "window_size": ngram_window,
                    "whitelist_token_ids": list(whitelist_token_ids),
                },
            }
        self.extra_body = extra_body
        self.completed = 0  # responses received, for progress logs (and tests)

    def describe(self) -> dict[str, object]:
        return {
            "engine": self.name,
            "model": self.model,
            "prompt": self.prompt,
            "max_new_tokens": self.max_new_tokens,
            "extra_body": self.extra_body,
        }

    # -- sync entry point ---------------------------------------------------------------------

    def ocr(self, pages: Sequence[PageImage], temperature: float = 0.0) -> list[OcrResult]:
        coro_factory = lambda: self._run(list(pages), temperature)  # noqa: E731
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro_factory())
        # called from inside an event loop (a notebook, a triggerer): run in a worker thread
        out: list[list[OcrResult]] = []
        t = threading.Thread(target=lambda: out.append(asyncio.run(coro_factory())))
        t.start()
        t.join()
        return out[0]

    # -- async internals ----------------------------------------------------------------------

    async def _run(self, pages: list[PageImage], temperature: float) -> list[OcrResult]:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(max_connections=self.max_concurrency)
        sem = asyncio.Semaphore(self.max_concurrency)
        async with httpx.AsyncClient(timeout=self.timeout, headers=headers, limits=limits) as client:
            return list(await asyncio.gather(*(self._one(client, sem, p, temperature) for p in pages)))

    async def _one(
        self, client: Any, sem: asyncio.Semaphore, page: PageImage, temperature: float
    ) -> OcrResult:
        import httpx

        async with sem:
            t0 = time.perf_counter()
            try:
                url = await asyncio.to_thread(encode_png, page.image)
            except Exception as exc:
                log.warning(
                    "page %s/%s: cannot encode image (%s)", page.doc_id[:12], page.page_no, type(exc).__name__
                )
                return self._error()
            text = self.prompt.replace("<image>", "").strip()
            body = {
                "model": self.model,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": url}},
                            {"type": "text", "text": text},
                        ],
                    }
                ],
                "max_tokens": self.max_new_tokens,
                "temperature": float(temperature),
                **self.extra_body,
            }
            for attempt in range(self.retries + 1):
                status: int | str
                try:
                    resp = await client.post(f"{self.server_url}/chat/completions", json=body)
                    status = resp.status_code
                    if status == 200:
                        return self._result(resp.json(), time.perf_counter() - t0)
                    if status not in RETRY_STATUS:
                        log.warning("page %s/%s: server answered %d", page.doc_id[:12], page.page_no, status)
                        return self._error()
                except (httpx.TransportError, httpx.TimeoutException) as exc:
                    status = type(exc).__name__
                if attempt == self.retries:
                    break
                delay = min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + random.random())
                log.info(
                    "page %s/%s: %s, retry %d/%d in %.1fs",
                    page.doc_id[:12],
                    page.page_no,
                    status,
                    attempt + 1,
                    self.retries,
                    delay,
                )
                await asyncio.sleep(delay)
            log.warning(
                "page %s/%s: gave up after %d tries", page.doc_id[:12], page.page_no, self.retries + 1
            )
            return self._error()

    def _result(self, data: dict[str, Any], seconds: float) -> OcrResult:
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        self.completed += 1
        return OcrResult(
            raw_text=choice["message"]["content"] or "",
            finish_reason="length" if choice.get("finish_reason") == "length" else "eos",
            engine=self.name,
            model=self.model,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            seconds=seconds,
            prompt=self.prompt,
        )

    def _error(self) -> OcrResult:
        return self.error_result()
