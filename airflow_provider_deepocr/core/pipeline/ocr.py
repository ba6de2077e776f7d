"""Stage 2: read + render + OCR every document of a listing manifest, or of one shard of it.

Writes the OCR manifest (one :class:`~.manifests.OcrEntry` per document) and the shard's
:class:`~airflow_provider_deepocr.core.runs.OcrStats` (for the runs table). The machinery (producer
thread, batches across documents, text-layer routing) is :mod:`~.batching`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_deepocr.core.pipeline.batching import BatchedOcr
from airflow_provider_deepocr.core.pipeline.context import OcrSettings, StageContext, config_fingerprint
from airflow_provider_deepocr.core.pipeline.manifests import count_failures
from airflow_provider_deepocr.core.review import left_for_other_engines, mark_reocr_done, review_decisions
from airflow_provider_deepocr.core.runs import OcrStats, utc_now
from airflow_provider_deepocr.core.shards import ShardItem
from airflow_provider_deepocr.core.work_layout import UNSHARDED, Manifest, RunLayout

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.engines.base import OcrEngine
    from airflow_provider_deepocr.core.sources import Storage, WorkArea

log = logging.getLogger(__name__)


@dataclass
class OcrStageResult:
    """What the OCR stage hands on (and an operator pushes to XCom)."""

    manifest_uri: str
    documents: int = 0
    pages: int = 0  # pages OCR'd (or finished earlier) without failure
    failed: dict[str, int] = field(default_factory=dict)
    config_fingerprint: str | None = None
    total_pages: int = 0  # pages found in readable documents
    engines: dict[str, int] = field(default_factory=dict)  # pages read by this stage, by engine

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _warn_if_listing_assumed_another_config(ctx: StageContext, fp: str) -> None:
    """The incremental listing skipped documents under the fingerprint it assumed; say so when this
    stage runs under another one (the next run re-reads them)."""
    uri = ctx.run_layout.listing_note()
    if ctx.work.exists(uri):
        assumed = ctx.work.read_json(uri)
        if assumed.get("skipped") and assumed.get("fingerprint") != fp:
            log.warning(
                "the configuration changed since the last run: the listing skipped %d documents loaded "
                "under the previous configuration; the next run re-reads them under this one",
                assumed["skipped"],
            )


def _items_for(
    ctx: StageContext, manifest_uri: str, engine: OcrEngine
) -> tuple[list[ShardItem], dict[str, Any]]:
    """The manifest's items, less those a reviewer left for another engine; and the decisions."""
    items = [ShardItem.from_dict(d) for d in ctx.work.read_jsonl(manifest_uri)]
    decisions = review_decisions(ctx.work)
    held = left_for_other_engines(decisions, engine.name)
    if held:  # a reviewer sent these to another engine: the next run with that engine takes them
        kept = [it for it in items if it.ref.uri not in held]
        log.info("%d documents are left for the engine a reviewer chose", len(items) - len(kept))
        items = kept
    return items, decisions


def ocr_manifest(
    ctx: StageContext,
    manifest_uri: str,
    engine: OcrEngine,
    *,
    task_id: str = "",
    model_load_seconds: float = 0.0,
    gpu_hour_cost: float | None = None,
) -> OcrStageResult:
    """OCR every document of a listing manifest, or of one shard of it (``ctx.settings``).

    ``task_id``, ``model_load_seconds`` (what building the engine took) and ``gpu_hour_cost`` only
    go into the stats. Logs a progress line at most every 30 s."""
    fp = config_fingerprint(engine, ctx.settings)
    _warn_if_listing_assumed_another_config(ctx, fp)
    shard = RunLayout.shard_of(manifest_uri)
    stats = OcrStats(shard=shard, task_id=task_id, started_at=utc_now(), config_fingerprint=fp)
    items, decisions = _items_for(ctx, manifest_uri, engine)
    t0 = time.perf_counter()
    run = BatchedOcr(ctx, items, engine, fp, "" if shard == UNSHARDED else f"shard {shard}")
    entries = run.run()
    if decisions:
        mark_reocr_done(ctx.work, decisions, {it.ref.uri for it in items}, engine.name)
    if run.progress.lines:  # a task that logged progress ends with a last line
        run.progress.log()
    uri = ctx.work.write_jsonl(ctx.run_layout.manifest(Manifest.OCR, shard), [e.to_dict() for e in entries])
    failed = count_failures(f for e in entries for f in e.failures)
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
    ctx.work.write_json(ctx.run_layout.stats(shard), stats.to_dict())
    return OcrStageResult(
        manifest_uri=uri,
        documents=len(entries),
        pages=sum(len(e.pages_ok) for e in entries),
        failed=failed,
        config_fingerprint=fp,
        total_pages=sum(e.page_count for e in entries),
        engines=dict(sorted(run.engines.items())),
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
) -> OcrStageResult:
    """:func:`ocr_manifest` with the context's parts as arguments."""
    ctx = StageContext(work, run_id, storage, s3_client, settings or OcrSettings())
    return ocr_manifest(
        ctx,
        manifest_uri,
        engine,
        task_id=task_id,
        model_load_seconds=model_load_seconds,
        gpu_hour_cost=gpu_hour_cost,
    )
