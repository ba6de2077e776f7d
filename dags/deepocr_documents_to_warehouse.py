"""Generic DAG: documents in object storage -> DeepSeek-OCR -> validated rows in a SQL warehouse.

Copy it and change the defaults, or trigger it with a config, e.g.::

    airflow dags test deepocr_documents_to_warehouse --conf '{"source_uri": "s3://bucket/in/",
        "warehouse": "warehouse_postgres", "engine": "deepseek",
        "model": "deepseek-community/DeepSeek-OCR-2"}'

Defaults come from environment variables (DEEPOCR_SOURCE_URI, DEEPOCR_WAREHOUSE, DEEPOCR_ENGINE,
DEEPOCR_MODEL, DEEPOCR_WORK_URI, DEEPOCR_AWS_CONN_ID, DEEPOCR_GCP_CONN_ID, DEEPOCR_WASB_CONN_ID,
DEEPOCR_OCR_QUEUE, DEEPOCR_TABLE_PREFIX) so
one file serves several deployments.

The listing cuts the documents into shards of at most ``shard_pages`` pages (a param). The OCR task
is mapped over them, one instance per shard on the ``gpu`` queue (DEEPOCR_OCR_QUEUE=default on a
machine without GPU workers), and so are parse and load. Documents split across shards are parsed
and loaded once, whole, by ``parse_split_documents`` and ``load_split_documents`` after every
shard's OCR. With the warehouse known to the listing (``skip_unchanged``), objects already loaded
unchanged are skipped without being read.
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
GCP_CONN_ID = os.environ.get("DEEPOCR_GCP_CONN_ID") or None  # gs:// sources and work areas
WASB_CONN_ID = os.environ.get("DEEPOCR_WASB_CONN_ID") or None  # az://, abfs://, abfss:// ones
TABLE_PREFIX = os.environ.get("DEEPOCR_TABLE_PREFIX", "deepocr_")

with DAG(
    dag_id="deepocr_documents_to_warehouse",
    description="Object storage -> DeepSeek-OCR -> Great Expectations -> SQL warehouse",
    schedule=None,
    default_args={  # every task shares them
        "work_uri": WORK_URI,
        "aws_conn_id": AWS_CONN_ID,
        "gcp_conn_id": GCP_CONN_ID,
        "wasb_conn_id": WASB_CONN_ID,
    },
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
        "max_new_tokens": Param(8192, type="integer", minimum=1),  # the context, capped minus the prompt
        "batch_size": Param(4, type="integer", minimum=1),
        "text_layer": Param(os.environ.get("DEEPOCR_TEXT_LAYER", "never"), enum=["never", "auto", "only"]),
        "on_validation_failure": Param("quarantine", enum=["quarantine", "fail", "warn"]),
        "shard_pages": Param(
            5000, type="integer", minimum=1, description="pages per OCR shard (about 30 min of one GPU)"
        ),
        "skip_unchanged": Param(True, type="boolean", description="skip objects already loaded unchanged"),
    },
) as dag:
    listing = DeepOcrListDocumentsOperator(
        task_id="list_documents",
        source_uri="{{ params.source_uri }}",
        shard_pages="{{ params.shard_pages }}",
        warehouse_conn_id="{{ params.warehouse if params.skip_unchanged else '' }}",
        table_prefix=TABLE_PREFIX,
    )
    ocr = DeepOcrOcrOperator.partial(
        task_id="ocr",
        engine="{{ params.engine }}",
        model="{{ params.model }}",
        dpi="{{ params.dpi }}",
        max_new_tokens="{{ params.max_new_tokens }}",
        batch_size="{{ params.batch_size }}",
        text_layer="{{ params.text_layer }}",
        queue=os.environ.get("DEEPOCR_OCR_QUEUE", "gpu"),
        retries=2,
    ).expand(manifest=listing.output)
    parsed = DeepOcrParseValidateOperator.partial(
        task_id="parse_validate",
        on_validation_failure="{{ params.on_validation_failure }}",
    ).expand(manifest=ocr.output)
    load = DeepOcrLoadOperator.partial(
        task_id="load",
        warehouse_conn_id="{{ params.warehouse }}",
        table_prefix=TABLE_PREFIX,
        outlets=[],  # the run's Asset event comes once, from load_split_documents, after every shard
        retries=2,
    ).expand(manifest=parsed.output)
    parsed_split = DeepOcrParseValidateOperator(
        task_id="parse_split_documents",
        spanning=True,
        on_validation_failure="{{ params.on_validation_failure }}",
    )
    load_split = DeepOcrLoadOperator(
        task_id="load_split_documents",
        manifest=parsed_split.output,
        warehouse_conn_id="{{ params.warehouse }}",
        table_prefix=TABLE_PREFIX,
        retries=2,
    )
    ocr >> parsed_split >> load_split
    load >> load_split
