"""Every example DAG imports fast without heavy modules; the hospital backfill and the finance
filings DAGs run end to end (the generic one: test_deepocr_documents_to_warehouse.py)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ["torch", "transformers", "vllm", "great_expectations", "pandas", "pymupdf", "fitz", "rapidocr"]

PROBE = """
import importlib.util, json, sys, time
import airflow.sdk
from airflow.sdk import DAG, Asset, BaseOperator, Param  # the SDK's own lazy parts, paid by any DAG
t = time.perf_counter()
spec = importlib.util.spec_from_file_location("example_dag", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
elapsed = time.perf_counter() - t
heavy = [m for m in json.loads(sys.argv[2]) if m in sys.modules]
mapped = lambda t: {**mod.dag.default_args, **t.partial_kwargs}["work_uri"]  # default_args apply at unmapping
work = sorted({mapped(t) if t.is_mapped else t.work_uri for t in mod.dag.tasks})
print(json.dumps({"seconds": elapsed, "heavy": heavy, "tasks": mod.dag.task_ids, "work": work}))
"""


AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAGS = {
    "deepocr_hospital_backfill.py": [
        "list_year",
        "ocr",
        "parse_validate",
        "load",
        "parse_split_scans",
        "load_split_scans",
    ],
    "deepocr_finance_filings.py": [
        "list_filings",
        "ocr",
        "parse_validate",
        "load",
        "parse_split_filings",
        "load_split_filings",
    ],
    "deepocr_documents_to_warehouse.py": [
        "list_documents",
        "ocr",
        "parse_validate",
        "load",
        "parse_split_documents",
        "load_split_documents",
    ],
}


@pytest.mark.parametrize("name", sorted(DAGS))
def test_every_example_dag_imports_fast_without_heavy_modules(name: str, tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "DEEPOCR_WORK_URI": str(tmp_path / "work")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO / "dags" / name), json.dumps(HEAVY)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    probe = json.loads(out.strip().splitlines()[-1])
    assert probe["heavy"] == []
    assert probe["seconds"] < 0.5, probe
    assert sorted(probe["tasks"]) == sorted(DAGS[name])
    assert probe["work"] == [str(tmp_path / "work")]  # every task shares the configured work area


def _dags_test(env: dict[str, str], dag_id: str, logical_date: str) -> None:
    proc = subprocess.run(
        [AIRFLOW, "dags", "test", dag_id, logical_date], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_the_hospital_backfill_never_schedules_the_unfinished_year() -> None:
    """Unpaused today, the first scheduled run lists the last finished year (its data interval has
    ended); the current year's folder does not exist yet (it used to fail four tries)."""
    import importlib.util
    from datetime import UTC, datetime

    from airflow.timetables.base import TimeRestriction

    spec = importlib.util.spec_from_file_location(
        "hospital_dag", REPO / "dags" / "deepocr_hospital_backfill.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    dag = mod.dag
    now = datetime.now(UTC)
    info = dag.timetable.next_dagrun_info(
        last_automated_data_interval=None,
        restriction=TimeRestriction(earliest=dag.start_date, latest=None, catchup=False),
    )
    assert info is not None
    assert info.logical_date.year == now.year - 1  # the year the listing reads
    assert info.data_interval.end <= now


def test_hospital_backfill_reads_only_its_year(airflow_env: dict[str, str], tmp_path: Path) -> None:
    from airflow_provider_deepocr.testing.samples import write_samples

    write_samples(tmp_path / "archive" / "2003")
    write_samples(tmp_path / "archive" / "2004")  # another year: not this run's
    db = tmp_path / "records.db"
    env = {
        **airflow_env,
        "DEEPOCR_ARCHIVE_URI": str(tmp_path / "archive"),
        "DEEPOCR_WAREHOUSE": f"sqlite:///{db}",
        "DEEPOCR_WORK_URI": str(tmp_path / "work"),
        "DEEPOCR_ENGINE": "rapidocr",
        "DEEPOCR_OCR_QUEUE": "default",
    }
    _dags_test(env, "deepocr_hospital_backfill", "2003-01-01")
    year = [p for p in (tmp_path / "archive" / "2003").rglob("*") if p.is_file()]
    with sqlite3.connect(db) as conn:
        sources = [r[0] for r in conn.execute("select source_uri from records_documents")]
        engines = {r[0] for r in conn.execute("select engine from records_pages")}
        dpi = {r[0] for r in conn.execute("select dpi from records_pages")}
    assert len(sources) == len(year) and all("/2003/" in s for s in sources)
    assert engines == {"rapidocr"}  # text_layer="never": scans all go to the OCR engine
    assert 200 in dpi


def test_finance_filings_reads_text_layers_and_checks_cells(
    airflow_env: dict[str, str], tmp_path: Path
) -> None:
    from airflow_provider_deepocr.testing.samples import write_samples

    write_samples(tmp_path / "inbox" / "2026-11-27")
    db = tmp_path / "finance.db"
    conn_json = json.dumps({"conn_type": "deepseek_ocr", "extra": {"engine": "rapidocr"}})
    env = {
        **airflow_env,
        "DEEPOCR_FILINGS_URI": str(tmp_path / "inbox"),
        "DEEPOCR_WAREHOUSE": f"sqlite:///{db}",
        "DEEPOCR_WORK_URI": str(tmp_path / "work"),
        "AIRFLOW_CONN_DEEPSEEK_OCR_DEFAULT": conn_json,
    }
    _dags_test(env, "deepocr_finance_filings", "2026-11-27")
    with sqlite3.connect(db) as conn:
        engines = {r[0] for r in conn.execute("select engine from deepocr_pages")}
        results = conn.execute(
            "select count(*) from deepocr_validation_results where table_name = 'cells' "
            "and expectation like 'expect_column_values_to_not_be_null%'"
        ).fetchone()[0]
    # the born-digital samples are read from their text layer, the scans by the OCR engine
    assert engines == {"pdf-text", "rapidocr"}
    assert results > 0


def test_an_empty_year_is_a_successful_run_with_the_mapped_tasks_skipped(
    airflow_env: dict[str, str], tmp_path: Path
) -> None:
    """A listing of 0 documents: 0 shards, every mapped task (and what waits on them) skipped, none
    failed, and the run succeeds."""
    (tmp_path / "archive" / "2005").mkdir(parents=True)
    env = {
        **airflow_env,
        "DEEPOCR_ARCHIVE_URI": str(tmp_path / "archive"),
        "DEEPOCR_WAREHOUSE": f"sqlite:///{tmp_path / 'records.db'}",
        "DEEPOCR_WORK_URI": str(tmp_path / "work"),
        "DEEPOCR_ENGINE": "sleep",
        "DEEPOCR_OCR_QUEUE": "default",
    }
    _dags_test(env, "deepocr_hospital_backfill", "2005-01-01")
    meta = Path(airflow_env["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(meta) as conn:
        (run_id, state) = conn.execute(
            "select run_id, state from dag_run where dag_id = 'deepocr_hospital_backfill' "
            "and logical_date like '2005-01-01%'"
        ).fetchone()
        states = dict(
            conn.execute(
                "select task_id, state from task_instance where dag_id = 'deepocr_hospital_backfill' "
                "and run_id = ?",
                (run_id,),
            ).fetchall()
        )
    assert state == "success"
    assert states.pop("list_year") == "success"
    assert states == {t: "skipped" for t in DAGS["deepocr_hospital_backfill.py"][1:]}
