"""Generic DAG: documents in object storage -> DeepSeek-OCR -> validated rows in a SQL warehouse.

Copy it and change the defaults, or trigger it with a config, e.g.::

    airflow dags test deepocr_documents_to_warehouse --conf '{"source_uri": "s3://bucket/in/",
        "warehouse": "warehouse_postgres", "engine": "deepseek",
        "model": "deepseek-community/DeepSeek-OCR-2"}'

Defaults come from environment variables (DEEPOCR_SOURCE_URI, DEEPOCR_WAREHOUSE, DEEPOCR_ENGINE,
DEEPOCR_MODEL, DEEPOCR_WORK_URI, DEEPOCR_AWS_CONN_ID, DEEPOCR_OCR_QUEUE) so one file serves several
deployments. The OCR task runs on the ``gpu`` queue; set DEEPOCR_OCR_QUEUE=default on a machine
without GPU workers.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, Param

from airflow_provider_deepocr.operators.deepocr import (
    DeepOcrListDocumentsOperator,
    DeepOcrLoadOperator,
    DeepOcrOcrOperator,
    DeepOcrParseValidateOperator,
)

WORK_URI = os.environ.get("DEEPOCR_WORK_URI", "/tmp/deepocr-work")
AWS_CONN_ID = os.environ.get("DEEPOCR_AWS_CONN_ID") or None

with DAG(
    dag_id="deepocr_documents_to_warehouse",
    description="Object storage -> DeepSeek-OCR -> Great Expectations -> SQL warehouse",
    schedule=None,
    default_args={"work_uri": WORK_URI, "aws_conn_id": AWS_CONN_ID},  # every task shares them
    catchup=False,
    tags=["deepocr", "ocr", "warehouse"],
    params={
        "source_uri": Param(os.environ.get("DEEPOCR_SOURCE_URI", "/data/inbox"), type="string"),
        "warehouse": Param(
            os.environ.get("DEEPOCR_WAREHOUSE", "sqlite:////tmp/deepocr.db"),
            type="string",
            description="Airflow SQL connection id, or a SQLAlchemy URL",
        ),
        "engine": Param(os.environ.get("DEEPOCR_ENGINE", "auto"), enum=["auto", "deepseek", "rapidocr"]),
        "model": Param(os.environ.get("DEEPOCR_MODEL", "deepseek-community/DeepSeek-OCR-2"), type="string"),
        "dpi": Param(144, type="integer", minimum=36, maximum=600),
        "max_new_tokens": Param(4096, type="integer", minimum=1),
        "batch_size": Param(4, type="integer", minimum=1),
        "text_layer": Param(os.environ.get("DEEPOCR_TEXT_LAYER", "never"), enum=["never", "auto", "only"]),
        "on_validation_failure": Param("quarantine", enum=["quarantine", "fail", "warn"]),
    },
) as dag:
    listing = DeepOcrListDocumentsOperator(
        task_id="list_documents",
        source_uri="{{ params.source_uri }}",
    )
    ocr = DeepOcrOcrOperator(
        task_id="ocr",
        manifest=listing.output,
        engine="{{ params.engine }}",
        model="{{ params.model }}",
        dpi="{{ params.dpi }}",
        max_new_tokens="{{ params.max_new_tokens }}",
        batch_size="{{ params.batch_size }}",
        text_layer="{{ params.text_layer }}",
        queue=os.environ.get("DEEPOCR_OCR_QUEUE", "gpu"),
        retries=2,
    )
    parsed = DeepOcrParseValidateOperator(
        task_id="parse_validate",
        manifest=ocr.output,
        on_validation_failure="{{ params.on_validation_failure }}",
    )
    load = DeepOcrLoadOperator(
        task_id="load",
        manifest=parsed.output,
        warehouse_conn_id="{{ params.warehouse }}",
        retries=2,
    )
    listing >> ocr >> parsed >> load
