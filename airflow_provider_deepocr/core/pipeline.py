"""The pipeline: list -> read -> render -> OCR -> parse -> validate -> load.

Each stage is a function over a *manifest* in the work area (a JSONL file of small entries:
URIs, ids, counts), so Airflow operators can run one stage per task and pass only the
manifest URI through XCom, while ``run_pipeline`` runs every stage in-process for the CLI.

Work-area layout (content-addressed; a retried or re-run stage finds finished work and skips it)::

    runs/<run_id>/documents.jsonl             listing: one DocumentRef per line
    runs/<run_id>/shards/<NNNNN>.jsonl        a sharded listing: one ShardItem per line (core.shards)
    runs/<run_id>/spanning.jsonl              documents split across shards, with their parts
    runs/<run_id>/ocr.jsonl                   one OcrEntry per document (ocr/<shard>.jsonl per shard)
    runs/<run_id>/stats/<shard>.json          what the OCR stage measured (core.runs.OcrStats)
    runs/<run_id>/records.jsonl               one RecordsEntry per document (records/<shard>.jsonl)
    ocr/<fingerprint>/<doc_id>/p00001.json    one OcrResult per page
    ocr/<fingerprint>/<doc_id>/document.json  the document's OCR summary (pages, failures)
    ocr/<fingerprint>/<doc_id>/part-00001-05000.json  the same for one part of a split document
    records/<fingerprint>/<doc_id>.json       DocumentResult (parsed records with provenance)

A sharded run maps the OCR, parse and load stages over the shards (one Airflow task instance
each); the documents split across shards are assembled, parsed and loaded once, whole, after every
shard's OCR (:func:`stage_assemble`).

Failures are isolated to the smallest unit: a page that fails is a failure row of its document,
a document that fails is a failure row of the batch; nothing else is lost.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.coverage import page_meta  # issue 21
from airflow_provider_deepocr.core.pageprep import PREP_VERSION, prepare_for_ocr  # issue 21
from airflow_provider_deepocr.core.records import (
    DocumentRef,
    DocumentResult,
    Failure,
    OcrResult,
    PageImage,
    PageRecord,
    fingerprint,
)
from airflow_provider_deepocr.core.review import (
    APPROVE,
    REJECT,
    left_for_other_engines,
    mark_reocr_done,
    review_decisions,
)
from airflow_provider_deepocr.core.runs import OcrStats, Progress, run_row, utc_now
from airflow_provider_deepocr.core.shards import ShardItem

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.engines.base import OcrEngine
    from airflow_provider_deepocr.core.render import RenderLimits
    from airflow_provider_deepocr.core.sources import Storage, WorkArea
    from airflow_provider_deepocr.core.warehouse import Warehouse

log = logging.getLogger(__name__)

ON_VALIDATION_FAILURE = ("quarantine", "fail", "warn")


@dataclass
class OcrSettings:
    """Everything about rendering and OCR that changes the output (fingerprinted).

    :param dpi: render resolution for PDF pages.
    :param max_pages: documents with more pages are ``too_many_pages`` failure rows.
    :param max_pixels: the largest page image; see ``on_oversize``.
    :param prefetch: batches rendered ahead of the engine (0: no overlap); not fingerprinted.
    :param text_layer: ``never``; ``auto``: good PDF text layers skip the model; ``only``: never
        use the model.
    :param on_oversize: ``downscale`` (default: a page over ``max_pixels`` is rendered at the
        highest DPI that fits, flagged ``downscaled``, its DPI on the page row) or ``fail``
        (the page is an ``image_too_large`` failure row).
    """

    dpi: int = 144
    max_pages: int = 2000
    max_pixels: int = 50_000_000
    prefetch: int = 2
    text_layer: str = "never"
    on_oversize: str = "downscale"

    def __post_init__(self) -> None:
        from airflow_provider_deepocr.core.engines.pdf_text import TEXT_LAYER_MODES
        from airflow_provider_deepocr.core.render import ON_OVERSIZE

        if self.text_layer not in TEXT_LAYER_MODES:
            raise errors.ConfigError(f"text_layer must be one of {TEXT_LAYER_MODES}, got {self.text_layer!r}")
        if self.on_oversize not in ON_OVERSIZE:
            raise errors.ConfigError(f"on_oversize must be one of {ON_OVERSIZE}, got {self.on_oversize!r}")

    def limits(self) -> RenderLimits:
        from airflow_provider_deepocr.core.render import RenderLimits

        return RenderLimits(
            max_pages=self.max_pages, max_pixels=self.max_pixels, on_oversize=self.on_oversize
        )


def config_fingerprint(engine: OcrEngine, settings: OcrSettings) -> str:
    """Fingerprint of the engine, its model and prompt, the render settings and the parser version."""
    from airflow_provider_deepocr.core.parse import PARSER_VERSION

    return fingerprint(
        {
            "engine": engine.describe(),
            "dpi": settings.dpi,
            "max_pixels": settings.max_pixels,
            "on_oversize": settings.on_oversize,
            "parser": PARSER_VERSION,
            "text_layer": settings.text_layer,
            "pageprep": PREP_VERSION,  # issue 21: orientation + clean-up change what engines read
        }
    )


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


@dataclass
class StageResult:
    """What a stage hands to the next one (and what an operator pushes to XCom): a URI and counts."""

    manifest_uri: str
    documents: int = 0
    pages: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    config_fingerprint: str | None = None
    total_pages: int = 0  # pages found in readable documents (OCR stage)
    shards: list[str] = field(default_factory=list)  # listing: the shard manifests' URIs
    spanning_uri: str | None = None  # listing: the documents split across shards
    spanning: int = 0  # how many documents are split across shards (listing), or deferred (parse)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def shard_name(manifest_uri: str) -> str:
    """The shard a stage manifest belongs to: ``00003`` for ``…/shards/00003.jsonl``,
    ``…/ocr/00003.jsonl`` or ``…/records/00003.jsonl``; ``spanning`` for the assembled split
    documents; ``all`` for an unsharded run."""
    head, _, name = manifest_uri.rstrip("/").rpartition("/")
    if head.rpartition("/")[2] in ("shards", "ocr", "records", "stats"):
        return name.removesuffix(".jsonl").removesuffix(".json")
    return "spanning" if name == "spanning.jsonl" else "all"


def _stage_uri(work: WorkArea, run_id: str, stage: str, shard: str) -> str:
    """``runs/<run_id>/<stage>.jsonl`` for an unsharded run, else ``runs/<run_id>/<stage>/<shard>.jsonl``."""
    if shard == "all":
        return work.uri("runs", run_id, f"{stage}.jsonl")
    return work.uri("runs", run_id, stage, f"{shard}.jsonl")


def _count_failures(failures: Iterable[Failure]) -> dict[str, int]:
    return dict(sorted(Counter(f.reason for f in failures).items()))


def _merge_counts(*counts: dict[str, int]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    return dict(sorted(total.items()))


# --------------------------------------------------------------------------------------------
# Stage 1: list


def unchanged_refs(
    refs: Sequence[DocumentRef], loaded: Iterable[tuple[str, int | None, str | None, str]], fingerprint: str
) -> set[str]:
    """The URIs of ``refs`` that are loaded unchanged: ``loaded`` (source URI, size, version, config
    fingerprint of every loaded document, see ``Warehouse.loaded_sources``) holds the same URI, size
    and version (ETag, or mtime for files) under ``fingerprint``. Nothing is read."""
    listed = {r.uri: r for r in refs}
    same: set[str] = set()
    for uri, size, version, fp in loaded:
        ref = listed.get(uri)
        if ref is not None and fp == fingerprint and version is not None:
            if ref.version == version and (size is None or ref.size == size):
                same.add(uri)
    return same


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
    count_threads: int = 8,
) -> StageResult:
    """List the documents under ``source_uri`` and write the listing manifest.

    ``warehouse`` and ``fingerprint`` (the live config fingerprint) turn on the incremental listing:
    an object whose URI, size and version match a document the warehouse holds under that
    fingerprint is skipped without reading it (``skipped`` counts them). ``shard_pages`` cuts the
    listing into shards of at most that many pages (:mod:`~airflow_provider_deepocr.core.shards`):
    each listed document is opened once to count its pages (``count_threads`` at a time), and the
    result lists the shard manifests (``shards``) and the documents split across them.
    """
    from airflow_provider_deepocr.core.shards import check_shard_pages, count_all, plan_shards
    from airflow_provider_deepocr.core.sources import list_documents, storage_for

    if shard_pages is not None:
        shard_pages = check_shard_pages(shard_pages)
    storage = storage or storage_for(source_uri, s3_client=s3_client)
    refs = list_documents(source_uri, storage=storage, max_documents=max_documents)
    skipped = 0
    if warehouse is not None and fingerprint and refs:
        prefix = os.path.commonprefix([r.uri for r in refs])  # the listed URIs' form (file://…)
        same = unchanged_refs(refs, warehouse.loaded_sources(prefix), fingerprint)
        skipped = len(same)
        refs = [r for r in refs if r.uri not in same]
        # the OCR stage compares this with the fingerprint it really runs under (see stage_ocr)
        work.write_json(
            work.uri("runs", run_id, "listing.json"), {"fingerprint": fingerprint, "skipped": skipped}
        )
    uri = work.uri("runs", run_id, "documents.jsonl")
    if shard_pages is None:
        work.write_jsonl(uri, [r.to_dict() for r in refs])
        log.info("listed %d documents under %s (%d unchanged, skipped)", len(refs), source_uri, skipped)
        return StageResult(manifest_uri=uri, documents=len(refs), skipped=skipped)
    counts = count_all(refs, storage.read, threads=count_threads)
    work.write_jsonl(uri, [{**r.to_dict(), "pages": n} for r, n in zip(refs, counts, strict=True)])
    plan = plan_shards(zip(refs, counts, strict=True), shard_pages)
    shard_uris = []
    parts: dict[str, dict[str, Any]] = {}
    for i, items in enumerate(plan):
        name = f"{i:05d}"
        shard_uris.append(
            work.write_jsonl(
                work.uri("runs", run_id, "shards", f"{name}.jsonl"), [it.to_dict() for it in items]
            )
        )
        for it in items:
            if it.is_part:
                d = parts.setdefault(it.ref.uri, {"ref": it.ref.to_dict(), "pages": it.pages, "parts": []})
                d["parts"].append({"shard": name, "first": it.first, "last": it.last})
    spanning_uri = work.write_jsonl(work.uri("runs", run_id, "spanning.jsonl"), list(parts.values()))
    log.info(
        "listed %d documents, %d pages under %s in %d shards of at most %d pages "
        "(%d documents split across shards, %d unchanged, skipped)",
        len(refs),
        sum(counts),
        source_uri,
        len(shard_uris),
        shard_pages,
        len(parts),
        skipped,
    )
    return StageResult(
        manifest_uri=uri,
        documents=len(refs),
        skipped=skipped,
        total_pages=sum(counts),
        shards=shard_uris,
        spanning_uri=spanning_uri,
        spanning=len(parts),
    )


# --------------------------------------------------------------------------------------------
# Stage 2: read + render + OCR


@dataclass
class OcrEntry:
    """One document after OCR: where its pages are, and what failed."""

    ref: DocumentRef
    doc_id: str | None
    media_type: str
    page_count: int
    config_fingerprint: str
    ocr_dir: str | None
    pages_ok: list[int] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    first: int = 1  # a part of a document split across shards: pages first..last, part of parts
    last: int | None = None
    parts: int = 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ref"] = self.ref.to_dict()
        d["failures"] = [f.to_dict() for f in self.failures]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OcrEntry:
        d = dict(d)
        d["ref"] = DocumentRef.from_dict(d["ref"])
        d["failures"] = [Failure.from_dict(f) for f in d["failures"]]
        return cls(**d)


def _page_uri(ocr_dir: str, page_no: int) -> str:
    return f"{ocr_dir.rstrip('/')}/p{page_no:05d}.json"


def _summary_uri(ocr_dir: str, item: ShardItem) -> str:
    """Where the OCR summary of a document (``document.json``) or of one part of it goes."""
    if not item.is_part:
        return f"{ocr_dir}/document.json"
    return f"{ocr_dir}/part-{item.first:05d}-{item.last:05d}.json"


def _part_of(entry: OcrEntry, item: ShardItem) -> OcrEntry:
    """A finished whole document's summary cut down to the pages of ``item`` (a part)."""
    pages = set(item.page_numbers() or ())
    return OcrEntry(
        item.ref,
        entry.doc_id,
        entry.media_type,
        entry.page_count,
        entry.config_fingerprint,
        entry.ocr_dir,
        [p for p in entry.pages_ok if p in pages],
        [f for f in entry.failures if f.page_no is None or f.page_no in pages],
        item.first,
        item.last,
        item.parts,
    )


