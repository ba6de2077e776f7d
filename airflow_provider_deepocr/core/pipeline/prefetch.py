"""The OCR stage's reads ahead: a document's bytes and its work-area checks (is it done, which page
files exist), fetched for the next few documents on a small pool while the current one renders.

Each is a request to a store; one after another they bound the stage at about one document per
two round trips (~20 one-page documents/s at 25 ms a request), whatever the engine's speed.
Fetched ahead, in listing order, ``window`` at a time, the stage waits on them only when the store
is slower than the engine. Memory: at most ``OCR_WINDOW`` documents' bytes wait here, and together
under ``READ_AHEAD_BYTES`` by their listed sizes (a larger document alone).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.work_layout import WorkLayout

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.pipeline.context import StageContext
    from airflow_provider_deepocr.core.records import Document
    from airflow_provider_deepocr.core.shards import ShardItem

T = TypeVar("T")
R = TypeVar("R")

#: documents read ahead of the one being rendered (records files: the parse and load stages)
WINDOW = 8
#: the OCR stage's read-ahead: up to this many documents, together under READ_AHEAD_BYTES
OCR_WINDOW = 16
READ_AHEAD_BYTES = 256 << 20


@dataclass(frozen=True)
class Fetched:
    """One document as read ahead: its bytes (or the typed error of reading them), its OCR summary
    when one exists already, and what its OCR folder held (None: not looked, the bytes unread)."""

    doc: Document | None
    error: errors.DeepOcrError | None
    summary: dict[str, Any] | None = None  # the summary as read (a rerun's document done earlier)
    found: frozenset[str] | None = None
    whole: dict[str, Any] | None = None  # a part's: the whole document's summary, done by another run


def ahead(
    items: Sequence[T],
    fetch: Callable[[T], R],
    window: int = WINDOW,
    weight: Callable[[T], int] | None = None,
    budget: int | None = None,
) -> Iterator[tuple[T, R]]:
    """``(item, fetch(item))`` in ``items``' order, ``fetch`` running on up to ``window`` threads for
    the items ahead of the one handed out. With ``weight`` (an item's bytes, say) the items fetched
    and not yet handed out weigh under ``budget`` (one item alone may weigh more). An exception of
    ``fetch`` is raised when its item's turn comes. ``window`` <= 1 fetches one at a time on the
    caller's thread."""
    if window <= 1:
        for item in items:
            yield item, fetch(item)
        return
    pending: deque[tuple[T, Future[R], int]] = deque()
    held = 0  # the weight of ``pending``
    with ThreadPoolExecutor(max_workers=window, thread_name_prefix="deepocr-read") as pool:
        try:
            for item in items:
                w = weight(item) if weight is not None else 0
                while pending and (len(pending) >= window or (budget is not None and held + w > budget)):
                    first, fut, fw = pending.popleft()
                    held -= fw
                    yield first, fut.result()
                pending.append((item, pool.submit(fetch, item), w))
                held += w
            while pending:
                first, fut, _ = pending.popleft()
                yield first, fut.result()
        finally:
            for _, fut, _ in pending:  # the consumer stopped early: nothing more is started
                fut.cancel()


def summary_of(ocr_dir: str, item: ShardItem) -> str:
    """The OCR summary of ``item`` (a whole document's, or its part's) in its OCR folder."""
    return (
        WorkLayout.part_summary(ocr_dir, item.first, item.last)
        if item.is_part
        else WorkLayout.summary(ocr_dir)
    )


def fetch(ctx: StageContext, fp: str, item: ShardItem) -> Fetched:
    """The store requests of opening ``item`` (run ahead, on the read pool): its bytes, then one
    listing of its OCR folder, which says both whether its summary exists and which page files an
    earlier try finished (not an existence check and a listing, nor a request a page)."""
    from airflow_provider_deepocr.core.sources import read_document

    try:
        doc = read_document(item.ref, ctx.storage_of(item.ref.uri))
    except errors.DeepOcrError as exc:
        return Fetched(None, exc)
    ocr_dir = ctx.layout.ocr_dir(fp, doc.sha256)
    found = frozenset(r.uri for r in ctx.work.storage.list(ocr_dir))
    summary_uri = summary_of(ocr_dir, item)
    summary = ctx.work.read_json(summary_uri) if summary_uri in found else None
    whole_uri = WorkLayout.summary(ocr_dir)
    whole = None
    if summary is None and item.is_part and whole_uri in found:  # done whole by another run
        whole = ctx.work.read_json(whole_uri)
    return Fetched(doc, None, summary, found, whole)


class Behind:
    """Writes done behind the caller, on up to ``window`` threads: :meth:`submit` returns at once
    unless ``window`` writes are pending (then it waits for the oldest: memory stays bounded);
    :meth:`wait` waits for every one and raises the first error. Used as a context manager."""

    def __init__(self, window: int = WINDOW) -> None:
        self.window = max(1, window)
        self.pool = ThreadPoolExecutor(max_workers=self.window, thread_name_prefix="deepocr-write")
        self.pending: deque[Future[Any]] = deque()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        while len(self.pending) >= self.window:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(fn, *args))

    def wait(self) -> None:
        while self.pending:
            self.pending.popleft().result()

    def __enter__(self) -> Behind:
        return self

    def __exit__(self, *exc: object) -> None:
        for fut in self.pending:  # an error on the way out: nothing more is started
            fut.cancel()
        self.pool.shutdown(wait=True)


def documents_ahead(
    ctx: StageContext, fp: str, items: Sequence[ShardItem]
) -> Iterator[tuple[ShardItem, Fetched]]:
    """The OCR stage's reads ahead: :func:`fetch` of each item, up to ``OCR_WINDOW`` documents
    at a time, together under ``READ_AHEAD_BYTES`` by their listed sizes."""
    return ahead(
        items,
        lambda it: fetch(ctx, fp, it),
        OCR_WINDOW,
        weight=lambda it: it.ref.size or 0,
        budget=READ_AHEAD_BYTES,
    )
