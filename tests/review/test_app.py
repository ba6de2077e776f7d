"""The standalone review app over real parts (SQLite, the work area, the sample documents):
the token on every request, POST-only actions with the form token, and what each decision does."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core import review as rv
from airflow_provider_deepocr.core.engines.sleep import SleepEngine
from airflow_provider_deepocr.core.pipeline import run_pipeline
from airflow_provider_deepocr.core.sources import WorkArea
from airflow_provider_deepocr.core.warehouse import Warehouse
from airflow_provider_deepocr.review.app import COOKIE, ReviewSettings, TokenAuth, create_app
from tests.review.conftest import QUARANTINE_ALL, Quarantined

TOKEN = "t0ken-for-the-review-tests-0123456789"


def _client(q: Quarantined, login: bool = True) -> TestClient:
    client = TestClient(create_app(ReviewSettings(q.url, str(q.work)), auth=TokenAuth(TOKEN, "rita")))
    if login:
        client.cookies.set(COOKIE, TOKEN)
    return client


def _docs(q: Quarantined) -> list[str]:
    return [it.doc_id for it in rv.review_queue(Warehouse(q.url))]


def _csrf(client: TestClient, doc_id: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get(f"/doc/{doc_id}").text)
    assert m is not None
    return m.group(1)


def _loaded(q: Quarantined, doc_id: str) -> dict[str, int]:
    with sqlite3.connect(q.db) as conn:
        return {
            t: conn.execute(f"select count(*) from deepocr_{t} where doc_id = ?", (doc_id,)).fetchone()[0]
            for t in ("documents", "pages", "blocks", "load_ledger")
        }


def test_every_request_needs_the_token(quarantined: Quarantined) -> None:
    doc = _docs(quarantined)[0]
    anon = _client(quarantined, login=False)
    for path in ("/", f"/doc/{doc}", f"/doc/{doc}/page/1.png", "/?token=wrong-token"):
        assert anon.get(path, follow_redirects=False).status_code == 401, path
    anon.cookies.set(COOKIE, "wrong-token")
    assert anon.get("/").status_code == 401
    assert anon.get("/", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    assert _client(quarantined, login=False).get("/", headers={"Authorization": f"Bearer {TOKEN}"}).is_success
    # the link printed at start: sets an HttpOnly cookie and drops the token from the address
    link = _client(quarantined, login=False)
    first = link.get(f"/?token={TOKEN}&reason=validation_failed", follow_redirects=False)
    assert first.status_code == 303 and TOKEN not in first.headers["location"]
    assert (
        "HttpOnly" in first.headers["set-cookie"] and "samesite=strict" in first.headers["set-cookie"].lower()
    )
    page = link.get(first.headers["location"])
    assert page.is_success and page.text.count('class="item"') == 4
    assert page.headers["cache-control"] == "no-store"


def test_queue_lists_the_quarantined_documents_newest_first_with_filters(quarantined: Quarantined) -> None:
    client = _client(quarantined)
    text = client.get("/").text
    assert text.count('class="item"') == 4 and "validation_failed" in text
    assert client.get("/?reason=repetition_loop").text.count('class="item"') == 0
    assert client.get(f"/?run={quarantined.run_id}&dag=cli").text.count('class="item"') == 4
    assert client.get("/?run=another-run").text.count('class="item"') == 0
    items = rv.review_queue(Warehouse(quarantined.url))
    assert [i.when for i in items] == sorted((i.when for i in items), reverse=True)


def test_a_post_without_the_tokens_is_refused(quarantined: Quarantined) -> None:
    doc = _docs(quarantined)[0]
    form = {"decision": "approve", "note": "ok"}
    assert _client(quarantined, login=False).post(f"/doc/{doc}/decide", data=form).status_code == 401
    client = _client(quarantined)  # the cookie alone (what a cross-site form would carry) is not enough
    assert client.post(f"/doc/{doc}/decide", data=form).status_code == 403
    assert client.post(f"/doc/{doc}/decide", data={**form, "csrf": "0" * 64}).status_code == 403
    assert client.get(f"/doc/{doc}/decide").status_code == 405  # no action by GET
    assert _loaded(quarantined, doc)["documents"] == 0 and Warehouse(quarantined.url).reviews() == []


def test_page_image_is_rendered_from_the_source_at_the_recorded_size(quarantined: Quarantined) -> None:
    import io

    from PIL import Image

    doc = _docs(quarantined)[0]
    client = _client(quarantined)
    r = client.get(f"/doc/{doc}/page/1.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    result = rv.load_result(
        WorkArea(str(quarantined.work)), rv.find_item(Warehouse(quarantined.url), doc).config_fingerprint, doc
    )
    img = Image.open(io.BytesIO(r.content))
    assert img.size == (result.pages[0].width, result.pages[0].height)
    assert client.get(f"/doc/{doc}/page/99.png").status_code == 409
    assert client.get("/doc/not-a-doc-id").status_code == 404


def test_reject_keeps_the_document_out_even_when_a_later_run_passes(quarantined: Quarantined) -> None:
    doc = _docs(quarantined)[0]
    client = _client(quarantined)
    r = client.post(
        f"/doc/{doc}/decide", data={"decision": "reject", "note": "blurred", "csrf": _csrf(client, doc)}
    )
    assert r.status_code == 200 and "decision recorded: reject" in r.text
    wh = Warehouse(quarantined.url)
    assert _loaded(quarantined, doc)["documents"] == 0
    [row] = wh.reviews(doc)
    assert (row["decision"], row["reviewer"], row["note"]) == ("reject", "rita", "blurred")
    assert doc not in _docs(quarantined)
    # a run whose validation passes loads the other documents, never the rejected one
    summary = run_pipeline(str(quarantined.docs), wh, SleepEngine(), WorkArea(str(quarantined.work)))
    assert summary.loaded_documents == 3 and summary.failed.get("rejected") == 1
    assert _loaded(quarantined, doc)["documents"] == 0
    with sqlite3.connect(quarantined.db) as conn:
        loaded = {r[0] for r in conn.execute("select doc_id from deepocr_documents")}
    assert len(loaded) == 3 and doc not in loaded


def test_reocr_leaves_the_document_for_the_chosen_engine(
    quarantined: Quarantined, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the sleep engine is a test stand-in the page never offers; this test lets it take a document
    monkeypatch.setattr(rv, "REOCR_ENGINES", (*rv.REOCR_ENGINES, "sleep"))
    docs = _docs(quarantined)
    client = _client(quarantined)
    for doc, engine in ((docs[0], "rapidocr"), (docs[1], "sleep")):
        form = {"decision": "reocr", "engine": engine, "csrf": _csrf(client, doc)}
        assert client.post(f"/doc/{doc}/decide", data=form).status_code == 200
    work = WorkArea(str(quarantined.work))
    assert {d["decision"] for d in rv.review_decisions(work).values()} == {"reocr"}
    wh = Warehouse(quarantined.url)
    summary = run_pipeline(str(quarantined.docs), wh, SleepEngine(), work, suites=QUARANTINE_ALL)
    ocr = work.read_jsonl(summary.manifests["ocr"])
    assert docs[0] not in {e["doc_id"] for e in ocr}  # left for rapidocr
    assert docs[1] in {e["doc_id"] for e in ocr}  # the sleep engine took it: its decision is carried out
    decisions = rv.review_decisions(work)
    assert decisions[docs[0]]["decision"] == "reocr" and decisions[docs[1]]["decision"] == rv.REOCR_DONE
    assert [r["engine"] for r in wh.reviews()] == ["rapidocr", "sleep"]


def test_reviews_are_appended_never_updated(quarantined: Quarantined) -> None:
    doc = _docs(quarantined)[0]
    client = _client(quarantined)
    for decision in ("reject", "approve"):
        client.post(f"/doc/{doc}/decide", data={"decision": decision, "csrf": _csrf(client, doc)})
    rows = Warehouse(quarantined.url).reviews(doc)
    assert [r["decision"] for r in rows] == ["reject", "approve"] and len({r["review_id"] for r in rows}) == 2
    loaded = _loaded(quarantined, doc)
    assert loaded["documents"] == 1 and loaded["load_ledger"] == 1 and loaded["blocks"] > 0


def test_unknown_decisions_are_refused(quarantined: Quarantined) -> None:
    doc = _docs(quarantined)[0]
    client = _client(quarantined)
    csrf = _csrf(client, doc)
    assert client.post(f"/doc/{doc}/decide", data={"decision": "delete", "csrf": csrf}).status_code == 400
    assert (
        client.post(f"/doc/{doc}/decide", data={"decision": "reocr", "engine": "x", "csrf": csrf}).status_code
        == 400
    )
    with pytest.raises(errors.DeepOcrError, match="not in the review queue"):
        rv.decide(Warehouse(quarantined.url), WorkArea(str(quarantined.work)), "0" * 64, "approve", "rita")


def test_deepocr_review_answers_401_without_the_token(quarantined: Quarantined, tmp_path: Path) -> None:
    """The command itself, in its own process: binds 127.0.0.1, reads --token-file, prints no token."""
    import socket
    import subprocess
    import sys
    import time

    import httpx

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    deepocr = str(Path(sys.executable).with_name("deepocr"))
    argv = [deepocr, "review", "--warehouse", quarantined.url, "--work-dir", str(quarantined.work)]
    proc = subprocess.Popen(
        [*argv, "--port", str(port), "--token-file", str(token_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                first = httpx.get(url)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "deepocr review did not start"
                time.sleep(0.2)
        assert first.status_code == 401
        ok = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.text.count('class="item"') == 4
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert TOKEN not in err


def test_an_approved_document_stays_loaded_when_a_later_run_fails_it_again(quarantined: Quarantined) -> None:
    doc = _docs(quarantined)[0]
    client = _client(quarantined)
    r = client.post(f"/doc/{doc}/decide", data={"decision": "approve", "csrf": _csrf(client, doc)})
    assert r.status_code == 200 and "decision recorded: approve" in r.text
    approved = _loaded(quarantined, doc)
    assert approved["documents"] == 1 and approved["load_ledger"] == 1 and approved["blocks"] > 0
    # the same suite fails every document again, and the listing reads them all again: the reviewer's
    # verdict stands for this content under this config; the others stay quarantined
    wh = Warehouse(quarantined.url)
    summary = run_pipeline(
        str(quarantined.docs),
        wh,
        SleepEngine(),
        WorkArea(str(quarantined.work)),
        suites=QUARANTINE_ALL,
        skip_unchanged=False,
    )
    assert summary.skipped_documents == 1 and summary.loaded_documents == 0  # loaded, unchanged
    assert _loaded(quarantined, doc) == approved  # still there, exactly once
    with sqlite3.connect(quarantined.db) as conn:
        assert [r[0] for r in conn.execute("select doc_id from deepocr_documents")] == [doc]


def test_a_form_token_is_bound_to_its_reviewer(quarantined: Quarantined) -> None:
    """Two reviewers of one app (the Airflow mode: the user comes from a dependency): the form
    token served to ann is refused when bob posts it; bob's own token is taken."""
    from airflow_provider_deepocr.review.app import form_token, form_token_ok

    def user_from_header(request: Request) -> str:  # stands in for Airflow's user resolution
        # (Request is imported at module level: FastAPI resolves the annotation there)
        return request.headers["x-test-user"]

    app = create_app(
        ReviewSettings(quarantined.url, str(quarantined.work)),
        user_dependency=user_from_header,
        csrf_secret="one-secret-for-every-worker",
    )
    client = TestClient(app)
    doc = _docs(quarantined)[0]

    def served(user: str) -> str:
        m = re.search(
            r'name="csrf" value="([0-9a-f]+)"', client.get(f"/doc/{doc}", headers={"x-test-user": user}).text
        )
        assert m is not None
        return m.group(1)

    ann, bob = served("ann"), served("bob")
    assert ann != bob and ann == served("ann")
    form = {"decision": "reject", "note": "blurred"}
    r = client.post(f"/doc/{doc}/decide", data={**form, "csrf": ann}, headers={"x-test-user": "bob"})
    assert r.status_code == 403 and Warehouse(quarantined.url).reviews() == []
    r = client.post(
        f"/doc/{doc}/decide",
        data={**form, "csrf": bob},
        headers={"x-test-user": "bob"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert [(x["decision"], x["reviewer"]) for x in Warehouse(quarantined.url).reviews()] == [
        ("reject", "bob")
    ]
    # the token is the secret's HMAC of the user: another secret makes another token
    assert form_token_ok("one-secret-for-every-worker", "ann", ann)
    assert not form_token_ok("another-secret", "ann", ann) and form_token("another-secret", "ann") != ann
