"""OCR through an OpenAI-compatible server (``vllm serve``, SGLang, or ``deepocr serve``).

The Airflow worker stays CPU-only and waits on the network. For each page:

- the image is encoded as a data URL **off the event loop** (a worker thread). PNG by default:
  lossless, so the server sees exactly the rendered pixels and the output equals an in-process
  run; ``image_format="jpeg"`` (quality 95, 4:4:4) is ~5-10x smaller on scans and photos when
  the link, not the GPU, is the bottleneck, at the price of slightly different pixels;
- ``POST {server_url}/chat/completions`` with one ``image_url`` part and one ``text`` part (the
  prompt without its ``<image>`` placeholder: the server's chat template puts the image first),
  ``max_tokens``, ``temperature`` and ``skip_special_tokens: false`` (the grounding tags are
  special tokens). The authors' n-gram repetition guard goes to vLLM as ``vllm_xargs``;
  ``extra_body`` replaces those extra fields (``{}`` omits them, for servers that reject unknown
  fields);
- at most ``max_concurrency`` requests are in flight (an ``asyncio.Semaphore``; the server's own
  scheduler batches them on the GPU);
- 429, 5xx, connection errors and timeouts are retried with exponential backoff and full jitter
  (``backoff * 2**attempt``, capped at ``max_backoff``, honouring ``Retry-After``), so a server
  restart in the middle of a batch costs time, not pages. A page that exhausts its retries, or
  that the server rejects (4xx), comes back with ``finish_reason="error"`` and empty text; the
  rest of the batch is unaffected. Results are always one per page, in page order.

Logs carry page ids, status codes, attempt numbers and counts; never text or image bytes.
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
from urllib.parse import urlsplit

from airflow_provider_deepocr.core.engines.base import OcrEngine
from airflow_provider_deepocr.core.engines.deepseek import resolve_prompt
from airflow_provider_deepocr.core.errors import ConfigError, EngineUnavailable
from airflow_provider_deepocr.core.records import OcrResult, PageImage

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
TD_TOKEN_IDS = (128821, 128822)  # <td>, </td> in the DeepSeek-OCR tokenizer (exempt from the n-gram ban)
IMAGE_FORMATS = ("png", "jpeg")


def encode_image(image: Any, image_format: str = "png") -> str:
    """A PIL image as a ``data:`` URL: PNG (lossless, fast zlib level 1) or JPEG quality 95."""
    buf = io.BytesIO()
    rgb = image.convert("RGB")
    if image_format == "jpeg":
        rgb.save(buf, format="JPEG", quality=95, subsampling=0)
        mime = "image/jpeg"
    else:
        rgb.save(buf, format="PNG", compress_level=1)
        mime = "image/png"
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def encode_png(image: Any) -> str:
    """A PIL image as a PNG ``data:`` URL."""
    return encode_image(image, "png")


def normalise_server_url(url: str) -> str:
    """``http://host:8000`` -> ``http://host:8000/v1``; a URL with a path is kept as given."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("server_url must be an http(s) URL, e.g. http://gpu-box:8000/v1")
    return url if parts.path else url + "/v1"


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:  # an HTTP date: rare from inference servers; use our own backoff
        return None


