"""``deepocr serve``: an OpenAI-compatible ``/v1/chat/completions`` over the transformers engine.

For users without vLLM: one GPU box serves DeepSeek-OCR-2 (``DeepSeekOcr2Engine``) to many
CPU-only Airflow workers, which use the ``openai-server`` engine against it.

Micro-batching: every request becomes a job on an ``asyncio.Queue``; one batcher task takes the
first waiting job, waits at most ``batch_wait_ms`` for up to ``max_batch_size`` jobs, groups them
by (prompt, max_tokens, temperature) and hands each group to a single worker thread that owns
the model (one ``engine.ocr`` call per group: one processor call, one ``generate()``). With
greedy decoding the result of a page does not depend on its batch (left padding, masked), so a
served page equals an in-process one. Images are decoded from their data URLs in worker threads,
off the event loop.

Endpoints: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``.

Request shape (the subset the OCR engines send): one ``image_url`` part with a ``data:`` URL and
text parts in the user message(s); ``max_tokens`` (or ``max_completion_tokens``, capped by the
server's ``--max-new-tokens``); ``temperature``. The prompt is the text with ``<image>`` put
first when the client left it out (OpenAI clients send the image as a separate part). Unknown
fields (``vllm_xargs``, ``skip_special_tokens``) are accepted and ignored: the engine applies its
own n-gram guard and keeps special tokens.

Status codes: 400 for a request without a readable image, 422 for a page the engine could not
read (not worth retrying), 500 when a whole model batch failed (worth retrying).
Nothing logs request content: only counts and timings.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoint annotations at run
# time, and ``Request`` is imported inside create_app (fastapi is imported lazily).
import asyncio
import base64
import binascii
import contextlib
import io
import logging
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class _Job:
    image: Any
    prompt: str
    max_tokens: int
    temperature: float
    future: asyncio.Future[Any] = field(repr=False)


def _decode_image(url: str) -> Any:
    from PIL import Image

    if not url.startswith("data:") or "," not in url:
        raise ValueError("only data: URLs are accepted")
    try:
        raw = base64.b64decode(url.split(",", 1)[1], validate=False)
    except binascii.Error as exc:
        raise ValueError("bad base64 image") from exc
    img = Image.open(io.BytesIO(raw))
    img.load()
    return img.convert("RGB")


def parse_request(body: dict[str, Any], default_max: int) -> tuple[Any, str, int, float]:
    """(PIL image, prompt with ``<image>``, max_tokens, temperature) of a chat completion request."""
    if not isinstance(body, dict):
        raise ValueError("the body is not a JSON object")
    image, texts = None, []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content or []:
            if part.get("type") == "image_url":
                if image is not None:
                    raise ValueError("one image per request")
                image = _decode_image((part.get("image_url") or {}).get("url", ""))
            elif part.get("type") == "text":
                texts.append(part.get("text", ""))
    if image is None:
        raise ValueError("the request holds no image")
    text = "\n".join(t.strip() for t in texts if t.strip())
    prompt = text if "<image>" in text else "<image>\n" + text
    max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or default_max)
    temperature = float(body.get("temperature") or 0.0)
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
    return image, prompt, max(1, min(max_tokens, default_max)), temperature


def create_app(
    engine: Any, max_batch_size: int = 8, batch_wait_ms: float = 10.0, served_model_name: str | None = None
) -> Any:
    """A FastAPI app serving ``engine`` (a ``DeepSeekOcr2Engine``) with micro-batching."""
    from fastapi import FastAPI, HTTPException, Request

    from airflow_provider_deepocr.core.records import PageImage

    model_name = served_model_name or engine.model
    queue: asyncio.Queue[_Job] = asyncio.Queue()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepocr-model")
    default_max = int(engine.max_new_tokens)
    base_prompt = engine.prompt
    stats = {"batches": 0, "pages": 0}

    def run_group(jobs: list[_Job]) -> list[Any]:
        # the only thread that touches the model: setting its prompt and limit per group is safe
        engine.prompt, engine.max_new_tokens = jobs[0].prompt, jobs[0].max_tokens
        try:
            pages = [
                PageImage("served", i + 1, j.image, 144, j.image.width, j.image.height)
                for i, j in enumerate(jobs)
            ]
            return list(engine.ocr(pages, temperature=jobs[0].temperature))
        finally:
            engine.prompt, engine.max_new_tokens = base_prompt, default_max

    async def run_batch(loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        groups: dict[tuple[str, int, float], list[_Job]] = {}
        for job in jobs:
            groups.setdefault((job.prompt, job.max_tokens, job.temperature), []).append(job)
        for group in groups.values():
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(pool, run_group, group)
                if len(results) != len(group):
                    raise RuntimeError("the engine returned a wrong number of results")
            except Exception as exc:  # the engine isolates pages; this is the whole-batch path
                log.warning("a batch of %d failed: %s", len(group), type(exc).__name__)
                for job in group:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            stats["batches"] += 1
            stats["pages"] += len(group)
            log.debug("batch of %d in %.2fs", len(group), time.perf_counter() - t0)
            for job, result in zip(group, results, strict=True):
                if not job.future.done():  # a client that went away cancelled its future
                    job.future.set_result(result)

    async def batcher() -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await queue.get()]
            deadline = loop.time() + batch_wait_ms / 1000
            while len(jobs) < max_batch_size:
                if not queue.empty():  # whatever queued while the model was busy joins at once
                    jobs.append(queue.get_nowait())
                    continue
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(queue.get(), timeout))
                except TimeoutError:
                    break
            jobs = [j for j in jobs if not j.future.done()]
            if jobs:
                await run_batch(loop, jobs)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(batcher())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="deepocr serve", lifespan=lifespan)
    app.state.stats = stats

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_name, "queued": queue.qsize(), **stats}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "deepocr"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
            image, prompt, max_tokens, temperature = await asyncio.to_thread(parse_request, body, default_max)
        except Exception as exc:
            raise HTTPException(status_code=400, detail=f"bad request: {type(exc).__name__}") from None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await queue.put(_Job(image, prompt, max_tokens, temperature, future))
        try:
            result = await future
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            raise HTTPException(status_code=500, detail=f"model batch failed: {type(exc).__name__}") from None
        if result.finish_reason == "error":
            raise HTTPException(status_code=422, detail="the engine could not read this page")
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.raw_text},
                    "finish_reason": "length" if result.finish_reason == "length" else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.output_tokens,
                "total_tokens": result.prompt_tokens + result.output_tokens,
            },
        }

    return app


def serve(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "auto",
    dtype: str = "auto",
    max_new_tokens: int = 4096,
    max_batch_size: int = 8,
    batch_wait_ms: float = 10.0,
    served_model_name: str | None = None,
) -> None:
    """Load the model and serve it until interrupted."""
    import uvicorn

    from airflow_provider_deepocr.core.engines import get_engine

    engine = get_engine(
        "deepseek",
        model=model,
        device=device,
        dtype=dtype,
        max_new_tokens=max_new_tokens,
        batch_size=max_batch_size,
    )
    app = create_app(
        engine,
        max_batch_size=max_batch_size,
        batch_wait_ms=batch_wait_ms,
        served_model_name=served_model_name,
    )
    log.info("serving %s on http://%s:%d/v1", served_model_name or model, host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")