@dataclass
class _DocState:
    """A document moving through the OCR stage (shared by the producer and the consumer)."""

    entry: OcrEntry
    summary_uri: str | None
    t0: float
    inflight: int = 0  # pages handed to the engine queue and not finished yet
    rendered_all: bool = False
    finished: bool = False
    text_blocks: dict[int, list[dict[str, Any]]] | None = None  # PDF text layer by page, when routed


@dataclass
class _Batch:
    pages: list[PageImage]
    states: list[_DocState]
    prepared: Any = None
    engine: OcrEngine | None = None  # None: the run's engine; else e.g. the pdf-text engine


_END = object()


class _OcrRun:
    """Read -> render -> (prepare) in a producer thread, OCR in the calling thread.

    Pages are batched across documents (a folder of one-page receipts fills a GPU batch as
    well as one long filing), and a bounded queue of ``prefetch`` batches keeps memory flat on a
    3,000-page PDF while the next batch is rendered and preprocessed during the current generate.
    """

    def __init__(
        self,
        items: Sequence[ShardItem],
        storage_of: Any,
        engine: OcrEngine,
        work: WorkArea,
        settings: OcrSettings,
        fp: str,
        label: str = "",
    ) -> None:
        self.items = items
        self.storage_of = storage_of
        self.engine = engine
        self.work = work
        self.settings = settings
        self.fp = fp
        self.batch_size = max(1, int(engine.batch_size or 1))
        self.text_engine: OcrEngine | None = None
        if settings.text_layer != "never":
            from airflow_provider_deepocr.core.engines.pdf_text import PdfTextEngine

            self.text_engine = PdfTextEngine()
        self.states: list[_DocState] = []
        self.done_docs = 0
        self.lock = threading.Lock()
        total = sum(len(it.page_numbers() or ()) or it.pages for it in items)
        self.progress = Progress(total, label)
        self.engine_seconds = 0.0

    # -- producer ---------------------------------------------------------------------------

    def _done(self, item: ShardItem, entry: OcrEntry, t0: float) -> tuple[_DocState, None]:
        """A document (or part) the OCR of an earlier run or try finished."""
        entry.ref = item.ref  # the same content may be listed under another URI or version
        log.info("document %s (%s): OCR already done, skipping", item.ref.uri, (entry.doc_id or "")[:12])
        state = _DocState(entry, None, t0)
        state.finished = True
        self.progress.add(len(entry.pages_ok), ocr=False)
        return state, None

    def _open(self, item: ShardItem) -> tuple[_DocState, Any]:
        """Read and check one document (or the part of it ``item`` names); returns its state and a
        page iterator (or None)."""
        from airflow_provider_deepocr.core.render import count_pages, detect_media_type, render_pages
        from airflow_provider_deepocr.core.sources import read_document

        t0 = time.perf_counter()
        fp, ref = self.fp, item.ref
        span = {"first": item.first, "last": item.last, "parts": item.parts} if item.is_part else {}
        try:
            doc = read_document(ref, self.storage_of(ref.uri))
        except errors.DeepOcrError as exc:
            log.warning("document %s unreadable: %s", ref.uri, exc.reason)
            failures = [_failure(ref, None, None, "read", exc)]
            return _DocState(OcrEntry(ref, None, "", 0, fp, None, failures=failures, **span), None, t0), None
        doc_id = doc.sha256
        ocr_dir = self.work.uri("ocr", fp, doc_id)
        summary_uri = _summary_uri(ocr_dir, item)
        if self.work.exists(summary_uri):
            entry = OcrEntry.from_dict(self.work.read_json(summary_uri))
            if not item.pages:  # an unsharded listing: the total grows as documents open
                self.progress.total += entry.page_count
            return self._done(item, entry, t0)
        whole = f"{ocr_dir}/document.json"
        if item.is_part and self.work.exists(whole):  # done whole by an unsharded or other run
            return self._done(item, _part_of(OcrEntry.from_dict(self.work.read_json(whole)), item), t0)
        try:
            media_type = detect_media_type(doc.data)
            page_count = count_pages(doc)
            if item.is_part and (item.last or 0) > page_count:  # changed since it was listed
                raise errors.DocumentError(
                    errors.SOURCE_CHANGED, f"{page_count} pages now, {item.pages} when listed"
                )
            pages = render_pages(
                doc, dpi=self.settings.dpi, limits=self.settings.limits(), pages=item.page_numbers()
            )
        except errors.DeepOcrError as exc:
            log.warning("document %s (%s) rejected: %s", ref.uri, doc_id[:12], exc.reason)
            failures = [_failure(ref, doc_id, None, "render", exc)]
            return _DocState(
                OcrEntry(ref, doc_id, "", 0, fp, None, failures=failures, **span), None, t0
            ), None
        entry = OcrEntry(ref, doc_id, media_type, page_count, fp, ocr_dir, **span)
        if not item.pages:
            self.progress.total += page_count
        state = _DocState(entry, summary_uri, t0)
        if self.text_engine is not None and media_type == "application/pdf":
            from airflow_provider_deepocr.core.engines.pdf_text import extract_pdf_blocks

            try:
                state.text_blocks = extract_pdf_blocks(doc.data)
            except Exception as exc:  # no usable text layer: every page goes to the model
                log.warning("document %s: text layer unreadable (%s)", doc_id[:12], type(exc).__name__)
        return state, pages

    def _route(self, state: _DocState, page: PageImage) -> str:
        """``model``, ``text`` (the page's own text layer) or ``none`` (text_layer="only", no layer)."""
        if self.text_engine is None:
            return "model"
        from airflow_provider_deepocr.core.engines.pdf_text import page_text, text_layer_quality

        blocks = (state.text_blocks or {}).get(page.page_no)
        if blocks and text_layer_quality(page_text(blocks)):
            page.text_layer = json.dumps(blocks, ensure_ascii=False)
            return "text"
        return "none" if self.settings.text_layer == "only" else "model"

    def _prepare(self, batch: _Batch) -> _Batch:
        try:
            batch.prepared = self.engine.prepare(batch.pages)
        except Exception:  # the engine retries page by page in ocr_prepared / ocr
            log.warning("engine %s: preparing a batch of %d pages failed", self.engine.name, len(batch.pages))
            batch.prepared = None
        return batch

    def produce(self, put: Any) -> None:
        batch = _Batch([], [])
        for item in self.items:
            ref = item.ref
            state, pages = self._open(item)
            with self.lock:
                self.states.append(state)
            if pages is not None:
                entry = state.entry
                try:
                    for item in pages:
                        if isinstance(item, errors.DeepOcrError):
                            entry.failures.append(_failure(ref, entry.doc_id, item.page_no, "render", item))
                            continue
                        assert entry.ocr_dir is not None
                        if self.work.exists(_page_uri(entry.ocr_dir, item.page_no)):
                            entry.pages_ok.append(item.page_no)  # finished by an earlier, interrupted try
                            self.progress.add(1, ocr=False)
                            continue
                        route = self._route(state, item)
                        if route == "none":
                            entry.failures.append(
                                Failure(
                                    ref.uri,
                                    errors.NO_TEXT_LAYER,
                                    "text_layer=only and the page has no usable text layer",
                                    entry.doc_id,
                                    item.page_no,
                                    "route",
                                )
                            )
                            continue
                        with self.lock:
                            state.inflight += 1
                        if route == "text":
                            put(_Batch([item], [state], engine=self.text_engine))
                            continue
                        item = prepare_for_ocr(item)  # issue 21: orientation + clean-up (core.pageprep)
                        batch.pages.append(item)
                        batch.states.append(state)
                        if len(batch.pages) >= self.batch_size:
                            put(self._prepare(batch))
                            batch = _Batch([], [])
                except errors.DeepOcrError as exc:
                    log.warning(
                        "document %s (%s) rejected: %s", ref.uri, (entry.doc_id or "")[:12], exc.reason
                    )
                    entry.failures.append(_failure(ref, entry.doc_id, None, "render", exc))
                except Exception as exc:  # a renderer bug fails this document only
                    log.exception("document %s: rendering failed", ref.uri)
                    entry.failures.append(
                        Failure(
                            ref.uri, errors.INTERNAL_ERROR, type(exc).__name__, entry.doc_id, None, "render"
                        )
                    )
            with self.lock:
                state.rendered_all = True
            put(state)  # a marker: this document has no more pages coming
        if batch.pages:
            put(self._prepare(batch))

    # -- consumer ---------------------------------------------------------------------------

    def _run_batch(self, batch: _Batch) -> None:
        engine = batch.engine or self.engine
        t0 = time.perf_counter()
        try:
            if batch.prepared is not None:
                results = engine.ocr_prepared(batch.prepared)
            else:
                results = engine.ocr(batch.pages)
            if len(results) != len(batch.pages):
                raise RuntimeError(f"{len(results)} results for {len(batch.pages)} pages")
        except Exception as exc:  # an engine bug must not lose the rest of the run
            log.exception("engine %s failed on a batch of %d pages", engine.name, len(batch.pages))
            results = [engine.error_result() for _ in batch.pages]
            detail = type(exc).__name__
        else:
            detail = "engine error"
        self.engine_seconds += time.perf_counter() - t0
        self.progress.add(len(batch.pages), sum(r.output_tokens or 0 for r in results))
        for page, state, result in zip(batch.pages, batch.states, results, strict=True):
            entry = state.entry
            if result.finish_reason == "error":
                entry.failures.append(
                    Failure(entry.ref.uri, errors.OCR_ERROR, detail, entry.doc_id, page.page_no, "ocr")
                )
            else:
                assert entry.ocr_dir is not None
                meta = result.to_dict()
                meta.update(page_no=page.page_no, width=page.width, height=page.height, dpi=page.dpi)
                # issue 21: rotation, coverage (core.coverage) and render/prep/engine flags for the page row
                meta.update(page_meta(page, result, image_page=batch.engine is None))
                self.work.write_json(_page_uri(entry.ocr_dir, page.page_no), meta)
                entry.pages_ok.append(page.page_no)
            with self.lock:
                state.inflight -= 1
        for state in {id(s): s for s in batch.states}.values():
            self._maybe_finish(state)

    def _maybe_finish(self, state: _DocState) -> None:
        with self.lock:
            if state.finished or not state.rendered_all or state.inflight:
                return
            state.finished = True
        entry = state.entry
        entry.pages_ok.sort()
        if state.summary_uri is not None and not any(f.page_no is None for f in entry.failures):
            # only a document that rendered completely is marked done; its failed pages are
            # retried by the next run, its finished pages are not
            if not any(f.stage == "ocr" for f in entry.failures):
                self.work.write_json(state.summary_uri, entry.to_dict())
        self.done_docs += 1
        log.info(
            "OCR %d/%d documents: %s (%s) %d/%d pages by %s in %.2fs, %d failures",
            self.done_docs,
            len(self.items),
            entry.ref.uri,
            (entry.doc_id or "-")[:12],
            len(entry.pages_ok),
            entry.page_count,
            self.engine.name,
            time.perf_counter() - state.t0,
            len(entry.failures),
        )

    def run(self) -> list[OcrEntry]:
        prefetch = max(0, int(self.settings.prefetch))
        if prefetch == 0:
            self.produce(self._consume_one)
        else:
            q: queue.Queue[Any] = queue.Queue(maxsize=prefetch)
            failure: list[BaseException] = []

            def producer() -> None:
                try:
                    self.produce(q.put)
                except BaseException as exc:  # surfaced in the calling thread below
                    failure.append(exc)
                finally:
                    q.put(_END)

            thread = threading.Thread(target=producer, name="deepocr-render", daemon=True)
            thread.start()
            while (item := q.get()) is not _END:
                self._consume_one(item)
            thread.join()
            if failure:
                raise failure[0]
        for state in self.states:
            self._maybe_finish(state)
        return [s.entry for s in self.states]

    def _consume_one(self, item: _Batch | _DocState) -> None:
        if isinstance(item, _Batch):
            self._run_batch(item)
        else:
            self._maybe_finish(item)


