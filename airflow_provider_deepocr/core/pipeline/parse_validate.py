"""Stage 3: parse every OCR'd document into records with provenance, validate them, and write the
records manifest (one :class:`~.manifests.RecordsEntry` per document)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.pipeline.context import StageContext
from airflow_provider_deepocr.core.pipeline.manifests import OcrEntry, RecordsEntry, count_failures
from airflow_provider_deepocr.core.pipeline.prefetch import Behind, ahead
from airflow_provider_deepocr.core.records import DocumentResult, Failure, OcrResult, PageRecord
from airflow_provider_deepocr.core.vocab import OnValidationFailure, PageFlag, Stage, Status
from airflow_provider_deepocr.core.work_layout import Manifest, RunLayout, WorkLayout

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.sources import WorkArea
    from airflow_provider_deepocr.core.validate import ValidationReport

log = logging.getLogger(__name__)

ON_VALIDATION_FAILURE = tuple(m.value for m in OnValidationFailure)
VALIDATE_BATCH_DOCS = 256  # documents validated in one GX run per table (issue 22)
VALIDATE_BATCH_PAGES = 2000  # and at most this many pages in memory at once


@dataclass
class ParseResult:
    """The records manifest and counts."""

    manifest_uri: str
    documents: int = 0
    pages: int = 0  # pages of documents that load (ok or warned)
    failed: dict[str, int] = field(default_factory=dict)
    config_fingerprint: str | None = None
    deferred: int = 0  # parts of split documents left for their assembly

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _page_record(
    result: DocumentResult, entry: OcrEntry, page_no: int, meta: dict[str, Any]
) -> PageRecord | None:
    """One page's OCR result (``meta``, as the OCR stage wrote it) parsed; None (and a failure on
    ``result``) when the parser raises."""
    from airflow_provider_deepocr.core.parse import parse_page, parse_structured

    width, height, dpi = meta.pop("width"), meta.pop("height"), meta.pop("dpi")
    meta.pop("page_no")
    render_flags = meta.pop("page_flags", [])
    rotation, coverage = meta.pop("rotation", None), meta.pop("coverage", None)
    if PageFlag.DPI_UNKNOWN in render_flags:
        dpi = None  # rendered at the stated default; the source does not say its resolution
    ocr = OcrResult.from_dict(meta)
    try:
        if ocr.blocks is not None:
            parsed = parse_structured(ocr.blocks, page_no, width, height)
        else:
            parsed = parse_page(ocr.raw_text, page_no, width, height, finish_reason=ocr.finish_reason)
    except Exception as exc:  # the parser must not raise; if it does, lose one page, not the doc
        log.exception("parser failed on %s page %d", entry.doc_id, page_no)
        result.failures.append(
            Failure(entry.ref.uri, errors.PARSE_ERROR, type(exc).__name__, entry.doc_id, page_no, Stage.PARSE)
        )
        return None
    if render_flags:
        parsed.flags = sorted({*parsed.flags, *render_flags})
    return PageRecord(
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
        rotation=rotation,
        coverage=coverage,
    )


def build_records(entry: OcrEntry, work: WorkArea) -> DocumentResult:
    """Parse one document's OCR output into records with provenance."""
    result = DocumentResult(
        ref=entry.ref,
        doc_id=entry.doc_id or "",
        media_type=entry.media_type,
        page_count=entry.page_count,
        config_fingerprint=entry.config_fingerprint,
        failures=list(entry.failures),
    )
    if entry.ocr_dir is None or not entry.rendered_whole:
        return result  # a document-level failure rejects the whole document: no partial loads
    for page_no in entry.pages_ok:
        meta = entry.page_result(page_no)  # held in the summary (a one-page document), else its file
        if meta is None:
            meta = work.read_json(WorkLayout.page(entry.ocr_dir, page_no))
        record = _page_record(result, entry, page_no, meta)
        if record is not None:
            result.pages.append(record)
    return result


def _chunks(entries: list[OcrEntry]) -> Iterator[list[OcrEntry]]:
    """Entries in groups validated together: up to VALIDATE_BATCH_DOCS documents and
    VALIDATE_BATCH_PAGES pages (one GX run per table and group costs the same whatever its rows)."""
    chunk: list[OcrEntry] = []
    pages = 0
    for e in entries:
        if chunk and (len(chunk) >= VALIDATE_BATCH_DOCS or pages + e.page_count > VALIDATE_BATCH_PAGES):
            yield chunk
            chunk, pages = [], 0
        chunk.append(e)
        pages += e.page_count
    if chunk:
        yield chunk


def _reports(
    results: list[DocumentResult], suites: dict[str, Any] | None, validate: bool
) -> list[ValidationReport | None]:
    """The validation of the documents that have pages (None for the others, or when off)."""
    from airflow_provider_deepocr.core.validate import validate_documents

    todo = [r for r in results if validate and r.pages]
    reports = iter(validate_documents(todo, suites) if todo else [])
    return [next(reports) if validate and r.pages else None for r in results]


