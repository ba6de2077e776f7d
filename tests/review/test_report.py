"""``deepocr report RUN_ID --html``: one self-contained file about a run."""

from __future__ import annotations

import re
from pathlib import Path

from airflow_provider_deepocr.cli import main
from airflow_provider_deepocr.core.records import DocumentResult
from airflow_provider_deepocr.core.sources import WorkArea
from tests.review.conftest import Quarantined


def test_report_is_self_contained_with_boxes_of_the_flagged_pages(
    quarantined: Quarantined, tmp_path: Path
) -> None:
    out = tmp_path / "run.html"
    argv = ["report", quarantined.run_id, "--warehouse", quarantined.url, "--work-dir", str(quarantined.work)]
    assert main([*argv, "--html", str(out)]) == 0
    text = out.read_text()
    for heading in ("Counts by reason", "Slowest pages", "By engine", "Flagged pages"):
        assert f"<h2>{heading}</h2>" in text
    assert "<td>validation_failed</td><td>4</td>" in text
    work = WorkArea(str(quarantined.work))
    results = [
        DocumentResult.from_dict(work.read_json(e["records_uri"]))
        for e in work.read_jsonl(work.uri("runs", quarantined.run_id, "records.jsonl"))
    ]
    pages = [p for r in results for p in r.pages]
    assert f"<td>sleep</td><td>{len(pages)}</td>" in text
    # every page of the quarantined documents is a thumbnail with one box per block, inline
    assert text.count('<figure class="thumb"') == len(pages)
    assert text.count('class="box') == sum(len(p.parsed.blocks) for p in pages)
    assert text.count('href="data:image/png;base64,') == len(pages)
    assert not re.search(r'(src|href)="(https?:|//|/)', text)  # nothing fetched from elsewhere
    assert main(["report", "no-such-run", *argv[2:], "--html", str(tmp_path / "x.html")]) == 3


def _report(q: Quarantined, out: Path) -> str:
    argv = ["report", q.run_id, "--warehouse", q.url, "--work-dir", str(q.work), "--html", str(out)]
    assert main(argv) == 0
    return out.read_text()


def _table(text: str, table_id: str) -> list[list[str]]:
    m = re.search(rf"<table class='queue' id='{table_id}'>(.*?)</table>", text, re.S)
    assert m is not None, table_id
    return [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", m.group(1), re.S)][1:]


def test_report_is_written_for_its_owner_only(quarantined: Quarantined, tmp_path: Path) -> None:
    out = tmp_path / "run.html"
    out.write_text("an older report")
    out.chmod(0o644)
    _report(quarantined, out)
    assert out.stat().st_mode & 0o777 == 0o600
    fresh = tmp_path / "fresh.html"
    _report(quarantined, fresh)
    assert fresh.stat().st_mode & 0o777 == 0o600


def test_report_counts_page_flags_apart_from_failure_reasons(
    quarantined: Quarantined, tmp_path: Path
) -> None:
    import shutil
    import sqlite3

    from airflow_provider_deepocr.core.engines.sleep import SleepEngine
    from airflow_provider_deepocr.core.pipeline import OcrSettings, run_pipeline
    from airflow_provider_deepocr.core.warehouse import Warehouse
    from tests.review.conftest import QUARANTINE_ALL

    # the same documents again, each page downscaled (a small max_pixels): a flag on every page
    db = tmp_path / "flags.db"
    shutil.copy(quarantined.db, db)
    with sqlite3.connect(db) as conn:
        conn.execute("delete from deepocr_failures")
    summary = run_pipeline(
        str(quarantined.docs),
        Warehouse(f"sqlite:///{db}"),
        SleepEngine(),
        WorkArea(str(quarantined.work)),
        settings=OcrSettings(max_pixels=300_000),
        suites=QUARANTINE_ALL,
    )
    q = Quarantined(quarantined.docs, db, quarantined.work, summary.run_id)
    text = _report(q, tmp_path / "flags.html")
    work = WorkArea(str(q.work))
    pages = [
        p
        for e in work.read_jsonl(work.uri("runs", q.run_id, "records.jsonl"))
        for p in DocumentResult.from_dict(work.read_json(e["records_uri"])).pages
    ]
    assert all(p.flags == ["downscaled"] for p in pages)
    assert _table(text, "reasons") == [["validation_failed", "4"]]
    assert _table(text, "flags") == [["downscaled", str(len(pages))]]


def test_report_shows_the_decisions_made_after_the_run(quarantined: Quarantined, tmp_path: Path) -> None:
    from airflow_provider_deepocr.core import review as rv
    from airflow_provider_deepocr.core.warehouse import Warehouse

    assert _table(_report(quarantined, tmp_path / "before.html"), "reviews") == [["none"]]
    wh, work = Warehouse(quarantined.url), WorkArea(str(quarantined.work))
    tiff = next(i for i in rv.review_queue(wh) if i.source_uri.endswith(".tiff"))
    receipt = next(i for i in rv.review_queue(wh) if i.source_uri.endswith(".png"))
    rv.decide(wh, work, tiff.doc_id, rv.APPROVE, "rita", "legible")
    rv.decide(wh, work, receipt.doc_id, rv.REOCR, "sam", engine="rapidocr")
    rows = _table(_report(quarantined, tmp_path / "after.html"), "reviews")
    assert [r[:4] for r in rows] == [
        ["fax_invoice_letter.tiff", "approve", "", "rita"],
        ["receipt_0001.png", "reocr", "rapidocr", "sam"],
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", r[4]) for r in rows)