def ocr_documents(
    refs: Sequence[DocumentRef | ShardItem],
    engine: OcrEngine,
    work: WorkArea,
    settings: OcrSettings,
    fp: str,
    storage: Storage | None = None,
    s3_client: Any = None,
) -> list[OcrEntry]:
    """Read, render and OCR documents (or the parts of them shard items name). Never raises for
    bad input: failures are in the entries."""
    items = [r if isinstance(r, ShardItem) else ShardItem(r, 0) for r in refs]
    return _ocr_run(items, engine, work, settings, fp, storage, s3_client).run()


def _ocr_run(
    items: Sequence[ShardItem],
    engine: OcrEngine,
    work: WorkArea,
    settings: OcrSettings,
    fp: str,
    storage: Storage | None,
    s3_client: Any,
    label: str = "",
) -> _OcrRun:
    from airflow_provider_deepocr.core.sources import storage_for

    def storage_of(uri: str) -> Storage:
        return storage or storage_for(uri, s3_client=s3_client)

    return _OcrRun(items, storage_of, engine, work, settings, fp, label)


def _failure(
    ref: DocumentRef, doc_id: str | None, page_no: int | None, stage: str, exc: errors.DeepOcrError
) -> Failure:
    return Failure(
        source_uri=ref.uri, reason=exc.reason, detail=exc.detail, doc_id=doc_id, page_no=page_no, stage=stage
    )


