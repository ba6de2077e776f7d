"""The OCR stage's machinery: read -> render -> (prepare) in a producer thread, OCR in the calling
thread, pages batched across documents.

A folder of one-page receipts fills a GPU batch as well as one long filing does, and a bounded
queue of ``prefetch`` batches keeps memory flat on a 3,000-page PDF while the next batch is rendered
and preprocessed during the current generate. Each page's result is written as soon as its batch
is done, and a document's summary once all its pages are: a retried task skips both. A one-page
document's result is held in its summary (one work-area object for it, not two).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.coverage import page_meta
from airflow_provider_deepocr.core.engines.text_layer import Route, TextLayerRouter
from airflow_provider_deepocr.core.pageprep import prepare_for_ocr
from airflow_provider_deepocr.core.pipeline.context import OcrSettings, StageContext
from airflow_provider_deepocr.core.pipeline.manifests import OcrEntry, failure_of, new_entry
from airflow_provider_deepocr.core.pipeline.prefetch import Fetched, documents_ahead, summary_of
from airflow_provider_deepocr.core.records import DocumentRef, Failure, PageImage
from airflow_provider_deepocr.core.runs import Progress
from airflow_provider_deepocr.core.shards import ShardItem
from airflow_provider_deepocr.core.vocab import Stage
from airflow_provider_deepocr.core.work_layout import WorkLayout

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.engines.base import OcrEngine
    from airflow_provider_deepocr.core.pagework import PageWork
    from airflow_provider_deepocr.core.sources import Storage, WorkArea

log = logging.getLogger(__name__)


@dataclass
class _DocState:
    """A document moving through the OCR stage (shared by the producer and the consumer)."""

    entry: OcrEntry
    summary_uri: str | None
    t0: float
    inflight: int = 0  # pages handed to the engine queue and not finished yet
    rendered_all: bool = False
    finished: bool = False
    same_as: _DocState | None = None  # the same bytes opened earlier in this stage: OCR'd once
    engines: Counter[str] = field(default_factory=Counter)  # pages read now, by engine
    # what the document's OCR folder held when it was opened (one listing, not a request per page):
    # the page files an earlier, interrupted try finished
    found: frozenset[str] = frozenset()
    writes: list[Future[Any]] = field(default_factory=list)  # its page files, being written
    # a one-page document's page result, kept for its summary (one object, not a page file and a
    # summary); None: each page is written to its page file as soon as its batch is done
    held: dict[str, dict[str, Any]] | None = None


@dataclass
class _Batch:
    pages: list[PageImage]
    states: list[_DocState]
    prepared: Any = None
    engine: OcrEngine | None = None  # None: the run's engine; else e.g. the pdf-text engine


_END = object()

WRITERS = 4
"""Threads writing page files (an S3 work area: a request each, overlapped)."""

FINISHERS = 8
"""Threads writing documents' summaries (a request each; one thread made the stage wait on the
work area's latency: ~40 one-page documents/s at most at 25 ms a request)."""


