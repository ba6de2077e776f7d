"""A document's per-page CPU work in a worker process, with a time limit per page that holds.

MuPDF cannot be interrupted from a Python thread: one damaged page can keep ``get_text`` or a
render busy for minutes. So the per-page work runs in a child process -- the render
(:func:`core.render.pdf_raw_pages` for a PDF: ``render_pages``' checks and reasons, the pixels
sent raw and made a PIL image here; :func:`core.render.render_pages` for a raster image), the
PDF text layer (:func:`core.engines.pdf_text.page_blocks` on the same open page) and any extra
page functions (``"module:function"``, called as ``f(page, page_no)`` with the open
``pymupdf.Page``, None for a raster image; e.g. a table finder) -- and when one page runs
past ``page_timeout_s`` the parent kills the child (SIGKILL), yields
``PageError(page_timeout)`` for that page and goes on with the next page in a fresh child. A child
that dies (a crash in a native library, the kernel's OOM killer) costs its page the same way
(``corrupt``). Opening the document has the same limit (``DocumentError(page_timeout)``).

Use (what the OCR stage calls; one ``PageWork`` per stage, it keeps one child across documents)::

    with PageWork(page_timeout_s=60, dpi=144, limits=RenderLimits(), text_layer=True) as work:
        opened = work.open(doc, pages=[3, 4])  # DocumentError: typed, as render_pages raises
        opened.media_type, opened.page_count   # the whole document's count
        for item in opened:                    # in page order, one per asked page
            if isinstance(item, errors.PageError): ...  # failure row, the document goes on
            else: item.page (PageImage), item.blocks (text-layer blocks or None), item.extras

Asking for pages the document does not have (it changed since it was listed) is
``DocumentError(source_changed)``. The time of a page is counted from when the parent starts
waiting for it, so a page is never cut before it had ``page_timeout_s`` of the child's time.
``page_timeout_s=None`` runs the same code in this process, without a limit.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.records import Document, PageImage

log = logging.getLogger(__name__)

DEFAULT_PAGE_TIMEOUT_S = 60.0
_START_TIMEOUT_S = 120.0
_SOCKET_BUFFER = (
    4 * 1024 * 1024
)  # capped by net.core.[rw]mem_max  # a fresh child imports PyMuPDF and Pillow before it answers


@dataclass
class PageResult:
    """One page's work: the rendered page, its PDF text-layer blocks (None: not asked, not a PDF,
    or unreadable: ``text_error`` says why) and the extra page functions' results by name."""

    page: PageImage
    blocks: list[dict[str, Any]] | None = None
    text_error: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # the child's time for this page


@dataclass(frozen=True)
class _Job:
    doc: Document
    numbers: list[int] | None  # None: every page
    dpi: int
    limits: Any
    text_layer: bool
    functions: tuple[str, ...]


# --------------------------------------------------------------------------------------------
# The work itself (runs in the child; in this process with page_timeout_s=None)


def _resolve(name: str) -> Any:
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


def _page_extras(job: _Job, page: Any, page_no: int) -> tuple[Any, str | None, dict[str, Any]]:
    """Text blocks, text error and extras of one page (``page``: the open ``pymupdf.Page``, None
    for a raster image)."""
    from airflow_provider_deepocr.core.engines.pdf_text import page_blocks

    blocks, text_error, extras = None, None, {}
    if job.text_layer and page is not None:
        try:
            blocks = page_blocks(page)
        except Exception as exc:
            text_error = f"cannot read the text layer ({type(exc).__name__})"
    for name in job.functions:
        try:
            extras[name] = _resolve(name)(page, page_no)
        except Exception as exc:
            extras[name] = None
            log.debug("page %d: %s failed (%s)", page_no, name, type(exc).__name__)
    return blocks, text_error, extras


def _open(job: _Job) -> tuple[str, int, Iterator[Any]]:
    """Media type, page count and the page iterator (raw pixels for a PDF) of a job."""
    from airflow_provider_deepocr.core.render import (
        PDF,
        count_pages,
        detect_media_type,
        pdf_raw_pages,
        render_pages,
    )

    media_type = detect_media_type(job.doc.data)
    page_count = count_pages(job.doc, job.limits)
    if job.numbers and max(job.numbers) > page_count:
        raise errors.DocumentError(
            errors.SOURCE_CHANGED, f"pages up to {max(job.numbers)} asked, {page_count} in the document"
        )
    if media_type == PDF:
        return (
            media_type,
            page_count,
            pdf_raw_pages(job.doc, dpi=job.dpi, limits=job.limits, pages=job.numbers),
        )
    return media_type, page_count, render_pages(job.doc, dpi=job.dpi, limits=job.limits, pages=job.numbers)