def stage_ocr(
    manifest_uri: str,
    work: WorkArea,
    run_id: str,
    engine: OcrEngine,
    storage: Storage | None = None,
    s3_client: Any = None,
    settings: OcrSettings | None = None,
    *,
    task_id: str = "",
    model_load_seconds: float = 0.0,
    gpu_hour_cost: float | None = None,
) -> StageResult:
    """OCR every document of a listing manifest, or of one shard of it; writes the OCR manifest
    and the stage's :class:`~airflow_provider_deepocr.core.runs.OcrStats` (for the runs table).

    ``task_id``, ``model_load_seconds`` (what building the engine took) and ``gpu_hour_cost`` only
    go into those stats. Logs a progress line at most every 30 s."""
    settings = settings or OcrSettings()
    fp = config_fingerprint(engine, settings)
    listing_uri = work.uri("runs", run_id, "listing.json")
    if work.exists(listing_uri):
        assumed = work.read_json(listing_uri)
        if assumed.get("skipped") and assumed.get("fingerprint") != fp:
            log.warning(
                "the configuration changed since the last run: the listing skipped %d documents loaded "
                "under the previous configuration; the next run re-reads them under this one",
                assumed["skipped"],
            )
    shard = shard_name(manifest_uri)
    stats = OcrStats(shard=shard, task_id=task_id, started_at=utc_now(), config_fingerprint=fp)
    items = [ShardItem.from_dict(d) for d in work.read_jsonl(manifest_uri)]
    decisions = review_decisions(work)
    held = left_for_other_engines(decisions, engine.name)
    if held:  # a reviewer sent these to another engine: the next run with that engine takes them
        kept = [it for it in items if it.ref.uri not in held]
        log.info("%d documents are left for the engine a reviewer chose", len(items) - len(kept))
        items = kept
    t0 = time.perf_counter()
    label = "" if shard == "all" else f"shard {shard}"
    run = _ocr_run(items, engine, work, settings, fp, storage, s3_client, label)
    entries = run.run()
    if decisions:
        mark_reocr_done(work, decisions, {it.ref.uri for it in items}, engine.name)
    if run.progress.lines:  # a task that logged progress ends with a last line
        run.progress.log()
    uri = _stage_uri(work, run_id, "ocr", shard)
    work.write_jsonl(uri, [e.to_dict() for e in entries])
    failed = _count_failures(f for e in entries for f in e.failures)
    stats.ended_at = utc_now()
    stats.documents = len(entries)
    stats.pages = run.progress.total
    stats.pages_ocr = run.progress.ocr_pages
    stats.engine, stats.model, stats.device = engine.name, engine.model, engine.device_name()
    stats.model_load_seconds = model_load_seconds
    stats.engine_seconds = run.engine_seconds
    stats.output_tokens = run.progress.tokens
    stats.wall_seconds = time.perf_counter() - t0
    stats.gpu_hour_cost = gpu_hour_cost
    stats.failed = failed
    work.write_json(work.uri("runs", run_id, "stats", f"{shard}.json"), stats.to_dict())
    return StageResult(
        manifest_uri=uri,
        documents=len(entries),
        pages=sum(len(e.pages_ok) for e in entries),
        failed=failed,
        config_fingerprint=fp,
        total_pages=sum(e.page_count for e in entries),
    )


