"""bench/pipeline_ceiling.py on a tiny configuration: 4 one-page documents (2 scans, 2 born-digital)
through every stage; the last line carries the end-to-end rate and both validation rates."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NUM = r"(\d+(?:\.\d+)?)"
LAST = re.compile(
    rf"^e2e_pages_per_s={NUM} validate_docs_per_s={NUM} validate_docs_per_s_per_document_baseline={NUM} "
    rf"load_avg={NUM}$"
)


def test_pipeline_ceiling_bench_tiny() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "pipeline_ceiling.py"), "--docs", "4"],
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
    e2e, batched, per_document, _ = map(float, match.groups())
    assert e2e > 0 and per_document > 0
    assert batched > per_document  # one GX run per table, not per table and document (about 9x here)
    stages = {line.split()[1] for line in lines if line.startswith("stage ")}
    assert stages == {"list", "ocr", "parse_validate_per_document", "parse_validate", "load"}
    assert "validate, 4 one-page documents" in proc.stdout
