"""`deepocr serve` on loopback and the openai-server engine against it, including a server restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw

from airflow_provider_deepocr.core.engines import get_engine
from airflow_provider_deepocr.core.records import PageImage


def _free_port() -> int:
    from airflow_provider_deepocr.testing.cluster import free_port

    return free_port()


def _pages(n: int) -> list[PageImage]:
    out = []
    for i in range(n):
        size = (320 + 40 * (i % 3), 120 + 30 * (i % 2))
        img = Image.new("RGB", size, "white")
        ImageDraw.Draw(img).text((10, 40), f"receipt {i} total {i * 3}.50", fill="black")
        out.append(PageImage("s" * 64, i + 1, img, 144, size[0], size[1]))
    return out


class Server:
    def __init__(self, model: Path, port: int) -> None:
        self.model, self.port, self.proc = model, port, None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "airflow_provider_deepocr.cli", "serve", "--model", str(self.model)]
        cmd += ["--port", str(self.port), "--max-new-tokens", "12", "--max-batch-size", "4"]
        cmd += ["--served-model-name", "tiny-ocr2"]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("deepocr serve did not come up")

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Iterator[Server]:
    srv = Server(tiny_model_dir, _free_port())
    srv.start()
    yield srv
    if srv.proc and srv.proc.poll() is None:
        srv.kill()


def test_models_and_bad_requests(server: Server) -> None:
    base = f"http://127.0.0.1:{server.port}/v1"
    assert httpx.get(f"{base}/models").json()["data"][0]["id"] == "tiny-ocr2"
    r = httpx.post(f"{base}/chat/completions", json={"messages": [{"role": "user", "content": "no image"}]})
    assert r.status_code == 400
    bad_image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}
    r = httpx.post(f"{base}/chat/completions", json={"messages": [{"role": "user", "content": [bad_image]}]})
    assert r.status_code == 400 and "bm90" not in r.text  # no request content in errors


def _stats(server: Server) -> dict[str, int]:
    return httpx.get(f"http://127.0.0.1:{server.port}/health").json()  # type: ignore[no-any-return]


def test_server_engine_matches_the_in_process_engine(server: Server, tiny_model_dir: Path) -> None:
    pages = _pages(8)
    local = get_engine("deepseek", model=str(tiny_model_dir), max_new_tokens=12).ocr(pages)
    before = _stats(server)
    remote = get_engine(
        "server",
        server_url=f"http://127.0.0.1:{server.port}/v1",
        model="tiny-ocr2",
        max_new_tokens=12,
        max_concurrency=8,
    ).ocr(pages)
    after = _stats(server)
    assert [r.raw_text for r in remote] == [r.raw_text for r in local]  # greedy: batching changes nothing
    assert [r.finish_reason for r in remote] == [r.finish_reason for r in local]
    assert [r.output_tokens for r in remote] == [r.output_tokens for r in local]
    assert [r.prompt_tokens for r in remote] == [r.prompt_tokens for r in local]
    assert all(r.engine == "openai-server" and r.model == "tiny-ocr2" for r in remote)
    # 8 concurrent requests were micro-batched (max 4 per batch), not run one by one
    assert after["pages"] - before["pages"] == 8
    assert after["batches"] - before["batches"] < 8


def test_a_server_killed_mid_batch_loses_no_page(server: Server, tiny_model_dir: Path) -> None:
    pages = _pages(12)
    expected = [
        r.raw_text for r in get_engine("deepseek", model=str(tiny_model_dir), max_new_tokens=12).ocr(pages)
    ]
    engine = get_engine(
        "server",
        server_url=f"http://127.0.0.1:{server.port}/v1",
        max_new_tokens=12,
        max_concurrency=2,
        retries=12,
        backoff=0.3,
    )
    restarted = threading.Event()

    def chaos() -> None:
        deadline = time.monotonic() + 60
        while engine.completed < 3 and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.01)
        server.kill()
        time.sleep(1.5)
        server.start()
        restarted.set()

    t = threading.Thread(target=chaos)
    t.start()
    results = engine.ocr(pages)
    t.join(180)
    assert restarted.is_set()
    assert 3 <= engine.completed <= 12 + 2  # type: ignore[attr-defined]
    assert len(results) == 12  # one result per page: none lost, none duplicated
    assert [r.finish_reason for r in results] == ["length"] * 12
    assert [r.raw_text for r in results] == expected  # every page, in order, as uninterrupted
    assert engine.requests > engine.completed  # type: ignore[attr-defined]  # some were retried
