"""The review page in a real browser: Debian's chromium driven by Playwright, against
``deepocr review``'s app served by uvicorn on 127.0.0.1 over a warehouse whose documents were all
quarantined. ``DEEPOCR_UPDATE_SCREENSHOT=1`` also writes the README's screenshot (docs/review.png)."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_deepocr.core import review as rv
from airflow_provider_deepocr.core.sources import WorkArea
from airflow_provider_deepocr.core.warehouse import Warehouse
from airflow_provider_deepocr.review.app import ReviewSettings, TokenAuth, create_app
from tests.review.conftest import Quarantined

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "review.png"
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


def test_review_a_quarantined_document_in_chromium(
    quarantined: Quarantined, server: str, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    wh = Warehouse(quarantined.url)
    work = WorkArea(str(quarantined.work))
    items = rv.review_queue(wh)
    assert len(items) == 4
    # the multi-page quarantined document: the fax TIFF
    item = next(i for i in items if i.source_uri.endswith(".tiff"))
    result = rv.load_result(work, item.config_fingerprint, item.doc_id)
    assert len(result.pages) >= 2
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        assert page.goto(f"{server}/").status == 401
        page.goto(f"{server}/?token={TOKEN}")
        assert TOKEN not in page.url
        assert page.locator("tr.item").count() == 4
        page.click(f'tr.item[data-doc="{item.doc_id}"] a')
        page.wait_for_load_state("networkidle")
        for rec in result.pages:
            svg = page.locator(f'svg.page-image[data-page="{rec.page_no}"]')
            assert svg.count() == 1
            assert svg.locator("rect.box").count() == len(rec.parsed.blocks) > 0, rec.page_no
            # the image came back from the source and was decoded by the browser
            loaded = page.evaluate(
                "(n) => fetch(`page/${n}.png`.replace(/^/, location.pathname + '/')).then(r => r.status)",
                rec.page_no,
            )
            assert loaded == 200
        first = page.locator('svg.page-image[data-page="1"] rect.box').first
        first.hover()
        assert result.pages[0].parsed.blocks[0].label in page.locator("#hover-1").inner_text()
        page.screenshot(path=str(tmp_path / "review.png"), full_page=False)
        if os.environ.get("DEEPOCR_UPDATE_SCREENSHOT") == "1":
            SCREENSHOT.parent.mkdir(exist_ok=True)
            shutil.copy(tmp_path / "review.png", SCREENSHOT)
        page.fill("form.actions:has(#approve) input[name=note]", "checked by hand")
        page.click("#approve")
        page.wait_for_load_state("networkidle")
        assert "decision recorded: approve" in page.content()
        browser.close()
    assert (tmp_path / "review.png").stat().st_size > 10_000
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
