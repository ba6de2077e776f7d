"""Operators for the four stages: list -> OCR -> parse+validate -> load.

They are thin: template fields, argument checks, XCom in and out, calls into core. XCom carries
only a manifest URI in the work area and counts, never page images, OCR text or records.

Chain them by passing the previous task's output as ``manifest``::

    listing = DeepOcrListDocumentsOperator(task_id="list", source_uri="s3://bucket/in/")
    ocr = DeepOcrOcrOperator(task_id="ocr", manifest=listing.output)          # queue="gpu"
    parsed = DeepOcrParseValidateOperator(task_id="parse_validate", manifest=ocr.output)
    DeepOcrLoadOperator(task_id="load", manifest=parsed.output, warehouse_conn_id="warehouse")

``manifest`` accepts the upstream dict (an ``XComArg``), or a manifest URI string (templated).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

DEFAULT_WORK_URI = "/tmp/deepocr-work"
"""Default work area. Use a shared location (``s3://…`` or a shared volume) when tasks run on
different machines; the default only suits a single machine (``airflow dags test``, LocalExecutor)."""


def _manifest_uri(manifest: Any) -> str:
    if isinstance(manifest, dict):
        manifest = manifest.get("manifest_uri")
    if not isinstance(manifest, str) or not manifest:
        raise ValueError("manifest must be a manifest URI or the upstream task's output dict")
    return manifest


def _safe_run_id(context: Any) -> str:
    run_id = str(context.get("run_id") or "manual")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)


def _blank(value: Any) -> bool:
    """Unset: None, or what a template renders for it."""
    return value is None or value == "" or value == "None"


def _opt_int(value: Any) -> int | None:
    return None if _blank(value) else int(value)


def _opt_tokens(value: Any) -> int | dict[str, int] | None:
    if isinstance(value, dict):
        return {str(k): int(v) for k, v in value.items()}
    return _opt_int(value)


def _opt_batch(value: Any) -> int | str | None:
    """``batch_size`` as given (templated values arrive as strings), checked early."""
    if _blank(value):
        return None
    from airflow_provider_deepocr.core.engines import parse_batch_size

    return parse_batch_size(value)


class _DeepOcrOperator(BaseOperator):
    """Common arguments.

    :param work_uri: work area for intermediate artifacts (folder or ``s3://bucket/prefix``), templated.
    :param aws_conn_id: Airflow AWS connection used for ``s3://`` sources and work areas.
    """

    ui_color = "#e8f0fe"

    def __init__(self, *, work_uri: str = DEFAULT_WORK_URI, aws_conn_id: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.work_uri = work_uri
        self.aws_conn_id = aws_conn_id

    def _work(self) -> Any:
        from airflow_provider_deepocr.hooks.resources import work_area_for_airflow

        return work_area_for_airflow(self.work_uri, self.aws_conn_id)


class DeepOcrListDocumentsOperator(_DeepOcrOperator):
    """List documents under ``source_uri`` (a folder, ``file://…``, or ``s3://bucket/prefix``).

    :param source_uri: where the documents are, templated.
    :param max_documents: take at most this many (sorted by URI), templated.
    :return: ``{"manifest_uri", "documents"}``.
    """

    template_fields: Sequence[str] = ("source_uri", "work_uri", "max_documents")

    def __init__(self, *, source_uri: str, max_documents: int | str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source_uri = source_uri
        self.max_documents = max_documents

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_provider_deepocr.core.pipeline import stage_list
        from airflow_provider_deepocr.hooks.resources import s3_client_for

        s3 = s3_client_for(self.aws_conn_id) if self.source_uri.startswith("s3://") else None
        result = stage_list(
            self.source_uri,
            self._work(),
            _safe_run_id(context),
            s3_client=s3,
            max_documents=_opt_int(self.max_documents),
        )
        self.log.info("listed %d documents", result.documents)
        return result.to_dict()


class DeepOcrOcrOperator(_DeepOcrOperator):
    """Read, render and OCR the listed documents. Runs on the ``gpu`` Celery queue by default.

    Engine settings come from the ``deepseek_ocr`` connection, overridden by the arguments here.
    Route the task to GPU workers with ``queue`` (Celery, default ``"gpu"``), ``executor_config``
    (a Kubernetes pod override asking for ``nvidia.com/gpu``), or a ``pool`` sized to your GPUs.

    :param manifest: the list task's output (``XComArg``) or a listing manifest URI.
    :param deepseek_ocr_conn_id: connection holding engine/model/device (optional).
    :param engine: ``auto`` (DeepSeek-OCR-2 when weights are present, else RapidOCR), ``deepseek``,
        ``rapidocr``.
    :param model: model hub id or local path.
    :param device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
    :param dtype: ``auto``, ``bfloat16``, ``float16``, ``float32``.
    :param prompt: ``markdown`` (grounded, default), ``free``, ``figure``, or a literal prompt.
    :param dpi: render resolution for PDF pages (default 144).
    :param max_new_tokens: generation limit per page: an int, or a mapping by prompt name
        (``{"markdown": 4096, "figure": 2048, "default": 4096}``); default 4096 (2048 for
        ``figure``).
    :param batch_size: pages per engine batch, or ``"auto"`` (DeepSeek-OCR-2: on CUDA by the GPU
        memory free after loading, 4 to 128; halved and kept smaller after a CUDA out-of-memory;
        4 on CPU).
    :param max_pages: documents with more pages are failure rows (``too_many_pages``).
    :param max_pixels: page images with more pixels are failure rows (``image_too_large``).
    :param text_layer: ``never`` (default), ``auto`` (PDF pages with a good text layer skip the model
        and are read by the ``pdf-text`` engine), ``only`` (never use the model).
    :param retry_temperatures: temperature ladder for pages that loop or stop at the token limit,
        e.g. ``"0,0.2,0.4"`` (the default) or ``"none"``.
    :param fallback_engine: ``rapidocr`` to send pages that still loop to the CPU engine, or ``none``.
    :return: ``{"manifest_uri", "documents", "pages", "failed", "config_fingerprint", …}``.
    """

    template_fields: Sequence[str] = (
        "manifest",
        "work_uri",
        "engine",
        "model",
        "device",
        "dtype",
        "prompt",
        "dpi",
        "max_new_tokens",
        "batch_size",
        "text_layer",
    )

    def __init__(
        self,
        *,
        manifest: Any,
        deepseek_ocr_conn_id: str | None = None,
        engine: str | None = None,
        model: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        prompt: str | None = None,
        dpi: int | str = 144,
        max_new_tokens: int | str | dict[str, int] | None = None,
        batch_size: int | str | None = None,
        max_pages: int = 2000,
        max_pixels: int = 50_000_000,
        text_layer: str = "never",
        retry_temperatures: str | None = None,
        fallback_engine: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("queue", "gpu")
        super().__init__(**kwargs)
        self.manifest = manifest
        self.deepseek_ocr_conn_id = deepseek_ocr_conn_id
        self.engine = engine
        self.model = model
        self.device = device
        self.dtype = dtype
        self.prompt = prompt
        self.dpi = dpi
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.max_pages = max_pages
        self.max_pixels = max_pixels
        self.text_layer = text_layer
        self.retry_temperatures = retry_temperatures
        self.fallback_engine = fallback_engine

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_provider_deepocr.core.pipeline import OcrSettings, stage_ocr
        from airflow_provider_deepocr.hooks.deepseek import DeepSeekOCRHook
        from airflow_provider_deepocr.hooks.resources import s3_client_for

        hook = DeepSeekOCRHook(self.deepseek_ocr_conn_id)
        engine = hook.get_engine(
            engine=self.engine or None,
            model=self.model or None,
            device=self.device or None,
            dtype=self.dtype or None,
            prompt=self.prompt or None,
            max_new_tokens=_opt_tokens(self.max_new_tokens),
            batch_size=_opt_batch(self.batch_size),
            retry_temperatures=self.retry_temperatures,
            fallback_engine=self.fallback_engine,
        )
        self.log.info("OCR engine %s, model %s", engine.name, engine.model)
        settings = OcrSettings(
            dpi=int(self.dpi),
            max_pages=int(self.max_pages),
            max_pixels=int(self.max_pixels),
            text_layer=self.text_layer,
        )
        result = stage_ocr(
            _manifest_uri(self.manifest),
            self._work(),
            _safe_run_id(context),
            engine,
            s3_client=s3_client_for(self.aws_conn_id),
            settings=settings,
        )
        self.log.info("OCR: %d documents, %d pages, failed %s", result.documents, result.pages, result.failed)
        return result.to_dict()


class DeepOcrParseValidateOperator(_DeepOcrOperator):
    """Parse OCR output into records and check them with Great Expectations.

    :param manifest: the OCR task's output (``XComArg``) or an OCR manifest URI.
    :param expectations: extra suites by table (``pages``, ``blocks``, ``cells``): a GX suite JSON path,
        an ``ExpectationSuite``, or a list of ``{"type": …, "kwargs": {…}}`` dicts.
    :param on_validation_failure: ``quarantine`` (default: the document goes to the failures table
        with reason ``validation_failed``), ``fail`` (the task fails), ``warn`` (load anyway).
    :return: ``{"manifest_uri", "documents", "pages", "failed", …}``.
    """

    template_fields: Sequence[str] = ("manifest", "work_uri", "on_validation_failure")

    def __init__(
        self,
        *,
        manifest: Any,
        expectations: dict[str, Any] | None = None,
        on_validation_failure: str = "quarantine",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.manifest = manifest
        self.expectations = expectations
        self.on_validation_failure = on_validation_failure

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_provider_deepocr.core.pipeline import stage_parse_validate

        result = stage_parse_validate(
            _manifest_uri(self.manifest),
            self._work(),
            _safe_run_id(context),
            suites=self.expectations,
            on_failure=self.on_validation_failure,
        )
        self.log.info(
            "parsed %d documents, %d pages, failed %s", result.documents, result.pages, result.failed
        )
        return result.to_dict()


class DeepOcrLoadOperator(_DeepOcrOperator):
    """Load records into a SQL warehouse, one transaction per document, exactly once in effect.

    :param manifest: the parse task's output (``XComArg``) or a records manifest URI.
    :param warehouse_conn_id: an Airflow SQL connection id (PostgreSQL, Snowflake, BigQuery, …,
        through common-sql's ``get_sqlalchemy_engine()``), or a SQLAlchemy URL such as
        ``sqlite:////data/deepocr.db``. Templated.
    :param schema: warehouse schema (optional).
    :param table_prefix: table name prefix (default ``deepocr_``).
    :return: ``{"manifest_uri", "documents", "pages", "failed", "skipped"}``.

    The task declares an Airflow Asset ``x-deepocr://<connection>/<schema>/<prefix>tables`` as its
    outlet, so downstream DAGs can be scheduled on fresh rows (the ``x-`` scheme marks a custom URI,
    so DAG parsing loads no provider URI handlers).
    """

    template_fields: Sequence[str] = ("manifest", "work_uri", "warehouse_conn_id", "schema", "table_prefix")

    def __init__(
        self,
        *,
        manifest: Any,
        warehouse_conn_id: str,
        schema: str | None = None,
        table_prefix: str = "deepocr_",
        **kwargs: Any,
    ) -> None:
        if "outlets" not in kwargs:
            kwargs["outlets"] = [warehouse_asset(warehouse_conn_id, schema, table_prefix)]
        super().__init__(**kwargs)
        self.manifest = manifest
        self.warehouse_conn_id = warehouse_conn_id
        self.schema = schema
        self.table_prefix = table_prefix

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_provider_deepocr.core.pipeline import stage_load
        from airflow_provider_deepocr.hooks.resources import warehouse_for_airflow

        warehouse = warehouse_for_airflow(
            self.warehouse_conn_id, schema=self.schema or None, prefix=self.table_prefix
        )
        result = stage_load(_manifest_uri(self.manifest), self._work(), _safe_run_id(context), warehouse)
        self.log.info(
            "loaded %d documents (%d skipped, already loaded), %d pages, failed %s",
            result.documents,
            result.skipped,
            result.pages,
            result.failed,
        )
        events = context.get("outlet_events")
        if events is not None:
            for asset in self.outlets or []:
                try:
                    events[asset].extra = {"documents": result.documents, "pages": result.pages}
                except (KeyError, TypeError, AttributeError):  # not an Asset outlet
                    pass
        return result.to_dict()


def warehouse_asset(warehouse_conn_id: str, schema: str | None, table_prefix: str) -> Any:
    """The Asset a load writes. Templated or URL-valued connection ids map to ``default``."""
    from airflow.sdk import Asset

    conn = warehouse_conn_id
    if "{{" in conn or "://" in conn or not re.fullmatch(r"[A-Za-z0-9_.-]+", conn):
        conn = "default"
    sch = schema if schema and "{{" not in schema else "default"
    prefix = table_prefix if "{{" not in table_prefix else "deepocr_"
    return Asset(name=f"deepocr_{conn}_{sch}_{prefix}tables", uri=f"x-deepocr://{conn}/{sch}/{prefix}tables")
