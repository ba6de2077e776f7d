"""The seeded fuzz corpus through the render and page-work path: every file ends as pages or a
typed error with a reason code (no other exception, no ``internal_error``), and the page built to
be slow ends as ``page_timeout`` under a small limit while the next document goes on."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.pagework import PageResult, PageWork
from airflow_provider_deepocr.core.records import Document, DocumentRef
from airflow_provider_deepocr.core.render import RenderLimits, count_pages
from airflow_provider_deepocr.testing import fuzz

REASONS = {v for k, v in vars(errors).items() if k.isupper() and isinstance(v, str)}


@pytest.fixture(scope="module")
def corpus() -> dict[str, bytes]:
    return fuzz.make_corpus(seed=20)


def _doc(name: str, data: bytes) -> Document:
    return Document.from_bytes(DocumentRef(uri=f"mem://fuzz/{name}"), data)


def test_the_corpus_is_seeded_and_made_of_the_asked_kinds(corpus: dict[str, bytes]) -> None:
    assert len(corpus) >= 500
    kinds = Counter(name.split("-")[0] for name in corpus)
    for kind in ("valid", "trunc", "flip", "count", "mediabox", "loop", "size", "zero", "zeroed", "dup"):
        assert kinds[kind] > 0, kind
    assert fuzz.make_corpus(seed=20)["trunc-07-plain.pdf"] == corpus["trunc-07-plain.pdf"]
    assert fuzz.make_corpus(seed=21)["trunc-07-plain.pdf"] != corpus["trunc-07-plain.pdf"]
    assert b"/Count 9999999999" in corpus["count-2-plain.pdf"]
    dup = next(name for name in corpus if name.startswith("dup-"))
    assert corpus[dup] == corpus[dup.split("-", 2)[2]]


def test_every_file_ends_as_pages_or_a_typed_error(corpus: dict[str, bytes]) -> None:
    outcomes: Counter[str] = Counter()
    untyped: list[str] = []
    t0 = time.monotonic()
    limits = RenderLimits(max_pixels=2_000_000)
    with PageWork(page_timeout_s=20, dpi=72, limits=limits, text_layer=True) as work:
        for name, data in sorted(corpus.items()):
            if name == fuzz.SLOW_PAGE_NAME:
                continue
            doc = _doc(name, data)
            try:  # the listing's cheap count: a number or a typed error
                assert count_pages(doc, limits) >= 1
            except errors.DeepOcrError as exc:
                assert exc.reason in REASONS, (name, exc.reason)
            except Exception as exc:
                untyped.append(f"{name}: count_pages {type(exc).__name__}")
            try:
                opened = work.open(doc)
                items = list(opened)
            except errors.DeepOcrError as exc:
                outcomes[f"document {exc.reason}"] += 1
                continue
            except Exception as exc:
                untyped.append(f"{name}: {type(exc).__name__}")
                continue
            assert [getattr(i, "page_no", None) or i.page.page_no for i in items] == opened.numbers  # type: ignore[union-attr]
            for item in items:
                if isinstance(item, PageResult):
                    outcomes["page ok"] += 1
                else:
                    assert isinstance(item, errors.PageError) and item.reason in REASONS, (name, item)
                    outcomes[f"page {item.reason}"] += 1
    elapsed = time.monotonic() - t0
    print(f"\n{len(corpus) - 1} files in {elapsed:.1f}s, {work.restarts} worker restarts")
    for outcome, n in sorted(outcomes.items()):
        print(f"  {outcome}: {n}")
    assert untyped == []
    assert not any(errors.INTERNAL_ERROR in k for k in outcomes), outcomes  # a bug, not a reason
    assert outcomes["document broken_page_tree"] > 0 and outcomes["page ok"] > 0
    assert outcomes["document empty_file"] >= 1 and outcomes["document truncated_file"] > 0


def test_the_valid_seeds_render_with_their_text(corpus: dict[str, bytes]) -> None:
    with PageWork(page_timeout_s=20, dpi=72, text_layer=True) as work:
        for name in ("valid-plain.pdf", "valid-objstm.pdf"):
            pages = list(work.open(_doc(name, corpus[name])))
            assert [p.page.page_no for p in pages if isinstance(p, PageResult)] == [1, 2, 3]
            text = "\n".join(b["text"] for p in pages if isinstance(p, PageResult) for b in p.blocks or [])
            assert "Page 2: invoice 2024-008, total due 1,334.56 EUR" in text
        opened = work.open(_doc("valid-picture.tif", corpus["valid-picture.tif"]))
        sizes = [(p.page.width, p.page.height) for p in opened if isinstance(p, PageResult)]
        assert (opened.media_type, sizes) == ("image/tiff", [(240, 120), (120, 240)])


def test_the_slow_page_times_out_and_the_next_document_goes_on(corpus: dict[str, bytes]) -> None:
    with PageWork(page_timeout_s=0.5, dpi=72, text_layer=True) as work:
        opened = work.open(_doc(fuzz.SLOW_PAGE_NAME, corpus[fuzz.SLOW_PAGE_NAME]))
        t0 = time.monotonic()
        (item,) = list(opened)
        waited = time.monotonic() - t0
        assert isinstance(item, errors.PageError) and (item.reason, item.page_no) == (errors.PAGE_TIMEOUT, 1)
        assert waited < 5.0  # the limit, plus killing the child; the page alone takes seconds
        after = list(work.open(_doc("valid-plain.pdf", corpus["valid-plain.pdf"]), pages=[2]))
        assert isinstance(after[0], PageResult) and "total due 1,334.56" in after[0].blocks[0]["text"]  # type: ignore[index]
        assert work.restarts == 1
