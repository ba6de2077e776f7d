"""Shards: a listing cut into pieces of at most ``shard_pages`` pages, one per OCR task instance.

Airflow maps the OCR task over the shards (``.expand``), so one backfill spreads over every GPU
worker and a crash costs one shard, not the run. Page counts come from a cheap read of each file
(a PDF's page count without rendering, a TIFF's frames, 1 for any other image); a file that cannot
be read counts 1 and fails later, in its OCR shard, as any bad file does. A document longer than
``shard_pages`` is split into page ranges (*parts*) across shards; it is parsed, validated and
loaded once, whole, after every part is OCR'd (see ``pipeline.stage_assemble``).

Work-area layout of a sharded listing::

    runs/<run_id>/documents.jsonl          every listed document (DocumentRef + pages)
    runs/<run_id>/shards/<NNNNN>.jsonl     one ShardItem per line
    runs/<run_id>/spanning.jsonl           the documents split across shards, with their parts
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.records import DocumentRef

log = logging.getLogger(__name__)

#: Default pages per shard: about 30 minutes of one GPU at ~3 pages/s (DeepSeek-OCR's published
#: ~200k pages/day per A100 is 2.3 pages/s).
DEFAULT_SHARD_PAGES = 5000

# Extensions whose files are one page whatever their bytes say: no read needed to count them.
_ONE_PAGE = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".jp2", ".j2k", ".jpx")


@dataclass(frozen=True)
class ShardItem:
    """A document, or a part of one (pages ``first``..``last``), in a shard.

    ``part``/``parts``: which part this is (0-based) of how many; a whole document is part 0 of 1.
    """

    ref: DocumentRef
    pages: int  # the document's page count (the cheap read's)
    first: int = 1
    last: int | None = None  # None: to the end
    part: int = 0
    parts: int = 1

    @property
    def is_part(self) -> bool:
        return self.parts > 1

    def page_numbers(self) -> list[int] | None:
        """The pages this item covers (None: the whole document)."""
        if not self.is_part:
            return None
        assert self.last is not None
        return list(range(self.first, self.last + 1))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ref"] = self.ref.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShardItem:
        """A shard line, or a plain DocumentRef line (an unsharded listing: the whole document)."""
        if "ref" not in d:
            return cls(DocumentRef.from_dict(d), int(d.get("pages") or 0))  # 0: not counted yet
        return cls(
            DocumentRef.from_dict(d["ref"]),
            int(d["pages"]),
            int(d.get("first") or 1),
            d.get("last"),
            int(d.get("part") or 0),
            int(d.get("parts") or 1),
        )


def check_shard_pages(shard_pages: Any) -> int:
    """``shard_pages`` as an int >= 1; :class:`~errors.ConfigError` otherwise."""
    try:
        n = int(shard_pages)
    except (TypeError, ValueError):
        raise errors.ConfigError(f"shard_pages must be an integer >= 1, got {shard_pages!r}") from None
    if n < 1 or isinstance(shard_pages, bool) or (isinstance(shard_pages, float) and n != shard_pages):
        raise errors.ConfigError(f"shard_pages must be an integer >= 1, got {shard_pages!r}")
    return n


def plan_shards(docs: Iterable[tuple[DocumentRef, int]], shard_pages: int) -> list[list[ShardItem]]:
    """Cut ``(document, page count)`` pairs, in listing order, into shards of at most
    ``shard_pages`` pages.

    A document that fits in one shard is never split: it goes whole into the open shard, or opens a
    new one when the open shard lacks room. A longer document fills the open shard's room, then whole
    shards, and its last part stays open for the next documents. So every shard but the last is
    full or was closed by a document that did not fit, and only long documents are split.
    """
    shard_pages = check_shard_pages(shard_pages)
    shards: list[list[ShardItem]] = []
    room = 0  # pages left in shards[-1]
    for ref, pages in docs:
        pages = max(1, int(pages))
        if pages <= shard_pages:
            if pages > room:
                shards.append([])
                room = shard_pages
            shards[-1].append(ShardItem(ref, pages))
            room -= pages
            continue
        spans: list[tuple[int, int]] = []
        first = 1
        while first <= pages:
            if room == 0:
                shards.append([])
                room = shard_pages
            last = min(pages, first + room - 1)
            spans.append((first, last))
            room -= last - first + 1
            first = last + 1
        # the shards this document's parts went to are the last len(spans) ones opened, in order
        for k, (a, b) in enumerate(spans):
            shards[len(shards) - len(spans) + k].append(ShardItem(ref, pages, a, b, k, len(spans)))
    return shards


@dataclass(frozen=True)
class PageCount:
    """One document's count: ``pages``; ``known`` when it comes from the document's bytes (a
    page-count cache may keep it), False when the document could not be read (counted 1, fails in
    its shard); ``bytes_read`` and ``requests``: what the store served to count it; ``ranged``:
    counted from ranged reads (:mod:`~airflow_provider_deepocr.core.pagecount`), not a whole read."""

    pages: int
    known: bool = True
    bytes_read: int = 0
    requests: int = 0
    ranged: bool = False


def _count_whole(ref: DocumentRef, read: Callable[[str], bytes]) -> PageCount:
    from airflow_provider_deepocr.core.records import Document
    from airflow_provider_deepocr.core.render import RenderLimits, count_pages

    try:
        data = read(ref.uri)
    except Exception as exc:  # unreadable now: one page, fails in its shard; not a fact to keep
        log.debug("page count of %s: %s, counted as 1", ref.uri, type(exc).__name__)
        return PageCount(1, known=False, requests=1)
    try:
        # no page cap here: the OCR shard applies max_pages; splitting needs the true count
        n = max(1, count_pages(Document.from_bytes(ref, data), RenderLimits(max_pages=10**9)))
    except Exception as exc:  # corrupt, encrypted…: one page, fails in its shard
        log.debug("page count of %s: %s, counted as 1", ref.uri, type(exc).__name__)
        n = 1
    return PageCount(n, bytes_read=len(data), requests=1)


def count_document(
    ref: DocumentRef,
    read: Callable[[str], bytes],
    read_range: Callable[[str, int, int], bytes] | None = None,
) -> PageCount:
    """A document's page count without rendering: 1 for a single-image file (by extension, no
    read); else, with ``read_range`` and a listed size, from a few ranged reads (a PDF's trailer and
    xref, a TIFF's IFD chain); where those leave any doubt, from the whole bytes (``read``) as
    PyMuPDF / Pillow count them. Both ways give the same count; 1 when the document cannot be read
    or opened (it fails later, in its shard, with the usual reason)."""
    if ref.uri.lower().endswith(_ONE_PAGE):
        return PageCount(1)
    if read_range is None or ref.size is None:
        return _count_whole(ref, read)
    from airflow_provider_deepocr.core.pagecount import Doubt, ranged_page_count
    from airflow_provider_deepocr.core.render import RenderLimits

    if ref.size > RenderLimits().max_bytes:
        return PageCount(1)  # file_too_large in its shard, as a whole read would find
    try:
        n, reader = ranged_page_count(lambda start, length: read_range(ref.uri, start, length), ref.size)
        return PageCount(n, bytes_read=reader.bytes_read, requests=reader.requests, ranged=True)
    except Doubt as exc:
        log.debug("page count of %s from ranged reads: %s; reading it whole", ref.uri, exc)
    except Exception as exc:  # the store failed a ranged read: try the whole read
        log.debug("ranged read of %s: %s; reading it whole", ref.uri, type(exc).__name__)
    return _count_whole(ref, read)


def count_pages_cheap(ref: DocumentRef, read: Callable[[str], bytes]) -> int:
    """:func:`count_document`'s page count from the whole bytes (``read``)."""
    return count_document(ref, read).pages


#: Documents counted at once by default: ranged reads are small, so the listing is bound by the
#: store's latency (about 2 requests a PDF, one after the other); at 25 ms a request 64 made ~900
#: documents/s, 128 make ~1,300 (bench/pipeline_ceiling.py, a store that only sleeps).
DEFAULT_COUNT_THREADS = 128


def count_all(
    refs: Sequence[DocumentRef], storage: Any, threads: int = DEFAULT_COUNT_THREADS
) -> list[PageCount]:
    """:func:`count_document` of every ref, ``threads`` at a time (object stores answer many
    requests at once), through ``storage`` (a :class:`~sources.Storage`: ranged reads) or a plain
    ``read(uri)`` callable (whole reads); logs progress at most every 30 s."""
    if not refs:
        return []
    from airflow_provider_deepocr.core.sources import Storage

    read = storage.read if hasattr(storage, "read") else storage
    read_range = getattr(storage, "read_range", None)
    if getattr(type(storage), "read_range", None) is Storage.read_range:
        read_range = None  # the ABC's default reads whole per range: one whole read is cheaper
    t0 = last = time.monotonic()
    out: list[PageCount] = []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for n in pool.map(lambda r: count_document(r, read, read_range), refs):
            out.append(n)
            now = time.monotonic()
            if now - last >= 30:
                last = now
                log.info("counting pages: %d/%d documents, %.0fs", len(out), len(refs), now - t0)
    return out