def _built(
    entries: list[OcrEntry], work: WorkArea, suites: dict[str, Any] | None, validate: bool
) -> Iterator[tuple[OcrEntry, DocumentResult, ValidationReport | None]]:
    """Each entry's records and validation, the documents of a chunk validated together."""
    for chunk in _chunks(entries):  # a document's page files are read ahead while others parse
        results = [result for _, result in ahead(chunk, lambda entry: build_records(entry, work))]
        yield from zip(chunk, results, _reports(results, suites, validate), strict=True)


def _validate(
    result: DocumentResult, entry: OcrEntry, report: ValidationReport, on_failure: str
) -> tuple[Status, list[dict[str, Any]]]:
    """The document's status and its expectation results."""
    if report.passed:
        return Status.OK, report.rows
    n_bad = sum(1 for r in report.rows if not r["success"])
    log.warning(
        "document %s failed validation (%d expectations), on_failure=%s",
        result.doc_id[:12],
        n_bad,
        on_failure,
    )
    if on_failure == OnValidationFailure.WARN:
        return Status.WARNED, report.rows
    result.failures.append(
        Failure(
            entry.ref.uri,
            errors.VALIDATION_FAILED,
            f"{n_bad} expectations failed",
            result.doc_id,
            None,
            Stage.VALIDATE,
        )
    )
    return Status.QUARANTINED, report.rows


def _one(
    ctx: StageContext,
    entry: OcrEntry,
    result: DocumentResult,
    report: ValidationReport | None,
    on_failure: str,
    writes: Behind,
    out: list[dict[str, Any]],
    failures: list[Failure],
) -> bool:
    """One document's verdict, its records file (handed to ``writes``) and its manifest line (onto
    ``out``); its failures onto ``failures``. Whether it failed validation."""
    status = Status.OK if result.pages else Status.FAILED
    rows: list[dict[str, Any]] = []
    if report is not None:
        status, rows = _validate(result, entry, report, on_failure)
    records_uri = None
    if result.doc_id:
        records_uri = ctx.layout.records(result.config_fingerprint, result.doc_id)
        writes.submit(ctx.work.write_json, records_uri, result.to_dict())
    failures.extend(result.failures)
    orphan = [f.to_dict() for f in result.failures] if records_uri is None else []
    entry_out = RecordsEntry(
        result.doc_id or None,
        entry.ref.uri,
        records_uri,
        status,
        len(result.pages),
        rows,
        orphan,
        entry.ref.to_dict(),
    )
    out.append(asdict(entry_out))
    return report is not None and status != Status.OK


def parse_manifest(
    ctx: StageContext,
    manifest_uri: str,
    suites: dict[str, Any] | None = None,
    on_failure: str = OnValidationFailure.QUARANTINE,
    validate: bool = True,
) -> ParseResult:
    """Parse every OCR'd document of an OCR manifest, validate it, and write the records manifest.

    ``on_failure``: ``quarantine`` (the document goes to failures with reason
    ``validation_failed``), ``fail`` (raise after writing the manifest), ``warn`` (log and load).
    The parts of documents split across shards are left for the assembly (``deferred`` counts
    them): a document is parsed, validated and loaded whole or not at all.
    """
    if on_failure not in ON_VALIDATION_FAILURE:
        raise errors.ConfigError(f"on_failure must be one of {ON_VALIDATION_FAILURE}, got {on_failure!r}")
    entries = [OcrEntry.from_dict(d) for d in ctx.work.read_jsonl(manifest_uri)]
    deferred = sum(e.parts > 1 for e in entries)
    entries = [e for e in entries if e.parts == 1]
    out: list[dict[str, Any]] = []
    failures: list[Failure] = []
    failed_validation = 0
    with Behind() as writes:  # records files written behind the parser, a few at once
        for entry, result, report in _built(entries, ctx.work, suites, validate):
            failed_validation += _one(ctx, entry, result, report, on_failure, writes, out, failures)
        writes.wait()
    pages = sum(e["pages"] for e in out if Status(e["status"]).loads)
    uri = ctx.run_layout.manifest(Manifest.RECORDS, RunLayout.shard_of(manifest_uri))
    ctx.work.write_jsonl(uri, out)
    if failed_validation and on_failure == OnValidationFailure.FAIL:
        raise errors.DeepOcrError(
            errors.VALIDATION_FAILED, f"{failed_validation} documents failed validation; manifest {uri}"
        )
    if deferred:
        log.info("%d parts of documents split across shards are left for their assembly", deferred)
    return ParseResult(
        manifest_uri=uri,
        documents=len(out),
        pages=pages,
        failed=count_failures(failures),
        config_fingerprint=entries[0].config_fingerprint if entries else None,
        deferred=deferred,
    )


def stage_parse_validate(
    manifest_uri: str,
    work: WorkArea,
    run_id: str,
    suites: dict[str, Any] | None = None,
    on_failure: str = OnValidationFailure.QUARANTINE,
    validate: bool = True,
) -> ParseResult:
    """:func:`parse_manifest` with the context's parts as arguments."""
    return parse_manifest(StageContext(work, run_id), manifest_uri, suites, on_failure, validate)
