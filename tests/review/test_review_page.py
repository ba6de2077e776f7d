"""What the review page shows and offers, over real parts (SQLite, the work area, the sample
documents plus a corrupt and a password-locked PDF): why a document is held, its text beside the
image, the way through the queue, and the actions refused where they do not apply."""

from __future__ import annotations

import html
import re
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from airflow_provider_deepocr.core import review as rv
from airflow_provider_deepocr.core.sources import WorkArea
from airflow_provider_deepocr.core.warehouse import Warehouse
from airflow_provider_deepocr.review.app import COOKIE, ReviewSettings, TokenAuth, create_app
from tests.review.conftest import QUARANTINE_ALL, Quarantined

TOKEN = "t0ken-for-the-review-page-tests-0123456789"


@dataclass
class Held:
    db: Path
    work: Path
    approved: str  # the receipt, approved in the fixture: loaded, its pages flagged downscaled

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"


@pytest.fixture(scope="module")
def held_once(tmp_path_factory: pytest.TempPathFactory) -> Held:
    """The samples quarantined by the suite and downscaled (small max_pixels), a corrupt PDF (no
    pages) and a locked one; the receipt approved."""
    import pymupdf

    from airflow_provider_deepocr.core.engines.sleep import SleepEngine
    from airflow_provider_deepocr.core.pipeline import OcrSettings, run_pipeline
    from airflow_provider_deepocr.testing.samples import write_samples

    root = tmp_path_factory.mktemp("held")
    docs = root / "docs"
    write_samples(docs)
    (docs / "corrupt.pdf").write_bytes(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    locked = pymupdf.open()
    locked.new_page().insert_text((72, 72), "locked")
    locked.save(str(docs / "locked.pdf"), encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="u", owner_pw="o")
    wh = Warehouse(f"sqlite:///{root / 'wh.db'}")
    work = WorkArea(str(root / "work"))
    summary = run_pipeline(
        str(docs), wh, SleepEngine(), work, settings=OcrSettings(max_pixels=300_000), suites=QUARANTINE_ALL
    )
    assert summary.failed == {"validation_failed": 4, "corrupt": 1, "encrypted": 1}
    receipt = next(i for i in rv.review_queue(wh) if i.source_uri.endswith(".png"))
    rv.decide(wh, work, receipt.doc_id, rv.APPROVE, "fixture")
    wh.dispose()
    return Held(root / "wh.db", root / "work", receipt.doc_id)


@pytest.fixture
def held(held_once: Held, tmp_path: Path) -> Held:
    shutil.copy(held_once.db, tmp_path / "wh.db")
    shutil.copytree(held_once.work, tmp_path / "work")
    return Held(tmp_path / "wh.db", tmp_path / "work", held_once.approved)


def _client(url: str, work: Path) -> TestClient:
    client = TestClient(create_app(ReviewSettings(url, str(work)), auth=TokenAuth(TOKEN, "rita")))
    client.cookies.set(COOKIE, TOKEN)
    return client


def _doc(url: str, ending: str, reviewed: bool = False) -> rv.QueueItem:
    return next(
        i for i in rv.review_queue(Warehouse(url), include_reviewed=reviewed) if i.source_uri.endswith(ending)
    )


def _text(fragment: str) -> str:
    """What a reader sees of an HTML fragment: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _section(page: str, cls: str) -> str:
    m = re.search(rf'<section class="{cls}[^"]*"[^>]*>(.*?)</section>', page, re.S)
    assert m is not None, cls
    return m.group(1)


def _csrf(page: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert m is not None
    return m.group(1)


def _result(url: str, work: Path, item: rv.QueueItem) -> rv.DocumentResult:
    return rv.load_result(WorkArea(str(work)), item.config_fingerprint, item.doc_id)


def test_a_quarantined_document_says_which_expectation_column_rows_and_blocks_failed(
    quarantined: Quarantined,
) -> None:
    item = _doc(quarantined.url, ".tiff")
    result = _result(quarantined.url, quarantined.work, item)
    page = _client(quarantined.url, quarantined.work).get(f"/doc/{item.doc_id}").text
    why = _section(page, "why")
    [exp] = re.findall(r'<tr class="expectation">(.*?)</tr>', why, re.S)
    # the sleep engine's text block (index 1) on every page says "… dpi."; its title does not
    wanted = " ".join(f"p{p.page_no} b1" for p in result.pages)
    assert _text(exp) == (
        f"blocks text expect_column_values_to_not_match_regex {len(result.pages)} rows failed {wanted}"
    )
    [failure] = re.findall(r'<tr class="failure">(.*?)</tr>', why, re.S)
    assert _text(failure) == "validation_failed 1 expectations failed document validate open"
    # the failing block is marked in the text and on the image; the title is not
    assert re.search(r'<li class="blk failing" id="b1-1"', page) and re.search(
        r'<li class="blk" id="b1-0"', page
    )
    assert re.search(r'<rect class="box kind-text failing" data-page="1" data-block="1"', page)
    assert re.search(r'<rect class="box kind-\w+" data-page="1" data-block="0"', page)
    assert f'<span class="run">{quarantined.run_id}</span>' in page  # standalone: no run page to link


def test_a_failed_document_shows_its_failure_detail(held: Held) -> None:
    client = _client(held.url, held.work)
    for ending, reason, detail in (
        ("locked.pdf", "encrypted", "PDF needs a password"),
        ("corrupt.pdf", "corrupt", "PDF has no pages"),
    ):
        page = client.get(f"/doc/{_doc(held.url, ending).doc_id}").text
        [failure] = re.findall(r'<tr class="failure">(.*?)</tr>', _section(page, "why"), re.S)
        assert _text(failure) == f"{reason} {detail} document render open", ending


def test_the_text_panel_holds_every_block_in_reading_order(quarantined: Quarantined) -> None:
    item = _doc(quarantined.url, ".tiff")
    result = _result(quarantined.url, quarantined.work, item)
    client = _client(quarantined.url, quarantined.work)
    for rec in result.pages:
        page = client.get(f"/doc/{item.doc_id}?page={rec.page_no}").text
        items = re.findall(r'<li class="blk[^"]*" id="b(\d+)-(\d+)"[^>]*>(.*?)</li>', page, re.S)
        assert [(int(p), int(b)) for p, b, _ in items] == [(rec.page_no, b.index) for b in rec.parsed.blocks]
        for (_, _, body), block in zip(items, rec.parsed.blocks, strict=True):
            assert _text(body) == f"{block.label} {block.text}".strip()
        # only this page's image and boxes
        assert re.findall(r'<svg class="page-image" data-page="(\d+)"', page) == [str(rec.page_no)]


def test_tables_are_grids_in_the_text_panel(raw_fixture_files: list[Path]) -> None:
    from airflow_provider_deepocr.core.parse import parse_page
    from airflow_provider_deepocr.core.records import PageRecord
    from airflow_provider_deepocr.review.docpage import text_panel

    raw = next(f for f in raw_fixture_files if "<table" in f.read_text()).read_text()
    parsed = parse_page(raw, 1, 1000, 1400)
    [table, *_] = parsed.tables
    fields = dict.fromkeys(PageRecord.__dataclass_fields__, None)
    fields.update(page_no=1, width=1000, height=1400, parsed=parsed)
    panel = text_panel(PageRecord(**fields), set())
    m = re.search(rf'<li class="blk" id="b1-{table.block_index}"[^>]*>(.*?)</li>', panel, re.S)
    assert m is not None
    grid = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", m.group(1), re.S)
    assert [html.unescape(c) for c in grid] == [
        c.text for c in sorted(table.cells, key=lambda c: (c.row, c.col))
    ]


def test_one_page_at_a_time_with_previous_and_next_page_and_document(quarantined: Quarantined) -> None:
    items = rv.review_queue(Warehouse(quarantined.url))
    client = _client(quarantined.url, quarantined.work)
    tiff = next(i for i in items if i.source_uri.endswith(".tiff"))
    n = len(_result(quarantined.url, quarantined.work, tiff).pages)
    first = client.get(f"/doc/{tiff.doc_id}").text
    assert '<a id="prev-page" class="off">' in first
    assert f'<a id="next-page" href="/doc/{tiff.doc_id}?page=2">' in first
    last = client.get(f"/doc/{tiff.doc_id}?page={n}").text
    assert f'<a id="prev-page" href="/doc/{tiff.doc_id}?page={n - 1}">' in last
    assert '<a id="next-page" class="off">' in last
    # documents in queue order (newest first): each page links the one after it and the one before
    ids = [i.doc_id for i in items]
    for k, doc in enumerate(ids):
        page = client.get(f"/doc/{doc}").text
        nxt = (
            f'<a id="next-doc" href="/doc/{ids[k + 1]}">'
            if k + 1 < len(ids)
            else '<a id="next-doc" class="off">'
        )
        prv = f'<a id="prev-doc" href="/doc/{ids[k - 1]}">' if k > 0 else '<a id="prev-doc" class="off">'
        assert nxt in page and prv in page, k


def test_approve_is_refused_on_a_document_without_pages(held: Held) -> None:
    item = _doc(held.url, "corrupt.pdf")
    client = _client(held.url, held.work)
    page = client.get(f"/doc/{item.doc_id}").text
    assert 'id="approve"' not in page and 'id="reject"' in page
    assert "approve is not offered: the document has no pages to load" in _text(page)
    r = client.post(f"/doc/{item.doc_id}/decide", data={"decision": "approve", "csrf": _csrf(page)})
    assert r.status_code == 409
    refused = re.search(r'<p class="refused" id="refused">(.*?)</p>', r.text)
    assert refused is not None and _text(refused.group(1)).startswith(
        "refused: approve: the document has no pages to load"
    )
    with sqlite3.connect(held.db) as conn:
        assert (
            conn.execute(
                "select count(*) from deepocr_documents where doc_id = ?", (item.doc_id,)
            ).fetchone()[0]
            == 0
        )
    assert Warehouse(held.url).reviews(item.doc_id) == []


def test_an_approval_marks_the_failure_row_resolved(quarantined: Quarantined) -> None:
    item = _doc(quarantined.url, ".tiff")
    client = _client(quarantined.url, quarantined.work)
    page = client.get(f"/doc/{item.doc_id}").text
    assert client.post(
        f"/doc/{item.doc_id}/decide", data={"decision": "approve", "csrf": _csrf(page)}
    ).is_success
    with sqlite3.connect(quarantined.db) as conn:
        rows = conn.execute(
            "select reason, resolution, resolved_at is not null from deepocr_failures where doc_id = ?",
            (item.doc_id,),
        ).fetchall()
        others = conn.execute(
            "select count(*) from deepocr_failures where doc_id != ? and resolved_at is null", (item.doc_id,)
        ).fetchone()[0]
    assert rows == [("validation_failed", "approved", 1)] and others == 3
    [failure] = re.findall(r'<tr class="failure">(.*?)</tr>', client.get(f"/doc/{item.doc_id}").text, re.S)
    assert re.fullmatch(
        r"validation_failed 1 expectations failed document validate resolved \(approved, [0-9: -]+ UTC\)",
        _text(failure),
    )


def test_an_older_failures_table_gets_the_resolution_columns(quarantined: Quarantined) -> None:
    with sqlite3.connect(quarantined.db) as conn:
        conn.execute("alter table deepocr_failures drop column resolved_at")
        conn.execute("alter table deepocr_failures drop column resolution")
    added = Warehouse(quarantined.url).create()
    assert {"deepocr_failures.resolved_at", "deepocr_failures.resolution"} <= set(added)
    with sqlite3.connect(quarantined.db) as conn:
        assert (
            conn.execute("select count(*) from deepocr_failures where resolved_at is null").fetchone()[0] == 4
        )


def test_a_loaded_document_is_offered_reject_and_reocr_not_approve(held: Held) -> None:
    """A loaded document is in the queue for its flagged pages: it can be taken out (reject: a wrong
    patient) or read again, not approved again."""
    client = _client(held.url, held.work)
    page = client.get(f"/doc/{held.approved}").text
    assert re.findall(r'<button id="(\w+)" type="submit">', page) == ["reject", "reocr"]
    assert "approve is not offered: the document is already loaded" in _text(page)
    r = client.post(f"/doc/{held.approved}/decide", data={"decision": "approve", "csrf": _csrf(page)})
    assert r.status_code == 409 and "refused: approve: the document is already loaded" in _text(r.text)
    assert [r["reviewer"] for r in Warehouse(held.url).reviews(held.approved)] == ["fixture"]


def test_reocr_offers_real_engines_only(quarantined: Quarantined) -> None:
    item = _doc(quarantined.url, ".tiff")
    page = _client(quarantined.url, quarantined.work).get(f"/doc/{item.doc_id}").text
    select = re.search(r'<select name="engine">(.*?)</select>', page, re.S)
    assert select is not None
    assert re.findall(r'<option value="([^"]+)">', select.group(1)) == [
        "deepseek-ocr2",
        "vllm",
        "openai-server",
        "rapidocr",
    ]


def test_status_pills_are_separated(held: Held) -> None:
    text = _client(held.url, held.work).get("/?reviewed=1").text
    row = re.search(rf'<tr class="item" data-doc="{held.approved}">(.*?)</tr>', text, re.S)
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", row.group(1), re.S)
    # the text a reader (or a copy) gets: the pills' own text with what stands between them
    assert html.unescape(re.sub(r"<[^>]+>", "", cells[2])) == "validation_failed downscaled"
