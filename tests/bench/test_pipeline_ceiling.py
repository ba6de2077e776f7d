"""bench/pipeline_ceiling.py on a tiny configuration: 4 one-page documents (2 scans, 2 born-digital)
through every stage locally, against a store answering 25 ms late and with S3 behind the latency
proxy at 25 ms, and a sharded listing of 12 new PDFs; the last line carries every rate the issue
asks for."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NUM = r"(\d+(?:\.\d+)?)"
LAST = re.compile(
    rf"^e2e_pages_per_s={NUM} ocr_stage_pages_per_s_at_25ms={NUM} validate_docs_per_s={NUM} "
    rf"listing_docs_per_s_at_25ms={NUM} listing_bytes_read_pct={NUM} "
    rf"listing_docs_per_s_at_25ms_sleep_store={NUM} ocr_stage_pages_per_s_at_25ms_sleep_store={NUM} "
    rf"validate_docs_per_s_per_document_baseline={NUM} "
    rf"load_avg={NUM}$"
)


def test_pipeline_ceiling_bench_tiny() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "pipeline_ceiling.py"),
            "--docs",
            "4",
            "--delays",
            "25",
            "--listing-docs",
            "12",
            "--sweep",
            "",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    match = LAST.match(lines[-1])
    assert match, proc.stdout[-1000:]
    e2e, ocr_25, batched, listing_25, pct, _, ocr_sleep, per_document, _ = map(float, match.groups())
    assert e2e > 0 and ocr_25 > 0 and listing_25 > 0 and per_document > 0 and ocr_sleep > 0
    assert pct < 100  # the listing counted pages from ranged reads, not whole objects
    assert batched > per_document  # one GX run per table, not per table and document (about 9x here)
    stages = {line.split()[2] for line in lines if line.startswith("[local] stage ")}
    assert stages == {"list", "ocr", "parse_validate_per_document", "parse_validate", "load"}
    sleep_store = [line for line in lines if line.startswith("[sleep store 25ms] stage ")]
    assert len(sleep_store) == 4 and all("work-area requests/page" in line for line in sleep_store)
    assert "validate, 4 one-page documents" in proc.stdout
