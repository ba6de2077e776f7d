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
- ``max_tokens`` is sent only when set below the context (:data:`.base.MODEL_CONTEXT`); by
  default it is left out, so the server caps the page at its context minus the prompt (vLLM:
  ``max_model_len - prompt``, ≈ 7,000 new tokens for a full page, the authors' setting);
- at start the engine asks the server what it is (``GET /v1/models``, and ``GET /version`` where
  vLLM serves it) and refuses, with one line, a vLLM known to answer DeepSeek-OCR-2 wrongly
  (:func:`server_refusal`); a server that does not answer these is used as is;
- a 200 with zero completion tokens for a page that has ink is a page error, not an empty page
  (an old vLLM answers DeepSeek-OCR-2 that way, with a normal finish);
- a 400 that names the whitelist (vLLM before PR #27560 takes ``vllm_xargs`` values as scalars
  only) makes the engine drop ``whitelist_token_ids`` and send the page again, once, and every
  later page without it (one warning);
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

from airflow_provider_deepocr.core.engines.base import MODEL_CONTEXT, OcrEngine
from airflow_provider_deepocr.core.engines.deepseek import resolve_prompt
from airflow_provider_deepocr.core.errors import ConfigError, EngineUnavailable
from airflow_provider_deepocr.core.records import OcrResult, PageImage

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
TD_TOKEN_IDS = (128821, 128822)  # <td>, </td> in the DeepSeek-OCR tokenizer (exempt from the n-gram ban)
IMAGE_FORMATS = ("png", "jpeg")

# vLLM before PR #33642 answered DeepSeek-OCR-2 behind /v1/chat/completions with empty text and a
# normal finish. The first release taken to carry the fix: 0.16.0 (by the PR's merge date in
# February 2026, after DeepSeek-OCR-2 support landed in PR #33165 on 2026-02-02; not confirmed
# against vLLM's release notes, which were not at hand).
VLLM_FIXED_OCR2_CHAT = (0, 16, 0)


def parse_version(text: str) -> tuple[int, ...] | None:
    """``"0.11.2.dev26+g3d4e7d34b"`` -> ``(0, 11, 2)``; None when it starts with no number."""
    import re

    found = re.match(r"v?(\d+(?:\.\d+)*)", str(text).strip())
    return tuple(int(x) for x in found.group(1).split(".")[:3]) if found else None


def server_refusal(version: str | None, served: Sequence[str], model: str) -> str | None:
    """Why a server must not be used (one line), or None.

    ``version``: what ``GET /version`` said (vLLM only; None elsewhere); ``served``: the ids and
    roots (paths) of ``GET /v1/models``; ``model``: the model name the engine sends. Refused: a
    vLLM older than :data:`VLLM_FIXED_OCR2_CHAT` serving DeepSeek-OCR-2 (by the served path or the
    name), which returns empty text through chat completions.
    """
    from airflow_provider_deepocr.core.engines.vllm import model_version

    parsed = parse_version(version) if version else None
    if parsed is None:
        return None
    is_v2 = any(model_version(name) == "v2" for name in [model, *served])
    if is_v2 and parsed < VLLM_FIXED_OCR2_CHAT:
        fixed = ".".join(map(str, VLLM_FIXED_OCR2_CHAT))
        return (
            f"vLLM {version} answers DeepSeek-OCR-2 chat completions with empty text (fixed by vLLM "
            f"PR #33642, taken as {fixed}); upgrade the server"
        )
    return None


def has_ink(image: Any) -> bool:
    """Whether a page shows anything: its grey levels span at least a quarter of the range."""
    lo, hi = image.convert("L").getextrema()
    return int(hi) - int(lo) >= 64


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
        max_new_tokens: int = MODEL_CONTEXT,
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
        check_server: bool = True,
    ) -> None:
        """``max_new_tokens``: the budget per page; at :data:`.base.MODEL_CONTEXT` or more (the
        default) no ``max_tokens`` is sent and the server caps the page at its context minus the
        prompt. ``check_server``: ask the server what it is at start (:meth:`check_server`)."""
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
        self.server_version: str | None = None
        self.served: list[str] = []
        self._whitelist_lock = threading.Lock()
        if check_server:
            self.check_server()

    def check_server(self) -> None:
        """``GET /v1/models`` and ``GET /version``; raise :class:`EngineUnavailable` (one line) for
        a server known to answer wrongly (:func:`server_refusal`). A server that cannot be reached
        yet is only logged: its pages are retried and fail on their own."""
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        root = self.server_url.removesuffix("/v1")
        where = urlsplit(self.server_url).netloc
        try:
            with httpx.Client(timeout=min(self.timeout, 10.0), headers=headers) as client:
                models = client.get(f"{self.server_url}/models")
                if models.status_code == 200:
                    for item in models.json().get("data") or []:
                        self.served += [str(item[k]) for k in ("id", "root") if item.get(k)]
                version = client.get(f"{root}/version")
                if version.status_code == 200:
                    self.server_version = str(version.json().get("version") or "") or None
        except (httpx.TransportError, httpx.TimeoutException, ValueError, AttributeError) as exc:
            log.warning("server %s: cannot ask what it is (%s); going on", where, type(exc).__name__)
            return
        log.info("server %s: version %s, serving %s", where, self.server_version or "unknown", self.served)
        reason = server_refusal(self.server_version, self.served, self.model)
        if reason:
            raise EngineUnavailable(f"server {where}: {reason}")

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
        tokens = {"max_tokens": self.max_new_tokens} if self.max_new_tokens < MODEL_CONTEXT else {}
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
            **tokens,
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
                try:
                    resp = await self._post(client, body)
                    status = resp.status_code
                    if status == 200:
                        try:
                            return self._result(resp.json(), time.perf_counter() - t0, page)
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

    async def _post(self, client: Any, body: dict[str, Any]) -> Any:
        """POST a page; a 400 that names the whitelist drops it (for good) and posts again once."""
        self.requests += 1
        resp = await client.post(f"{self.server_url}/chat/completions", json=body)
        xargs = body.get("vllm_xargs")
        if resp.status_code != 400 or not isinstance(xargs, dict) or "whitelist_token_ids" not in xargs:
            return resp
        if "whitelist" not in resp.text.lower():
            return resp
        self._drop_whitelist()
        body["vllm_xargs"] = {k: v for k, v in xargs.items() if k != "whitelist_token_ids"}
        self.requests += 1
        return await client.post(f"{self.server_url}/chat/completions", json=body)

    def _drop_whitelist(self) -> None:
        with self._whitelist_lock:
            xargs = self.extra_body.get("vllm_xargs")
            if not isinstance(xargs, dict) or "whitelist_token_ids" not in xargs:
                return  # another page got here first
            self.extra_body["vllm_xargs"] = {k: v for k, v in xargs.items() if k != "whitelist_token_ids"}
        log.warning(
            "server %s rejects whitelist_token_ids (HTTP 400; a vLLM before PR #27560): "
            "the n-gram ban runs without the <td>/</td> whitelist",
            urlsplit(self.server_url).netloc,
        )

    def _result(self, data: dict[str, Any], seconds: float, page: PageImage | None = None) -> OcrResult:
        choice = data["choices"][0]
        content = choice["message"]["content"]
        if content is not None and not isinstance(content, str):
            raise TypeError("content is not a string")
        usage = data.get("usage") or {}
        self.completed += 1
        if usage.get("completion_tokens") == 0 and page is not None and has_ink(page.image):
            log.warning(
                "page %s/%s: the server generated no tokens for a page with ink (an empty answer is "
                "what an old vLLM gives DeepSeek-OCR-2): counted as an error",
                page.doc_id[:12],
                page.page_no,
            )
            return self.error_result()
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
