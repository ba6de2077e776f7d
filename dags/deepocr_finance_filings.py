"""Finance filings: each day's filings -> tables as cells in the warehouse, checked before loading.

Filings land under a dated prefix (``s3://filings/inbox/2026-11-27/…``). Most are born-digital
PDFs, so ``text_layer="auto"`` reads pages with a good text layer directly (engine ``pdf-text``,
no GPU) and sends only scanned pages to the model, here a shared OpenAI-compatible server
(``vllm serve`` / ``deepocr serve``) named in the ``deepseek_ocr`` connection, so the Airflow
worker needs no GPU.

On top of the default checks (ids unique, boxes on the grid, no page that looped or hit the token
limit), every table cell must have a position and a document whose pages have no blocks at all
fails: a filing that fails is quarantined, not loaded, and the task does not fail the day.
Reconciliation queries can then trust ``deepocr_table_cells``.

Environment defaults: DEEPOCR_FILINGS_URI (``s3://filings/inbox``), DEEPOCR_WAREHOUSE (an Airflow
SQL connection id, e.g. a Snowflake one), DEEPOCR_OCR_CONN_ID (``deepseek_ocr_default``),
DEEPOCR_WORK_URI, DEEPOCR_AWS_CONN_ID.
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

FILINGS_URI = os.environ.get("DEEPOCR_FILINGS_URI", "s3://filings/inbox").rstrip("/")
WAREHOUSE = os.environ.get("DEEPOCR_WAREHOUSE", "finance_warehouse")
OCR_CONN_ID = os.environ.get("DEEPOCR_OCR_CONN_ID", "deepseek_ocr_default")
WORK_URI = os.environ.get("DEEPOCR_WORK_URI", "/tmp/deepocr-work")
AWS_CONN_ID = os.environ.get("DEEPOCR_AWS_CONN_ID") or None
SHARD_PAGES = int(os.environ.get("DEEPOCR_SHARD_PAGES", "2000"))  # the server answers ~64 at once

# Checks on top of the default suites (short dict form; a GX suite JSON path works too).
FILING_EXPECTATIONS = {
    "cells": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "row_no"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "col_no"}},
    ],
    "blocks": [{"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}],
}

with DAG(
    dag_id="deepocr_finance_filings",
    description="Daily filings -> text layer or DeepSeek-OCR server -> checked tables in the warehouse",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["deepocr", "ocr", "finance"],
    # every task: the shared work area and AWS connection
    default_args={
        "work_uri": WORK_URI,
        "aws_conn_id": AWS_CONN_ID,
        "retries": 2,
        "retry_delay": timedelta(minutes=10),
    },
) as dag:
    listing = DeepOcrListDocumentsOperator(
        task_id="list_filings",
        source_uri=FILINGS_URI + "/{{ ds }}/",
        shard_pages=SHARD_PAGES,  # a heavy filing day spreads over several OCR tasks
        warehouse_conn_id=WAREHOUSE,  # filings re-sent unchanged are skipped unread
    )
    ocr = DeepOcrOcrOperator.partial(
        task_id="ocr",
        deepseek_ocr_conn_id=OCR_CONN_ID,
        text_layer="auto",
        queue="default",  # the model runs on the server; this worker only waits on the network
    ).expand(manifest=listing.output)
    parsed = DeepOcrParseValidateOperator.partial(
        task_id="parse_validate",
        expectations=FILING_EXPECTATIONS,
        on_validation_failure="quarantine",
    ).expand(manifest=ocr.output)
    load = DeepOcrLoadOperator.partial(
        task_id="load",
        warehouse_conn_id=WAREHOUSE,
        outlets=[],  # the day's Asset event comes once, from load_split_filings
    ).expand(manifest=parsed.output)
    parsed_split = DeepOcrParseValidateOperator(
        task_id="parse_split_filings",
        spanning=True,
        expectations=FILING_EXPECTATIONS,
        on_validation_failure="quarantine",
    )
    load_split = DeepOcrLoadOperator(
        task_id="load_split_filings", manifest=parsed_split.output, warehouse_conn_id=WAREHOUSE
    )
    ocr >> parsed_split >> load_split
    load >> load_split
