"""Operators run their stages through execute(), chained by the dicts they push to XCom."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from airflow_provider_deepocr.operators.deepocr import (
    DeepOcrListDocumentsOperator,
    DeepOcrLoadOperator,
    DeepOcrOcrOperator,
    DeepOcrParseValidateOperator,
    _manifest_uri,
    warehouse_asset,
)


def test_ocr_operator_defaults_to_the_gpu_queue_and_can_be_moved() -> None:
    assert DeepOcrOcrOperator(task_id="ocr", manifest="x").queue == "gpu"
    assert DeepOcrOcrOperator(task_id="ocr2", manifest="x", queue="default").queue == "default"
    assert DeepOcrListDocumentsOperator(task_id="l", source_uri="x").queue != "gpu"


def test_template_fields_cover_the_runtime_arguments() -> None:
    assert {"source_uri", "work_uri"} <= set(DeepOcrListDocumentsOperator.template_fields)
    assert {"manifest", "engine", "model", "dpi", "batch_size"} <= set(DeepOcrOcrOperator.template_fields)
    assert {"manifest", "warehouse_conn_id", "schema"} <= set(DeepOcrLoadOperator.template_fields)


def test_manifest_accepts_a_uri_the_upstream_dict_or_a_one_shard_listing() -> None:
    assert _manifest_uri("file:///w/m.jsonl") == "file:///w/m.jsonl"
    assert _manifest_uri({"manifest_uri": "s3://b/m.jsonl", "documents": 3}) == "s3://b/m.jsonl"
    assert _manifest_uri(["s3://b/runs/r/documents.jsonl"]) == "s3://b/runs/r/documents.jsonl"
    with pytest.raises(ValueError):
        _manifest_uri({"documents": 3})
    with pytest.raises(ValueError, match="map this task over them"):
        _manifest_uri(["s3://b/shards/00000.jsonl", "s3://b/shards/00001.jsonl"])


def test_shard_pages_below_one_fails_the_listing_at_start(tmp_path: Path) -> None:
    from airflow_provider_deepocr.core import errors

    op = DeepOcrListDocumentsOperator(
        task_id="l", source_uri=str(tmp_path), shard_pages="0", work_uri=str(tmp_path)
    )
    with pytest.raises(errors.ConfigError, match="shard_pages must be an integer >= 1"):
        op.execute({"run_id": "r"})
    assert not (tmp_path / "runs").exists()  # nothing listed, nothing written


def test_load_operator_declares_an_asset_without_credentials() -> None:
    op = DeepOcrLoadOperator(task_id="load", manifest="m", warehouse_conn_id="postgresql://u:secret@h/db")
    (asset,) = op.outlets
    assert "secret" not in asset.uri and asset.uri.startswith("x-deepocr://default/")
    assert warehouse_asset("wh_pg", "ocr", "t_").uri == "x-deepocr://wh_pg/ocr/t_tables"


def test_a_run_id_keeps_what_airflow_allows_and_replaces_a_slash() -> None:
    from airflow_provider_deepocr.operators.deepocr import _safe_run_id

    real = "manual__2026-12-06T14:50:54.976483+00:00"
    assert _safe_run_id({"run_id": real}) == real
    assert _safe_run_id({"run_id": "backfill~a/b c"}) == "backfill~a_b_c"


def test_the_four_operators_chain_through_xcom_sized_dicts(tmp_path: Path) -> None:
    from airflow_provider_deepocr.testing.samples import write_samples

    docs = tmp_path / "docs"
    receipt = [p for p in write_samples(docs) if p.suffix == ".png"]
    work = str(tmp_path / "work")
    db = tmp_path / "wh.db"
    ctx = {"run_id": "manual__2026-11-28T10:00:00+00:00"}

    listed = DeepOcrListDocumentsOperator(
        task_id="list", source_uri=str(receipt[0].parent), work_uri=work
    ).execute(ctx)
    assert isinstance(listed, list) and len(listed) == 1  # one shard: an unmapped OCR task takes it
    ocr = DeepOcrOcrOperator(task_id="ocr", manifest=listed, work_uri=work, engine="rapidocr").execute(ctx)
    parsed = DeepOcrParseValidateOperator(task_id="parse", manifest=ocr, work_uri=work).execute(ctx)
    loaded = DeepOcrLoadOperator(
        task_id="load", manifest=parsed, work_uri=work, warehouse_conn_id=f"sqlite:///{db}"
    ).execute(ctx)

    for pushed in (listed, ocr, parsed, loaded):
        assert len(json.dumps(pushed)) < 1000  # references and counts, never content
    assert ocr["documents"] == 1 and ocr["pages"] == 1 and loaded["pages"] == 1
    # the run id as Airflow wrote it, in the work area and in the warehouse (not a mangled form)
    assert "/runs/manual__2026-11-28T10:00:00+00:00/shards/00000.jsonl" in listed[0]
    with sqlite3.connect(db) as conn:
        text = " ".join(r[0] for r in conn.execute("select text from deepocr_blocks"))
        for table in ("documents", "runs"):
            ids = {r[0] for r in conn.execute(f"select run_id from deepocr_{table}")}
            assert ids == {"manual__2026-11-28T10:00:00+00:00"}, table
    assert "TOTAL" in text.upper()
    # the XCom values carry no document text: no word read off the receipt appears in them
    pushed = json.dumps([listed, ocr, parsed, loaded]).lower()
    keys = {"manifest_uri", "documents", "pages", "failed", "skipped", "config_fingerprint", "total_pages"}
    words = {w for w in text.lower().split() if len(w) >= 5 and w.isalpha() and not any(w in k for k in keys)}
    assert words and not [w for w in words if w in pushed]


# --------------------------------------------------------------------------------------------
# S3 failures: the task fails with the CLI's one line


def _aws_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, endpoint: str) -> None:
    body = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(body))


def test_an_s3_failure_fails_the_task_with_the_cli_line_and_one_traceback(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys
    import traceback

    from airflow_provider_deepocr.core import errors

    _aws_conn(monkeypatch, "moto_s3", s3_endpoint)
    source = "s3://no-such-bucket/in/"
    op = DeepOcrListDocumentsOperator(
        task_id="list", source_uri=source, work_uri=str(tmp_path / "work"), aws_conn_id="moto_s3"
    )
    with pytest.raises(errors.StorageError) as ei:
        op.execute({"run_id": "manual"})
    # the CLI on the same bucket, through its own client
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    cli = subprocess.run(
        [sys.executable, "-m", "airflow_provider_deepocr.cli", "run", source, "--warehouse", "sqlite://"]
        + ["--s3-endpoint-url", s3_endpoint, "--engine", "rapidocr"],
        env=env | {"AWS_DEFAULT_REGION": "us-east-1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 3 and cli.stderr.strip() == f"deepocr: {ei.value}"
    assert ei.value.reason == errors.NO_SUCH_BUCKET and "\n" not in str(ei.value)
    # what Airflow logs for the failed task: this one exception, no "during handling" chain
    logged = "".join(traceback.format_exception(ei.value))
    assert logged.count("Traceback (most recent call last)") == 1
    assert "During handling" not in logged and "botocore" not in logged.splitlines()[-1]


# --------------------------------------------------------------------------------------------
# One factory: the CLI, an operator and a connection extra give one config fingerprint


def test_cli_operator_and_connection_extra_give_the_same_fingerprint(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    empty = tmp_path / "inbox"  # nothing to OCR: the fingerprint is what is compared
    empty.mkdir()
    model = str(tiny_model_dir)

    def cli(*extra: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "airflow_provider_deepocr.cli", "run", str(empty)]
            + ["--warehouse", f"sqlite:///{tmp_path / 'cli.db'}", "--work-dir", str(tmp_path / "cli-work")]
            + ["--engine", "deepseek", "--model", model, "--prompt", "figure", "--json", *extra],
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])["config_fingerprint"]

    work = str(tmp_path / "work")
    ctx = {"run_id": "manual"}
    listed = DeepOcrListDocumentsOperator(
        task_id="list",
        source_uri=str(empty),
        work_uri=work,
        shard_pages=None,  # one manifest, no shards
    ).execute(ctx)

    by_arguments = DeepOcrOcrOperator(
        task_id="ocr_args", manifest=listed, work_uri=work, engine="deepseek", model=model, prompt="figure"
    ).execute(ctx)["config_fingerprint"]

    extra = {"engine": "deepseek", "model": model, "prompt": "figure"}
    monkeypatch.setenv("AIRFLOW_CONN_OCR_FIGURE", json.dumps({"conn_type": "deepseek_ocr", "extra": extra}))
    by_connection = DeepOcrOcrOperator(
        task_id="ocr_conn", manifest=listed, work_uri=work, deepseek_ocr_conn_id="ocr_figure"
    ).execute(ctx)["config_fingerprint"]

    by_cli = cli()
    assert by_cli == by_arguments == by_connection
    # the fingerprint does see the token budget: 4096 tokens for a figure is another config
    assert cli("--max-new-tokens", "4096") != by_cli


def test_the_ocr_task_checks_its_manifest_before_building_the_engine(tmp_path: Path) -> None:
    from airflow_provider_deepocr.core import errors

    work = str(tmp_path / "work")
    missing = f"file://{tmp_path}/work/runs/gone/documents.jsonl"
    op = DeepOcrOcrOperator(
        task_id="ocr", manifest=missing, work_uri=work, engine="deepseek", model="/nonexistent/weights"
    )
    with pytest.raises(errors.ConfigError, match="listing manifest not found"):
        op.execute({"run_id": "manual"})  # not engine_unavailable: the engine was never built
    with pytest.raises(errors.ConfigError, match="on_oversize"):
        DeepOcrOcrOperator(task_id="o2", manifest=missing, work_uri=work, on_oversize="crop").execute({})


def test_a_warehouse_that_cannot_be_used_fails_the_load_task_with_the_cli_line(
    closed_port: int, tmp_path: Path
) -> None:
    from airflow_provider_deepocr.core import errors

    url = f"postgresql+psycopg://loader:hunter2@127.0.0.1:{closed_port}/dw"
    op = DeepOcrLoadOperator(
        task_id="load", manifest="m.jsonl", work_uri=str(tmp_path), warehouse_conn_id=url
    )
    with pytest.raises(errors.WarehouseError) as info:
        op.execute({"run_id": "r"})  # before the manifest is read
    assert str(info.value) == (
        f"warehouse_unreachable: cannot connect to warehouse postgresql+psycopg://loader:***@127.0.0.1:"
        f"{closed_port}/dw (connection refused)"
    )
    assert info.value.__cause__ is None and info.value.__suppress_context__
