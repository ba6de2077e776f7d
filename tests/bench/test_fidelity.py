"""bench/fidelity.py --quick: the text-layer path scored against the generated truth, with floors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAST_LINE = re.compile(r"^word_f1=(\S+) order=(\S+) tables_found=(\S+) cell_acc=(\S+)$")


def test_quick_run_meets_the_targets() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fidelity.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    ).stdout
    lines = out.strip().splitlines()
    m = LAST_LINE.match(lines[-1])
    assert m, lines[-1]
    word_f1, order, tables_found, cell_acc = map(float, m.groups())
    assert word_f1 >= 0.95 and order >= 0.90 and tables_found >= 0.75 and cell_acc >= 0.9
    rows = {
        tuple(ln.split()[:2]): ln.split() for ln in lines if ln.split() and ln.split()[-1] in ("text", "OCR")
    }
    for name in ("cjk_line", "toc", "short_form", "hello"):
        assert rows[(name, "1")][-1] == "text", name
    assert rows[("balance_sheet", "1")][4:6] == ["1/1", "1.000"]  # case page f1 order tables cells judged
    cost = next(ln for ln in lines if "pages/s with tables" in ln)
    assert float(re.search(r"cost: (\S+) pages/s with tables", cost).group(1)) >= 20