class OpenAIServerEngine(OcrEngine):
    """Pages to ``{server_url}/chat/completions``; one result per page, in page order."""

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
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        ngram_size: int = 30,
        ngram_window: int = 90,
        whitelist_token_ids: Sequence[int] = TD_TOKEN_IDS,
        extra_body: dict[str, Any] | None = None,
        batch_size: int = 64,
        image_format: str = "png",
    ) -> None:
        try:
            import httpx  # noqa: F401
        except ImportError as exc:  # pragma: no cover - httpx comes with Airflow
            raise EngineUnavailable("the server engine needs httpx: pip install httpx") from exc
        if image_format.lower() in ("jpg", "jpeg"):
            image_format = "jpeg"
        if image_format not in IMAGE_FORMATS:
            raise ConfigError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
        self.server_url = normalise_server_url(server_url)
        self.model = model  # the served model name: what lands in the model column
        self.revision = None
        self.api_key = api_key
        self.prompt = resolve_prompt(prompt)
        self.max_new_tokens = int(max_new_tokens)
        self.max_concurrency = max(1, int(max_concurrency))
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.batch_size = max(1, int(batch_size))
        self.image_format = image_format
        if extra_body is None:
            extra_body = {
                "vllm_xargs": {
                    "ngram_size": int(ngram_size),
                    "window_size": int(ngram_window),
                    "whitelist_token_ids": [int(t) for t in whitelist_token_ids],
                }
            }
        self.extra_body = dict(extra_body)
        self.completed = 0  # 200 responses received (progress logs, tests)
        self.requests = 0  # HTTP attempts made, retries included

    def describe(self) -> dict[str, object]:
        return {
            "engine": self.name,
            "model": self.model,
            "prompt": self.prompt,
            "max_new_tokens": self.max_new_tokens,
            "image_format": self.image_format,
            "extra_body": self.extra_body,
        }

    def device_name(self) -> str:
        from urllib.parse import urlsplit

        return f"server {urlsplit(self.server_url).netloc}"

    def __repr__(self) -> str:  # no API key in reprs
        return f"OpenAIServerEngine({self.server_url!r}, model={self.model!r})"

    # -- sync entry point ---------------------------------------------------------------------

    def ocr(self, pages: Sequence[PageImage], temperature: float = 0.0) -> list[OcrResult]:
        pages = list(pages)
        if not pages:
            return []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._run(pages, temperature))
        # Called from inside an event loop (a notebook, a triggerer): run in a worker thread
        # with its own loop; blocking this thread is what a sync call means.
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["out"] = asyncio.run(self._run(pages, temperature))
            except BaseException as exc:  # re-raised in the caller's thread
                box["exc"] = exc

        t = threading.Thread(target=target, name="deepocr-server-engine")
        t.start()
        t.join()
        if "exc" in box:
            raise box["exc"]
        return box["out"]

    # -- async internals ----------------------------------------------------------------------

    async def _run(self, pages: list[PageImage], temperature: float) -> list[OcrResult]:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        limits = httpx.Limits(
            max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency
        )
        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))
        sem = asyncio.Semaphore(self.max_concurrency)
        t0 = time.perf_counter()
        async with httpx.AsyncClient(timeout=timeout, headers=headers, limits=limits) as client:
            outcomes = await asyncio.gather(
                *(self._one(client, sem, p, temperature) for p in pages), return_exceptions=True
            )
        results: list[OcrResult] = []
        for page, out in zip(pages, outcomes, strict=True):
            if isinstance(out, OcrResult):
                results.append(out)
            else:  # a bug path: never lose the batch over one page
                log.warning("page %s/%s: unexpected %s", page.doc_id[:12], page.page_no, type(out).__name__)
                results.append(self.error_result())
        errors = sum(r.finish_reason == "error" for r in results)
        log.info(
            "server engine: %d pages in %.1fs (%d errors, %d requests)",
            len(pages),
            time.perf_counter() - t0,
            errors,
            self.requests,
        )
        return results

    def _body(self, url: str, temperature: float) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": url}},
                        {"type": "text", "text": self.prompt.replace("<image>", "").strip()},
                    ],
                }
            ],
            "max_tokens": self.max_new_tokens,
            "temperature": float(temperature),
            "skip_special_tokens": False,
            **self.extra_body,
        }

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        # full jitter on an exponential cap: restarts are not hit by every client at once
        delay = random.uniform(0.5, 1.0) * min(self.max_backoff, self.backoff * 2**attempt)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff))
        return delay

    async def _one(
        self, client: Any, sem: asyncio.Semaphore, page: PageImage, temperature: float
    ) -> OcrResult:
        import httpx

        pid = (page.doc_id[:12], page.page_no)
        async with sem:
            t0 = time.perf_counter()
            try:
                url = await asyncio.to_thread(encode_image, page.image, self.image_format)
            except Exception as exc:
                log.warning("page %s/%s: cannot encode image (%s)", *pid, type(exc).__name__)
                return self.error_result()
            body = self._body(url, temperature)
            del url
            for attempt in range(self.retries + 1):
                status: int | str
                retry_after = None
                self.requests += 1
                try:
                    resp = await client.post(f"{self.server_url}/chat/completions", json=body)
                    status = resp.status_code
                    if status == 200:
                        try:
                            return self._result(resp.json(), time.perf_counter() - t0)
                        except (ValueError, KeyError, IndexError, TypeError) as exc:
                            log.warning("page %s/%s: malformed response (%s)", *pid, type(exc).__name__)
                            return self.error_result()
                    if status not in RETRY_STATUS:
                        log.warning("page %s/%s: server answered %d, not retried", *pid, status)
                        return self.error_result()
                    retry_after = _retry_after(resp.headers)
                except (httpx.TransportError, httpx.TimeoutException) as exc:
                    status = type(exc).__name__
                if attempt == self.retries:
                    break
                delay = self._delay(attempt, retry_after)
                log.info(
                    "page %s/%s: %s, retry %d/%d in %.2fs", *pid, status, attempt + 1, self.retries, delay
                )
                await asyncio.sleep(delay)
            log.warning("page %s/%s: gave up after %d tries (last: %s)", *pid, self.retries + 1, status)
            return self.error_result()

    def _result(self, data: dict[str, Any], seconds: float) -> OcrResult:
        choice = data["choices"][0]
        content = choice["message"]["content"]
        if content is not None and not isinstance(content, str):
            raise TypeError("content is not a string")
        usage = data.get("usage") or {}
        self.completed += 1
        return OcrResult(
            raw_text=content or "",
            finish_reason="length" if choice.get("finish_reason") == "length" else "eos",
            engine=self.name,
            model=self.model,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            seconds=seconds,
            prompt=self.prompt,
        )
