"""bench/gpu_throughput.py: the --small run through DeepSeekOcr2Engine on CPU, the pre-rendered page
fallback for machines without PyMuPDF, and the summary and budget arithmetic."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "gpu_throughput.py"
LAST_LINE = re.compile(
    r"^best_pages_per_s=(\S+) best_output_tokens_per_s=(\S+) best_vs_batch1=(\S+) ngram_overhead=(\S+)$"
)


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_throughput", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(args: list[str], env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        cwd=REPO,
    )


def test_small_runs_the_engine_on_cpu_from_prerendered_pages(tmp_path: Path) -> None:
    """--render-pages writes the A4 PNGs; --small with PyMuPDF switched off reads them, runs the sweep
    through DeepSeekOcr2Engine and the ban micro-bench, prints the last line and writes the JSON."""
    pages = tmp_path / "pages"
    made = _run(["--render-pages", "--pages-dir", str(pages)], {})
    assert made.returncode == 0, made.stderr[-2000:]
    assert len(sorted(pages.glob("a4-*.png"))) == 16

    out = tmp_path / "out"
    out.mkdir()
    proc = _run(["--small", "--pages-dir", str(pages)], {"OUT": str(out), "DEEPOCR_BENCH_NO_PYMUPDF": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    match = LAST_LINE.match(last)
    assert match, last
    best_pages, best_tokens, vs_batch1, overhead = (float(v) for v in match.groups())
    assert best_pages > 0 and best_tokens > 0 and vs_batch1 > 0
    assert "n-gram ban at 64 x 4096 generated (cpu)" in proc.stdout

    report = json.loads((out / "gpu_throughput.json").read_text())
    assert report["pages_source"] == "png" and report["device"] == "cpu"
    assert report["engine"]["auto_batch"] == 4
    rows = report["rows"]
    assert [(r["batch"], r["ngram"]) for r in rows] == [(1, True), (1, False), (2, True), (2, False)]
    for r in rows:
        assert r["errors"] == 0 and r["all_full_length"] and r["output_tokens"] == 8 * r["batch"]
        assert r["ms_per_step"] > 0 and r["prefill_ms"] > 0 and r["preprocess_ms_per_page"] > 0
        assert r["effective_batch"] == r["batch"]
    assert report["summary"]["best_pages_per_s"] == pytest.approx(best_pages, rel=1e-3)
    assert report["summary"]["ngram_overhead"] == pytest.approx(overhead, abs=1e-4)
    assert [b["generated"] for b in report["ngram_ban"]] == [256, 1024, 4096]
    assert all(b["python_ms"] > 0 and b["vectorised_ms"] > 0 for b in report["ngram_ban"])


def test_no_pymupdf_and_no_pages_says_how_to_make_them(tmp_path: Path) -> None:
    proc = _run(["--small", "--pages-dir", str(tmp_path / "none")], {"DEEPOCR_BENCH_NO_PYMUPDF": "1"})
    assert proc.returncode == 1
    assert "--render-pages" in proc.stderr and str(tmp_path / "none") in proc.stderr


def _row(batch: int, tokens: int, ngram: bool, pages_per_s: float, step_ms: float) -> dict:
    seconds = batch / pages_per_s
    return {
        "batch": batch,
        "new_tokens": tokens,
        "ngram": ngram,
        "seconds": seconds,
        "pages_per_s": pages_per_s,
        "output_tokens_per_s": batch * tokens / seconds,
        "ms_per_step": step_ms,
    }


def test_summary_uses_ban_on_rows_and_the_largest_pair(bench: ModuleType) -> None:
    rows = [
        _row(1, 256, True, 1.0, 20.0),
        _row(1, 256, False, 1.1, 19.0),
        _row(64, 256, True, 9.0, 30.0),
        _row(64, 256, False, 12.0, 29.0),  # faster, but the ban is off: not what users run
        _row(64, 1024, True, 3.0, 31.0),
        _row(64, 1024, False, 3.1, 30.0),
        {"batch": 128, "new_tokens": 1024, "ngram": True, "skipped": "budget"},
    ]
    s = bench.summarise(rows)
    assert s["best_pages_per_s"] == 9.0 and s["best_batch"] == 64 and s["best_new_tokens"] == 256
    assert s["best_vs_batch1"] == pytest.approx(9.0)
    assert s["best_output_tokens_per_s"] == pytest.approx(3.0 * 1024)
    assert s["ngram_overhead"] == pytest.approx(31.0 / 30.0 - 1)  # batch 64 at 1,024 tokens
    assert s["ngram_overhead_at"] == {"batch": 64, "new_tokens": 1024}
    only_on = bench.summarise([r for r in rows if r.get("ngram") and "skipped" not in r])
    assert only_on["ngram_overhead"] is None
    assert bench.summarise([rows[-1]])["best_pages_per_s"] is None


def test_budget_estimates_from_the_rows_before(bench: ModuleType) -> None:
    rows = [_row(16, 256, True, 4.0, 20.0)]  # 4 s: 256 steps x 20 ms = 5.12 s > 4 s, fixed part < 0
    assert bench.estimate_seconds([], 1, 256, True) is None
    # same batch and ban: the fixed part plus the steps at the measured rate
    assert bench.estimate_seconds(rows, 16, 1024, True) == pytest.approx(4.0 + (1024 - 256) * 0.020)
    # a larger batch: linear in the batch from the largest smaller one at the same length
    assert bench.estimate_seconds(rows, 64, 256, True) == pytest.approx(16.0)
    assert bench.estimate_seconds(rows, 64, 1024, True) is None


def test_real_sweeps_a_checkpoint_folder_and_checks_fidelity(tmp_path: Path, tiny_model_dir: Path) -> None:
    """--real MODEL_DIR: the sweep on that checkpoint (no random one written), then 5 born-digital
    pages scored against their PyMuPDF text layer; the fidelity line comes before the last line."""
    out = tmp_path / "out"
    out.mkdir()
    args = ["--real", str(tiny_model_dir), "--small", "--batches", "1", "--ngram", "on", "--new-tokens", "4"]
    proc = _run([*args, "--no-ban-bench", "--fidelity-tokens", "4"], {"OUT": str(out)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert LAST_LINE.match(lines[-1]) and re.fullmatch(r"fidelity_word_f1=\d\.\d{3}", lines[-2])
    assert f"real weights in {tiny_model_dir}" in proc.stdout
    report = json.loads((out / "gpu_throughput.json").read_text())
    assert report["real"] == str(tiny_model_dir) and report["checkpoint"]["real"] is True
    fidelity = report["fidelity"]
    assert fidelity["truth"] == "pymupdf text layer" and [p["page"] for p in fidelity["pages"]] == [
        1,
        2,
        3,
        4,
        5,
    ]
    for page in fidelity["pages"]:  # random weights: a score, not a good one
        assert 0.0 <= page["word_f1"] <= 1.0 and page["output_tokens"] <= 4
    assert fidelity["mean_word_f1"] == pytest.approx(float(lines[-2].split("=")[1]), abs=1e-3)

    missing = _run(["--real", str(tmp_path / "nothing"), "--small"], {})
    assert missing.returncode == 1 and "no config.json and safetensors" in missing.stderr


def test_fidelity_scores_the_models_text_against_the_text_layer(bench: ModuleType) -> None:
    """fidelity_check strips the grounding tags from each page and scores it with word_f1: the page read
    whole scores 1, a page read half scores between, a page read as nothing 0."""
    from airflow_provider_deepocr.core.engines.base import OcrEngine
    from airflow_provider_deepocr.core.records import OcrResult

    images, texts = bench.render_a4(3, with_text=True)
    for i, text in enumerate(texts):  # the text layer holds what the bench wrote
        assert bench.words_of(text) == bench.words_of("\n".join(bench.a4_lines(i)))
    lines = [bench.a4_lines(i) for i in range(3)]

    class Reader(OcrEngine):
        name = "reader"

        def ocr(self, pages, temperature=0.0):  # type: ignore[no-untyped-def]
            read = ["\n".join(lines[0]), "\n".join(lines[1][:30]), ""]
            return [
                OcrResult(
                    f"<|ref|>text<|/ref|><|det|>[[40, 40, 900, 900]]<|/det|>\n{t}", "eos", "reader", "m"
                )
                for t in read
            ]

    report = bench.fidelity_check(Reader(), images, texts)
    f1 = [p["word_f1"] for p in report["pages"]]
    assert f1[0] == pytest.approx(1.0) and 0.5 < f1[1] < 0.9 and f1[2] == 0.0
    assert report["mean_word_f1"] == pytest.approx(sum(f1) / 3)
