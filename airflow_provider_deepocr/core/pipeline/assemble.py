"""Stage 2b: put the documents split across shards back together, after every shard's OCR, so each
is parsed, validated and loaded once, whole, or not at all."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.pipeline.context import StageContext
from airflow_provider_deepocr.core.pipeline.manifests import OcrEntry, count_failures
from airflow_provider_deepocr.core.records import DocumentRef, Failure
from airflow_provider_deepocr.core.vocab import Stage
from airflow_provider_deepocr.core.work_layout import SPANNING, Manifest, WorkLayout

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.sources import WorkArea

log = logging.getLogger(__name__)


@dataclass
class AssembleResult:
    """The assembled documents' OCR manifest (``runs/<run_id>/ocr/spanning.jsonl``) and counts."""

    manifest_uri: str
    documents: int = 0
    pages: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    config_fingerprint: str | None = None
    total_pages: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ShardParts:
    """The parts of split documents in the shards' OCR manifests, each manifest read once."""

    def __init__(self, ctx: StageContext) -> None:
        self.ctx = ctx
        self.manifests: dict[str, dict[tuple[str, int], OcrEntry]] = {}

    def get(self, shard: str, uri: str, first: int) -> OcrEntry | None:
        if shard not in self.manifests:
            manifest = self.ctx.run_layout.manifest(Manifest.OCR, shard)
            rows = self.ctx.work.read_jsonl(manifest) if self.ctx.work.exists(manifest) else []
            entries = map(OcrEntry.from_dict, rows)
            self.manifests[shard] = {(e.ref.uri, e.first): e for e in entries if e.parts > 1}
        return self.manifests[shard].get((uri, first))


def _assemble_one(ctx: StageContext, doc: dict[str, Any], parts: _ShardParts) -> OcrEntry:
    ref = DocumentRef.from_dict(doc["ref"])
    found = [parts.get(p["shard"], ref.uri, p["first"]) for p in doc["parts"]]
    got = [e for e in found if e is not None]
    ids = {e.doc_id for e in got}
    fp = got[0].config_fingerprint if got else ""
    if len(got) < len(found) or len(ids) != 1:
        reason = errors.INCOMPLETE_DOCUMENT if len(got) < len(found) else errors.SOURCE_CHANGED
        detail = f"{len(got)} of {len(found)} parts OCR'd" if len(got) < len(found) else "parts differ"
        doc_id = next(iter(ids)) if len(ids) == 1 else None
        log.warning("split document %s: %s (%s)", ref.uri, reason, detail)
        failure = Failure(ref.uri, reason, detail, doc_id, None, Stage.ASSEMBLE)
        return OcrEntry(ref, doc_id, "", 0, fp, None, failures=[failure])
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
        results={k: v for e in got for k, v in (e.results or {}).items()} or None,
    )
    if whole.ocr_dir and whole.rendered_whole and not any(f.stage == Stage.OCR for f in whole.failures):
        # done whole: a later run that does not split it (another shard size) reuses it
        ctx.work.write_json(WorkLayout.summary(whole.ocr_dir), whole.to_dict())
    return whole


def assemble_spanning(ctx: StageContext, spanning_uri: str | None = None) -> AssembleResult:
    """One OCR entry per split document, from its parts' entries in the shards' OCR manifests
    (``runs/<run_id>/ocr/``); ``spanning_uri`` defaults to the run's list of split documents.
    Writes ``runs/<run_id>/ocr/spanning.jsonl`` for the parse stage.

    A document with a part no shard finished (its shard's manifest is missing), or whose parts
    were read from different content (the file changed during the run), becomes a document-level
    failure (``incomplete_document`` / ``source_changed``): it is never loaded in part.
    """
    if spanning_uri is None:
        spanning_uri = ctx.run_layout.spanning()
    docs = ctx.work.read_jsonl(spanning_uri) if ctx.work.exists(spanning_uri) else []
    parts = _ShardParts(ctx)
    out = [_assemble_one(ctx, d, parts) for d in docs]
    uri = ctx.run_layout.manifest(Manifest.OCR, SPANNING)
    ctx.work.write_jsonl(uri, [e.to_dict() for e in out])
    log.info("assembled %d documents split across shards", len(out))
    return AssembleResult(
        manifest_uri=uri,
        documents=len(out),
        pages=sum(len(e.pages_ok) for e in out),
        failed=count_failures(f for e in out for f in e.failures),
        config_fingerprint=out[0].config_fingerprint if out else None,
        total_pages=sum(e.page_count for e in out),
    )


def stage_assemble(spanning_uri: str, work: WorkArea, run_id: str) -> AssembleResult:
    """:func:`assemble_spanning` with the context's parts as arguments."""
    return assemble_spanning(StageContext(work, run_id), spanning_uri)