class BatchedOcr:
    """OCR ``items`` (documents, or parts of them) with ``engine``, under config fingerprint ``fp``."""

    def __init__(
        self, ctx: StageContext, items: Sequence[ShardItem], engine: OcrEngine, fp: str, label: str = ""
    ) -> None:
        self.ctx = ctx
        self.items = items
        self.engine = engine
        self.fp = fp
        self.batch_size = max(1, int(engine.batch_size or 1))
        self.router = TextLayerRouter(ctx.settings.text_layer)
        self.states: list[_DocState] = []
        self.pagework: PageWork | None = None  # the page worker (per-page time limit), in run()
        self.first_of: dict[str, _DocState] = {}  # doc id -> the state of the first whole item
        self.filling = _Batch([], [])  # the producer's batch being filled
        self.done_docs = 0
        self.lock = threading.Lock()
        total = sum(len(it.page_numbers() or ()) or it.pages for it in items)
        self.progress = Progress(total, label)
        self.engine_seconds = 0.0
        self.engines: Counter[str] = Counter()  # pages read in this stage, by the engine that read them
        # the work area off the engine's path: page files are written by a pool, and a document's
        # summary by a finisher pool once its page files are all written (never before)
        self.writer = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="deepocr-write")
        self.finisher = ThreadPoolExecutor(max_workers=FINISHERS, thread_name_prefix="deepocr-finish")
        self.finishing: list[Future[None]] = []

    # -- producer ---------------------------------------------------------------------------

    def _done(self, item: ShardItem, entry: OcrEntry, t0: float) -> tuple[_DocState, None]:
        """A document (or part) the OCR of an earlier run or try finished."""
        entry.ref = item.ref  # the same content may be listed under another URI or version
        log.info("document %s (%s): OCR already done, skipping", item.ref.uri, (entry.doc_id or "")[:12])
        state = _DocState(entry, None, t0)
        state.finished = True
        self.progress.add(len(entry.pages_ok), ocr=False)
        return state, None

    def _failed(
        self, item: ShardItem, doc_id: str | None, stage: Stage, exc: errors.DeepOcrError, t0: float
    ) -> _DocState:
        failures = [failure_of(item.ref, doc_id, None, stage, exc)]
        return _DocState(new_entry(item, doc_id, "", 0, self.fp, None, failures), None, t0)

    def _open(self, item: ShardItem, fetched: Fetched) -> tuple[_DocState, Any]:
        """Check one document (or the part of it ``item`` names), read ahead as ``fetched``;
        returns its state and a page iterator (or None)."""
        t0 = time.perf_counter()
        ref, doc = item.ref, fetched.doc
        if doc is None:
            assert fetched.error is not None
            log.warning("document %s unreadable: %s", ref.uri, fetched.error.reason)
            return self._failed(item, None, Stage.READ, fetched.error, t0), None
        doc_id = doc.sha256
        ocr_dir = self.ctx.layout.ocr_dir(self.fp, doc_id)
        summary_uri = summary_of(ocr_dir, item)
        if fetched.summary is not None:
            entry = OcrEntry.from_dict(fetched.summary)
            if not item.pages:  # an unsharded listing: the total grows as documents open
                self.progress.total += entry.page_count
            return self._done(item, entry, t0)
        first = None if item.is_part else self.first_of.get(doc_id)
        if first is not None:  # the same bytes listed under another URI: its entry, not its OCR
            log.info("document %s (%s): the same bytes as %s", ref.uri, doc_id[:12], first.entry.ref.uri)
            state = _DocState(new_entry(item, doc_id, "", 0, self.fp, ocr_dir, []), None, t0, same_as=first)
            state.finished = state.rendered_all = True
            return state, None
        if fetched.whole is not None:  # a part of a document done whole by an unsharded or other run
            return self._done(item, OcrEntry.from_dict(fetched.whole).part(item), t0)
        assert self.pagework is not None
        try:  # render and text layer in the page worker, each page under the time limit
            opened = self.pagework.open(doc, pages=item.page_numbers())
        except errors.DeepOcrError as exc:
            log.warning("document %s (%s) rejected: %s", ref.uri, doc_id[:12], exc.reason)
            return self._failed(item, doc_id, Stage.RENDER, exc, t0), None
        page_count = opened.page_count
        entry = new_entry(item, doc_id, opened.media_type, page_count, self.fp, ocr_dir, [])
        if not item.pages:
            self.progress.total += page_count
        state = _DocState(entry, summary_uri, t0, found=fetched.found or frozenset())
        if not item.is_part and page_count == 1 and not state.found:
            state.held = {}
        if not item.is_part:
            self.first_of[doc_id] = state
        return state, opened

    def _prepare(self, batch: _Batch) -> _Batch:
        try:
            batch.prepared = self.engine.prepare(batch.pages)
        except Exception:  # the engine retries page by page in ocr_prepared / ocr
            log.warning("engine %s: preparing a batch of %d pages failed", self.engine.name, len(batch.pages))
            batch.prepared = None
        return batch

    def _queue_pages(self, state: _DocState, pages: Iterable[Any], put: Callable[[Any], None]) -> None:
        """Hand a document's pages to the engine queue: model pages join ``self.filling`` (the
        batch being filled, across documents; put when full), text-layer pages go alone."""
        entry = state.entry
        ref = entry.ref
        for done in pages:
            if isinstance(done, errors.DeepOcrError):  # a page not rendered, or over the time limit
                page_no = cast(errors.PageError, done).page_no
                entry.failures.append(failure_of(ref, entry.doc_id, page_no, Stage.RENDER, done))
                continue
            page = done.page
            blocks = None if done.blocks is None else {page.page_no: done.blocks}
            assert entry.ocr_dir is not None
            if WorkLayout.page(entry.ocr_dir, page.page_no) in state.found:
                entry.pages_ok.append(page.page_no)  # finished by an earlier, interrupted try
                self.progress.add(1, ocr=False)
                continue
            route = self.router.route(blocks, page, done.usable)  # decided in the page worker, if so
            if route == Route.NONE:
                detail = "text_layer=only and the page has no usable text layer"
                entry.failures.append(
                    Failure(ref.uri, errors.NO_TEXT_LAYER, detail, entry.doc_id, page.page_no, Stage.ROUTE)
                )
                continue
            with self.lock:
                state.inflight += 1
            if route == Route.TEXT:
                put(_Batch([page], [state], engine=self.router.engine))
                continue
            page = prepare_for_ocr(page)  # orientation and clean-up of an image page (core.pageprep)
            self.filling.pages.append(page)
            self.filling.states.append(state)
            if len(self.filling.pages) >= self.batch_size:
                put(self._prepare(self.filling))
                self.filling = _Batch([], [])

    def produce(self, put: Callable[[Any], None]) -> None:
        self.filling = _Batch([], [])
        for item, fetched in documents_ahead(self.ctx, self.fp, self.items):
            state, pages = self._open(item, fetched)
            with self.lock:
                self.states.append(state)
            if pages is not None:
                entry = state.entry
                try:
                    self._queue_pages(state, pages, put)
                except errors.DeepOcrError as exc:
                    log.warning(
                        "document %s (%s) rejected: %s", entry.ref.uri, (entry.doc_id or "")[:12], exc.reason
                    )
                    entry.failures.append(failure_of(entry.ref, entry.doc_id, None, Stage.RENDER, exc))
                except Exception as exc:  # a renderer bug fails this document only
                    log.exception("document %s: rendering failed", entry.ref.uri)
                    why, uri, doc_id = type(exc).__name__, entry.ref.uri, entry.doc_id
                    entry.failures.append(
                        Failure(uri, errors.INTERNAL_ERROR, why, doc_id, None, Stage.RENDER)
                    )
            with self.lock:
                state.rendered_all = True
            put(state)  # a marker: this document has no more pages coming
        if self.filling.pages:
            put(self._prepare(self.filling))

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
                    Failure(entry.ref.uri, errors.OCR_ERROR, detail, entry.doc_id, page.page_no, Stage.OCR)
                )
            else:
                assert entry.ocr_dir is not None
                meta = result.to_dict()
                meta.update(page_no=page.page_no, width=page.width, height=page.height, dpi=page.dpi)
                # rotation, coverage (core.coverage) and render/prep/engine flags for the page row
                image_page = batch.engine is None and self.engine.reads_pixels
                meta.update(page_meta(page, result, image_page=image_page))
                if state.held is not None:
                    state.held[str(page.page_no)] = meta
                else:
                    uri = WorkLayout.page(entry.ocr_dir, page.page_no)
                    state.writes.append(self.writer.submit(self.ctx.work.write_json, uri, meta))
                entry.pages_ok.append(page.page_no)
                reader = result.engine or engine.name  # a fallback engine names itself
                state.engines[reader] += 1
                self.engines[reader] += 1
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
        if state.held:
            if state.summary_uri is not None and entry.settled:
                entry.results = state.held
            else:  # no summary to hold it: the finished page goes to its file, for the next run
                assert entry.ocr_dir is not None
                for page_no, meta in state.held.items():
                    uri = WorkLayout.page(entry.ocr_dir, int(page_no))
                    state.writes.append(self.writer.submit(self.ctx.work.write_json, uri, meta))
        self.finishing.append(self.finisher.submit(self._write_summary, state))
        self.done_docs += 1
        log.info(
            "OCR %d/%d documents: %s (%s) %d/%d pages (read now by %s) in %.2fs, %d failures",
            self.done_docs,
            len(self.items),
            entry.ref.uri,
            (entry.doc_id or "-")[:12],
            len(entry.pages_ok),
            entry.page_count,
            ", ".join(f"{name} {n}" for name, n in sorted(state.engines.items())) or "none: done earlier",
            time.perf_counter() - state.t0,
            len(entry.failures),
        )

    def _write_summary(self, state: _DocState) -> None:
        """In the finisher thread: after the document's page files are written (a failed write
        raises here, and the stage with it), its summary — only for a document that rendered
        completely; its failed pages (engine error, page timeout) are retried by the next run."""
        for write in state.writes:
            write.result()
        if state.summary_uri is not None and state.entry.settled:
            self.ctx.work.write_json(state.summary_uri, state.entry.to_dict())

    def run(self) -> list[OcrEntry]:
        from airflow_provider_deepocr.core.pagework import PageWork

        settings = self.ctx.settings
        self.pagework = PageWork(
            settings.page_timeout_s,
            settings.dpi,
            settings.limits(),
            text_layer=settings.text_layer != "never",
            pixels=self.router.pixels(self.engine),
        )
        self.pagework.start()
        try:
            entries = self._run()
            for done in self.finishing:  # every page file and summary written, or the error
                done.result()
            return entries
        finally:
            self.pagework.close()
            self.finisher.shutdown(wait=True)
            self.writer.shutdown(wait=True)

    def _run(self) -> list[OcrEntry]:
        prefetch = max(0, int(self.ctx.settings.prefetch))
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
            while (queued := q.get()) is not _END:
                self._consume_one(queued)
            thread.join()
            if failure:
                raise failure[0]
        for state in self.states:
            self._maybe_finish(state)
        return [s.entry if s.same_as is None else s.same_as.entry.for_ref(s.entry.ref) for s in self.states]

    def _consume_one(self, queued: _Batch | _DocState) -> None:
        if isinstance(queued, _Batch):
            self._run_batch(queued)
        else:
            self._maybe_finish(queued)


def ocr_documents(
    refs: Sequence[DocumentRef | ShardItem],
    engine: OcrEngine,
    work: WorkArea,
    settings: OcrSettings,
    fp: str,
    storage: Storage | None = None,
    s3_client: Any = None,
) -> list[OcrEntry]:
    """Read, render and OCR documents (or the parts of them shard items name), outside any run.
    Never raises for bad input: failures are in the entries."""
    items = [r if isinstance(r, ShardItem) else ShardItem(r, 0) for r in refs]
    ctx = StageContext(work, "", storage=storage, s3_client=s3_client, settings=settings)
    return BatchedOcr(ctx, items, engine, fp).run()
