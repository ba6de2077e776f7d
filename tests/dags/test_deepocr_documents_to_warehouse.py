"""The generic example DAG runs end to end under `airflow dags test` (import speed: test_example_dags)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_airflow_dags_test_loads_the_samples_into_sqlite(airflow_env: dict[str, str], tmp_path: Path) -> None:
    from airflow_provider_deepocr.testing.samples import write_samples

    docs = tmp_path / "docs"
    write_samples(docs)
    db = tmp_path / "warehouse.db"
    env = {
        **airflow_env,
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
