"""The pipeline: list -> read -> render -> OCR -> (assemble) -> parse + validate -> load.

Each stage is a function over a *manifest* in the work area (a JSONL file of small entries: URIs,
ids, counts), so Airflow operators run one stage per task and pass only the manifest URI through
XCom, while :func:`run_pipeline` runs every stage in-process for the CLI. Every stage takes a
:class:`StageContext` (work area, run id, storage, OCR settings), built once per run or task, and
returns its own small result; the ``stage_*`` functions take the context's parts as arguments.

The rooms, one module per stage:

- :mod:`.context`: :class:`StageContext`, :class:`OcrSettings`, :func:`config_fingerprint`,
  :func:`new_run_id`;
- :mod:`.manifests`: the manifests' entries (:class:`OcrEntry`, :class:`RecordsEntry`) and the
  failure helpers the stages share;
- :mod:`.listing`: list the source, skip the unchanged documents, cut the listing into shards
  (:func:`list_source`, ``ListResult``);
- :mod:`.ocr`: the OCR stage of a listing or shard and its run accounting (:func:`ocr_manifest`,
  ``OcrStageResult``), over :mod:`.batching` (the render thread and the batches across documents;
  text-layer routing is :mod:`airflow_provider_deepocr.core.engines.text_layer`);
- :mod:`.assemble`: the documents split across shards, put back together after every shard's OCR
  (:func:`assemble_spanning`, ``AssembleResult``);
- :mod:`.parse_validate`: records with provenance, checked with Great Expectations
  (:func:`parse_manifest`, ``ParseResult``);
- :mod:`.load`: exactly-once loads in batches of whole documents, review decisions honoured, and the
  ``runs`` row (:func:`load_manifest`, ``LoadResult``);
- :mod:`.run`: every stage in this process (:func:`run_pipeline`, :class:`RunSummary`).

Every work-area path comes from :mod:`airflow_provider_deepocr.core.work_layout`. A sharded run maps
the OCR, parse and load stages over the shards (one Airflow task instance each); the documents
split across shards are assembled, parsed and loaded once, whole, after every shard's OCR.

Failures are isolated to the smallest unit: a page that fails is a failure row of its document,
a document that fails is a failure row of the batch; nothing else is lost.
"""

from airflow_provider_deepocr.core.pipeline.assemble import AssembleResult, assemble_spanning, stage_assemble
from airflow_provider_deepocr.core.pipeline.batching import BatchedOcr, ocr_documents
from airflow_provider_deepocr.core.pipeline.context import (
    OcrSettings,
    StageContext,
    config_fingerprint,
    new_run_id,
)
from airflow_provider_deepocr.core.pipeline.listing import ListResult, list_source, stage_list, unchanged_refs
from airflow_provider_deepocr.core.pipeline.load import LoadResult, load_manifest, stage_load
from airflow_provider_deepocr.core.pipeline.manifests import OcrEntry, RecordsEntry
from airflow_provider_deepocr.core.pipeline.ocr import OcrStageResult, ocr_manifest, stage_ocr
from airflow_provider_deepocr.core.pipeline.parse_validate import (
    ParseResult,
    build_records,
    parse_manifest,
    stage_parse_validate,
)
from airflow_provider_deepocr.core.pipeline.run import RunSummary, run_pipeline

__all__ = [
    "AssembleResult",
    "BatchedOcr",
    "ListResult",
    "LoadResult",
    "OcrEntry",
    "OcrSettings",
    "OcrStageResult",
    "ParseResult",
    "RecordsEntry",
    "RunSummary",
    "StageContext",
    "assemble_spanning",
    "build_records",
    "config_fingerprint",
    "list_source",
    "load_manifest",
    "new_run_id",
    "ocr_documents",
    "ocr_manifest",
    "parse_manifest",
    "run_pipeline",
    "stage_assemble",
    "stage_list",
    "stage_load",
    "stage_ocr",
    "stage_parse_validate",
    "unchanged_refs",
]