def _stream(job: _Job) -> Iterator[tuple[Any, ...]]:
    """The messages of one job: ``("open", media_type, page_count)`` or ``("doc_error", reason,
    detail)``; then per page ``("raw", PageResult, stride, samples)`` (a PDF page: its image
    still to be made from the raw RGB samples), ``("page", PageResult)`` (a raster image) or
    ``("page_error", reason, detail, page_no)``; then ``("end",)``."""
    from airflow_provider_deepocr.core.render import PDF, RawPage

    try:
        media_type, page_count, pages = _open(job)
    except errors.DeepOcrError as exc:
        yield ("doc_error", exc.reason, exc.detail)
        return
    yield ("open", media_type, page_count)
    for item in pages:
        t0 = time.perf_counter()
        if isinstance(item, errors.PageError):
            yield ("page_error", item.reason, item.detail, item.page_no)
        elif isinstance(item, RawPage):
            blocks, text_error, extras = _page_extras(job, item.page, item.page_no)
            page = PageImage(
                job.doc.doc_id, item.page_no, None, item.dpi, item.width, item.height, PDF, flags=item.flags
            )
            result = PageResult(page, blocks, text_error, extras, time.perf_counter() - t0)
            yield ("raw", result, item.stride, item.samples)
        else:
            blocks, text_error, extras = _page_extras(job, None, item.page_no)
            yield ("page", PageResult(item, blocks, text_error, extras, time.perf_counter() - t0))
    yield ("end",)


def _image(page: PageImage, stride: int, samples: Any) -> Any:
    """The PIL image of raw RGB rows (one copy, as ``render_pages`` makes)."""
    from PIL import Image

    return Image.frombuffer("RGB", (page.width, page.height), samples, "raw", "RGB", stride, 1)


def _send(conn: Any, msg: tuple[Any, ...]) -> None:
    """A page goes as its metadata, then its pixels as raw bytes (no pickling of the image)."""
    if msg[0] == "raw":
        conn.send(msg[:3])
        conn.send_bytes(msg[3])
        return
    if msg[0] != "page":
        conn.send(msg)
        return
    result: PageResult = msg[1]
    image = result.page.image
    result.page.image = None
    conn.send(("page", result, image.mode, image.size))
    conn.send_bytes(image.tobytes())


def _serve(conn: Any) -> None:
    """The child's loop: one job at a time until ``None`` or the parent goes."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    import airflow_provider_deepocr.core.render as render

    render._pymupdf()  # import PyMuPDF (quiet) before the first job's clock starts
    conn.send(("ready",))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            for msg in _stream(job):
                _send(conn, msg)
        except Exception as exc:  # a bug or a library error outside the page handling
            conn.send(("crash", type(exc).__name__))


# --------------------------------------------------------------------------------------------
# The parent side


class _Timeout(Exception):
    pass


class _Died(Exception):
    pass


class _Child:
    """One child process (``python -m airflow_provider_deepocr.core.pagework``) and its socket.

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
            [sys.executable, "-m", "airflow_provider_deepocr.core.pagework", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env=env,
        )
        theirs.close()
        self.conn = Connection(mine.detach())
        self.ready = False

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
                result.page.image = _image(result.page, stride, self.conn.recv_bytes())
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
    ) -> None:
        from airflow_provider_deepocr.core.render import DEFAULT_DPI, RenderLimits

        if page_timeout_s is not None and not page_timeout_s > 0:
            raise errors.ConfigError(f"page_timeout_s must be > 0 or None, got {page_timeout_s!r}")
        self.page_timeout_s = page_timeout_s
        self.dpi = DEFAULT_DPI if dpi is None else dpi
        self.limits = limits or RenderLimits()
        self.text_layer = text_layer
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
            self._child = _Child()

    def close(self) -> None:
        if self._child is not None:
            self._child.stop()
            self._child = None

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
                self._child = _Child()
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
        job = _Job(self.job.doc, rest, self.job.dpi, self.job.limits, self.job.text_layer, self.job.functions)
        try:
            first = self.work._start(job, self.job.doc.doc_id)
        except errors.DocumentError as exc:
            return exc.reason, exc.detail
        if first[0] == "doc_error":
            return first[1], first[2]
        if first[0] != "open":
            return errors.INTERNAL_ERROR, f"page worker failed reopening it ({first[-1]})"
        return None


if __name__ == "__main__":  # the child: python -m airflow_provider_deepocr.core.pagework FD
    import sys
    from multiprocessing.connection import Connection

    from airflow_provider_deepocr.core import pagework  # pickles name its classes, not __main__'s

    pagework._serve(Connection(int(sys.argv[1])))
