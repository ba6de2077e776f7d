"""The example DAG: parses fast without heavy imports, and runs end to end under `airflow dags test`."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "deepocr_documents_to_warehouse.py"
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
print(json.dumps({"seconds": elapsed, "heavy": heavy, "tasks": mod.dag.task_ids}))
"""


def test_dag_file_imports_in_well_under_half_a_second_without_heavy_modules(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(DAG_FILE), json.dumps(HEAVY)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    probe = json.loads(out.strip().splitlines()[-1])
    assert probe["heavy"] == []
    assert probe["seconds"] < 0.5, probe
    assert probe["tasks"] == ["list_documents", "ocr", "parse_validate", "load"]


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, timeout=600, check=True)
    return env


def test_airflow_dags_test_loads_the_samples_into_sqlite(
    airflow_home: dict[str, str], tmp_path: Path
) -> None:
    from airflow_provider_deepocr.testing.samples import write_samples

    docs = tmp_path / "docs"
    write_samples(docs)
    db = tmp_path / "warehouse.db"
    env = {
        **airflow_home,
        "DEEPOCR_SOURCE_URI": str(docs),
        "DEEPOCR_WAREHOUSE": f"sqlite:///{db}",
        "DEEPOCR_WORK_URI": str(tmp_path / "work"),
        "DEEPOCR_ENGINE": "rapidocr",
        "DEEPOCR_OCR_QUEUE": "default",
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    proc = subprocess.run(
        [airflow, "dags", "test", "deepocr_documents_to_warehouse"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with sqlite3.connect(db) as conn:
        docs_n = conn.execute("select count(*) from deepocr_documents").fetchone()[0]
        pages = conn.execute("select count(*), min(engine) from deepocr_pages").fetchone()
        text = " ".join(r[0] for r in conn.execute("select text from deepocr_blocks"))
    assert docs_n == len([p for p in docs.rglob("*") if p.is_file()])
    assert pages[0] >= docs_n and pages[1] == "rapidocr"
    assert "Balance Sheet" in text
