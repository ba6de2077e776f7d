"""OpenLineage for the operators: what a task read and wrote, named by OpenLineage's conventions.

The OpenLineage classes are imported inside the functions that build facets, so the provider works
without the ``openlineage`` extra; the operators call :func:`operator_lineage` from
``get_openlineage_facets_on_complete`` (the OpenLineage provider calls that after ``execute``).

Dataset names (https://openlineage.io/docs/spec/naming):

- a source or work area: ``s3://bucket`` + the key prefix, ``gs://bucket`` + the prefix, Azure Blob
  Storage ``wasbs://container@account.dfs.core.windows.net`` + the prefix (``abfss://…`` for an
  ``abfss://`` URI; the account from the URI, the connection or the environment), or ``file`` + the
  absolute path of a local folder;
- a warehouse table: PostgreSQL ``postgres://host:port`` + ``database.schema.table``; Redshift
  ``redshift://cluster.region:5439`` + ``database.schema.table``; Snowflake ``snowflake://account`` +
  ``DATABASE.SCHEMA.TABLE``; BigQuery ``bigquery`` + ``project.dataset.table``. SQLite and DuckDB
  have no convention; here the namespace is ``sqlite://<absolute file path>`` (``duckdb://…``) and the
  name ``main.table`` (both databases' default schema is called ``main``).

Nothing here carries document text or observed values: counts, names and pass/fail only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

PRODUCER = "https://github.com/airflow-provider-deepocr/airflow-provider-deepocr"


def storage_dataset(uri: str, azure_account: str | None = None) -> tuple[str, str]:
    """(namespace, name) of a source or work-area prefix, from its scheme and key, never from a
    string that embeds a connection id. An Azure URI without its account (``az://container/key``)
    takes ``azure_account`` (the connection's), else the environment's (``AZURE_STORAGE_ACCOUNT``
    or the connection string's ``AccountName``)."""
    parts = urlsplit(uri)
    name = parts.path.lstrip("/") or "/"
    if parts.scheme in ("s3", "gs", "gcs"):
        return f"{'gs' if parts.scheme == 'gcs' else parts.scheme}://{parts.netloc}", name
    if parts.scheme in ("az", "abfs", "abfss"):
        scheme = "abfss" if parts.scheme == "abfss" else "wasbs"
        container, _, host = parts.netloc.partition("@")
        account = host.split(".")[0] if host else azure_account or _azure_env_account()
        if not account:
            return f"{scheme}://{container}", name
        return f"{scheme}://{container}@{account}.dfs.core.windows.net", name
    path = parts.path if parts.scheme == "file" else uri
    return "file", os.path.abspath(path)


def _azure_env_account() -> str | None:
    from airflow_provider_deepocr.core.cloud_storage import connection_string_fields

    return connection_string_fields().get("AccountName") or os.environ.get("AZURE_STORAGE_ACCOUNT") or None


def _redshift_namespace(host: str, port: int | None) -> str:
    """``cluster.region`` from ``cluster.abc123.region.redshift.amazonaws.com``."""
    labels = host.split(".")
    cluster = labels[0]
    region = labels[2] if len(labels) > 4 and "redshift" in labels else ""
    return f"redshift://{cluster}.{region}:{port or 5439}" if region else f"redshift://{host}:{port or 5439}"


def table_dataset(url: Any, schema: str | None, table: str) -> tuple[str, str]:
    """(namespace, name) of a warehouse table; ``url`` is the SQLAlchemy URL of the warehouse."""
    backend = url.get_backend_name()
    database = url.database or ""
    if backend in ("sqlite", "duckdb"):
        where = os.path.abspath(database) if database and database != ":memory:" else ":memory:"
        return f"{backend}://{where}", f"{schema or 'main'}.{table}"
    if backend == "postgresql":
        return f"postgres://{url.host}:{url.port or 5432}", f"{database}.{schema or 'public'}.{table}"
    if backend == "redshift":
        return _redshift_namespace(url.host or "", url.port), f"{database}.{schema or 'public'}.{table}"
    if backend == "snowflake":
        account = url.host or ""
        db, _, sch = database.partition("/")
        return f"snowflake://{account.lower()}", ".".join(
            p.upper() for p in (db, schema or sch or "PUBLIC", table)
        )
    if backend == "bigquery":
        project = url.host or ""
        return "bigquery", f"{project}.{schema or database}.{table}"
    return f"{backend}://{url.host or ''}", f"{database}.{schema or ''}.{table}".strip(".")


def schema_facet(table: Any) -> Any:
    """The ``schema`` dataset facet of a SQLAlchemy table: column names and types."""
    from openlineage.client.facet_v2 import schema_dataset

    fields = [schema_dataset.SchemaDatasetFacetFields(name=c.name, type=str(c.type)) for c in table.columns]
    return schema_dataset.SchemaDatasetFacet(fields=fields)


def assertions_facet(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``dataQualityAssertions`` input facets by table, from expectation result rows
    (``table_name``, ``expectation``, ``success``) of many documents: an expectation passed when it
    passed for every document. Observed values are never read."""
    from openlineage.client.facet_v2 import data_quality_assertions_dataset as dq

    verdicts: dict[str, dict[str, bool]] = {}
    for r in rows:
        table = verdicts.setdefault(str(r["table_name"]), {})
        name = str(r["expectation"])
        table[name] = table.get(name, True) and bool(r["success"])
    out = {}
    for table, by_name in verdicts.items():
        assertions = [
            dq.Assertion(assertion=name.split("(")[0], success=ok, column=_column_of(name), name=name)
            for name, ok in sorted(by_name.items())
        ]
        out[table] = dq.DataQualityAssertionsDatasetFacet(assertions=assertions)
    return out


def _column_of(expectation: str) -> str | None:
    """``expect_column_values_to_be_between(x0)`` -> ``x0`` (None for several or none)."""
    inner = expectation.partition("(")[2].rstrip(")").split("#")[0].rstrip(")")
    return inner if inner and "," not in inner else None


def run_facet(**counts: Any) -> Any:
    """A ``deepocr`` run facet: counts, engine, model and config fingerprint of the task."""
    import attr
    from openlineage.client.facet_v2 import RunFacet

    @attr.define
    class DeepOcrRunFacet(RunFacet):  # type: ignore[misc]
        documents: int | None = None
        pages: int | None = None
        failed: dict[str, int] | None = None
        skipped: int | None = None
        engine: str | None = None
        model: str | None = None
        config_fingerprint: str | None = None

        @staticmethod
        def _get_schema() -> str:
            return f"{PRODUCER}/blob/main/docs/deepocr-run-facet.json"

    known = {k: v for k, v in counts.items() if k in attr.fields_dict(DeepOcrRunFacet)}
    return DeepOcrRunFacet(**known)


def operator_lineage(
    inputs: Iterable[tuple[str, str, dict[str, Any]]] = (),
    outputs: Iterable[tuple[str, str, dict[str, Any]]] = (),
    input_facets: Mapping[str, Mapping[str, Any]] | None = None,
    run: Mapping[str, Any] | None = None,
) -> Any:
    """An ``OperatorLineage`` from (namespace, name, dataset facets) triples; ``input_facets`` by
    input name; ``run``: the counts for :func:`run_facet`."""
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset

    input_facets = input_facets or {}
    return OperatorLineage(
        inputs=[
            InputDataset(namespace=ns, name=name, facets=facets, inputFacets=dict(input_facets.get(name, {})))
            for ns, name, facets in inputs
        ],
        outputs=[OutputDataset(namespace=ns, name=name, facets=facets) for ns, name, facets in outputs],
        run_facets={"deepocr": run_facet(**run)} if run else {},
    )