# --------------------------------------------------------------------------------------------
# Stage 3: parse (+ validate)


def build_records(entry: OcrEntry, work: WorkArea) -> DocumentResult:
    """Parse one document's OCR output into records with provenance."""
    from airflow_provider_deepocr.core.parse import parse_page, parse_structured

    result = DocumentResult(
        ref=entry.ref,
        doc_id=entry.doc_id or "",
        media_type=entry.media_type,
        page_count=entry.page_count,
        config_fingerprint=entry.config_fingerprint,
        failures=list(entry.failures),
    )
    if entry.ocr_dir is None or any(f.page_no is None for f in entry.failures):
        return result  # a document-level failure rejects the whole document: no partial loads
    for page_no in entry.pages_ok:
        meta = work.read_json(_page_uri(entry.ocr_dir, page_no))
        width, height, dpi = meta.pop("width"), meta.pop("height"), meta.pop("dpi")
        meta.pop("page_no")
        render_flags = meta.pop("page_flags", [])
        rotation, coverage = meta.pop("rotation", None), meta.pop("coverage", None)  # issue 21
        ocr = OcrResult.from_dict(meta)
        try:
            if ocr.blocks is not None:
                parsed = parse_structured(ocr.blocks, page_no, width, height)
            else:
                parsed = parse_page(ocr.raw_text, page_no, width, height, finish_reason=ocr.finish_reason)
        except Exception as exc:  # the parser must not raise; if it does, lose one page, not the doc
            log.exception("parser failed on %s page %d", entry.doc_id, page_no)
            result.failures.append(
                Failure(entry.ref.uri, errors.PARSE_ERROR, type(exc).__name__, entry.doc_id, page_no, "parse")
            )
            continue
        if render_flags:
            parsed.flags = sorted({*parsed.flags, *render_flags})
        result.pages.append(
            PageRecord(
                doc_id=result.doc_id,
                page_no=page_no,
                source_uri=entry.ref.uri,
                source_version=entry.ref.version,
                width=width,
                height=height,
                dpi=dpi,
                engine=ocr.engine,
                model=ocr.model,
                revision=ocr.revision,
                prompt=ocr.prompt,
                mode=ocr.mode,
                finish_reason=ocr.finish_reason,
                attempts=ocr.attempts,
                prompt_tokens=ocr.prompt_tokens,
                output_tokens=ocr.output_tokens,
                seconds=ocr.seconds,
                config_fingerprint=entry.config_fingerprint,
                parsed=parsed,
                rotation=rotation,  # issue 21
                coverage=coverage,  # issue 21
            )
        )
    return result


