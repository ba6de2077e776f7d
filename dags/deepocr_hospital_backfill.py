"""Hospital backfill: decades of scanned medical records, one year of the archive per DAG run.

The archive is laid out by year (``s3://records-archive/scans/1998/…``). Each run OCRs one year's
folder, so a backfill is plain Airflow::

    airflow backfill create --dag-id deepocr_hospital_backfill \\
        --from-date 1995-01-01 --to-date 2024-12-31 --max-active-runs 2

What makes it safe to leave running for weeks:

- Scans have no text layer worth reading, so every page goes to the model (``text_layer="never"``).
  Pages that loop are retried up the temperature ladder, then by RapidOCR on CPU; every page row
  records the engine that won.
- The OCR task holds one slot of the ``deepocr_gpu`` pool (create it with as many slots as GPU
  workers) and runs on the ``gpu`` Celery queue; ``batch_size="auto"`` starts at 64 pages and
  halves on CUDA out-of-memory. On Kubernetes, add an ``executor_config`` pod override requesting
  ``nvidia.com/gpu`` instead of the queue.
- A retried or re-run year skips finished pages (the work area is content-addressed) and the load
  ledger skips documents already loaded with the same config, so reruns cost nothing twice.
- Records that fail validation are quarantined (reason ``validation_failed``) for review instead of
  loading; patients' text never goes to logs or XCom.

Environment defaults: DEEPOCR_ARCHIVE_URI (``s3://records-archive/scans``), DEEPOCR_WAREHOUSE
(an Airflow SQL connection id or a SQLAlchemy URL), DEEPOCR_WORK_URI, DEEPOCR_AWS_CONN_ID,
DEEPOCR_OCR_QUEUE, DEEPOCR_GPU_POOL, DEEPOCR_ENGINE.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG

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

with DAG(
    dag_id="deepocr_hospital_backfill",
    description="Scanned medical records, one archive year per run -> DeepSeek-OCR -> warehouse",
    schedule="@yearly",
    start_date=datetime(1995, 1, 1),
    catchup=False,  # backfill explicitly (see the docstring); new years run as they close
    max_active_runs=2,
    tags=["deepocr", "ocr", "backfill", "phi"],
    # every task: the shared work area and AWS connection, and patient retries
    default_args={
        "work_uri": WORK_URI,
        "aws_conn_id": AWS_CONN_ID,
        "retries": 3,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
    },
) as dag:
    listing = DeepOcrListDocumentsOperator(
        task_id="list_year",
        source_uri=ARCHIVE_URI + "/{{ logical_date.year }}/",
    )
    ocr = DeepOcrOcrOperator(
        task_id="ocr",
        manifest=listing.output,
        engine=os.environ.get("DEEPOCR_ENGINE", "auto"),
        text_layer="never",
        dpi=200,  # small print on old forms
        batch_size="auto",
        retry_temperatures="0,0.2,0.4",
        fallback_engine="rapidocr",
        queue=os.environ.get("DEEPOCR_OCR_QUEUE", "gpu"),
        pool=GPU_POOL,
        execution_timeout=timedelta(hours=12),
    )
    parsed = DeepOcrParseValidateOperator(
        task_id="parse_validate",
        manifest=ocr.output,
        on_validation_failure="quarantine",
    )
    load = DeepOcrLoadOperator(
        task_id="load",
        manifest=parsed.output,
        warehouse_conn_id=WAREHOUSE,
        table_prefix="records_",
    )
    listing >> ocr >> parsed >> load
