"""All stages in-process (the CLI's ``deepocr run``, a notebook, any orchestrator): list -> OCR ->
parse + validate -> load, with one :class:`~.context.StageContext` for the run."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_deepocr.core.pipeline.context import (
    OcrSettings,
    StageContext,
    config_fingerprint,
    new_run_id,
)
from airflow_provider_deepocr.core.pipeline.listing import list_source
from airflow_provider_deepocr.core.pipeline.load import load_manifest
from airflow_provider_deepocr.core.pipeline.ocr import ocr_manifest
from airflow_provider_deepocr.core.pipeline.parse_validate import parse_manifest
from airflow_provider_deepocr.core.vocab import OnValidationFailure

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.engines.base import OcrEngine
    from airflow_provider_deepocr.core.sources import WorkArea
    from airflow_provider_deepocr.core.warehouse import Warehouse

log = logging.getLogger(__name__)


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
    duplicates: int = 0  # listed objects whose bytes another listed object has (OCR'd, loaded once)
    listed: int = 0  # objects listed: loaded_documents + failed_objects + duplicates + skipped + lost
    failed_objects: int = 0  # listed objects that ended as failure rows
    lost: list[str] = field(default_factory=list)  # listed objects with no outcome (an error)
    engines: dict[str, int] = field(default_factory=dict)  # pages read in this run, by engine

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
    on_validation_failure: str = OnValidationFailure.QUARANTINE,
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
    ctx = StageContext(work, run_id or new_run_id(), s3_client=s3_client, settings=settings or OcrSettings())
    warehouse.create()  # an unreachable warehouse fails the run before any OCR work is spent
    if ctx.settings.page_timeout_s is not None:  # the OCR stage's page worker starts during the listing
        from airflow_provider_deepocr.core.pagework import warm_up

        warm_up()
    fp = config_fingerprint(engine, ctx.settings)
    listed = list_source(
        ctx,
        source_uri,
        max_documents=max_documents,
        warehouse=warehouse if skip_unchanged else None,
        live_fingerprint=fp,
    )
    ocr = ocr_manifest(
        ctx, listed.manifest_uri, engine, model_load_seconds=model_load_seconds, gpu_hour_cost=gpu_hour_cost
    )
    parsed = parse_manifest(ctx, ocr.manifest_uri, suites=suites, on_failure=on_validation_failure)
    expect = [d["uri"] for d in work.read_jsonl(listed.manifest_uri)]
    loaded = load_manifest(ctx, parsed.manifest_uri, warehouse, expect=expect)
    summary = RunSummary(
        run_id=ctx.run_id,
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
        duplicates=loaded.duplicates,
        listed=listed.documents + listed.skipped,
        failed_objects=loaded.failed_objects,
        lost=loaded.lost,
        engines=ocr.engines,
        manifests={
            "documents": listed.manifest_uri,
            "ocr": ocr.manifest_uri,
            "records": parsed.manifest_uri,
        },
    )
    log.info(
        "run %s: %d documents, %d pages, %d ok, failed %s in %.1fs",
        ctx.run_id,
        summary.documents,
        summary.pages,
        summary.ok,
        summary.failed,
        summary.seconds,
    )
    return summary
