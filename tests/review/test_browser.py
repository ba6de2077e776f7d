"""The review page in a real browser: Debian's chromium driven by Playwright, against
``deepocr review``'s app served by uvicorn on 127.0.0.1 over a warehouse whose documents were all
quarantined (and a corrupt PDF that failed). ``DEEPOCR_UPDATE_SCREENSHOT=1`` also writes the
README's screenshots: docs/review-queue.png, docs/review.png, docs/review-refused.png."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_deepocr.core import review as rv
from airflow_provider_deepocr.core.sources import WorkArea
from airflow_provider_deepocr.core.warehouse import Warehouse
from airflow_provider_deepocr.review.app import ReviewSettings, TokenAuth, create_app
from tests.review.conftest import Quarantined

CHROMIUM = "/usr/bin/chromium"
DOCS = Path(__file__).resolve().parents[2] / "docs"
TOKEN = "browser-test-token-0123456789abcdef"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (make browser)")


@pytest.fixture
def server(quarantined: Quarantined) -> Iterator[str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(ReviewSettings(quarantined.url, str(quarantined.work)), auth=TokenAuth(TOKEN, "rita"))
    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "the review server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def _add_corrupt_document(q: Quarantined, tmp_path: Path) -> str:
    """A corrupt PDF (no pages) failed by a run into the same warehouse: the refused approve."""
    from airflow_provider_deepocr.core.engines.sleep import SleepEngine
    from airflow_provider_deepocr.core.pipeline import run_pipeline

    docs = tmp_path / "broken"
    docs.mkdir()
    (docs / "corrupt.pdf").write_bytes(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    summary = run_pipeline(str(docs), Warehouse(q.url), SleepEngine(), WorkArea(str(q.work)))
    assert summary.failed == {"corrupt": 1}
    return next(i.doc_id for i in rv.review_queue(Warehouse(q.url)) if i.source_uri.endswith("corrupt.pdf"))


def _shot(page: Any, tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    page.screenshot(path=str(out), full_page=False)
    if os.environ.get("DEEPOCR_UPDATE_SCREENSHOT") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copy(out, DOCS / name)
    return out


def test_review_a_quarantined_document_in_chromium(
    quarantined: Quarantined, server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    corrupt = _add_corrupt_document(quarantined, tmp_path)
    wh = Warehouse(quarantined.url)
    work = WorkArea(str(quarantined.work))
    items = rv.review_queue(wh)
    assert len(items) == 5
    # the multi-page quarantined document: the fax TIFF
    item = next(i for i in items if i.source_uri.endswith(".tiff"))
    after = items[[i.doc_id for i in items].index(item.doc_id) + 1]
    result = rv.load_result(work, item.config_fingerprint, item.doc_id)
    assert len(result.pages) >= 2
    shots = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        assert page.goto(f"{server}/").status == 401
        page.goto(f"{server}/?token={TOKEN}")
        assert TOKEN not in page.url
        assert page.locator("tr.item").count() == 5
        # keys through the queue: j selects the next row, Enter opens it
        assert page.locator("tr.item.sel").get_attribute("data-doc") == items[0].doc_id
        page.keyboard.press("j")
        assert page.locator("tr.item.sel").get_attribute("data-doc") == items[1].doc_id
        shots.append(_shot(page, tmp_path, "review-queue.png"))
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.url == f"{server}/doc/{items[1].doc_id}"
        page.goto(f"{server}/")
        page.click(f'tr.item[data-doc="{item.doc_id}"] a')
        page.wait_for_load_state("networkidle")
        # why: the failed expectation, its column, how many rows and which blocks
        exp = page.locator("#why tr.expectation")
        assert exp.locator("td.name").inner_text() == "expect_column_values_to_not_match_regex"
        assert exp.locator("td.column").inner_text() == "text"
        assert exp.locator("td.count").inner_text() == f"{len(result.pages)} rows failed"
        assert exp.locator("td.blocks a").all_inner_texts() == [f"p{p.page_no} b1" for p in result.pages]
        for i, rec in enumerate(result.pages):
            assert page.url.endswith(f"?page={rec.page_no}") or (i == 0 and "?page=" not in page.url)
            svg = page.locator(f'svg.page-image[data-page="{rec.page_no}"]')
            assert svg.count() == 1 and page.locator("svg.page-image").count() == 1
            assert svg.locator("rect.box").count() == len(rec.parsed.blocks) > 0, rec.page_no
            # the image came back from the source and was decoded by the browser
            assert (
                page.evaluate(
                    "() => { const i = document.querySelector('svg.page-image image');"
                    " return fetch(i.getAttribute('href')).then(r => r.status); }"
                )
                == 200
            )
            # the text panel beside the image: every block, in reading order
            texts = page.locator(f"#text-{rec.page_no} li.blk .btext").all_inner_texts()
            assert [t.strip() for t in texts] == [b.text for b in rec.parsed.blocks]
            if i == 0:
                # a box highlighted from its text, and the text from its box
                page.hover(f'li.blk[data-page="{rec.page_no}"][data-block="1"]')
                assert page.locator("svg rect.box.hl").get_attribute("data-block") == "1"
                page.click(f'svg rect.box[data-page="{rec.page_no}"][data-block="0"]')
                lit = page.locator("li.blk.hl")
                assert lit.count() == 1 and lit.get_attribute("data-block") == "0"
                assert page.locator("svg rect.box.hl").get_attribute("data-block") == "0"
                page.click("#zoom-in")
                assert page.locator("#zoom-level").inner_text() == "125%"
                page.click("#zoom-out")
                page.hover(f'li.blk[data-page="{rec.page_no}"][data-block="1"]')
                shots.append(_shot(page, tmp_path, "review.png"))
            if i + 1 < len(result.pages):
                with page.expect_navigation():
                    page.keyboard.press("j")  # the next page
                page.wait_for_load_state("networkidle")
        with page.expect_navigation():
            page.keyboard.press("n")  # the next document in the queue
        page.wait_for_load_state("networkidle")
        assert page.url == f"{server}/doc/{after.doc_id}"
        with page.expect_navigation():
            page.click("#prev-doc")
        page.wait_for_load_state("networkidle")
        assert page.url == f"{server}/doc/{item.doc_id}"
        # a refused approve: the corrupt PDF has no pages; its page does not offer approve, and a
        # POST from a page opened before (or another tab) is refused with the reason
        page.goto(f"{server}/doc/{corrupt}")
        assert page.locator("#approve").count() == 0
        assert "approve is not offered: the document has no pages" in page.locator("#no-approve").inner_text()
        assert page.locator("#why tr.failure").inner_text().split("\t")[:2] == ["corrupt", "PDF has no pages"]
        page.evaluate(
            "() => { const f = document.querySelector('form.actions').cloneNode(true);"
            " f.querySelector('input[name=decision]').value = 'approve';"
            " document.body.appendChild(f); f.submit(); }"
        )
        page.wait_for_load_state("networkidle")
        assert (
            page.locator("#refused")
            .inner_text()
            .startswith("refused: approve: the document has no pages to load")
        )
        shots.append(_shot(page, tmp_path, "review-refused.png"))
        page.goto(f"{server}/doc/{item.doc_id}")
        page.fill("form.actions:has(#approve) input[name=note]", "checked by hand")
        page.click("#approve")
        page.wait_for_load_state("networkidle")
        assert "decision recorded: approve" in page.content()
        browser.close()
    assert all(s.stat().st_size > 10_000 for s in shots) and len(shots) == 3
    with sqlite3.connect(quarantined.db) as conn:
        for table in ("documents", "load_ledger"):
            n = conn.execute(
                f"select count(*) from deepocr_{table} where doc_id = ?", (item.doc_id,)
            ).fetchone()
            assert n[0] == 1, table
        pages = conn.execute("select count(*) from deepocr_pages where doc_id = ?", (item.doc_id,)).fetchone()
        blocks = conn.execute(
            "select count(*) from deepocr_blocks where doc_id = ?", (item.doc_id,)
        ).fetchone()
        total = conn.execute("select count(*) from deepocr_documents").fetchone()
    assert pages[0] == len(result.pages) and blocks[0] == sum(len(p.parsed.blocks) for p in result.pages)
    assert total[0] == 1  # only the approved one
    [row] = wh.reviews(item.doc_id)
    assert (row["decision"], row["reviewer"], row["note"]) == ("approve", "rita", "checked by hand")
    assert item.doc_id not in {i.doc_id for i in rv.review_queue(wh)}
