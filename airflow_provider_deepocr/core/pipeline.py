"""The pipeline: list -> read -> render -> OCR -> parse -> validate -> load.

Each stage is a function over a *manifest* in the work area (a JSONL file of small entries:
URIs, ids, counts), so Airflow operators can run one stage per task and pass only the
manifest URI through XCom, while ``run_pipeline`` runs every stage in-process for the CLI.

Work-area layout (content-addressed; a retried or re-run stage finds finished work and skips it)::

    runs/<run_id>/documents.jsonl             listing: one DocumentRef per line
    runs/<run_id>/ocr.jsonl                   one OcrEntry per document
    runs/<run_id>/records.jsonl               one RecordsEntry per document
    ocr/<fingerprint>/<doc_id>/p00001.json    one OcrResult per page
    ocr/<fingerprint>/<doc_id>/document.json  the document's OCR summary (pages, failures)
    records/<fingerprint>/<doc_id>.json       DocumentResult (parsed records with provenance)

Failures are isolated to the smallest unit: a page that fails is a failure row of its document,
a document that fails is a failure row of the batch; nothing else is lost.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.records import (
    DocumentRef,
    DocumentResult,
    Failure,
    OcrResult,
    PageImage,
    PageRecord,
    fingerprint,
)

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.engines.base import OcrEngine
    from airflow_provider_deepocr.core.render import RenderLimits
    from airflow_provider_deepocr.core.sources import Storage, WorkArea
    from airflow_provider_deepocr.core.warehouse import Warehouse

log = logging.getLogger(__name__)

ON_VALIDATION_FAILURE = ("quarantine", "fail", "warn")


@dataclass
class OcrSettings:
    """Everything about rendering and OCR that changes the output (fingerprinted)."""

    dpi: int = 144
    max_pages: int = 2000
    max_pixels: int = 50_000_000
    prefetch: int = 2  # batches rendered ahead of the engine (0: no overlap); not fingerprinted
    text_layer: str = "never"  # "auto": good PDF text layers skip the model; "only": never use it

    def __post_init__(self) -> None:
        from airflow_provider_deepocr.core.engines.pdf_text import TEXT_LAYER_MODES

        if self.text_layer not in TEXT_LAYER_MODES:
            raise errors.ConfigError(f"text_layer must be one of {TEXT_LAYER_MODES}, got {self.text_layer!r}")

    def limits(self) -> RenderLimits:
        from airflow_provider_deepocr.core.render import RenderLimits

        return RenderLimits(max_pages=self.max_pages, max_pixels=self.max_pixels)


def config_fingerprint(engine: OcrEngine, settings: OcrSettings) -> str:
    """Fingerprint of the engine, its model and prompt, the render settings and the parser version."""
    from airflow_provider_deepocr.core.parse import PARSER_VERSION

    return fingerprint(
        {
            "engine": engine.describe(),
            "dpi": settings.dpi,
            "max_pixels": settings.max_pixels,
            "parser": PARSER_VERSION,
            "text_layer": settings.text_layer,
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _count_failures(failures: Iterable[Failure]) -> dict[str, int]:
    return dict(sorted(Counter(f.reason for f in failures).items()))


def _merge_counts(*counts: dict[str, int]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    return dict(sorted(total.items()))


# --------------------------------------------------------------------------------------------
# Stage 1: list


def stage_list(
    source_uri: str,
    work: WorkArea,
    run_id: str,
    storage: Storage | None = None,
    s3_client: Any = None,
    max_documents: int | None = None,
) -> StageResult:
    """List the documents under ``source_uri`` and write the listing manifest."""
    from airflow_provider_deepocr.core.sources import list_documents

    refs = list_documents(source_uri, storage=storage, s3_client=s3_client, max_documents=max_documents)
    uri = work.uri("runs", run_id, "documents.jsonl")
    work.write_jsonl(uri, [r.to_dict() for r in refs])
    log.info("listed %d documents under %s", len(refs), source_uri)
    return StageResult(manifest_uri=uri, documents=len(refs))


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
        refs: Sequence[DocumentRef],
        storage_of: Any,
        engine: OcrEngine,
        work: WorkArea,
        settings: OcrSettings,
        fp: str,
    ) -> None:
        self.refs = refs
        self.storage_of = storage_of
        self.engine = engine
        self.work = work
        self.settings = settings
        self.fp = fp
        self.batch_size = max(1, int(getattr(engine, "batch_size", 1) or 1))
        self.text_engine: OcrEngine | None = None
        if settings.text_layer != "never":
            from airflow_provider_deepocr.core.engines.pdf_text import PdfTextEngine

            self.text_engine = PdfTextEngine()
        self.states: list[_DocState] = []
        self.done_docs = 0
        self.lock = threading.Lock()

    # -- producer ---------------------------------------------------------------------------

    def _open(self, ref: DocumentRef) -> tuple[_DocState, Any]:
        """Read and check one document; returns its state and a page iterator (or None)."""
        from airflow_provider_deepocr.core.render import count_pages, detect_media_type, render_pages
        from airflow_provider_deepocr.core.sources import read_document

        t0 = time.perf_counter()
        fp = self.fp
        try:
            doc = read_document(ref, self.storage_of(ref.uri))
        except errors.DeepOcrError as exc:
            log.warning("document %s unreadable: %s", ref.uri, exc.reason)
            entry = OcrEntry(ref, None, "", 0, fp, None, failures=[_failure(ref, None, None, "read", exc)])
            return _DocState(entry, None, t0), None
        doc_id = doc.sha256
        ocr_dir = self.work.uri("ocr", fp, doc_id)
        summary_uri = f"{ocr_dir}/document.json"
        if self.work.exists(summary_uri):
            entry = OcrEntry.from_dict(self.work.read_json(summary_uri))
            entry.ref = ref  # the same content may be listed under another URI or version
            log.info("document %s (%s): OCR already done, skipping", ref.uri, doc_id[:12])
            state = _DocState(entry, None, t0)
            state.finished = True
            return state, None
        try:
            media_type = detect_media_type(doc.data)
            page_count = count_pages(doc)
            pages = render_pages(doc, dpi=self.settings.dpi, limits=self.settings.limits())
        except errors.DeepOcrError as exc:
            log.warning("document %s (%s) rejected: %s", ref.uri, doc_id[:12], exc.reason)
            entry = OcrEntry(
                ref, doc_id, "", 0, fp, None, failures=[_failure(ref, doc_id, None, "render", exc)]
            )
            return _DocState(entry, None, t0), None
        state = _DocState(OcrEntry(ref, doc_id, media_type, page_count, fp, ocr_dir), summary_uri, t0)
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
        prepare = getattr(self.engine, "prepare", None)
        if prepare is not None:
            try:
                batch.prepared = prepare(batch.pages)
            except Exception:  # the engine retries page by page in ocr_prepared / ocr
                log.warning(
                    "engine %s: preparing a batch of %d pages failed", self.engine.name, len(batch.pages)
                )
                batch.prepared = None
        return batch

    def produce(self, put: Any) -> None:
        batch = _Batch([], [])
        for ref in self.refs:
            state, pages = self._open(ref)
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
        ocr_prepared = getattr(engine, "ocr_prepared", None)
        try:
            if batch.prepared is not None and ocr_prepared is not None:
                results = ocr_prepared(batch.prepared)
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
            len(self.refs),
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
    refs: Sequence[DocumentRef],
    engine: OcrEngine,
    work: WorkArea,
    settings: OcrSettings,
    fp: str,
    storage: Storage | None = None,
    s3_client: Any = None,
) -> list[OcrEntry]:
    """Read, render and OCR documents. Never raises for bad input: failures are in the entries."""
    from airflow_provider_deepocr.core.sources import storage_for

    def storage_of(uri: str) -> Storage:
        return storage or storage_for(uri, s3_client=s3_client)

    return _OcrRun(refs, storage_of, engine, work, settings, fp).run()


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
) -> StageResult:
    """OCR every document in a listing manifest; writes the OCR manifest."""
    settings = settings or OcrSettings()
    fp = config_fingerprint(engine, settings)
    refs = [DocumentRef.from_dict(d) for d in work.read_jsonl(manifest_uri)]
    entries = ocr_documents(refs, engine, work, settings, fp, storage=storage, s3_client=s3_client)
    uri = work.uri("runs", run_id, "ocr.jsonl")
    work.write_jsonl(uri, [e.to_dict() for e in entries])
    return StageResult(
        manifest_uri=uri,
        documents=len(entries),
        pages=sum(len(e.pages_ok) for e in entries),
        failed=_count_failures(f for e in entries for f in e.failures),
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
    """
    if on_failure not in ON_VALIDATION_FAILURE:
        raise errors.ConfigError(f"on_failure must be one of {ON_VALIDATION_FAILURE}, got {on_failure!r}")
    entries = [OcrEntry.from_dict(d) for d in work.read_jsonl(manifest_uri)]
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
    uri = work.uri("runs", run_id, "records.jsonl")
    work.write_jsonl(uri, out)
    if failed_validation and on_failure == "fail":
        raise errors.DeepOcrError(
            errors.VALIDATION_FAILED, f"{len(failed_validation)} documents failed validation; manifest {uri}"
        )
    return StageResult(
        manifest_uri=uri,
        documents=len(out),
        pages=pages,
        failed=_count_failures(failures),
        config_fingerprint=fp,
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
) -> StageResult:
    """Load every document of a records manifest, exactly once in effect.

    Good documents are loaded in transactions of whole documents (up to ``batch_rows`` block
    rows and ``batch_docs`` documents each: one delete, one COPY per table, one commit); if a
    batch fails it is retried one document per transaction, so a bad document fails alone. A
    document whose (doc id, config fingerprint) the load ledger already holds is skipped unless
    ``force`` (the ledger is read once for the whole manifest, before the loads).
    """
    warehouse.create()
    entries = work.read_jsonl(manifest_uri)
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
        if e["status"] == "quarantined":
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
    return StageResult(
        manifest_uri=manifest_uri,
        documents=loaded_docs,
        pages=loaded_pages,
        failed=_count_failures(failures),
        skipped=skipped,
    )


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
) -> RunSummary:
    """Run list -> OCR -> parse+validate -> load in this process and summarise."""
    t0 = time.perf_counter()
    run_id = run_id or new_run_id()
    warehouse.create()  # an unreachable warehouse fails the run before any OCR work is spent
    listed = stage_list(source_uri, work, run_id, s3_client=s3_client, max_documents=max_documents)
    ocr = stage_ocr(listed.manifest_uri, work, run_id, engine, s3_client=s3_client, settings=settings)
    parsed = stage_parse_validate(
        ocr.manifest_uri, work, run_id, suites=suites, on_failure=on_validation_failure
    )
    loaded = stage_load(parsed.manifest_uri, work, run_id, warehouse)
    summary = RunSummary(
        run_id=run_id,
        documents=listed.documents,
        pages=ocr.total_pages,
        ok=loaded.pages,
        failed=loaded.failed,
        seconds=round(time.perf_counter() - t0, 3),
        engine=engine.name,
        model=engine.model,
        config_fingerprint=ocr.config_fingerprint,
        loaded_documents=loaded.documents,
        skipped_documents=loaded.skipped,
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
