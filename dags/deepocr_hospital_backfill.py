"""Hospital backfill: decades of scanned medical records, one year of the archive per DAG run.

The archive is laid out by year (``s3://records-archive/scans/1998/…``). Each run OCRs one year's
folder, so a backfill is plain Airflow::

    airflow backfill create --dag-id deepocr_hospital_backfill \\
        --from-date 1995-01-01 --to-date 2024-12-31 --max-active-runs 2

Each year is cut into shards of at most ``DEEPOCR_SHARD_PAGES`` pages (default 5,000, about 30
minutes of one GPU); the OCR task is mapped over them, one instance per shard, each holding one slot
of the GPU pool, so a year spreads over every GPU worker and a lost worker costs one shard's retry.
A scan longer than a shard is split into page ranges and loaded once, whole, after every shard.

What makes it safe to leave running for weeks:

- Scans have no text layer worth reading, so every page goes to the model (``text_layer="never"``).
  Pages that loop are retried up the temperature ladder, then by RapidOCR on CPU; every page row
  records the engine that won.
- The OCR task holds one slot of the ``deepocr_gpu`` pool (create it with as many slots as GPU
  workers) and runs on the ``gpu`` Celery queue; ``batch_size="auto"`` starts at 64 pages and
  halves on CUDA out-of-memory. On Kubernetes, add an ``executor_config`` pod override requesting
  ``nvidia.com/gpu`` instead of the queue.
- A retried shard skips finished pages (the work area is content-addressed), the listing skips
  scans already loaded unchanged without reading them, and the load ledger skips documents already
  loaded with the same config, so reruns cost nothing twice.
- Records that fail validation are quarantined (reason ``validation_failed``) for review instead of
  loading; patients' text never goes to logs or XCom.

Environment defaults: DEEPOCR_ARCHIVE_URI (``s3://records-archive/scans``), DEEPOCR_WAREHOUSE
(an Airflow SQL connection id or a SQLAlchemy URL), DEEPOCR_WORK_URI, DEEPOCR_AWS_CONN_ID,
DEEPOCR_OCR_QUEUE, DEEPOCR_GPU_POOL, DEEPOCR_ENGINE, DEEPOCR_BATCH_SIZE (default ``auto``),
DEEPOCR_SHARD_PAGES, DEEPOCR_RETRY_DELAY_S
(default 300), DEEPOCR_SECONDS_PER_PAGE (only for ``DEEPOCR_ENGINE=sleep``, the orchestration test
engine).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_deepocr.operators.deepocr import (
    DeepOcrListDocumentsOperator,
    DeepOcrLoadOperator,
    DeepOcrOcrOperator,
    DeepOcrParseValidateOperator,
)

ARCHIVE_URI = os.environ.get("DEEPOCR_ARCHIVE_URI", "s3://records-archive/scans").rstrip("/")
WAREHOUSE = os.environ.get("DEEPOCR_WAREHOUSE", "hospital_warehouse")
WORK_URI = os.environ.get("DEEPOCR_WORK_URI", "/tmp/deepocr-work")
AWS_CONN_ID = os.environ.get("DEEPOCR_AWS_CONN_ID") or None
GPU_POOL = os.environ.get("DEEPOCR_GPU_POOL", "deepocr_gpu")
SHARD_PAGES = int(os.environ.get("DEEPOCR_SHARD_PAGES", "5000"))
ENGINE = os.environ.get("DEEPOCR_ENGINE", "auto")
# the sleep engine stands in for the model when only the orchestration is under test
SLEEP = (
    {"seconds_per_page": float(os.environ.get("DEEPOCR_SECONDS_PER_PAGE", "0.2"))}
    if ENGINE == "sleep"
    else {}
)

with DAG(
    dag_id="deepocr_hospital_backfill",
    description="Scanned medical records, one archive year per run -> DeepSeek-OCR -> warehouse",
    # A run covers a finished year: the one for 2025 starts on 2026-01-01 with logical date
    # 2025-01-01 (a data-interval timetable; "@yearly" alone is a trigger timetable in Airflow 3,
    # whose run on 2026-01-01 would list the year that has only begun). Unpausing runs the last
    # finished year, never the current one.
    schedule=CronDataIntervalTimetable("@yearly", timezone="UTC"),
    start_date=datetime(1995, 1, 1),
    catchup=False,  # backfill explicitly (see the docstring); new years run as they close
    max_active_runs=2,
    tags=["deepocr", "ocr", "backfill", "phi"],
    # every task: the shared work area and AWS connection, and patient retries
    default_args={
        "work_uri": WORK_URI,
        "aws_conn_id": AWS_CONN_ID,
        "retries": 3,
        "retry_delay": timedelta(seconds=int(os.environ.get("DEEPOCR_RETRY_DELAY_S", "300"))),
        "retry_exponential_backoff": True,
    },
) as dag:
    listing = DeepOcrListDocumentsOperator(
        task_id="list_year",
        source_uri=ARCHIVE_URI + "/{{ logical_date.year }}/",
        shard_pages=SHARD_PAGES,
        warehouse_conn_id=WAREHOUSE,  # scans already loaded unchanged are skipped unread
        table_prefix="records_",
    )
    ocr = DeepOcrOcrOperator.partial(
        task_id="ocr",
        engine=ENGINE,
        text_layer="never",
        dpi=200,  # small print on old forms
        batch_size=os.environ.get("DEEPOCR_BATCH_SIZE", "auto"),
        retry_temperatures="0,0.2,0.4",
        fallback_engine="rapidocr" if ENGINE != "sleep" else "none",
        queue=os.environ.get("DEEPOCR_OCR_QUEUE", "gpu"),
        pool=GPU_POOL,
        execution_timeout=timedelta(hours=2),  # a shard is ~30 min of one GPU
        engine_options=SLEEP,
    ).expand(manifest=listing.output)
    parsed = DeepOcrParseValidateOperator.partial(
        task_id="parse_validate",
        on_validation_failure="quarantine",
    ).expand(manifest=ocr.output)
    load = DeepOcrLoadOperator.partial(
        task_id="load",
        warehouse_conn_id=WAREHOUSE,
        table_prefix="records_",
        outlets=[],  # the year's Asset event comes once, from load_split_scans
    ).expand(manifest=parsed.output)
    parsed_split = DeepOcrParseValidateOperator(
        task_id="parse_split_scans", spanning=True, on_validation_failure="quarantine"
    )
    load_split = DeepOcrLoadOperator(
        task_id="load_split_scans",
        manifest=parsed_split.output,
        warehouse_conn_id=WAREHOUSE,
        table_prefix="records_",
    )
    ocr >> parsed_split >> load_split
    load >> load_split
