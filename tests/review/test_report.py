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
