"""bench/scale.py on a tiny configuration: a real scheduler (LocalExecutor) maps the sleep-engine OCR
over the shards and the last line carries efficiency= and overhead_s_per_shard=."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAST = re.compile(
    r"^workers=2 shards=3 pages=6 seconds_per_page=0.5 ideal_s=1.5 wall_s=(\S+) run_s=(\S+) "
    r"efficiency=(\S+) overhead_s_per_shard=(\S+)$"
)


def test_scale_bench_tiny() -> None:
    args = ["--workers", "2", "--shards", "3", "--pages", "2", "--seconds-per-page", "0.5"]
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "scale.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    match = LAST.match(proc.stdout.strip().splitlines()[-1])
    assert match, proc.stdout[-1000:]
    wall, run, efficiency, overhead = map(float, match.groups())
    # 3 shards of 1 s over 2 slots: at least 2 s of OCR stage, and the whole run is longer still
    assert 2.0 <= wall <= run
    assert 0 < efficiency <= 0.75 + 1e-6
    assert overhead >= 0
