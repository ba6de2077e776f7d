from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_deepocr.core.errors import ConfigError
from airflow_provider_deepocr.hooks.resources import (
    s3_client_for,
    storage_for_airflow,
    warehouse_for_airflow,
    work_area_for_airflow,
)


def test_warehouse_from_a_url_and_from_an_airflow_postgres_connection(
    monkeypatch: pytest.MonkeyPatch, pg_url: str, tmp_path: Path
) -> None:
    wh = warehouse_for_airflow(f"sqlite:///{tmp_path / 'x.db'}", prefix="t_")
    wh.create()
    assert wh.counts()["documents"] == 0

    database = pg_url.rsplit("/", 1)[1]
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_PG", f"postgresql://postgres@127.0.0.1:5432/{database}")
    wh = warehouse_for_airflow("warehouse_pg", schema="ocr")
    assert wh.engine.dialect.name == "postgresql"
    wh.create()
    assert wh.counts()["pages"] == 0


def test_a_non_sql_connection_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_NOT_SQL", '{"conn_type": "deepseek_ocr"}')
    with pytest.raises(ConfigError, match="not a SQL connection"):
        warehouse_for_airflow("not_sql")


def test_s3_through_the_amazon_provider_connection(
    monkeypatch: pytest.MonkeyPatch, s3_endpoint: str, s3_client: Any
) -> None:
    s3_client.create_bucket(Bucket="hooked")
    s3_client.put_object(Bucket="hooked", Key="in/a.png", Body=b"\x89PNG\r\n\x1a\n...")
    monkeypatch.setenv(
        "AIRFLOW_CONN_MINIO",
        '{"conn_type": "aws", "login": "testing", "password": "testing", '
        f'"extra": {{"endpoint_url": "{s3_endpoint}", "region_name": "us-east-1"}}}}',
    )
    assert s3_client_for(None) is None
    # the listing's ranged reads run 128 at a time: the hook's client keeps 128 connections, not 10
    assert s3_client_for("minio").meta.config.max_pool_connections == 128
    storage = storage_for_airflow("s3://hooked/in/", "minio")
    assert [r.uri for r in storage.list("s3://hooked/in/")] == ["s3://hooked/in/a.png"]
    work = work_area_for_airflow("s3://hooked/work", "minio")
    work.write_json(work.uri("x.json"), {"n": 1})
    assert work.read_json(work.uri("x.json")) == {"n": 1}


@pytest.mark.parametrize(
    ("uri", "kwargs", "provider"),
    [
        ("gs://bucket/docs/", {"gcp_conn_id": "google_default"}, "apache-airflow-providers-google"),
        ("az://box/docs/", {"wasb_conn_id": "wasb_default"}, "apache-airflow-providers-microsoft-azure"),
    ],
)
def test_a_connection_id_for_a_provider_not_installed_is_a_config_error_naming_it(
    uri: str, kwargs: dict[str, str], provider: str
) -> None:
    """The Google and Azure providers are not in the dev extra: a connection id for them is one
    typed line saying what to install (without an id, the store is configured from the environment)."""
    pytest.importorskip("airflow.providers.amazon")  # the providers package tree itself is there
    for module in ("airflow.providers.google", "airflow.providers.microsoft.azure"):
        with pytest.raises(ImportError):
            __import__(module)
    with pytest.raises(ConfigError, match=f"pip install {provider}"):
        storage_for_airflow(uri, **kwargs)
    assert storage_for_airflow(uri) is not None
