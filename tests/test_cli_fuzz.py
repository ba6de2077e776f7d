"""No file sinks a run (issue 20): the `deepocr` command over the seeded corpus of damaged files
(testing/fuzz.py), each page under a small time limit. Every listed file ends as a document row or a
failure row, the slow page as ``page_timeout``, and nothing prints a traceback."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.testing import fuzz


def test_the_fuzz_corpus_through_the_cli_loses_no_file(tmp_path: Path) -> None:
    corpus = fuzz.make_corpus(20)
    names = sorted(corpus)
    # every fourth file (every mutation kind) and the slow page: 127 files, a few minutes less CPU
    keep = [fuzz.SLOW_PAGE_NAME, *(n for n in names[::4] if n != fuzz.SLOW_PAGE_NAME)]
    inbox = tmp_path / "in"
    for name in keep:
        (inbox / name).parent.mkdir(parents=True, exist_ok=True)
        (inbox / name).write_bytes(corpus[name])
    db = tmp_path / "wh.db"
    argv = ["run", str(inbox), "--warehouse", f"sqlite:///{db}", "--work-dir", str(tmp_path / "work")]
    argv += ["--engine", "rapidocr", "--text-layer", "only", "--page-timeout", "1", "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "airflow_provider_deepocr.cli", *argv],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["documents"] == summary["listed"] == len(keep)
    # the accounting: every listed object is loaded, failed, a duplicate or skipped; none lost
    outcomes = ("loaded_documents", "failed_objects", "duplicates", "skipped_documents")
    assert sum(summary[k] for k in outcomes) == len(keep) and summary["lost"] == []
    assert summary["duplicates"] >= 1 and summary["loaded_documents"] >= 1
    with sqlite3.connect(db) as conn:
        seen = {Path(u).name for (u,) in conn.execute("select source_uri from deepocr_sources")}
        failures = conn.execute("select source_uri, reason, page_no from deepocr_failures").fetchall()
    failed = {Path(u).name for u, _, _ in failures}
    assert set(keep) - seen - failed == set()  # every file is a document or a failure row
    with sqlite3.connect(db) as conn:  # the loaded count is what the warehouse holds
        assert (
            conn.execute("select count(*) from deepocr_documents").fetchone()[0]
            == summary["loaded_documents"]
        )
    assert (errors.PAGE_TIMEOUT, 1) in {(r, p) for u, r, p in failures if Path(u).name == fuzz.SLOW_PAGE_NAME}
