"""Stage 3: parse every OCR'd document into records with provenance, validate them, and write the
records manifest (one :class:`~.manifests.RecordsEntry` per document)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.pipeline.context import StageContext
from airflow_provider_deepocr.core.pipeline.manifests import OcrEntry, RecordsEntry, count_failures
from airflow_provider_deepocr.core.records import DocumentResult, Failure, OcrResult, PageRecord
from airflow_provider_deepocr.core.vocab import OnValidationFailure, Stage, Status
from airflow_provider_deepocr.core.work_layout import Manifest, RunLayout, WorkLayout

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.sources import WorkArea

log = logging.getLogger(__name__)

ON_VALIDATION_FAILURE = tuple(m.value for m in OnValidationFailure)


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
        record = _page_record(result, entry, page_no, work.read_json(WorkLayout.page(entry.ocr_dir, page_no)))
        if record is not None:
            result.pages.append(record)
    return result


def _validate(
    result: DocumentResult, entry: OcrEntry, suites: dict[str, Any] | None, on_failure: str
) -> tuple[Status, list[dict[str, Any]]]:
    """The document's status and its expectation results."""
    from airflow_provider_deepocr.core.validate import validate_document

    report = validate_document(result, suites)
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
    pages = 0
    failed_validation = 0
    for entry in entries:
        result = build_records(entry, ctx.work)
        status = Status.OK if result.pages else Status.FAILED
        rows: list[dict[str, Any]] = []
        if validate and result.pages:
            status, rows = _validate(result, entry, suites, on_failure)
            failed_validation += status != Status.OK
        records_uri = None
        if result.doc_id:
            records_uri = ctx.work.write_json(
                ctx.layout.records(result.config_fingerprint, result.doc_id), result.to_dict()
            )
        if status.loads:
            pages += len(result.pages)
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
