"""Operators for the four stages: list -> OCR -> parse+validate -> load.

They are thin: template fields, argument checks, XCom in and out, calls into core. XCom carries
only a manifest URI in the work area and counts, never page images, OCR text or records.

The listing cuts the documents into shards of at most ``shard_pages`` pages; OCR, parse and load
are mapped over the shards (one task instance each, on as many GPU workers as the pool allows), and
the documents split across shards are parsed and loaded once, whole, after every shard's OCR::

    listing = DeepOcrListDocumentsOperator(task_id="list", source_uri="s3://bucket/in/",
                                           warehouse_conn_id="warehouse")
    ocr = DeepOcrOcrOperator.partial(task_id="ocr", pool="gpu").expand(manifest=listing.output)
    parsed = DeepOcrParseValidateOperator.partial(task_id="parse_validate").expand(manifest=ocr.output)
    load = DeepOcrLoadOperator.partial(task_id="load", warehouse_conn_id="warehouse",
                                       outlets=[]).expand(manifest=parsed.output)
    split = DeepOcrParseValidateOperator(task_id="parse_split", spanning=True)
    ocr >> split
    load >> DeepOcrLoadOperator(task_id="load_split", manifest=split.output, warehouse_conn_id="warehouse")

The listing returns the list of shard manifest URIs (one URI with ``shard_pages=None``, which an
unmapped OCR task takes as its ``manifest``). ``manifest`` accepts the upstream output (an
``XComArg``: a dict, or a one-URI list), or a manifest URI string (templated).
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
    if isinstance(manifest, (list, tuple)):  # a listing's shard URIs
        if len(manifest) != 1:
            raise ValueError(
                f"the listing made {len(manifest)} shards: map this task over them "
                "(.partial(...).expand(manifest=listing.output)), or list with shard_pages=None"
            )
        manifest = manifest[0]
    if isinstance(manifest, dict):
        manifest = manifest.get("manifest_uri")
    if not isinstance(manifest, str) or not manifest:
        raise ValueError("manifest must be a manifest URI or the upstream task's output")
    return manifest


def _task_label(context: Any) -> str:
    """``task_id``, with ``[map_index]`` for a mapped instance."""
    ti = context.get("ti")
    task_id = getattr(ti, "task_id", "") or ""
    index = getattr(ti, "map_index", -1)
    return f"{task_id}[{index}]" if isinstance(index, int) and index >= 0 else task_id


def _dag_id(context: Any) -> str:
    return str(getattr(context.get("dag"), "dag_id", None) or "airflow")


def _safe_run_id(context: Any) -> str:
    """The DAG run's id as Airflow wrote it (``manual__2026-12-06T14:50:54.976483+00:00``), kept so
    the warehouse rows and the review page name the real run and can link to it. It is also a
    work-area path segment: only characters outside Airflow's default ``allowed_run_id_pattern``
    (``[A-Za-z0-9_.~:+-]``), such as a ``/`` a custom pattern may admit, are replaced by ``_``."""
    run_id = str(context.get("run_id") or "manual")
    return re.sub(r"[^A-Za-z0-9._~:+-]+", "_", run_id)


def _blank(value: Any) -> bool:
    """Unset: None, or what a template renders for it."""
    return value is None or value == "" or value == "None"


def _opt_int(value: Any) -> int | None:
    return None if _blank(value) else int(value)


class _DeepOcrOperator(BaseOperator):
    """What every stage operator shares: the work area and the object-store connections (template
    fields of every subclass), the stage context a task hands to core, and the result it logs and
    returns.

    :param work_uri: work area for intermediate artifacts (a folder, ``s3://bucket/prefix``,
        ``gs://bucket/prefix`` or ``az://container/prefix``), templated.
    :param aws_conn_id: Airflow AWS connection used for ``s3://`` sources and work areas.
    :param gcp_conn_id: Google Cloud connection (the Google provider's ``GCSHook``) for ``gs://`` ones.
    :param wasb_conn_id: Azure Blob Storage connection (the Azure provider's ``WasbHook``) for
        ``az://``/``abfs://``/``abfss://`` ones. Any of the three unset: that store is configured
        from the worker's environment.
    """

    ui_color = "#e8f0fe"
    template_fields: Sequence[str] = ("work_uri",)

    def __init__(
        self,
        *,
        work_uri: str = DEFAULT_WORK_URI,
        aws_conn_id: str | None = None,
        gcp_conn_id: str | None = None,
        wasb_conn_id: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.work_uri = work_uri
        self.aws_conn_id = aws_conn_id
        self.gcp_conn_id = gcp_conn_id
        self.wasb_conn_id = wasb_conn_id

    def _work(self) -> Any:
        from airflow_provider_deepocr.hooks.resources import work_area_for_airflow

        return work_area_for_airflow(self.work_uri, self.aws_conn_id, self.gcp_conn_id, self.wasb_conn_id)

    def _s3_client(self) -> Any:
        """The boto3 client of ``aws_conn_id`` (None without one)."""
        from airflow_provider_deepocr.hooks.resources import s3_client_for

        return s3_client_for(self.aws_conn_id)

    def _stage_context(
        self, context: Any, work: Any = None, s3_client: Any = None, settings: Any = None
    ) -> Any:
        """The core :class:`~airflow_provider_deepocr.core.pipeline.StageContext` of this task."""
        from airflow_provider_deepocr.core.pipeline import OcrSettings, StageContext
        from airflow_provider_deepocr.hooks.resources import azure_client_for, gcs_client_for

        return StageContext(
            work or self._work(),
            _safe_run_id(context),
            s3_client=s3_client,
            settings=settings or OcrSettings(),
            gcs_client=gcs_client_for(self.gcp_conn_id),
            azure_client=azure_client_for(self.wasb_conn_id),
        )

    def _storage_dataset(self, uri: str) -> tuple[str, str]:
        """OpenLineage (namespace, name) of a source or work area (Azure: the connection's account)."""
        from airflow_provider_deepocr.core.cloud_storage import AZURE_SCHEMES
        from airflow_provider_deepocr.core.sources import uri_scheme
        from airflow_provider_deepocr.hooks.resources import azure_client_for
        from airflow_provider_deepocr.operators.lineage import storage_dataset

        account = None
        if self.wasb_conn_id and uri_scheme(uri) in AZURE_SCHEMES:
            account = getattr(azure_client_for(self.wasb_conn_id), "account_name", None)
        return storage_dataset(uri, account)

    def _warehouse(self, conn_id: str, schema: str | None, table_prefix: str) -> Any:
        from airflow_provider_deepocr.hooks.resources import warehouse_for_airflow

        return warehouse_for_airflow(conn_id, schema=schema or None, prefix=table_prefix)

    def _done(self, what: str, result: Any, **facts: Any) -> dict[str, Any]:
        """Log a stage's counts (``what`` formats them) and return its result for XCom; the counts
        (and ``facts``: engine, model) are this task's OpenLineage run facet."""
        self.log.info(what, result.documents, result.pages, result.failed)
        out = dict(result.to_dict())
        self._lineage = {**(self._lineage or {}), "run": {**out, **facts}}
        return out

    # -- OpenLineage (operators/lineage.py: names, facets; the classes imported only there) ------
    _lineage: dict[str, Any] | None = None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """What this task read and wrote, as OpenLineage datasets with facets (None before execute)."""
        if not self._lineage:
            return None
        from airflow_provider_deepocr.operators.lineage import operator_lineage

        return operator_lineage(**self._lineage)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        return self.get_openlineage_facets_on_complete(task_instance)


class DeepOcrListDocumentsOperator(_DeepOcrOperator):
    """List documents under ``source_uri`` (a folder, ``file://…``, or ``s3://bucket/prefix``) and cut
    them into shards for the mapped OCR tasks.

    :param source_uri: where the documents are, templated.
    :param max_documents: take at most this many (sorted by URI), templated.
    :param shard_pages: at most this many pages per shard (default 5,000: about 30 minutes of one
        GPU); each listed document is opened once to count its pages, and a longer document is split
        into page ranges across shards. ``None``: no shards (one OCR task reads the whole listing).
        Templated; below 1 is an error at task start.
    :param skip_unchanged: skip objects whose URI, size and ETag (mtime for files) match a document
        the warehouse holds under the config fingerprint of this DAG's latest OCR run, without reading
        them (default on; needs ``warehouse_conn_id``). After a configuration change the first run
        still skips them and its OCR task warns; the next run re-reads them under the new config.
    :param warehouse_conn_id: the warehouse the load tasks write (an Airflow SQL connection id or a
        SQLAlchemy URL), for ``skip_unchanged``; templated. ``schema`` and ``table_prefix`` as the load's.
    :param count_threads: count the pages of this many documents at a time (default 128: the counts
        come from small ranged reads, so the listing is bound by the store's latency; with an S3
        client from ``aws_conn_id`` the connection pool is raised to 128 to match).
    :return: the shard manifest URIs, to map the OCR task over (``.expand(manifest=listing.output)``;
        empty when nothing is listed: the mapped tasks are then skipped); with ``shard_pages=None``
        the one listing manifest URI. The counts (``documents``, ``skipped``, ``total_pages``,
        ``spanning`` …) go to the XCom key ``summary``.
    """

    template_fields: Sequence[str] = (
        *_DeepOcrOperator.template_fields,
        "source_uri",
        "max_documents",
        "shard_pages",
        "warehouse_conn_id",
        "schema",
        "table_prefix",
    )

    def __init__(
        self,
        *,
        source_uri: str,
        max_documents: int | str | None = None,
        shard_pages: int | str | None = 5000,
        skip_unchanged: bool = True,
        warehouse_conn_id: str | None = None,
        schema: str | None = None,
        table_prefix: str = "deepocr_",
        count_threads: int = 128,  # core.shards.DEFAULT_COUNT_THREADS
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_uri = source_uri
        self.max_documents = max_documents
        self.shard_pages = shard_pages
        self.skip_unchanged = skip_unchanged
        self.warehouse_conn_id = warehouse_conn_id
        self.schema = schema
        self.table_prefix = table_prefix
        self.count_threads = count_threads

    def execute(self, context: Any) -> list[str]:
        from airflow_provider_deepocr.core.pipeline import list_source
        from airflow_provider_deepocr.core.shards import check_shard_pages

        shard_pages = None if _blank(self.shard_pages) else check_shard_pages(self.shard_pages)
        s3 = self._s3_client() if self.source_uri.startswith("s3://") else None
        warehouse, fingerprint = self._loaded_under(context)
        result = list_source(
            self._stage_context(context, s3_client=s3),
            self.source_uri,
            max_documents=_opt_int(self.max_documents),
            shard_pages=shard_pages,
            warehouse=warehouse,
            live_fingerprint=fingerprint,
            count_threads=self.count_threads,
        )
        self.log.info(
            "listed %d documents (%d unchanged, skipped) in %d shards, %d split across shards",
            result.documents,
            result.skipped,
            len(result.shards),
            result.spanning,
        )
        summary = {**result.to_dict(), "shards": len(result.shards)}
        self._lineage = {"inputs": [(*self._storage_dataset(self.source_uri), {})], "run": summary}
        if context.get("ti") is not None:
            context["ti"].xcom_push(key="summary", value=summary)
        return result.shards if shard_pages is not None else [result.manifest_uri]

    def _loaded_under(self, context: Any) -> tuple[Any, str | None]:
        """With ``skip_unchanged``: the warehouse and the config fingerprint of this DAG's latest OCR
        run (what the unchanged documents were loaded under); else ``(None, None)``."""
        if not self.skip_unchanged or _blank(self.warehouse_conn_id):
            return None, None
        warehouse = self._warehouse(self.warehouse_conn_id, self.schema, self.table_prefix)
        warehouse.create()
        fingerprint = warehouse.last_fingerprint(_dag_id(context))
        if fingerprint is None:
            self.log.info("no earlier OCR run of this DAG in the warehouse: nothing to skip")
        return warehouse, fingerprint


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
        (``{"markdown": 8192, "figure": 2048}``); default 8192, the context, capped per page at the
        context minus the prompt (≈ 7,000 for a full page); 2048 for ``figure``.
    :param batch_size: pages per engine batch, or ``"auto"`` (DeepSeek-OCR-2: on CUDA by the GPU
        memory free after loading, 4 to 128; halved and kept smaller after a CUDA out-of-memory;
        4 on CPU).
    :param max_pages: documents with more pages are failure rows (``too_many_pages``).
    :param max_pixels: the largest page image, in pixels (see ``on_oversize``).
    :param on_oversize: ``downscale`` (default: a larger page is rendered at the highest DPI that
        fits, flagged ``downscaled``, with that DPI on its page row) or ``fail`` (the page is a
        failure row, ``image_too_large``). Templated.
    :param page_timeout_s: time limit of one page's render, text extraction and table finding, in a
        killable worker process; a page over it is a ``page_timeout`` failure row and the rest of
        the document and shard go on. None: the connection extra ``page_timeout_s``, else 60 s;
        0: no worker, no limit.
    :param text_layer: ``never`` (default), ``auto`` (PDF pages with a good text layer skip the model
        and are read by the ``pdf-text`` engine), ``only`` (never use the model).
    :param retry_temperatures: temperature ladder for pages that loop or stop at the token limit,
        e.g. ``"0,0.2,0.4"`` (the default) or ``"none"``.
    :param fallback_engine: ``rapidocr`` to send pages that still loop to the CPU engine, or ``none``.
    :param engine_options: more engine arguments (``get_engine``'s keyword arguments), e.g.
        ``{"revision": "…", "attn_implementation": "sdpa"}``, or ``{"seconds_per_page": 0.2}`` for the
        ``sleep`` engine that measures the orchestration alone.
    :return: ``{"manifest_uri", "documents", "pages", "failed", "config_fingerprint", …}``. With the
        connection extra ``gpu_hour_cost``, the shard's runs row gets its cost. Logs a progress line
        (pages done of the shard, pages/s, output tokens/s, ETA) at most every 30 s.

    The engine comes from core's one factory (``build_engine``) through the hook, as in the CLI:
    the same settings give the same config fingerprint. The work area and the manifest are
    checked before the engine is built (a model load can take tens of seconds on a GPU).
    """

    template_fields: Sequence[str] = (
        *_DeepOcrOperator.template_fields,
        "manifest",
        "engine",
        "model",
        "device",
        "dtype",
        "prompt",
        "dpi",
        "max_new_tokens",
        "batch_size",
        "text_layer",
        "on_oversize",
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
        on_oversize: str = "downscale",
        page_timeout_s: float | None = None,
        retry_temperatures: str | None = None,
        fallback_engine: str | None = None,
        engine_options: dict[str, Any] | None = None,
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
        self.on_oversize = on_oversize
        self.page_timeout_s = page_timeout_s
        self.retry_temperatures = retry_temperatures
        self.fallback_engine = fallback_engine
        self.engine_options = dict(engine_options or {})

    def execute(self, context: Any) -> dict[str, Any]:
        import time

        from airflow_provider_deepocr.core.errors import ConfigError
        from airflow_provider_deepocr.core.pipeline import OcrSettings, ocr_manifest
        from airflow_provider_deepocr.hooks.deepseek import DeepSeekOCRHook

        settings = OcrSettings(
            dpi=int(self.dpi),
            max_pages=int(self.max_pages),
            max_pixels=int(self.max_pixels),
            text_layer=self.text_layer,
            on_oversize=self.on_oversize,
        )
        manifest_uri = _manifest_uri(self.manifest)
        work = self._work()
        if not work.exists(manifest_uri):  # before the engine: a model load is slow and holds a GPU
            raise ConfigError(f"listing manifest not found: {manifest_uri}")
        hook = DeepSeekOCRHook(self.deepseek_ocr_conn_id)
        timeout = self.page_timeout_s if self.page_timeout_s is not None else hook.page_timeout_s()
        settings.page_timeout_s = float(timeout) or None  # 0: no worker, no limit
        t0 = time.perf_counter()
        engine = hook.get_engine(**self._engine_overrides())
        load_seconds = time.perf_counter() - t0
        self.log.info("OCR engine %s, model %s, ready in %.1fs", engine.name, engine.model, load_seconds)
        result = ocr_manifest(
            self._stage_context(context, work, self._s3_client(), settings),
            manifest_uri,
            engine,
            task_id=_task_label(context),
            model_load_seconds=load_seconds,
            gpu_hour_cost=hook.gpu_hour_cost(),
        )
        return self._done(
            "OCR: %d documents, %d pages, failed %s", result, engine=engine.name, model=engine.model
        )

    def _engine_overrides(self) -> dict[str, Any]:
        """The engine settings given to this operator (same names as the settings; unset or blank
        ones come from the connection); ``engine_options`` is the settings' ``options``."""
        from airflow_provider_deepocr.core.engines import SETTING_NAMES

        given = {name: getattr(self, name, None) for name in SETTING_NAMES if name != "options"}
        return {
            **{k: None if _blank(v) else v for k, v in given.items()},
            "options": self.engine_options or None,
        }


class DeepOcrParseValidateOperator(_DeepOcrOperator):
    """Parse OCR output into records and check them with Great Expectations.

    :param manifest: the OCR task's output (``XComArg``) or an OCR manifest URI.
    :param expectations: extra suites by table (``pages``, ``blocks``, ``cells``): a GX suite JSON path,
        an ``ExpectationSuite``, or a list of ``{"type": …, "kwargs": {…}}`` dicts.
    :param on_validation_failure: ``quarantine`` (default: the document goes to the failures table
        with reason ``validation_failed``), ``fail`` (the task fails), ``warn`` (load anyway).
    :param spanning: parse this run's documents split across shards (no ``manifest``): run it after
        every OCR instance (``ocr >> this``); it puts each split document's parts together first
        (``runs/<run_id>/spanning.jsonl`` in the work area). The per-shard parses skip those parts.
    :return: ``{"manifest_uri", "documents", "pages", "failed", …}``.
    """

    template_fields: Sequence[str] = (*_DeepOcrOperator.template_fields, "manifest", "on_validation_failure")

    def __init__(
        self,
        *,
        manifest: Any = None,
        expectations: dict[str, Any] | None = None,
        on_validation_failure: str = "quarantine",
        spanning: bool = False,
        **kwargs: Any,
    ) -> None:
        if (manifest is None) != spanning:
            raise ValueError("give a manifest, or spanning=True (which takes none)")
        super().__init__(**kwargs)
        self.manifest = manifest
        self.expectations = expectations
        self.on_validation_failure = on_validation_failure
        self.spanning = spanning

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_provider_deepocr.core.pipeline import assemble_spanning, parse_manifest

        ctx = self._stage_context(context)
        uri = assemble_spanning(ctx).manifest_uri if self.spanning else _manifest_uri(self.manifest)
        result = parse_manifest(ctx, uri, suites=self.expectations, on_failure=self.on_validation_failure)
        self._lineage = _checked_tables(
            self._storage_dataset(self.work_uri), ctx.work.read_jsonl(result.manifest_uri)
        )
        return self._done("parsed %d documents, %d pages, failed %s", result)


class DeepOcrLoadOperator(_DeepOcrOperator):
    """Load records into a SQL warehouse, exactly once in effect, in transactions of whole documents
    (up to 1,000 documents or 50,000 block rows each; a batch that fails is retried one document per
    transaction, so a bad document fails alone and readers never see half a document).

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

    template_fields: Sequence[str] = (
        *_DeepOcrOperator.template_fields,
        "manifest",
        "warehouse_conn_id",
        "schema",
        "table_prefix",
    )

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
        from airflow_provider_deepocr.core.pipeline import load_manifest

        warehouse = self._warehouse(self.warehouse_conn_id, self.schema, self.table_prefix)
        result = load_manifest(
            self._stage_context(context), _manifest_uri(self.manifest), warehouse, dag_id=_dag_id(context)
        )
        self._lineage = {"outputs": _warehouse_tables(warehouse), "run": dict(result.to_dict())}
        self.log.info(
            "loaded %d documents (%d skipped, already loaded), %d pages, failed %s; %d failed objects, "
            "%d duplicates, %d lost",
            result.documents,
            result.skipped,
            result.pages,
            result.failed,
            result.failed_objects,
            result.duplicates,
            len(result.lost),
        )
        if result.lost:  # listed objects with no row and no failure row: the run lost them
            from airflow_provider_deepocr.core import errors

            raise errors.DeepOcrError(
                errors.INTERNAL_ERROR,
                f"{len(result.lost)} listed objects have no outcome (lost): {', '.join(result.lost[:50])}",
            )
        events = context.get("outlet_events")
        if events is not None:
            for asset in self.outlets or []:
                try:
                    events[asset].extra = {"documents": result.documents, "pages": result.pages}
                except (KeyError, TypeError, AttributeError):  # not an Asset outlet
                    pass
        return dict(result.to_dict())


def _checked_tables(work_dataset: tuple[str, str], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The parse task's lineage inputs: the record sets it validated (pages, blocks, cells in the work
    area), each with its expectations' pass/fail over every document as ``dataQualityAssertions``."""
    from airflow_provider_deepocr.operators.lineage import assertions_facet

    namespace, root = work_dataset
    facets = assertions_facet(row for e in entries for row in e.get("validation") or [])
    names = {t: f"{root.rstrip('/')}/records/{t}" for t in facets}
    return {
        "inputs": [(namespace, names[t], {}) for t in sorted(facets)],
        "input_facets": {names[t]: {"dataQualityAssertions": f} for t, f in facets.items()},
    }


def _warehouse_tables(warehouse: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """The load task's lineage outputs: every warehouse table, named by OpenLineage's conventions,
    with its schema facet."""
    from airflow_provider_deepocr.core.warehouse.schema import TABLES
    from airflow_provider_deepocr.operators.lineage import schema_facet, table_dataset

    out = []
    for name in TABLES:
        table = warehouse.table(name)
        out.append(
            (
                *table_dataset(warehouse.engine.url, warehouse.schema, table.name),
                {"schema": schema_facet(table)},
            )
        )
    return out


def warehouse_asset(warehouse_conn_id: str, schema: str | None, table_prefix: str) -> Any:
    """The Asset a load writes. Templated or URL-valued connection ids map to ``default``."""
    from airflow.sdk import Asset

    conn = warehouse_conn_id
    if "{{" in conn or "://" in conn or not re.fullmatch(r"[A-Za-z0-9_.-]+", conn):
        conn = "default"
    sch = schema if schema and "{{" not in schema else "default"
    prefix = table_prefix if "{{" not in table_prefix else "deepocr_"
    return Asset(name=f"deepocr_{conn}_{sch}_{prefix}tables", uri=f"x-deepocr://{conn}/{sch}/{prefix}tables")