@dataclass
class RecordsEntry:
    """One document after parse and validation."""

    doc_id: str | None
    source_uri: str
    records_uri: str | None
    status: str  # "ok" | "failed" | "quarantined" | "warned"
    pages: int
    validation: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)  # only for documents without an id


def stage_parse_validate(
    manifest_uri: str,
    work: WorkArea,
    run_id: str,
    suites: dict[str, Any] | None = None,
    on_failure: str = "quarantine",
    validate: bool = True,
) -> StageResult:
    """Parse every OCR'd document, validate it, and write the records manifest.

    ``on_failure``: ``quarantine`` (the document goes to failures with reason
    ``validation_failed``), ``fail`` (raise after writing the manifest), ``warn`` (log and load).
    The parts of documents split across shards are left for :func:`stage_assemble` (``spanning``
    counts them): a document is parsed, validated and loaded whole or not at all.
    """
    if on_failure not in ON_VALIDATION_FAILURE:
        raise errors.ConfigError(f"on_failure must be one of {ON_VALIDATION_FAILURE}, got {on_failure!r}")
    entries = [OcrEntry.from_dict(d) for d in work.read_jsonl(manifest_uri)]
    deferred = sum(e.parts > 1 for e in entries)
    entries = [e for e in entries if e.parts == 1]
    out: list[dict[str, Any]] = []
    failures: list[Failure] = []
    pages = 0
    failed_validation: list[str] = []
    fp = entries[0].config_fingerprint if entries else None
    for entry in entries:
        result = build_records(entry, work)
        status = "ok" if result.pages else "failed"
        rows: list[dict[str, Any]] = []
        if validate and result.pages:
            from airflow_provider_deepocr.core.validate import validate_document

            report = validate_document(result, suites)
            rows = report.rows
            if not report.passed:
                failed_validation.append(result.doc_id)
                n_bad = sum(1 for r in rows if not r["success"])
                log.warning(
                    "document %s failed validation (%d expectations), on_failure=%s",
                    result.doc_id[:12],
                    n_bad,
                    on_failure,
                )
                status = "warned" if on_failure == "warn" else "quarantined"
                if status == "quarantined":
                    result.failures.append(
                        Failure(
                            entry.ref.uri,
                            errors.VALIDATION_FAILED,
                            f"{n_bad} expectations failed",
                            result.doc_id,
                            None,
                            "validate",
                        )
                    )
        records_uri = None
        if result.doc_id:
            records_uri = work.uri("records", result.config_fingerprint, f"{result.doc_id}.json")
            work.write_json(records_uri, result.to_dict())
        if status in ("ok", "warned"):
            pages += len(result.pages)
        failures.extend(result.failures)
        orphan = [f.to_dict() for f in result.failures] if records_uri is None else []
        out.append(
            asdict(
                RecordsEntry(
                    result.doc_id or None, entry.ref.uri, records_uri, status, len(result.pages), rows, orphan
                )
            )
        )
    uri = _stage_uri(work, run_id, "records", shard_name(manifest_uri))
    work.write_jsonl(uri, out)
    if failed_validation and on_failure == "fail":
        raise errors.DeepOcrError(
            errors.VALIDATION_FAILED, f"{len(failed_validation)} documents failed validation; manifest {uri}"
        )
    if deferred:
        log.info("%d parts of documents split across shards are left for their assembly", deferred)
    return StageResult(
        manifest_uri=uri,
        documents=len(out),
        pages=pages,
        failed=_count_failures(failures),
        config_fingerprint=fp,
        spanning=deferred,
    )


