"""Airflow connections -> core objects: object storage (through the Amazon provider) and warehouses.

- S3 goes through the Amazon provider's ``S3Hook`` (``aws_conn_id``): its boto3 client is handed to
  core's ``S3Storage``, so credentials, roles and endpoints come from the Airflow connection.
- A warehouse is any common-sql ``DbApiHook`` connection (``conn_id`` -> ``get_sqlalchemy_engine()``),
  or, for the embedded default and quick tests, a plain SQLAlchemy URL (``sqlite:///…``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.sources import Storage, WorkArea
    from airflow_provider_deepocr.core.warehouse import Warehouse


def s3_client_for(aws_conn_id: str | None) -> Any:
    """A boto3 S3 client from the Amazon provider's S3Hook, or None when no connection is given.

    The client keeps at least ``sources.S3_POOL_CONNECTIONS`` connections open (the listing counts
    pages with ``count_threads`` ranged reads at once; botocore's default pool is 10); the
    connection's own ``config_kwargs`` are kept, and a larger ``max_pool_connections`` there wins."""
    if not aws_conn_id:
        return None
    try:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        from airflow_provider_deepocr.core.errors import ConfigError

        raise ConfigError(
            "aws_conn_id needs the Amazon provider: pip install 'airflow-provider-deepocr[amazon]'"
        ) from exc
    from botocore.config import Config

    from airflow_provider_deepocr.core.sources import S3_POOL_CONNECTIONS

    config = S3Hook(aws_conn_id=aws_conn_id).config  # the connection's config_kwargs (or defaults)
    if (config.max_pool_connections or 0) < S3_POOL_CONNECTIONS:
        config = config.merge(Config(max_pool_connections=S3_POOL_CONNECTIONS))
    return S3Hook(aws_conn_id=aws_conn_id, config=config).get_conn()


def storage_for_airflow(uri: str, aws_conn_id: str | None = None) -> Storage:
    from airflow_provider_deepocr.core.sources import storage_for

    return storage_for(uri, s3_client=s3_client_for(aws_conn_id) if uri.startswith("s3://") else None)


def work_area_for_airflow(work_uri: str, aws_conn_id: str | None = None) -> WorkArea:
    from airflow_provider_deepocr.core.sources import WorkArea

    return WorkArea(work_uri, storage_for_airflow(work_uri, aws_conn_id))


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
