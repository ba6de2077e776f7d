"""The `deepocr` command end to end on real files: good documents load, bad ones are failure rows."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_deepocr.cli import main


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], list[Path]]:
    """Sample documents in subfolders plus every kind of bad input, in one tree."""
    from airflow_provider_deepocr.testing.samples import write_bad_inputs, write_samples

    root = tmp_path_factory.mktemp("inbox")
    good = write_samples(root / "good")
    bad = write_bad_inputs(root / "bad" / "nested")
    return root, bad, good


def _table_counts(db: Path) -> dict[str, int]:
    """Rows per table, but the runs table (an audit log: one row per run)."""
    with sqlite3.connect(db) as conn:
        names = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        return {
            n: conn.execute(f'select count(*) from "{n}"').fetchone()[0] for n in names if n != "deepocr_runs"
        }


def _run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


def test_run_rapidocr_loads_good_pages_records_bad_files_and_is_idempotent(
    mixed_folder: tuple[Path, dict[str, str], list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, bad, good = mixed_folder
    db = tmp_path / "x.db"
    argv = ["run", str(root), "--warehouse", f"sqlite:///{db}", "--engine", "rapidocr", "--json"]
    argv += ["--work-dir", str(tmp_path / "work")]
    summary = _run_json(capsys, argv)
    assert summary["documents"] == len(good) + len(bad)
    assert summary["engine"] == "rapidocr"
    assert sum(summary["failed"].values()) >= len(bad)
    for reason in set(bad.values()):
        assert summary["failed"].get(reason, 0) >= 1, (reason, summary["failed"])

    with sqlite3.connect(db) as conn:
        loaded = {r[0] for r in conn.execute("select source_uri from deepocr_documents")}
        failed = dict(conn.execute("select source_uri, reason from deepocr_failures where page_no is null"))
        text = " ".join(r[0] for r in conn.execute("select text from deepocr_blocks"))
        engines = {r[0] for r in conn.execute("select distinct engine from deepocr_pages")}
    assert {Path(u.removeprefix("file://")).name for u in loaded} == {p.name for p in good}
    assert {Path(u.removeprefix("file://")).name: r for u, r in failed.items()} == bad
    assert engines == {"rapidocr"}
    assert "Balance Sheet" in text  # real text read off the born-digital statement
    assert summary["ok"] == summary["pages"] > 0

    before = _table_counts(db)
    again = _run_json(capsys, argv)
    assert _table_counts(db) == before
    assert again["failed"] == summary["failed"]
    # the rerun listed the loaded files and skipped them unread; each run left its runs row
    assert again["skipped_documents"] == len(good) and again["loaded_documents"] == 0
    with sqlite3.connect(db) as conn:
        runs = {
            r[0]: r[1:] for r in conn.execute("select run_id, documents, pages, engine from deepocr_runs")
        }
    assert runs[summary["run_id"]] == (len(good) + len(bad), summary["ok"], "rapidocr")
    assert runs[again["run_id"]][0] == len(bad)  # only the bad files were read again

    # a fresh work area (nothing cached) still leaves the same row counts
    shutil.rmtree(tmp_path / "work")
    _run_json(capsys, argv)
    assert _table_counts(db) == before


def test_run_deepseek_tiny_model_accounts_for_every_document(
    mixed_folder: tuple[Path, dict[str, str], list[Path]],
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, bad, good = mixed_folder
    db = tmp_path / "tiny.db"
    summary = _run_json(
        capsys,
        [
            "run",
            str(root / "good"),
            "--warehouse",
            f"sqlite:///{db}",
            "--engine",
            "deepseek",
            "--model",
            str(tiny_model_dir),
            "--max-new-tokens",
            "16",
            "--batch-size",
            "auto",
            "--work-dir",
            str(tmp_path / "work"),
            "--json",
        ],
    )
    assert summary["engine"] == "deepseek-ocr2"
    with sqlite3.connect(db) as conn:
        loaded = {r[0] for r in conn.execute("select source_uri from deepocr_documents")}
        failed = {r[0] for r in conn.execute("select source_uri from deepocr_failures")}
        models = {r[0] for r in conn.execute("select distinct model from deepocr_pages")}
    # random weights produce random text: each document is loaded or recorded with a reason
    assert {Path(u.removeprefix("file://")).name for u in loaded | failed} == {p.name for p in good}
    assert models <= {str(tiny_model_dir)}


def test_unreachable_warehouse_exits_non_zero(tmp_path: Path) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/nowhere"
    assert main(["run", str(tmp_path), "--warehouse", url, "--engine", "rapidocr"]) == 3


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", str(tmp_path), "--warehouse", "sqlite://", "--dpi", "-3"])
    assert exc.value.code == 2


def test_bad_batch_size_exits_2_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", str(tmp_path), "--warehouse", "sqlite://", "--batch-size", "lots"])
    assert exc.value.code == 2
    assert "batch_size must be an integer >= 1 or 'auto'" in capsys.readouterr().err


def test_parse_json_on_every_shared_fixture(raw_fixture_files: list[Path]) -> None:
    exe = Path(sys.executable).with_name("deepocr")
    for path in raw_fixture_files:
        proc = subprocess.run(
            [str(exe), "parse", str(path), "--json"], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["pages"] and doc["pages"][0]["blocks"], path.name
        for block in doc["pages"][0]["blocks"]:
            assert set(block) >= {"index", "label", "kind", "bbox", "text", "flags"}


def test_show_runs_prints_each_shard_row_and_the_cost_per_document_and_1000_pages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow_provider_deepocr.core.engines import get_engine
    from airflow_provider_deepocr.core.pipeline import run_pipeline
    from airflow_provider_deepocr.core.sources import WorkArea
    from airflow_provider_deepocr.core.warehouse import Warehouse
    from airflow_provider_deepocr.testing.samples import write_samples

    write_samples(tmp_path / "docs")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    engine = get_engine("sleep", seconds_per_page=0.05)
    summary = run_pipeline(
        str(tmp_path / "docs"), Warehouse(url), engine, WorkArea(str(tmp_path / "w")), gpu_hour_cost=3.6
    )
    capsys.readouterr()
    assert main(["show", "--warehouse", url, "--runs"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["run_id", "dag_id", "shard", "documents"]
    row = out[1].split()
    assert row[:5] == [summary.run_id, "cli", "all", str(summary.documents), str(summary.ok)]
    assert row[6:8] == ["sleep", "cpu"]
    cost = float(row[11])  # 3.6 an hour is 0.001 a second: the stage's wall time, in thousandths
    assert 0 < cost < 0.1
    per_run = next(line for line in out if line.startswith(f"  {summary.run_id} (cli)"))
    assert "per document" in per_run and "per 1,000 pages" in per_run