def stage_assemble(spanning_uri: str, work: WorkArea, run_id: str) -> StageResult:
    """Put the documents split across shards back together, after every shard's OCR: one OCR entry
    per document, from its parts' entries in the shards' OCR manifests (``runs/<run_id>/ocr/``).
    Writes ``runs/<run_id>/ocr/spanning.jsonl`` for :func:`stage_parse_validate`.

    A document with a part no shard finished (its shard's manifest is missing), or whose parts
    were read from different content (the file changed during the run), becomes a document-level
    failure (``incomplete_document`` / ``source_changed``): it is never loaded in part.
    """
    docs = work.read_jsonl(spanning_uri) if work.exists(spanning_uri) else []
    manifests: dict[str, dict[tuple[str, int], OcrEntry]] = {}

    def parts_of(shard: str) -> dict[tuple[str, int], OcrEntry]:
        if shard not in manifests:
            uri = _stage_uri(work, run_id, "ocr", shard)
            rows = work.read_jsonl(uri) if work.exists(uri) else []
            manifests[shard] = {(e.ref.uri, e.first): e for e in map(OcrEntry.from_dict, rows) if e.parts > 1}
        return manifests[shard]

    out: list[OcrEntry] = []
    for d in docs:
        ref = DocumentRef.from_dict(d["ref"])
        found = [parts_of(p["shard"]).get((ref.uri, p["first"])) for p in d["parts"]]
        got = [e for e in found if e is not None]
        ids = {e.doc_id for e in got}
        fp = got[0].config_fingerprint if got else ""
        if len(got) < len(found) or len(ids) != 1:
            reason = errors.INCOMPLETE_DOCUMENT if len(got) < len(found) else errors.SOURCE_CHANGED
            detail = f"{len(got)} of {len(found)} parts OCR'd" if len(got) < len(found) else "parts differ"
            doc_id = next(iter(ids)) if len(ids) == 1 else None
            log.warning("split document %s: %s (%s)", ref.uri, reason, detail)
            out.append(
                OcrEntry(
                    ref,
                    doc_id,
                    "",
                    0,
                    fp,
                    None,
                    failures=[Failure(ref.uri, reason, detail, doc_id, None, "assemble")],
                )
            )
            continue
        first = got[0]
        whole = OcrEntry(
            ref,
            first.doc_id,
            first.media_type or next((e.media_type for e in got if e.media_type), ""),
            max(e.page_count for e in got),
            fp,
            next((e.ocr_dir for e in got if e.ocr_dir), None),
            sorted(p for e in got for p in e.pages_ok),
            [f for e in got for f in e.failures],
        )
        if whole.ocr_dir and not any(f.page_no is None or f.stage == "ocr" for f in whole.failures):
            # done whole: a later run that does not split it (another shard size) reuses it
            work.write_json(f"{whole.ocr_dir}/document.json", whole.to_dict())
        out.append(whole)
    uri = _stage_uri(work, run_id, "ocr", "spanning")
    work.write_jsonl(uri, [e.to_dict() for e in out])
    log.info("assembled %d documents split across shards", len(out))
    return StageResult(
        manifest_uri=uri,
        documents=len(out),
        pages=sum(len(e.pages_ok) for e in out),
        failed=_count_failures(f for e in out for f in e.failures),
        config_fingerprint=out[0].config_fingerprint if out else None,
        total_pages=sum(e.page_count for e in out),
    )


# --------------------------------------------------------------------------------------------
# Stage 4: load


def _load_detail(exc: BaseException) -> str:
    """A load error's detail for the failures table: our typed message (ids, SQLSTATE, no row
    values), or the exception class alone (a driver's message can quote document text)."""
    if isinstance(exc, errors.DeepOcrError):
        return exc.detail[:500] or exc.reason
    return type(exc).__name__


