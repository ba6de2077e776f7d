"""``deepocr serve``: an OpenAI-compatible ``/v1/chat/completions`` over the transformers engine.

For users without vLLM: one GPU box serves DeepSeek-OCR-2 to many CPU-only Airflow workers (the
``openai-server`` engine). Concurrent requests are micro-batched: a single worker thread owns
the model and takes up to ``max_batch_size`` waiting requests at a time (waiting at most
``batch_wait_ms`` for a batch to fill), grouped by prompt, token limit and temperature.

Request shape (the subset the OCR engines send): ``messages[0].content`` holds one
``image_url`` part with a ``data:`` URL and one ``text`` part; ``max_tokens``; ``temperature``.
Unknown fields (``vllm_xargs``, ``skip_special_tokens``) are accepted and ignored: the engine
applies its own n-gram guard and keeps special tokens.
"""

import asyncio
import base64
import binascii
import io
import logging
import time
import uuid
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


def _parse_request(body: dict[str, Any], default_max: int) -> tuple[Any, str, int, float]:
    messages = body.get("messages") or []
    image, text = None, ""
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            text += content
            continue
        for part in content or []:
            if part.get("type") == "image_url":
                image = _decode_image((part.get("image_url") or {}).get("url", ""))
            elif part.get("type") == "text":
                text += part.get("text", "")
    if image is None:
        raise ValueError("the request holds no image")
    prompt = text if "<image>" in text else "<image>\n" + text.strip()
    max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or default_max)
    return image, prompt, max(1, min(max_tokens, default_max)), float(body.get("temperature") or 0.0)


def create_app(engine: Any, max_batch_size: int = 8, batch_wait_ms: float = 10.0) -> Any:
    """A FastAPI app serving ``engine`` (a DeepSeekOcr2Engine) with micro-batching."""
    from fastapi import FastAPI, HTTPException, Request

    from airflow_provider_deepocr.core.records import PageImage

    app = FastAPI(title="deepocr serve")
    queue: asyncio.Queue[_Job] = asyncio.Queue()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepocr-model")
    default_max = int(engine.max_new_tokens)
    base_prompt = engine.prompt

    def run_group(jobs: list[_Job]) -> list[Any]:
        # one thread owns the model: setting its prompt and limit per group is safe
        engine.prompt, engine.max_new_tokens = jobs[0].prompt, jobs[0].max_tokens
        try:
            pages = [
                PageImage("served", i + 1, j.image, 144, j.image.width, j.image.height)
                for i, j in enumerate(jobs)
            ]
            return engine.ocr(pages, temperature=jobs[0].temperature)
        finally:
            engine.prompt, engine.max_new_tokens = base_prompt, default_max

    async def batcher() -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await queue.get()]
            deadline = loop.time() + batch_wait_ms / 1000
            while len(jobs) < max_batch_size:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    jobs.append(await asyncio.wait_for(queue.get(), timeout))
                except TimeoutError:
                    break
            groups: dict[tuple[str, int, float], list[_Job]] = {}
            for job in jobs:
                groups.setdefault((job.prompt, job.max_tokens, job.temperature), []).append(job)
            for group in groups.values():
                try:
                    results = await loop.run_in_executor(pool, run_group, group)
                except Exception as exc:  # the engine isolates pages; this is a bug path
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(exc)
                    continue
                for job, result in zip(group, results, strict=True):
                    if not job.future.done():
                        job.future.set_result(result)

    @app.on_event("startup")
    async def _start() -> None:
        app.state.batcher = asyncio.create_task(batcher())

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": engine.model}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": engine.model, "object": "model", "owned_by": "deepocr"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        try:
            image, prompt, max_tokens, temperature = _parse_request(await request.json(), default_max)
        except Exception as exc:
            raise HTTPException(status_code=400, detail=f"bad request: {type(exc).__name__}") from None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await queue.put(_Job(image, prompt, max_tokens, temperature, future))
        result = await future
        if result.finish_reason == "error":
            raise HTTPException(status_code=500, detail="OCR failed on this page")
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": engine.model,
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
    app = create_app(engine, max_batch_size=max_batch_size, batch_wait_ms=batch_wait_ms)
    log.info("serving %s on http://%s:%d/v1", model, host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")
