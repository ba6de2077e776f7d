"""Stage 1: list the documents under a source URI and write the listing manifest; optionally skip
the unchanged ones (incremental listing) and cut the rest into shards of pages."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.pipeline.context import StageContext
from airflow_provider_deepocr.core.records import DocumentRef
from airflow_provider_deepocr.core.shards import DEFAULT_COUNT_THREADS
from airflow_provider_deepocr.core.work_layout import shard_file

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.sources import Storage, WorkArea
    from airflow_provider_deepocr.core.warehouse import Warehouse

log = logging.getLogger(__name__)


@dataclass
class ListResult:
    """What the listing hands on: the listing manifest, and with shards their manifests."""

    manifest_uri: str
    documents: int = 0
    skipped: int = 0  # unchanged since they were loaded: not read
    total_pages: int = 0  # sharded listings only: pages counted
    shards: list[str] = field(default_factory=list)  # the shard manifests' URIs
    spanning_uri: str | None = None  # the documents split across shards, with their parts
    spanning: int = 0  # how many documents are split across shards
    counted_from_cache: int = 0  # sharded listings: page counts the page-count cache answered
    count_bytes_read: int = 0  # sharded listings: document bytes read to count pages

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def unchanged_refs(
    refs: Sequence[DocumentRef],
    loaded: Iterable[tuple[str, int | None, str | None, str]],
    live_fingerprint: str,
) -> set[str]:
    """The URIs of ``refs`` that are loaded unchanged: ``loaded`` (source URI, size, version, config
    fingerprint of every loaded document, see ``Warehouse.loaded_sources``) holds the same URI, size
    and version (ETag, or mtime for files) under ``live_fingerprint``. Nothing is read."""
    listed = {r.uri: r for r in refs}
    same: set[str] = set()
    for uri, size, version, fp in loaded:
        ref = listed.get(uri)
        if ref is not None and fp == live_fingerprint and version is not None:
            if ref.version == version and (size is None or ref.size == size):
                same.add(uri)
    return same


def _skip_unchanged(
    ctx: StageContext, refs: list[DocumentRef], warehouse: Warehouse, live_fingerprint: str
) -> tuple[list[DocumentRef], int]:
    prefix = os.path.commonprefix([r.uri for r in refs])  # the listed URIs' form (file://…)
    same = unchanged_refs(refs, warehouse.loaded_sources(prefix), live_fingerprint)
    # the OCR stage compares this with the fingerprint it really runs under (see ocr.ocr_manifest)
    ctx.work.write_json(
        ctx.run_layout.listing_note(), {"fingerprint": live_fingerprint, "skipped": len(same)}
    )
    return [r for r in refs if r.uri not in same], len(same)


def _count_pages(
    ctx: StageContext,
    source_uri: str,
    refs: list[DocumentRef],
    storage: Storage,
    threads: int,
    complete: bool,
) -> tuple[list[int], int, int]:
    """Every ref's page count: from the page-count cache (read once here) where the URI, version
    and size match, else counted (:func:`shards.count_all`); the cache is written back when it
    changed. ``complete``: ``refs`` is the whole listing of ``source_uri`` (entries of objects no
    longer listed are dropped). Returns the counts, how many the cache answered, bytes read."""
    from airflow_provider_deepocr.core.shards import count_all

    cache_uri = ctx.layout.page_counts(source_uri)
    cached: dict[str, list[Any]] = {}
    try:
        if ctx.work.exists(cache_uri):
            found = ctx.work.read_json(cache_uri)
            cached = found if isinstance(found, dict) else {}
    except (OSError, ValueError, errors.StorageError) as exc:  # a cache: never fail the listing for it
        log.warning("page-count cache %s unreadable (%s): counting every document", cache_uri, exc)
    counts: list[int | None] = []
    for r in refs:
        hit = cached.get(r.uri)
        ok = r.version is not None and isinstance(hit, list) and hit[:2] == [r.version, r.size]
        counts.append(int(hit[2]) if ok and hit is not None else None)
    todo = [i for i, n in enumerate(counts) if n is None]
    done = count_all([refs[i] for i in todo], storage, threads=threads)
    fresh = {} if complete else dict(cached)
    for i, r in enumerate(refs):
        if counts[i] is not None and r.uri in cached:
            fresh[r.uri] = cached[r.uri]
    for i, pc in zip(todo, done, strict=True):
        counts[i] = pc.pages
        if pc.known and refs[i].version is not None:
            fresh[refs[i].uri] = [refs[i].version, refs[i].size, pc.pages]
    if fresh != cached:
        ctx.work.write_json(cache_uri, fresh)
    return [int(n or 1) for n in counts], len(refs) - len(todo), sum(pc.bytes_read for pc in done)


def _write_shards(
    ctx: StageContext, refs: list[DocumentRef], counts: list[int], shard_pages: int
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Write the shard manifests and the documents split across them; returns the shards' URIs and
    the split documents by URI."""
    from airflow_provider_deepocr.core.shards import plan_shards

    shard_uris = []
    parts: dict[str, dict[str, Any]] = {}
    for i, items in enumerate(plan_shards(zip(refs, counts, strict=True), shard_pages)):
        name = shard_file(i)
        shard_uris.append(ctx.work.write_jsonl(ctx.run_layout.shard(name), [it.to_dict() for it in items]))
        for it in items:
            if it.is_part:
                d = parts.setdefault(it.ref.uri, {"ref": it.ref.to_dict(), "pages": it.pages, "parts": []})
                d["parts"].append({"shard": name, "first": it.first, "last": it.last})
    return shard_uris, parts


