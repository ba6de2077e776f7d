"""OpenLineage names and facets (the events themselves: tests/dags, under `airflow dags test`)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airflow_provider_deepocr.operators.lineage import (
    assertions_facet,
    operator_lineage,
    storage_dataset,
    table_dataset,
)


@pytest.mark.parametrize(
    ("uri", "want"),
    [
        ("s3://records-archive/scans/1998/", ("s3://records-archive", "scans/1998/")),
        ("gs://filings/inbox", ("gs://filings", "inbox")),
        ("gcs://filings/inbox/", ("gs://filings", "inbox/")),
        (
            "abfs://scans@hospital.dfs.core.windows.net/in/",
            ("wasbs://scans@hospital.dfs.core.windows.net", "in/"),
        ),
        (
            "abfss://scans@hospital.dfs.core.windows.net/in",
            ("abfss://scans@hospital.dfs.core.windows.net", "in"),
        ),
        ("/data/inbox", ("file", "/data/inbox")),
        ("file:///data/inbox", ("file", "/data/inbox")),
    ],
)
def test_storage_datasets_follow_the_naming_spec(uri: str, want: tuple[str, str]) -> None:
    assert storage_dataset(uri) == want


def test_azure_datasets_take_the_account_from_the_connection_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT"):
        monkeypatch.delenv(name, raising=False)
    assert storage_dataset("az://scans/in/", "hospital") == (
        "wasbs://scans@hospital.dfs.core.windows.net",
        "in/",
    )
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountName=clinic;AccountKey=a2V5")
    assert storage_dataset("az://scans/in/") == ("wasbs://scans@clinic.dfs.core.windows.net", "in/")
    assert storage_dataset("abfss://scans/x") == ("abfss://scans@clinic.dfs.core.windows.net", "x")


@pytest.mark.parametrize(
    ("url", "schema", "want"),
    [
        (
            "postgresql+psycopg://u:secret@db.internal:6543/dw",
            None,
            ("postgres://db.internal:6543", "dw.public.t"),
        ),
        ("postgresql+psycopg://u@db/dw", "ocr", ("postgres://db:5432", "dw.ocr.t")),
        (
            "redshift+redshift_connector://u@analytics.abc123.eu-west-1.redshift.amazonaws.com:5439/dev",
            "ocr",
            ("redshift://analytics.eu-west-1:5439", "dev.ocr.t"),
        ),
        ("snowflake://u:p@myorg-acct/DW/RAW", None, ("snowflake://myorg-acct", "DW.RAW.T")),
        ("bigquery://my-project/ocr_dataset", None, ("bigquery", "my-project.ocr_dataset.t")),
        ("sqlite:////data/wh.db", None, ("sqlite:///data/wh.db", "main.t")),
    ],
)
def test_warehouse_tables_follow_the_naming_spec(url: str, schema: str | None, want: tuple[str, str]) -> None:
    got = table_dataset(sa.engine.make_url(url), schema, "t")
    assert got == want
    assert "secret" not in got[0] + got[1]


def test_assertions_pass_only_when_every_document_passed_and_carry_no_values() -> None:
    rows = [
        {
            "table_name": "blocks",
            "expectation": "expect_column_values_to_be_in_set(kind)",
            "success": True,
            "observed": {"unexpected_count": 0},
        },
        {
            "table_name": "blocks",
            "expectation": "expect_column_values_to_be_in_set(kind)",
            "success": False,
            "observed": {"unexpected_count": 2, "partial_unexpected_list": ["PATIENT NAME"]},
        },
        {
            "table_name": "pages",
            "expectation": "expect_column_values_to_not_be_null(engine)",
            "success": True,
        },
    ]
    facets = assertions_facet(rows)
    (kind,) = facets["blocks"].assertions
    assert (kind.assertion, kind.column, kind.success) == ("expect_column_values_to_be_in_set", "kind", False)
    assert facets["pages"].assertions[0].success
    lineage = operator_lineage(
        inputs=[("file", "/w/records/blocks", {})],
        input_facets={"/w/records/blocks": {"dataQualityAssertions": facets["blocks"]}},
        run={"documents": 2, "pages": 3, "failed": {}, "engine": "rapidocr", "unknown": 1},
    )
    assert "PATIENT" not in repr(lineage)
    assert lineage.run_facets["deepocr"].documents == 2 and lineage.run_facets["deepocr"].engine == "rapidocr"
