"""Stage 4: load every document of a records manifest into the warehouse, exactly once in effect,
honouring the reviewers' decisions, and write the run's ``runs`` row for the shard."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.pipeline.context import StageContext
from airflow_provider_deepocr.core.pipeline.manifests import count_failures
from airflow_provider_deepocr.core.pipeline.prefetch import ahead
from airflow_provider_deepocr.core.records import DocumentRef, DocumentResult, Failure
from airflow_provider_deepocr.core.review import APPROVE, REJECT, review_decisions
from airflow_provider_deepocr.core.runs import OcrStats, run_row, utc_now
from airflow_provider_deepocr.core.vocab import Stage, Status
from airflow_provider_deepocr.core.work_layout import RunLayout

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.sources import WorkArea
    from airflow_provider_deepocr.core.warehouse import Warehouse

log = logging.getLogger(__name__)


@dataclass
class LoadResult:
    """What the load did with a records manifest."""

    manifest_uri: str
    documents: int = 0  # loaded by this stage
    pages: int = 0  # pages of loaded documents, and of those already loaded (skipped)
    failed: dict[str, int] = field(default_factory=dict)
    skipped: int = 0  # already loaded under the same config fingerprint
    duplicates: int = 0  # the same bytes as another document of the manifest: loaded once
    failed_objects: int = 0  # listed objects that ended as failure rows (not loaded)
    lost: list[str] = field(default_factory=list)  # expected URIs with no outcome at all

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _load_detail(exc: BaseException) -> str:
    """A load error's detail for the failures table: our typed message (ids, SQLSTATE, no row
    values), or the exception class alone (a driver's message can quote document text)."""
    if isinstance(exc, errors.DeepOcrError):
        return exc.detail[:500] or exc.reason
    return type(exc).__name__


class _Loader:
    """Loads good documents in batches of whole documents; a failed batch is retried one document
    per transaction. Keeps the counts the stage reports."""

    def __init__(self, ctx: StageContext, warehouse: Warehouse, force: bool) -> None:
        self.run_id = ctx.run_id
        self.warehouse = warehouse
        self.force = force
        self.docs = 0
        self.pages = 0
        self.skipped = 0
        self.duplicates = 0  # entries whose bytes another entry of the manifest has (loaded once)
        # documents not loaded by this stage (loaded earlier, held back): their URIs are kept too
        self.seen: list[DocumentResult] = []
        self.outcome: dict[str, str] = {}  # source URI -> loaded | skipped | failed | duplicate
        self.failures: list[Failure] = []
        self.pending: list[DocumentResult] = []
        self.validation: dict[str, list[dict[str, Any]]] = {}  # doc id -> its expectation results

    def load_one(self, result: DocumentResult) -> None:
        try:
            counts = self.warehouse.load_document(
                result, self.run_id, force=self.force, validation_rows=self.validation.get(result.doc_id)
            )
        except Exception as exc:
            log.exception("load failed for document %s", result.doc_id[:12])
            failure = Failure(
                result.ref.uri, errors.LOAD_ERROR, _load_detail(exc), result.doc_id, None, Stage.LOAD
            )
            self.failures.append(failure)
            self.outcome[result.ref.uri] = "failed"
            try:  # the audit trail says why the document is missing, when the warehouse still answers
                self.warehouse.record_failures([failure], self.run_id, result.config_fingerprint)
            except Exception as rec_exc:
                log.warning(
                    "could not record the load failure of %s: %s", result.doc_id[:12], type(rec_exc).__name__
                )
            return
        self.failures.extend(result.failures)
        self.outcome[result.ref.uri] = "loaded"
        self.docs += 1
        self.pages += counts.get("pages", len(result.pages))

    def flush(self) -> None:
        batch = list(self.pending)
        self.pending.clear()
        if not batch:
            return
        if len(batch) == 1:
            self.load_one(batch[0])
            return
        try:
            counts = self.warehouse.load_documents(
                batch,
                self.run_id,
                force=self.force,
                validation_rows={r.doc_id: self.validation.get(r.doc_id) or [] for r in batch},
            )
        except errors.DeepOcrError as exc:
            log.warning(
                "a batch of %d documents failed (%s); loading them one by one", len(batch), exc.reason
            )
            for result in batch:
                self.load_one(result)
            return
        for result in batch:
            self.failures.extend(result.failures)
            self.outcome[result.ref.uri] = "loaded"
        self.docs += len(batch)
        self.pages += sum(len(r.pages) for r in batch)
        log.info("loaded %d documents (%d block rows) in one transaction", len(batch), counts["blocks"])

    def held_back(self, e: dict[str, Any], result: DocumentResult, decision: dict[str, Any]) -> bool:
        """Record a document that does not load (rejected, quarantined, failed); False: it loads."""
        wh, run_id = self.warehouse, self.run_id
        if decision.get("decision") == REJECT:  # a reviewer kept it out: no run brings it back
            wh.quarantine(result, errors.REJECTED, "kept out by a reviewer", run_id, stage=Stage.REVIEW.value)
            self.failures.append(
                Failure(result.ref.uri, errors.REJECTED, "", result.doc_id, None, Stage.REVIEW)
            )
            return True
        approved = (
            decision.get("decision") == APPROVE
            and decision.get("config_fingerprint") == result.config_fingerprint
        )
        if e["status"] == Status.QUARANTINED and not approved:
            reason = next((f for f in result.failures if f.reason == errors.VALIDATION_FAILED), None)
            detail = reason.detail if reason else ""
            wh.quarantine(result, errors.VALIDATION_FAILED, detail, run_id, e.get("validation") or None)
            self.failures.extend(result.failures)
            return True
        if e["status"] == Status.FAILED:
            wh.record_failures(result.failures, run_id, result.config_fingerprint)
            self.failures.extend(result.failures)
            return True
        return False


def _ref_of(e: dict[str, Any]) -> DocumentRef:
    ref = e.get("ref")
    return DocumentRef.from_dict(ref) if ref else DocumentRef(e["source_uri"])


def _refs_by_doc(entries: list[dict[str, Any]]) -> dict[str, list[DocumentRef]]:
    """The listed objects of each content id in the manifest, first listed first (each entry's
    ref object, so ``is`` tells the first from its duplicates)."""
    refs: dict[str, list[DocumentRef]] = {}
    for e in entries:
        if e.get("doc_id"):
            e["_ref"] = ref = _ref_of(e)
            refs.setdefault(e["doc_id"], []).append(ref)
    return refs


def _listed_uris(ctx: StageContext, manifest_uri: str) -> list[str] | None:
    """The URIs this run listed for the records manifest ``manifest_uri`` (the listing, a shard's
    whole documents, or the split documents); None when this run's listing is not there."""
    from airflow_provider_deepocr.core.shards import ShardItem
    from airflow_provider_deepocr.core.work_layout import SPANNING, UNSHARDED

    shard, layout = RunLayout.shard_of(manifest_uri), ctx.run_layout
    listing = {UNSHARDED: layout.documents(), SPANNING: layout.spanning()}.get(shard) or layout.shard(shard)
    if not ctx.work.exists(listing):
        return None
    lines = ctx.work.read_jsonl(listing)
    if shard == SPANNING:
        return [d["ref"]["uri"] for d in lines]
    return [it.ref.uri for it in map(ShardItem.from_dict, lines) if not it.is_part]


def _held_for_reocr(ctx: StageContext, loader: _Loader, expect: Collection[str]) -> None:
    """Listed documents a reviewer sent to another engine (the OCR stage left them for it) are
    skipped, not lost."""
    from airflow_provider_deepocr.core.review import REOCR

    missing = set(expect) - loader.outcome.keys()
    if missing:
        for d in review_decisions(ctx.work).values():
            if d.get("decision") == REOCR and d.get("source_uri") in missing:
                loader.outcome[d["source_uri"]] = "skipped"
                loader.skipped += 1


def _record_run(
    ctx: StageContext,
    warehouse: Warehouse,
    manifest_uri: str,
    documents: int,
    result: LoadResult,
    started: str,
    dag_id: str,
) -> None:
    """The ``runs`` row of this run and shard: what was loaded and failed, and what the OCR stage
    of the shard measured."""
    shard = RunLayout.shard_of(manifest_uri)
    stats_uri = ctx.run_layout.stats(shard)
    stats = OcrStats.from_dict(ctx.work.read_json(stats_uri)) if ctx.work.exists(stats_uri) else None
    if stats is None and not documents:
        return  # e.g. the assembly of a run with no split documents: nothing to account for
    row = run_row(
        stats,
        run_id=ctx.run_id,
        dag_id=dag_id,
        shard=shard,
        documents=documents,
        pages=result.pages,
        failed=result.failed,
        started_at=started,
    )
    warehouse.record_run(row)


def load_manifest(
    ctx: StageContext,
    manifest_uri: str,
    warehouse: Warehouse,
    force: bool = False,
    batch_rows: int = 50_000,
    batch_docs: int = 1_000,
    dag_id: str = "cli",
    expect: Collection[str] | None = None,
) -> LoadResult:
    """Load every document of a records manifest, exactly once in effect.

    Good documents are loaded in transactions of whole documents (up to ``batch_rows`` block
    rows and ``batch_docs`` documents each: one delete, one COPY per table, one commit); if a
    batch fails it is retried one document per transaction, so a bad document fails alone. A
    document whose (doc id, config fingerprint) the load ledger already holds is skipped unless
    ``force`` (the ledger is read once for the whole manifest, before the loads).

    Ends with the ``runs`` row of this run (``dag_id``) and shard. Every URI of the manifest gets
    one outcome, from what was written: loaded, skipped (loaded earlier), failed (failure rows) or
    duplicate; ``expect`` (the URIs listed for this manifest) names those with none (``lost``).
    """
    started = utc_now()
    warehouse.create()
    entries = ctx.work.read_jsonl(manifest_uri)
    ids = [e["doc_id"] for e in entries if e.get("doc_id")]
    decisions = review_decisions(ctx.work, set(ids))
    live = {} if force else warehouse.live_fingerprints(ids)
    loader = _Loader(ctx, warehouse, force)
    refs = _refs_by_doc(entries)
    rows = 0

    def read(e: dict[str, Any]) -> DocumentResult | None:  # on the read-ahead pool
        if e["records_uri"] is None or e["_ref"] is not refs[e["doc_id"]][0]:
            return None  # a failure, or the same bytes under another URI: nothing to load
        return DocumentResult.from_dict(ctx.work.read_json(e["records_uri"]))

    for e, result in ahead(entries, read):  # the next documents' records read meanwhile
        if result is None:
            if e["records_uri"] is None:
                loader.failures.extend(Failure.from_dict(f) for f in e["failures"])
                loader.outcome[e["source_uri"]] = "failed"
            else:  # loaded once, as the first listed
                loader.duplicates += 1
                loader.outcome[e["source_uri"]] = "duplicate"
            continue
        first, *also = refs[e["doc_id"]]
        result.ref, result.seen_as = first, also  # the records file is shared by identical bytes
        if loader.held_back(e, result, decisions.get(result.doc_id) or {}):
            loader.seen.append(result)
            loader.outcome[result.ref.uri] = "failed"
            continue
        # loaded under this config with as many pages: a rerun's no-op (a document whose failed
        # pages came back since has more pages now, and reloads whole)
        if live.get(result.doc_id) == (result.config_fingerprint, len(result.pages)):
            loader.skipped += 1
            loader.pages += len(result.pages)
            loader.failures.extend(result.failures)
            loader.seen.append(result)
            loader.outcome[result.ref.uri] = "skipped"
            log.info("document %s already loaded with this config, skipping", result.doc_id[:12])
            continue
        loader.validation[result.doc_id] = e.get("validation") or []
        loader.pending.append(result)
        rows += sum(len(p.parsed.blocks) for p in result.pages)
        if rows >= batch_rows or len(loader.pending) >= batch_docs:
            loader.flush()
            rows = 0
    loader.flush()
    if loader.seen:  # their URIs are seen again, maybe new ones: the sources table keeps them
        from airflow_provider_deepocr.core.warehouse.sources import record_sources

        record_sources(warehouse, loader.seen, ctx.run_id)
    # documents without a content id (unreadable) only have failure rows
    orphan = [Failure.from_dict(f) for e in entries if e["records_uri"] is None for f in e["failures"]]
    if orphan:
        warehouse.record_failures(orphan, ctx.run_id, "")
    if expect is None:
        expect = _listed_uris(ctx, manifest_uri)
    _held_for_reocr(ctx, loader, expect or ())
    outcome = LoadResult(
        manifest_uri=manifest_uri,
        documents=loader.docs,
        pages=loader.pages,
        failed=count_failures(loader.failures),
        skipped=loader.skipped,
        duplicates=loader.duplicates,
        failed_objects=sum(o == "failed" for o in loader.outcome.values()),
        lost=sorted(set(expect or ()) - loader.outcome.keys()),
    )
    if outcome.lost:
        log.error("%d listed objects have no outcome (lost): %s", len(outcome.lost), outcome.lost[:20])
    _record_run(ctx, warehouse, manifest_uri, len(entries), outcome, started, dag_id)
    return outcome


def stage_load(
    manifest_uri: str,
    work: WorkArea,
    run_id: str,
    warehouse: Warehouse,
    force: bool = False,
    batch_rows: int = 50_000,
    batch_docs: int = 1_000,
    dag_id: str = "cli",
) -> LoadResult:
    """:func:`load_manifest` with the context's parts as arguments."""
    return load_manifest(
        StageContext(work, run_id), manifest_uri, warehouse, force, batch_rows, batch_docs, dag_id
    )
