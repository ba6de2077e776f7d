"""The openai-server engine against a scripted HTTP server on loopback (no mock library).

The stub is a real ``http.server`` in a thread: it records every request body and answers from a
script (429 then 200, 503 for one page forever, a malformed 200, ...), so retries, backoff, the
request shape and the per-page isolation are checked over real sockets.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image, ImageDraw

from airflow_provider_deepocr.core.engines import PROMPTS, get_engine
from airflow_provider_deepocr.core.engines.openai_server import (
    OpenAIServerEngine,
    has_ink,
    normalise_server_url,
    parse_version,
    server_refusal,
)
from airflow_provider_deepocr.core.errors import ConfigError, EngineUnavailable
from airflow_provider_deepocr.core.records import PageImage

Reply = tuple[int, dict[str, str], bytes]


def ok(text: str, finish: str = "stop", prompt_tokens: int = 7, completion_tokens: int = 3) -> Reply:
    body = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }
    return 200, {}, json.dumps(body).encode()


class Stub:
    """A scripted OpenAI-ish server. ``answer(n, body) -> (status, headers, bytes)``."""

    def __init__(
        self, answer: Callable[[int, dict[str, Any]], Reply], gets: dict[str, Any] | None = None
    ) -> None:
        self.answer = answer
        self.gets = gets or {}  # GET path -> JSON answer (others: 404)
        self.bodies: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    n = len(stub.bodies)
                    stub.bodies.append(body)
                    stub.times.append(time.monotonic())
                    stub.paths.append(self.path)
                    stub.auth.append(self.headers.get("Authorization"))
                status, headers, payload = stub.answer(n, body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                stub.paths.append(f"GET {self.path}")
                found = self.path in stub.gets
                payload = json.dumps(stub.gets.get(self.path, {"detail": "Not Found"})).encode()
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.paths: list[str] = []
        self.auth: list[str | None] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def stub() -> Iterator[Callable[[Callable[[int, dict[str, Any]], Reply]], Stub]]:
    made: list[Stub] = []

    def make(answer: Callable[[int, dict[str, Any]], Reply], gets: dict[str, Any] | None = None) -> Stub:
        made.append(Stub(answer, gets))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _page(no: int, width: int = 64) -> PageImage:
    img = Image.new("RGB", (width, 32), (no * 20 % 256, 255, 255))
    return PageImage("d" * 64, no, img, 144, width, 32)


def _width(body: dict[str, Any]) -> int:
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).width


def test_429_then_200_is_retried_with_backoff(stub: Any) -> None:
    s = stub(lambda n, body: (429, {}, b"{}") if n < 2 else ok("# Title"))
    engine = OpenAIServerEngine(s.url, retries=5, backoff=0.2, max_concurrency=1)
    t0 = time.monotonic()
    (result,) = engine.ocr([_page(1)])
    assert time.monotonic() - t0 >= 0.1 + 0.2  # at least half of 0.2 * (1 + 2): full jitter in [0.5, 1]
    assert result.finish_reason == "eos" and result.raw_text == "# Title"
    assert (result.prompt_tokens, result.output_tokens, result.engine) == (7, 3, "openai-server")
    assert len(s.bodies) == 3 and engine.requests == 3 and engine.completed == 1
    gaps = [b - a for a, b in zip(s.times, s.times[1:], strict=False)]
    assert 0.1 <= gaps[0] <= 0.2 + 0.5 and 0.2 <= gaps[1] <= 0.4 + 0.5  # backoff * 2**attempt, jittered


def test_retry_after_is_honoured(stub: Any) -> None:
    s = stub(lambda n, body: (503, {"Retry-After": "0.6"}, b"{}") if n == 0 else ok("x"))
    engine = OpenAIServerEngine(s.url, retries=2, backoff=0.01)
    (result,) = engine.ocr([_page(1)])
    assert result.raw_text == "x" and s.times[1] - s.times[0] >= 0.55


def test_a_page_that_exhausts_its_retries_does_not_cost_the_batch(stub: Any) -> None:
    # the 111-px-wide page always gets a 503; a 400 is not retried; the others are fine
    def answer(n: int, body: dict[str, Any]) -> Reply:
        w = _width(body)
        if w == 111:
            return 503, {}, b"{}"
        if w == 222:
            return 400, {}, b'{"error": "bad"}'
        return ok(f"page of width {w}", finish="length" if w == 80 else "stop")

    s = stub(answer)
    engine = OpenAIServerEngine(s.url, retries=3, backoff=0.01, max_concurrency=3)
    pages = [_page(1, 64), _page(2, 111), _page(3, 80), _page(4, 222), _page(5, 90)]
    results = engine.ocr(pages)
    assert [r.finish_reason for r in results] == ["eos", "error", "length", "error", "eos"]
    texts = ["page of width 64", "", "page of width 80", "", "page of width 90"]
    assert [r.raw_text for r in results] == texts
    assert sum(_width(b) == 111 for b in s.bodies) == 4  # 1 + 3 retries
    assert sum(_width(b) == 222 for b in s.bodies) == 1


def test_malformed_responses_are_page_errors(stub: Any) -> None:
    def answer(n: int, body: dict[str, Any]) -> Reply:
        w = _width(body)
        return {
            64: (200, {}, b"not json"),
            65: (200, {}, b'{"choices": []}'),
            66: (200, {}, b'{"choices": [{"message": {"content": ["x"]}}]}'),
        }.get(w, ok("fine"))

    s = stub(answer)
    results = OpenAIServerEngine(s.url, retries=1, backoff=0.01).ocr(
        [_page(1, 64), _page(2, 65), _page(3, 66), _page(4, 67)]
    )
    assert [r.finish_reason for r in results] == ["error", "error", "error", "eos"]
    assert len(s.bodies) == 4  # malformed 200s are not retried


def test_request_shape(stub: Any) -> None:
    s = stub(lambda n, body: ok("ok"))
    engine = get_engine(
        "auto",  # a server_url selects the server engine
        server_url=s.url.removesuffix("/v1"),  # the /v1 is added when the URL has no path
        model="deepseek-ai/DeepSeek-OCR",
        api_key="sk-test",
        max_new_tokens=123,
        prompt="free",
    )
    assert isinstance(engine, OpenAIServerEngine) and engine.model == "deepseek-ai/DeepSeek-OCR"
    page = _page(3, 70)
    engine.ocr([page], temperature=0.3)
    (body,) = s.bodies
    assert s.paths == ["GET /v1/models", "GET /version", "/v1/chat/completions"]
    assert s.auth == ["Bearer sk-test"]
    assert body["model"] == "deepseek-ai/DeepSeek-OCR"
    assert body["max_tokens"] == 123 and body["temperature"] == 0.3
    assert body["skip_special_tokens"] is False
    xargs = {"ngram_size": 30, "window_size": 90, "whitelist_token_ids": [128821, 128822]}
    assert body["vllm_xargs"] == xargs
    image_part, text_part = body["messages"][0]["content"]
    assert text_part == {"type": "text", "text": PROMPTS["free"].replace("<image>", "").strip()}
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    assert sent.tobytes() == page.image.tobytes()  # PNG: the exact pixels

    s2 = stub(lambda n, body: ok("ok"))
    OpenAIServerEngine(s2.url, extra_body={}, image_format="jpeg").ocr([_page(1)])
    (body2,) = s2.bodies
    assert "vllm_xargs" not in body2 and body2["skip_special_tokens"] is False
    assert body2["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_unreachable_server_gives_errors_not_exceptions() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nobody listens there
    engine = OpenAIServerEngine(f"http://127.0.0.1:{port}/v1", retries=2, backoff=0.01)
    results = engine.ocr([_page(1), _page(2)])
    assert [r.finish_reason for r in results] == ["error", "error"] and engine.requests == 6
    assert all(r.raw_text == "" and r.engine == "openai-server" for r in results)


def test_called_from_inside_a_running_event_loop(stub: Any) -> None:
    s = stub(lambda n, body: ok(f"r{_width(body)}"))
    engine = OpenAIServerEngine(s.url)

    async def main() -> list[str]:
        return [r.raw_text for r in engine.ocr([_page(1, 60), _page(2, 61)])]

    assert asyncio.run(main()) == ["r60", "r61"]


def test_bounded_concurrency(stub: Any) -> None:
    live, peak, lock = [0], [0], threading.Lock()

    def answer(n: int, body: dict[str, Any]) -> Reply:
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.05)
        with lock:
            live[0] -= 1
        return ok(str(_width(body)))

    s = stub(answer)
    results = OpenAIServerEngine(s.url, max_concurrency=3).ocr([_page(i, 50 + i) for i in range(12)])
    assert [r.raw_text for r in results] == [str(50 + i) for i in range(12)]
    assert peak[0] == 3


def test_bad_settings() -> None:
    with pytest.raises(ConfigError):
        normalise_server_url("gpu-box:8000")
    with pytest.raises(ConfigError):
        OpenAIServerEngine("http://x/v1", image_format="webp")
    with pytest.raises(ConfigError):
        get_engine("server")  # no server_url
    assert normalise_server_url("https://gpu/v1/") == "https://gpu/v1"
    assert "sk-" not in repr(OpenAIServerEngine("http://x/v1", api_key="sk-secret"))


def _vllm(version: str, root: str) -> dict[str, Any]:
    models = {"object": "list", "data": [{"id": "deepseek-ocr", "root": root, "owned_by": "vllm"}]}
    return {"/v1/models": models, "/version": {"version": version}}


def _inked(no: int) -> PageImage:
    img = Image.new("RGB", (120, 40), "white")
    ImageDraw.Draw(img).text((5, 10), "Total 12.50", fill="black")
    return PageImage("e" * 64, no, img, 144, 120, 40)


def test_an_old_vllm_serving_deepseek_ocr2_is_refused_at_start(stub: Any) -> None:
    s = stub(lambda n, body: ok("x"), gets=_vllm("0.15.1", "/models/DeepSeek-OCR-2"))
    with pytest.raises(EngineUnavailable) as caught:
        OpenAIServerEngine(s.url, model="deepseek-ocr")
    message = str(caught.value)
    assert "vLLM 0.15.1" in message and "DeepSeek-OCR-2" in message and "#33642" in message
    assert "\n" not in message and not s.bodies  # one line, and no page was sent

    # a fixed vLLM, or an old one serving v1, is used
    for version, root in (
        ("0.16.0", "/models/DeepSeek-OCR-2"),
        ("0.11.2.dev26+g3d4e7d34b", "/m/DeepSeek-OCR"),
    ):
        good = stub(lambda n, body: ok("# Title"), gets=_vllm(version, root))
        engine = OpenAIServerEngine(good.url)
        assert engine.server_version == version and root in engine.served
        assert engine.ocr([_inked(1)])[0].raw_text == "# Title"


def test_server_refusal_rules() -> None:
    assert server_refusal("0.15.1", ["deepseek-ai/DeepSeek-OCR-2"], "x") is not None
    assert server_refusal("0.15.1", ["x"], "deepseek-ai/DeepSeek-OCR-2") is not None  # by the name sent
    assert server_refusal("0.15.1", ["deepseek-ai/DeepSeek-OCR"], "deepseek-ocr") is None
    assert server_refusal("0.16.0", ["deepseek-ai/DeepSeek-OCR-2"], "x") is None
    assert server_refusal(None, ["deepseek-ai/DeepSeek-OCR-2"], "x") is None  # not vLLM: unknown
    assert parse_version("v0.11.2rc1") == (0, 11, 2) and parse_version("dev") is None


def test_zero_completion_tokens_on_a_page_with_ink_is_an_error(stub: Any) -> None:
    s = stub(lambda n, body: ok("", completion_tokens=0))
    blank = PageImage("f" * 64, 2, Image.new("RGB", (120, 40), "white"), 144, 120, 40)
    inked, empty = OpenAIServerEngine(s.url).ocr([_inked(1), blank])
    assert inked.finish_reason == "error" and inked.raw_text == ""
    assert empty.finish_reason == "eos" and empty.raw_text == ""  # a blank page may be empty
    assert has_ink(_inked(1).image) and not has_ink(blank.image)


def test_a_400_on_the_whitelist_falls_back_to_none_once(stub: Any, caplog: pytest.LogCaptureFixture) -> None:
    def answer(n: int, body: dict[str, Any]) -> Reply:
        if "whitelist_token_ids" in body.get("vllm_xargs", {}):
            detail = "vllm_xargs.whitelist_token_ids: Input should be a valid string, int or float"
            return 400, {}, json.dumps({"error": {"message": detail}}).encode()
        return ok(f"r{_width(body)}")

    s = stub(answer)
    engine = OpenAIServerEngine(s.url, max_concurrency=1)
    with caplog.at_level(logging.WARNING):
        results = engine.ocr([_page(i, 60 + i) for i in range(3)])
    assert [r.raw_text for r in results] == ["r60", "r61", "r62"]
    # the first page was sent twice (with, then without); the later pages once, without
    assert [("whitelist_token_ids" in b["vllm_xargs"]) for b in s.bodies] == [True, False, False, False]
    assert all(b["vllm_xargs"]["ngram_size"] == 30 for b in s.bodies)
    assert sum("whitelist_token_ids" in r.getMessage() for r in caplog.records) == 1

    # any other 400 is still a page error, not retried
    other = stub(lambda n, body: (400, {}, b'{"error": {"message": "bad image"}}'))
    (result,) = OpenAIServerEngine(other.url).ocr([_page(1)])
    assert result.finish_reason == "error" and len(other.bodies) == 1


def test_max_tokens_is_left_to_the_server_by_default(stub: Any) -> None:
    s = stub(lambda n, body: ok("x"))
    get_engine("server", server_url=s.url).ocr([_page(1)])
    OpenAIServerEngine(s.url, max_new_tokens=2048).ocr([_page(1)])
    assert "max_tokens" not in s.bodies[0] and s.bodies[1]["max_tokens"] == 2048