def list_source(
    ctx: StageContext,
    source_uri: str,
    max_documents: int | None = None,
    shard_pages: int | None = None,
    warehouse: Warehouse | None = None,
    live_fingerprint: str | None = None,
    count_threads: int = DEFAULT_COUNT_THREADS,
) -> ListResult:
    """List the documents under ``source_uri`` and write the listing manifest.

    ``warehouse`` and ``live_fingerprint`` (the live config fingerprint) turn on the incremental
    listing: an object whose URI, size and version match a document the warehouse holds under that
    fingerprint is skipped without reading it (``skipped`` counts them). ``shard_pages`` cuts the
    listing into shards of at most that many pages (:mod:`~airflow_provider_deepocr.core.shards`):
    each listed document's pages are counted (``count_threads`` documents at a time) from a few
    ranged reads (a PDF's trailer and xref, a TIFF's IFD chain; a whole read where those leave any
    doubt), or from the work area's page-count cache when the object's URI, version and size are
    the ones counted before; the result lists the shard manifests (``shards``) and the documents
    split across them.
    """
    from airflow_provider_deepocr.core.shards import check_shard_pages
    from airflow_provider_deepocr.core.sources import list_documents

    if shard_pages is not None:
        shard_pages = check_shard_pages(shard_pages)
    storage = ctx.storage_of(source_uri)
    refs = list_documents(source_uri, storage=storage, max_documents=max_documents)
    skipped = 0
    if warehouse is not None and live_fingerprint and refs:
        refs, skipped = _skip_unchanged(ctx, refs, warehouse, live_fingerprint)
    uri = ctx.run_layout.documents()
    if shard_pages is None:
        ctx.work.write_jsonl(uri, [r.to_dict() for r in refs])
        log.info("listed %d documents under %s (%d unchanged, skipped)", len(refs), source_uri, skipped)
        return ListResult(manifest_uri=uri, documents=len(refs), skipped=skipped)
    counts, from_cache, bytes_read = _count_pages(
        ctx, source_uri, refs, storage, count_threads, complete=max_documents is None
    )
    ctx.work.write_jsonl(uri, [{**r.to_dict(), "pages": n} for r, n in zip(refs, counts, strict=True)])
    shard_uris, parts = _write_shards(ctx, refs, counts, shard_pages)
    spanning_uri = ctx.work.write_jsonl(ctx.run_layout.spanning(), list(parts.values()))
    log.info(
        "listed %d documents, %d pages under %s in %d shards of at most %d pages "
        "(%d documents split across shards, %d unchanged, skipped; %d page counts cached, "
        "%d bytes read to count the rest)",
        len(refs),
        sum(counts),
        source_uri,
        len(shard_uris),
        shard_pages,
        len(parts),
        skipped,
        from_cache,
        bytes_read,
    )
    return ListResult(
        manifest_uri=uri,
        documents=len(refs),
        skipped=skipped,
        total_pages=sum(counts),
        shards=shard_uris,
        spanning_uri=spanning_uri,
        spanning=len(parts),
        counted_from_cache=from_cache,
        count_bytes_read=bytes_read,
    )


def stage_list(
    source_uri: str,
    work: WorkArea,
    run_id: str,
    storage: Storage | None = None,
    s3_client: Any = None,
    max_documents: int | None = None,
    shard_pages: int | None = None,
    warehouse: Warehouse | None = None,
    fingerprint: str | None = None,
    count_threads: int = DEFAULT_COUNT_THREADS,
) -> ListResult:
    """:func:`list_source` with the context's parts as arguments (``fingerprint``: the live one)."""
    return list_source(
        StageContext(work, run_id, storage, s3_client),
        source_uri,
        max_documents=max_documents,
        shard_pages=shard_pages,
        warehouse=warehouse,
        live_fingerprint=fingerprint,
        count_threads=count_threads,
    )
