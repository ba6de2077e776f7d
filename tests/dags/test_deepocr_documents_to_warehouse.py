"""The generic example DAG runs end to end under `airflow dags test` (import speed: test_example_dags)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _dags_test(
    env: dict[str, str], source: str, warehouse: str, work: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """``airflow dags test deepocr_documents_to_warehouse`` with RapidOCR on the default queue."""
    env = {
        **env,
        "DEEPOCR_SOURCE_URI": source,
        "DEEPOCR_WAREHOUSE": warehouse,
        "DEEPOCR_WORK_URI": str(work),
        "DEEPOCR_ENGINE": "rapidocr",
        "DEEPOCR_OCR_QUEUE": "default",
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    return subprocess.run(
        [airflow, "dags", "test", "deepocr_documents_to_warehouse", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _check_lineage(events: Path, docs: Path, db: Path, work: Path) -> None:
    """What each task read and wrote, as OpenLineage saw it: the source folder, every warehouse
    table with its schema, the expectations as assertions, the run's counts; no document text."""
    complete = {}
    for line in events.read_text().splitlines():
        event = json.loads(line)
        if event["eventType"] == "COMPLETE":
            complete[event["job"]["name"].rsplit(".", 1)[-1]] = event
    listing, load, parse = complete["list_documents"], complete["load"], complete["parse_validate"]
    assert [(d["namespace"], d["name"]) for d in listing["inputs"]] == [("file", str(docs))]
    assert listing["run"]["facets"]["deepocr"]["documents"] == 4
    outputs = {d["name"]: d for d in load["outputs"]}
    assert {d["namespace"] for d in load["outputs"]} == {f"sqlite://{db}"}
    assert {"main.deepocr_documents", "main.deepocr_pages", "main.deepocr_blocks"} <= set(outputs)
    fields = [f["name"] for f in outputs["main.deepocr_blocks"]["facets"]["schema"]["fields"]]
    assert {"doc_id", "page_no", "block_no", "text", "x0"} <= set(fields)
    checked = {d["name"]: d["inputFacets"]["dataQualityAssertions"]["assertions"] for d in parse["inputs"]}
    assert set(checked) >= {f"{work}/records/pages", f"{work}/records/blocks"}
    kinds = [a for a in checked[f"{work}/records/blocks"] if a.get("column") == "kind"]
    assert kinds and all(a["success"] for a in kinds)
    ocr = complete["ocr"]["run"]["facets"]["deepocr"]
    assert ocr["engine"] == "rapidocr" and ocr["pages"] >= 4 and len(ocr["config_fingerprint"]) == 16
    assert "Balance Sheet" not in events.read_text()  # names and counts only


def test_airflow_dags_test_loads_the_samples_into_sqlite(airflow_env: dict[str, str], tmp_path: Path) -> None:
    from airflow_provider_deepocr.testing.samples import write_samples

    docs = tmp_path / "docs"
    write_samples(docs)
    db = tmp_path / "warehouse.db"
    events = tmp_path / "openlineage.jsonl"  # OpenLineage's file transport: one event per line
    transport = json.dumps({"type": "file", "log_file_path": str(events), "append": True})
    env = {**airflow_env, "AIRFLOW__OPENLINEAGE__TRANSPORT": transport}
    proc = _dags_test(env, str(docs), f"sqlite:///{db}", tmp_path / "work")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _check_lineage(events, docs, db, tmp_path / "work")
    with sqlite3.connect(db) as conn:
        docs_n = conn.execute("select count(*) from deepocr_documents").fetchone()[0]
        pages = conn.execute("select count(*), min(engine) from deepocr_pages").fetchone()
        text = " ".join(r[0] for r in conn.execute("select text from deepocr_blocks"))
    assert docs_n == len([p for p in docs.rglob("*") if p.is_file()])
    assert pages[0] >= docs_n and pages[1] == "rapidocr"
    assert "Balance Sheet" in text


def test_sharded_dag_run_loads_the_same_rows_as_an_unsharded_one(
    airflow_env: dict[str, str], tmp_path: Path
) -> None:
    """``airflow dags test`` with ``shard_pages=2`` on a mixed folder (a 5-page filing split over three
    shards, bad files) against one shard of everything: the same rows, the split filing loaded once."""
    import pymupdf

    from airflow_provider_deepocr.testing.samples import write_samples
    from tests.digest import table_digest

    docs = tmp_path / "docs"
    write_samples(docs)
    filing = pymupdf.open()
    for i in range(5):
        filing.new_page(width=300, height=200).insert_text((20, 40), f"Annual report page {i + 1}")
    (docs / "finance" / "annual_report.pdf").write_bytes(filing.tobytes())
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\n" + b"\x00garbage" * 50)
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    for prefix, shard_pages in (("one_", 10_000), ("many_", 2)):
        env = {**airflow_env, "DEEPOCR_TABLE_PREFIX": prefix}
        conf = json.dumps({"shard_pages": shard_pages})
        proc = _dags_test(env, str(docs), url, tmp_path / f"work-{prefix}", "--conf", conf)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    one = table_digest(
        url, "one_", skip=("run_id", "loaded_at", "recorded_at", "seen_at", "seconds", "content_hash")
    )
    many = table_digest(
        url, "many_", skip=("run_id", "loaded_at", "recorded_at", "seen_at", "seconds", "content_hash")
    )
    one.hashes.pop("runs"), many.hashes.pop("runs")
    assert many.hashes == one.hashes, (many.counts, one.counts)
    with sqlite3.connect(tmp_path / "wh.db") as conn:
        shards = sorted(r[0] for r in conn.execute("select shard from many_runs"))
        filing_pages = conn.execute(
            "select count(*) from many_pages p join many_documents d using (doc_id) "
            "where d.source_uri like '%annual_report.pdf'"
        ).fetchone()[0]
    assert filing_pages == 5 and len(shards) >= 4 and shards[-1] == "spanning"


def test_an_s3_failure_fails_the_task_with_one_line_and_at_most_one_traceback(
    airflow_env: dict[str, str], s3_endpoint: str, tmp_path: Path
) -> None:
    import json

    conn = {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }
    env = {**airflow_env, "AIRFLOW_CONN_MOTO_S3": json.dumps(conn), "DEEPOCR_AWS_CONN_ID": "moto_s3"}
    warehouse = f"sqlite:///{tmp_path / 'warehouse.db'}"
    proc = _dags_test(env, "s3://no-such-bucket/in/", warehouse, tmp_path / "work")
    out = proc.stdout + proc.stderr
    line = (
        f"no_such_bucket: cannot list s3://no-such-bucket/in/ via {s3_endpoint}: "
        "the bucket does not exist (NoSuchBucket, HTTP 404)"
    )
    assert proc.returncode != 0 or "DagRun failed" in out
    # Airflow logs the task's exception once: one traceback, ending in the one line
    assert out.count("Traceback (most recent call last)") == 1, out[-6000:]
    assert f"airflow_provider_deepocr.core.errors.StorageError: {line}\n" in out, out[-3000:]
    assert "During handling of the above exception" not in out
    assert "The above exception was the direct cause" not in out
