"""Airflow connections -> core objects: object storage (through the Amazon provider) and warehouses.

- S3 goes through the Amazon provider's ``S3Hook`` (``aws_conn_id``): its boto3 client is handed to
  core's ``S3Storage``, so credentials, roles and endpoints come from the Airflow connection.
- ``gs://`` through the Google provider's ``GCSHook`` (``gcp_conn_id``: its ``storage.Client``) and
  Azure Blob URIs through the Azure provider's ``WasbHook`` (``wasb_conn_id``: its
  ``BlobServiceClient``). Without a connection id, each store is configured from the environment.
- A warehouse is any common-sql ``DbApiHook`` connection (``conn_id`` -> ``get_sqlalchemy_engine()``),
  or, for the embedded default and quick tests, a plain SQLAlchemy URL (``sqlite:///…``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.sources import Storage, WorkArea
    from airflow_provider_deepocr.core.warehouse import Warehouse


def _hook_class(module: str, name: str, needs: str) -> Any:
    """A provider's hook class (``module.name``), or a ConfigError saying what to install."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:  # pragma: no cover - depends on the installed providers
        from airflow_provider_deepocr.core.errors import ConfigError

        raise ConfigError(needs) from exc


def s3_client_for(aws_conn_id: str | None) -> Any:
    """A boto3 S3 client from the Amazon provider's S3Hook, or None when no connection is given.

    The client keeps at least ``sources.S3_POOL_CONNECTIONS`` connections open (the listing counts
    pages with ``count_threads`` ranged reads at once; botocore's default pool is 10); the
    connection's own ``config_kwargs`` are kept, and a larger ``max_pool_connections`` there wins."""
    if not aws_conn_id:
        return None
    s3_hook = _hook_class(
        "airflow.providers.amazon.aws.hooks.s3",
        "S3Hook",
        "aws_conn_id needs the Amazon provider: pip install 'airflow-provider-deepocr[amazon]'",
    )
    from botocore.config import Config

    from airflow_provider_deepocr.core.sources import S3_POOL_CONNECTIONS

    hook = s3_hook(aws_conn_id=aws_conn_id)
    config = hook.config  # the connection's config_kwargs (or defaults)
    if (config.max_pool_connections or 0) >= S3_POOL_CONNECTIONS:
        return hook.get_conn()
    # what get_conn() makes, with the larger pool (one hook: the connection is looked up once)
    merged = config.merge(Config(max_pool_connections=S3_POOL_CONNECTIONS))
    return hook.get_client_type(region_name=hook.region_name, config=merged)


def gcs_client_for(gcp_conn_id: str | None) -> Any:
    """The ``google.cloud.storage.Client`` of the Google provider's GCSHook (None without an id)."""
    if not gcp_conn_id:
        return None
    gcs_hook = _hook_class(
        "airflow.providers.google.cloud.hooks.gcs",
        "GCSHook",
        "gcp_conn_id needs the Google provider: pip install apache-airflow-providers-google",
    )
    return gcs_hook(gcp_conn_id=gcp_conn_id).get_conn()


def azure_client_for(wasb_conn_id: str | None) -> Any:
    """The ``BlobServiceClient`` of the Azure provider's WasbHook (None without an id)."""
    if not wasb_conn_id:
        return None
    wasb_hook = _hook_class(
        "airflow.providers.microsoft.azure.hooks.wasb",
        "WasbHook",
        "wasb_conn_id needs the Azure provider: pip install apache-airflow-providers-microsoft-azure",
    )
    return wasb_hook(wasb_conn_id=wasb_conn_id).get_conn()


def storage_for_airflow(
    uri: str,
    aws_conn_id: str | None = None,
    gcp_conn_id: str | None = None,
    wasb_conn_id: str | None = None,
) -> Storage:
    """The store of ``uri``, on the client of the connection for its scheme (if one is given)."""
    from airflow_provider_deepocr.core.cloud_storage import AZURE_SCHEMES, GCS_SCHEMES
    from airflow_provider_deepocr.core.sources import storage_for, uri_scheme

    scheme = uri_scheme(uri)
    return storage_for(
        uri,
        s3_client=s3_client_for(aws_conn_id) if scheme == "s3" else None,
        gcs_client=gcs_client_for(gcp_conn_id) if scheme in GCS_SCHEMES else None,
        azure_client=azure_client_for(wasb_conn_id) if scheme in AZURE_SCHEMES else None,
    )


def work_area_for_airflow(
    work_uri: str,
    aws_conn_id: str | None = None,
    gcp_conn_id: str | None = None,
    wasb_conn_id: str | None = None,
) -> WorkArea:
    from airflow_provider_deepocr.core.sources import WorkArea

    return WorkArea(work_uri, storage_for_airflow(work_uri, aws_conn_id, gcp_conn_id, wasb_conn_id))


def warehouse_for_airflow(
    conn_id_or_url: str, schema: str | None = None, prefix: str = "deepocr_"
) -> Warehouse:
    """A core Warehouse from an Airflow SQL connection id, or from a SQLAlchemy URL (contains ``://``)."""
    from airflow_provider_deepocr.core.warehouse import Warehouse

    if "://" in conn_id_or_url:
        return Warehouse(conn_id_or_url, schema=schema, prefix=prefix)
    from airflow.sdk import BaseHook

    hook = BaseHook.get_connection(conn_id_or_url).get_hook()
    get_engine = getattr(hook, "get_sqlalchemy_engine", None)
    if get_engine is None:
        from airflow_provider_deepocr.core.errors import ConfigError

        raise ConfigError(f"connection {conn_id_or_url!r} is not a SQL connection (no get_sqlalchemy_engine)")
    return Warehouse(get_engine(), schema=schema, prefix=prefix)