def stage_load(
    manifest_uri: str,
    work: WorkArea,
    run_id: str,
    warehouse: Warehouse,
    force: bool = False,
    batch_rows: int = 50_000,
    batch_docs: int = 1_000,
    dag_id: str = "cli",
) -> StageResult:
    """Load every document of a records manifest, exactly once in effect.

    Good documents are loaded in transactions of whole documents (up to ``batch_rows`` block
    rows and ``batch_docs`` documents each: one delete, one COPY per table, one commit); if a
    batch fails it is retried one document per transaction, so a bad document fails alone. A
    document whose (doc id, config fingerprint) the load ledger already holds is skipped unless
    ``force`` (the ledger is read once for the whole manifest, before the loads).

    Ends with the ``runs`` row of this run (``dag_id``) and shard: what was loaded and failed, and
    what the OCR stage of the shard measured.
    """
    started = utc_now()
    warehouse.create()
    entries = work.read_jsonl(manifest_uri)
    decisions = review_decisions(work, {e["doc_id"] for e in entries if e.get("doc_id")})
    live = {} if force else warehouse.live_fingerprints([e["doc_id"] for e in entries if e.get("doc_id")])
    loaded_pages = 0
    loaded_docs = 0
    skipped = 0
    failures: list[Failure] = []
    pending: list[DocumentResult] = []

    validation: dict[str, list[dict[str, Any]]] = {}  # doc id -> its expectation results

    def load_one(result: DocumentResult) -> None:
        nonlocal loaded_docs, loaded_pages
        try:
            counts = warehouse.load_document(
                result, run_id, force=force, validation_rows=validation.get(result.doc_id)
            )
        except Exception as exc:
            log.exception("load failed for document %s", result.doc_id[:12])
            failure = Failure(
                result.ref.uri, errors.LOAD_ERROR, _load_detail(exc), result.doc_id, None, "load"
            )
            failures.append(failure)
            try:  # the audit trail says why the document is missing, when the warehouse still answers
                warehouse.record_failures([failure], run_id, result.config_fingerprint)
            except Exception as rec_exc:
                log.warning(
                    "could not record the load failure of %s: %s", result.doc_id[:12], type(rec_exc).__name__
                )
            return
        failures.extend(result.failures)
        loaded_docs += 1
        loaded_pages += counts.get("pages", len(result.pages))

    def flush() -> None:
        nonlocal loaded_docs, loaded_pages
        batch = list(pending)
        pending.clear()
        if not batch:
            return
        if len(batch) == 1:
            load_one(batch[0])
            return
        try:
            counts = warehouse.load_documents(
                batch,
                run_id,
                force=force,
                validation_rows={r.doc_id: validation.get(r.doc_id) or [] for r in batch},
            )
        except errors.DeepOcrError as exc:
            log.warning(
                "a batch of %d documents failed (%s); loading them one by one", len(batch), exc.reason
            )
            for result in batch:
                load_one(result)
            return
        for result in batch:
            failures.extend(result.failures)
        loaded_docs += len(batch)
        loaded_pages += sum(len(r.pages) for r in batch)
        log.info("loaded %d documents (%d block rows) in one transaction", len(batch), counts["blocks"])

    rows = 0
    for e in entries:
        if e["records_uri"] is None:
            failures.extend(Failure.from_dict(f) for f in e["failures"])
            continue
        result = DocumentResult.from_dict(work.read_json(e["records_uri"]))
        decision = decisions.get(result.doc_id) or {}
        if decision.get("decision") == REJECT:  # a reviewer kept it out: no run brings it back
            warehouse.quarantine(result, errors.REJECTED, "kept out by a reviewer", run_id, stage="review")
            failures.append(Failure(result.ref.uri, errors.REJECTED, "", result.doc_id, None, "review"))
            continue
        approved = (
            decision.get("decision") == APPROVE
            and decision.get("config_fingerprint") == result.config_fingerprint
        )
        if e["status"] == "quarantined" and not approved:
            reason = next((f for f in result.failures if f.reason == errors.VALIDATION_FAILED), None)
            warehouse.quarantine(
                result,
                errors.VALIDATION_FAILED,
                reason.detail if reason else "",
                run_id,
                e.get("validation") or None,
            )
            failures.extend(result.failures)
            continue
        if e["status"] == "failed":
            warehouse.record_failures(result.failures, run_id, result.config_fingerprint)
            failures.extend(result.failures)
            continue
        if live.get(result.doc_id) == result.config_fingerprint:
            skipped += 1
            loaded_pages += len(result.pages)
            failures.extend(result.failures)
            log.info("document %s already loaded with this config, skipping", result.doc_id[:12])
            continue
        validation[result.doc_id] = e.get("validation") or []
        pending.append(result)
        rows += sum(len(p.parsed.blocks) for p in result.pages)
        if rows >= batch_rows or len(pending) >= batch_docs:
            flush()
            rows = 0
    flush()
    # documents without a content id (unreadable) only have failure rows
    orphan = [Failure.from_dict(f) for e in entries if e["records_uri"] is None for f in e["failures"]]
    if orphan:
        warehouse.record_failures(orphan, run_id, "")
    result = StageResult(
        manifest_uri=manifest_uri,
        documents=loaded_docs,
        pages=loaded_pages,
        failed=_count_failures(failures),
        skipped=skipped,
    )
    shard = shard_name(manifest_uri)
    stats_uri = work.uri("runs", run_id, "stats", f"{shard}.json")
    stats = OcrStats.from_dict(work.read_json(stats_uri)) if work.exists(stats_uri) else None
    if stats is None and not entries:
        return result  # e.g. the assembly of a run with no split documents: nothing to account for
    warehouse.record_run(
        run_row(
            stats,
            run_id=run_id,
            dag_id=dag_id,
            shard=shard,
            documents=len(entries),
            pages=loaded_pages,
            failed=result.failed,
            started_at=started,
        )
    )
    return result


# --------------------------------------------------------------------------------------------
# All stages in-process (the CLI, a notebook, any orchestrator)


@dataclass
class RunSummary:
    run_id: str
    documents: int
    pages: int
    ok: int
    failed: dict[str, int]
    seconds: float
    engine: str
    model: str
    config_fingerprint: str | None
    loaded_documents: int
    skipped_documents: int
    work_uri: str
    manifests: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_pipeline(
    source_uri: str,
    warehouse: Warehouse,
    engine: OcrEngine,
    work: WorkArea,
    settings: OcrSettings | None = None,
    run_id: str | None = None,
    s3_client: Any = None,
    suites: dict[str, Any] | None = None,
    on_validation_failure: str = "quarantine",
    max_documents: int | None = None,
    skip_unchanged: bool = True,
    model_load_seconds: float = 0.0,
    gpu_hour_cost: float | None = None,
) -> RunSummary:
    """Run list -> OCR -> parse+validate -> load in this process and summarise.

    ``skip_unchanged``: objects whose URI, size and version match a document the warehouse holds
    under this run's config fingerprint are skipped without being read (``skipped_documents``).
    ``model_load_seconds`` and ``gpu_hour_cost`` go into the run's ``runs`` row."""
    t0 = time.perf_counter()
    run_id = run_id or new_run_id()
    settings = settings or OcrSettings()
    warehouse.create()  # an unreachable warehouse fails the run before any OCR work is spent
    fp = config_fingerprint(engine, settings)
    listed = stage_list(
        source_uri,
        work,
        run_id,
        s3_client=s3_client,
        max_documents=max_documents,
        warehouse=warehouse if skip_unchanged else None,
        fingerprint=fp,
    )
    ocr = stage_ocr(
        listed.manifest_uri,
        work,
        run_id,
        engine,
        s3_client=s3_client,
        settings=settings,
        model_load_seconds=model_load_seconds,
        gpu_hour_cost=gpu_hour_cost,
    )
    parsed = stage_parse_validate(
        ocr.manifest_uri, work, run_id, suites=suites, on_failure=on_validation_failure
    )
    loaded = stage_load(parsed.manifest_uri, work, run_id, warehouse)
    summary = RunSummary(
        run_id=run_id,
        documents=listed.documents + listed.skipped,
        pages=ocr.total_pages,
        ok=loaded.pages,
        failed=loaded.failed,
        seconds=round(time.perf_counter() - t0, 3),
        engine=engine.name,
        model=engine.model,
        config_fingerprint=fp,
        loaded_documents=loaded.documents,
        skipped_documents=loaded.skipped + listed.skipped,
        work_uri=work.root_uri,
        manifests={
            "documents": listed.manifest_uri,
            "ocr": ocr.manifest_uri,
            "records": parsed.manifest_uri,
        },
    )
    log.info(
        "run %s: %d documents, %d pages, %d ok, failed %s in %.1fs",
        run_id,
        summary.documents,
        summary.pages,
        summary.ok,
        summary.failed,
        summary.seconds,
    )
    return summary
