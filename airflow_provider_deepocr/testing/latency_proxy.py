"""An HTTP/1.1 proxy on loopback that adds a fixed delay to every request: a slow object store
(S3 at ~25 ms a request) made from a fast one (moto on loopback), for tests and benchmarks.

It forwards each request, whole, to one upstream ``host:port`` after sleeping ``delay_ms``, and
pipes the upstream's answers back untouched; it counts the requests and the bytes answered. Clients
that keep connections alive (boto3) send one request at a time on a connection, so each one is
delayed once. The proxy answers its own control paths itself (never forwarded):

    GET /__proxy__/stats            {"requests": n, "response_bytes": n, "delay_ms": f}
    GET /__proxy__/reset            counters back to 0
    GET /__proxy__/delay?ms=25      a new delay

:class:`LatencyProxy` runs it in a child process (so it does not compete for the caller's GIL) and
reads those paths; ``python -m airflow_provider_deepocr.testing.latency_proxy UPSTREAM_PORT
[--delay-ms N]`` runs it in the foreground and prints ``port=<p>`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from typing import Any

from airflow_provider_deepocr.testing.cluster import free_port, wait_for_port

CONTROL = b"/__proxy__/"
_RUNNING: set[asyncio.Task[Any]] = set()


class _Stats:
    def __init__(self, delay_ms: float) -> None:
        self.delay_ms = delay_ms
        self.requests = 0
        self.response_bytes = 0


async def _read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes | None:
    """One whole HTTP/1.1 request (headers, then a Content-Length or chunked body); None at EOF.

    A client that sends ``Expect: 100-continue`` (botocore, for every PUT with a body) is told to go
    on here, and the header is not forwarded: the body is read whole before the request is delayed
    and forwarded (else the client waits a second for a ``100 Continue`` that never comes)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    headers = {}
    kept: list[bytes] = []
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if kept and name.strip().lower() == b"expect" and value.strip().lower() == b"100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
            continue
        kept.append(line)
        if len(kept) > 1:
            headers[name.strip().lower()] = value.strip()
    head = b"\r\n".join(kept)
    body = b""
    if b"content-length" in headers:
        body = await reader.readexactly(int(headers[b"content-length"]))
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        parts = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            parts.append(size_line)
            size = int(size_line.split(b";")[0].strip(), 16)
            parts.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(parts)
    return head + body


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stats: _Stats) -> None:
    try:
        while data := await reader.read(65536):
            stats.response_bytes += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


def _control(request: bytes, stats: _Stats) -> bytes:
    target = request.split(b" ", 2)[1].decode()
    if target.startswith("/__proxy__/reset"):
        stats.requests = stats.response_bytes = 0
    elif target.startswith("/__proxy__/delay"):
        stats.delay_ms = float(target.split("ms=", 1)[1])
    body = json.dumps(
        {"requests": stats.requests, "response_bytes": stats.response_bytes, "delay_ms": stats.delay_ms}
    ).encode()
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


async def _serve_client(
    client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, upstream: tuple[str, int], stats: _Stats
) -> None:
    up_w: asyncio.StreamWriter | None = None
    pipe: asyncio.Task[None] | None = None
    me = asyncio.current_task()
    if me is not None:
        _RUNNING.add(me)  # asyncio keeps only weak references to the connection tasks
    try:
        while (request := await _read_request(client_r, client_w)) is not None:
            if request.split(b" ", 2)[1].startswith(CONTROL):
                client_w.write(_control(request, stats))
                await client_w.drain()
                continue
            stats.requests += 1
            if stats.delay_ms > 0:
                await asyncio.sleep(stats.delay_ms / 1000)
            if up_w is None:
                up_r, up_w = await asyncio.open_connection(*upstream)
                pipe = asyncio.create_task(_pipe(up_r, client_w, stats))
            up_w.write(request)
            await up_w.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        if up_w is not None:
            up_w.close()
        if pipe is not None:
            await asyncio.gather(pipe, return_exceptions=True)
        client_w.close()
        _RUNNING.discard(me)  # type: ignore[arg-type]


async def serve(upstream_port: int, delay_ms: float, port: int = 0, upstream_host: str = "127.0.0.1") -> None:
    """Listen on ``127.0.0.1:port`` (0: any free port, printed as ``port=<p>``) until cancelled."""
    stats = _Stats(delay_ms)
    server = await asyncio.start_server(
        lambda r, w: _serve_client(r, w, (upstream_host, upstream_port), stats),
        "127.0.0.1",
        port,
        limit=1 << 20,
        backlog=1024,
    )
    print(f"port={server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


class LatencyProxy:
    """The proxy in a child process in front of ``127.0.0.1:upstream_port``; ``url`` is its endpoint.

    Use as a context manager; :meth:`stats`, :meth:`reset` and :meth:`set_delay` talk to it."""

    def __init__(self, upstream_port: int, delay_ms: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.delay_ms = delay_ms
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> LatencyProxy:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", __name__, str(self.upstream_port), "--delay-ms", str(self.delay_ms)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.startswith("port="):
            self.__exit__()
            raise RuntimeError("the latency proxy did not start")
        self.url = f"http://127.0.0.1:{int(line[5:])}"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None

    def _get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/__proxy__/" + path, timeout=10) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        return self._get("stats")

    def reset(self) -> None:
        self._get("reset")

    def set_delay(self, delay_ms: float) -> None:
        self._get(f"delay?ms={delay_ms}")
        self.delay_ms = delay_ms


def start_moto(
    port: int | None = None, timeout_s: float = 30.0, env_extra: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """A moto S3 server on loopback (``python -m moto.server``), as the tests start one; returns the
    process and its endpoint URL once it accepts connections. ``env_extra``: more of moto's
    settings (e.g. ``INITIAL_NO_AUTH_ACTION_COUNT``)."""
    port = port or free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    env.update(env_extra or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_for_port(proc, port, timeout_s)
    except RuntimeError as exc:
        raise RuntimeError(f"moto server {exc}") from None
    return proc, f"http://127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="latency_proxy", description=__doc__.splitlines()[0])
    ap.add_argument("upstream_port", type=int)
    ap.add_argument("--delay-ms", type=float, default=25.0)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # stop now: nothing to flush
    asyncio.run(serve(args.upstream_port, args.delay_ms, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
