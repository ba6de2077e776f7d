"""A document's per-page CPU work in a worker process, with a time limit per page that holds.

MuPDF cannot be interrupted from a Python thread: one damaged page can keep ``get_text`` or a
render busy for minutes. So the per-page work runs in a child process -- the render
(:class:`core.render.OpenPdf` for a PDF: ``render_pages``' checks and reasons, the pixels
sent raw and made a PIL image here; :func:`core.render.render_pages` for a raster image), the
PDF text layer (:func:`core.engines.pdf_text.page_blocks` on the same open page) and any extra
page functions (``"module:function"``, called as ``f(page, page_no)`` with the open
``pymupdf.Page``, None for a raster image; e.g. a table finder) -- and when one page runs
past ``page_timeout_s`` the parent kills the child (SIGKILL), yields
``PageError(page_timeout)`` for that page and goes on with the next page in a fresh child. A child
that dies (a crash in a native library, the kernel's OOM killer) costs its page the same way
(``corrupt``). Opening the document has the same limit (``DocumentError(page_timeout)``).

Use (what the OCR stage calls; one ``PageWork`` per stage, it keeps one child across documents)::

    with PageWork(page_timeout_s=60, dpi=144, limits=RenderLimits(), text_layer=True, pixels="all") as work:
        opened = work.open(doc, pages=[3, 4])  # DocumentError: typed, as render_pages raises
        opened.media_type, opened.page_count   # the whole document's count
        for item in opened:                    # in page order, one per asked page
            if isinstance(item, errors.PageError): ...  # failure row, the document goes on
            else: item.page (PageImage), item.blocks (text-layer blocks or None), item.extras

``pixels`` (``core.pageworker.PIXELS``): which PDF pages are rendered -- ``"all"``, ``"model"``
(only pages whose text layer is not usable: the others go to the ``pdf-text`` engine, which
reads no pixels) or ``"none"`` (an engine that reads no pixels); a page not rendered has
``page.image`` None and the width, height, DPI and flags its render would have had.

A child carries nothing from one document to the next (each job names its DPI, limits, text layer
and functions), so a stage's healthy child is kept when its ``PageWork`` closes and the next
``PageWork`` of this process takes it (:func:`warm_up` starts one ahead: ``run_pipeline`` does
before its listing): a child imports PyMuPDF, about 1.6 s of CPU, once per process and not once per
stage. At most one such child waits; it is stopped when the process exits (or sees its socket
close, if the process dies).

Asking for pages the document does not have (it changed since it was listed) is
``DocumentError(source_changed)``. The time of a page is counted from when the parent starts
waiting for it, so a page is never cut before it had ``page_timeout_s`` of the child's time.
``page_timeout_s=None`` runs the same code in this process, without a limit.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.pageworker import PIXELS, PIXELS_ALL, PageResult, _image, _Job, _stream
from airflow_provider_deepocr.core.records import Document

__all__ = ["DEFAULT_PAGE_TIMEOUT_S", "OpenedDocument", "PageResult", "PageWork", "warm_up"]

log = logging.getLogger(__name__)

DEFAULT_PAGE_TIMEOUT_S = 60.0
_START_TIMEOUT_S = 120.0  # a fresh child imports PyMuPDF and Pillow before it answers
_SOCKET_BUFFER = 4 * 1024 * 1024  # a page in few hand-offs; capped by net.core.[rw]mem_max


# --------------------------------------------------------------------------------------------
# The parent side


class _Timeout(Exception):
    pass


class _Died(Exception):
    pass


class _Child:
    """One child process (``python -m airflow_provider_deepocr.core.pageworker``) and its socket.

    A plain subprocess, not ``multiprocessing``: nothing of the caller's ``__main__`` (an Airflow
    task runner) is imported again, no fork of a threaded parent, and it starts from a daemon
    process (a Celery worker) too."""

    def __init__(self) -> None:
        import os
        import socket
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        mine, theirs = socket.socketpair()
        for sock, option in ((mine, socket.SO_RCVBUF), (theirs, socket.SO_SNDBUF)):
            sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)  # a page in few hand-offs
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_deepocr.core.pageworker", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env=env,
        )
        theirs.close()
        self.conn = Connection(mine.detach())
        self.ready = False
        self.buffer = bytearray()

    def wait_ready(self) -> None:
        if not self.ready:
            if self.recv(_START_TIMEOUT_S)[0] != "ready":
                raise _Died("no ready message")
            self.ready = True

    def recv(self, timeout: float) -> tuple[Any, ...]:
        try:
            if not self.conn.poll(max(0.0, timeout)):
                raise _Timeout
            msg = self.conn.recv()
            if msg[0] == "raw":
                _, result, stride = msg
                if not stride:  # a page asked without pixels
                    return ("page", result)
                size = stride * result.page.height
                if len(self.buffer) < size:  # one buffer, reused: no fresh pages to fault in
                    self.buffer = bytearray(size)
                n = self.conn.recv_bytes_into(self.buffer)
                result.page.image = _image(result.page, stride, memoryview(self.buffer)[:n])
                return ("page", result)
            if msg[0] == "page":
                _, result, mode, size = msg
                from PIL import Image

                result.page.image = Image.frombytes(mode, size, self.conn.recv_bytes())
                return ("page", result)
            return msg
        except (EOFError, OSError) as exc:
            raise _Died(type(exc).__name__) from None

    def kill(self) -> str:
        """Kill the child; returns how it ended (for a message)."""
        self.proc.kill()
        self.proc.wait(10)
        self.conn.close()
        return f"exit code {self.proc.returncode}"

    def stop(self) -> None:
        import subprocess

        try:
            self.conn.send(None)
            self.proc.wait(5)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(5)
        self.conn.close()


_spare: list[_Child] = []  # at most one started child no PageWork holds (the module docstring)
_spare_lock = threading.Lock()


def warm_up(wait: bool = False) -> None:
    """Start a child now (it imports PyMuPDF: seconds) for the next :class:`PageWork` of this
    process to take; nothing when one waits already. ``wait``: return once it is ready."""
    with _spare_lock:
        if not _spare:
            _spare.append(_Child())
        if wait:
            _spare[0].wait_ready()


def _take_spare() -> _Child | None:
    with _spare_lock:
        return _spare.pop() if _spare else None


def _keep_spare(child: _Child) -> None:
    """Keep a healthy, idle child for the next PageWork; stop it when one waits already."""
    with _spare_lock:
        if not _spare and child.proc.poll() is None:
            _spare.append(child)
            return
    child.stop()


def _stop_spare() -> None:
    child = _take_spare()
    if child is not None:
        child.stop()


atexit.register(_stop_spare)
# a forked process must not talk to its parent's child over the same socket: it starts its own
os.register_at_fork(after_in_child=_spare.clear)


class PageWork:
    """Runs documents' per-page work in a child process with a per-page time limit; see the
    module docstring. Not thread-safe: one caller (the OCR stage's producer) at a time."""

    def __init__(
        self,
        page_timeout_s: float | None = DEFAULT_PAGE_TIMEOUT_S,
        dpi: int | None = None,
        limits: Any = None,
        text_layer: bool = False,
        page_functions: Sequence[str] = (),
        pixels: str = PIXELS_ALL,
    ) -> None:
        from airflow_provider_deepocr.core.render import DEFAULT_DPI, RenderLimits

        if page_timeout_s is not None and not page_timeout_s > 0:
            raise errors.ConfigError(f"page_timeout_s must be > 0 or None, got {page_timeout_s!r}")
        if pixels not in PIXELS:
            raise errors.ConfigError(f"pixels must be one of {', '.join(PIXELS)}, got {pixels!r}")
        self.page_timeout_s = page_timeout_s
        self.dpi = DEFAULT_DPI if dpi is None else dpi
        self.limits = limits or RenderLimits()
        self.text_layer = text_layer
        self.pixels = pixels
        self.functions = tuple(page_functions)
        self._child: _Child | None = None
        self._busy = False  # a job's messages are still coming
        self.restarts = 0  # children killed (a page over the limit, a crash)

    def __enter__(self) -> PageWork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the child now, without waiting for it (it imports PyMuPDF: seconds). Call it
        before other slow start-up work (loading the model) so the two overlap; otherwise the
        first :meth:`open` starts it."""
        if self.page_timeout_s is not None and self._child is None:
            self._child = _take_spare() or _Child()

    def close(self) -> None:
        """Hand a healthy child on to the next PageWork of this process (stopped otherwise)."""
        child, self._child = self._child, None
        if child is None:
            return
        if self._busy:  # a document left half read: its messages would reach the next user
            child.kill()
        else:
            _keep_spare(child)

    def open(self, doc: Document, pages: Sequence[int] | None = None) -> OpenedDocument:
        """Open ``doc`` (in the child); raises ``DocumentError`` as :func:`render_pages` does,
        ``source_changed`` for pages it does not have, ``page_timeout`` when opening it takes
        longer than the limit."""
        job = _Job(
            doc,
            list(pages) if pages is not None else None,
            self.dpi,
            self.limits,
            self.text_layer,
            self.functions,
            self.pixels,
        )
        if self.page_timeout_s is None:
            stream = _stream(job)
            return OpenedDocument(self, job, stream, next(stream))
        first = self._start(job, doc.doc_id)
        return OpenedDocument(self, job, None, first)

    def _start(self, job: _Job, doc_id: str) -> tuple[Any, ...]:
        if self._busy and self._child is not None:  # the last document was left half read
            self._kill(doc_id)
        try:
            if self._child is None:
                self._child = _take_spare() or _Child()
            self._child.wait_ready()
        except (_Died, _Timeout) as exc:
            self._kill(doc_id)
            raise errors.DocumentError(
                errors.INTERNAL_ERROR, f"the page worker did not start ({exc})"
            ) from None
        self._child.conn.send(job)
        self._busy = True
        try:
            return self._recv()
        except _Timeout:
            self._kill(doc_id)
            raise errors.DocumentError(
                errors.PAGE_TIMEOUT, f"opening took over {self.page_timeout_s:g}s"
            ) from None
        except _Died as exc:
            raise errors.DocumentError(errors.CORRUPT, f"the page worker died opening it ({exc})") from None

    def _recv(self) -> tuple[Any, ...]:
        assert self._child is not None and self.page_timeout_s is not None
        try:
            msg = self._child.recv(self.page_timeout_s)
        except _Died as exc:
            how = self._kill("")
            raise _Died(f"{exc}, {how}") from None
        if msg[0] in ("end", "doc_error", "crash"):
            self._busy = False
        return msg

    def _kill(self, doc_id: str) -> str:
        assert self._child is not None
        how = self._child.kill()
        self._child = None
        self._busy = False
        self.restarts += 1
        log.info("page worker for doc=%s replaced (%s)", doc_id[:12], how)
        return how


class OpenedDocument:
    """An open document: ``media_type``, ``page_count`` and, iterated, its asked pages."""

    def __init__(
        self, work: PageWork, job: _Job, stream: Iterator[tuple[Any, ...]] | None, first: tuple[Any, ...]
    ) -> None:
        if first[0] == "doc_error":
            raise errors.DocumentError(first[1], first[2])
        if first[0] != "open":
            raise errors.DocumentError(errors.INTERNAL_ERROR, f"page worker failed opening it ({first[-1]})")
        self.work, self.job, self.stream = work, job, stream
        self.media_type: str = first[1]
        self.page_count: int = first[2]
        self.numbers = job.numbers if job.numbers is not None else list(range(1, self.page_count + 1))

    def __iter__(self) -> Iterator[PageResult | errors.PageError]:
        if self.stream is not None:
            yield from self._in_process(self.stream)
            return
        yield from self._in_child()

    @staticmethod
    def _in_process(stream: Iterator[tuple[Any, ...]]) -> Iterator[PageResult | errors.PageError]:
        for msg in stream:
            if msg[0] == "raw":
                if msg[3] is not None:
                    msg[1].page.image = _image(msg[1].page, msg[2], msg[3])
                yield msg[1]
            elif msg[0] == "page":
                yield msg[1]
            elif msg[0] == "page_error":
                yield errors.PageError(msg[1], msg[2], page_no=msg[3])

    def _in_child(self) -> Iterator[PageResult | errors.PageError]:
        work, doc_id = self.work, self.job.doc.doc_id
        i = 0
        while i < len(self.numbers):
            page_no = self.numbers[i]
            try:
                msg = work._recv()
            except _Timeout:
                work._kill(doc_id)
                msg = ("lost", errors.PAGE_TIMEOUT, f"over page_timeout_s={work.page_timeout_s:g}")
            except _Died as exc:
                msg = ("lost", errors.CORRUPT, f"the page worker died ({exc})")
            if msg[0] == "crash":
                msg = ("lost", errors.INTERNAL_ERROR, f"page worker error ({msg[1]})")
            if msg[0] == "end":
                break
            i += 1
            if msg[0] == "page":
                yield msg[1]
                continue
            if msg[0] == "page_error":
                yield errors.PageError(msg[1], msg[2], page_no=msg[3])
                continue
            log.warning("doc=%s page=%d: %s", doc_id[:12], page_no, msg[1])
            yield errors.PageError(msg[1], f"page {page_no}: {msg[2]}", page_no=page_no)
            if i < len(self.numbers):  # go on with the pages after the lost one, in a fresh child
                failed = self._resume(self.numbers[i:])
                if failed is not None:  # the same bytes opened before: every page left fails
                    for rest in self.numbers[i:]:
                        yield errors.PageError(failed[0], f"page {rest}: {failed[1]}", page_no=rest)
                    return
        if work._busy:  # the job's end marker
            try:
                work._recv()
            except (_Timeout, _Died):
                if work._child is not None:
                    work._kill(doc_id)

    def _resume(self, rest: list[int]) -> tuple[str, str] | None:
        """Start the job again from ``rest``; the reason and detail when it cannot open."""
        job = replace(self.job, numbers=rest)
        try:
            first = self.work._start(job, self.job.doc.doc_id)
        except errors.DocumentError as exc:
            return exc.reason, exc.detail
        if first[0] == "doc_error":
            return first[1], first[2]
        if first[0] != "open":
            return errors.INTERNAL_ERROR, f"page worker failed reopening it ({first[-1]})"
        return None
