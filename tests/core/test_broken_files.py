"""Real-world problem files (tests/data/broken, sources in tests/data/SOURCES.md) through the
render path, the page-work path and the listing's cheap page count: each ends as the typed
outcome written here, never as an unhandled exception."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from airflow_provider_deepocr.core import errors, render
from airflow_provider_deepocr.core.pagework import PageResult, PageWork
from airflow_provider_deepocr.core.records import Document, DocumentRef
from airflow_provider_deepocr.core.shards import count_pages_cheap

BROKEN = Path(__file__).parent.parent / "data" / "broken"

# file -> a document-level reason, or the outcome of each page ("ok" or a page reason)
EXPECTED: dict[str, str | list[str]] = {
    "pdfjs-poppler-67295-0.pdf": errors.BROKEN_PAGE_TREE,  # /Count 9999999999: page_count raises
    "pdfjs-poppler-85140-0.pdf": errors.CORRUPT,  # MuPDF cannot open it
    "pdfjs-poppler-937-0-fuzzed.pdf": errors.CORRUPT,  # opens with no pages
    "pdfjs-poppler-395-0-fuzzed.pdf": errors.CORRUPT,
    "qpdf-append-xref-loop.pdf": errors.CORRUPT,
    "qpdf-issue-141b.pdf": errors.CORRUPT,
    "qpdf-issue-143.pdf": errors.UNSUPPORTED_TYPE,  # objects without a %PDF- header
    "qpdf-issue-146.pdf": errors.TRUNCATED_FILE,
    "qpdf-fuzz-70245.fuzz": errors.EMPTY_FILE,
    "qpdf-issue-1688a.pdf": [errors.CORRUPT],  # opens; its one page cannot be rendered
    "qpdf-pages-loop.pdf": ["ok"],  # a page tree that loops, repaired to its one page
    "qpdf-issue-449.pdf": ["ok", "ok"],
    "qpdf-fuzz-69977b.fuzz": [errors.CORRUPT],  # a JPEG that takes seconds to fail decoding
    "pillow-truncated_jpeg.jpg": [errors.TRUNCATED_FILE],
    "pillow-truncated_end_chunk.png": [errors.TRUNCATED_FILE],
    "pillow-crash-0c7e0e8e11ce787078f00b5b0ca409a167f070e0.tif": [errors.CORRUPT],
    "pillow-oom-225817ca0f8c663be7ab4b9e717b02c661e66834.tif": errors.CORRUPT,
    "pillow-badwidth.bmp": errors.IMAGE_TOO_LARGE,
    "pillow-broken.png": errors.CORRUPT,
}


def _doc(name: str) -> Document:
    return Document.from_bytes(DocumentRef(uri=f"file://{BROKEN / name}"), (BROKEN / name).read_bytes())


def _outcome(pages: list[object]) -> list[str]:
    out = []
    for item in pages:
        if isinstance(item, errors.PageError):
            out.append(item.reason)
        else:
            image = item.page.image if isinstance(item, PageResult) else item.image  # type: ignore[attr-defined]
            assert image.mode == "RGB" and image.width > 0 and image.height > 0
            out.append("ok")
    return out


def test_the_committed_selection_is_small_and_all_expected() -> None:
    files = sorted(p.name for p in BROKEN.iterdir())
    assert files == sorted(EXPECTED)
    assert all((BROKEN / f).stat().st_size < 100_000 for f in files)
    assert sum((BROKEN / f).stat().st_size for f in files) < 1_000_000
    sources = (BROKEN.parent / "SOURCES.md").read_text()
    assert all(f"| {f} |" in sources for f in files)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_render_gives_the_typed_outcome(name: str) -> None:
    expected = EXPECTED[name]
    doc = _doc(name)
    if isinstance(expected, str):
        with pytest.raises(errors.DocumentError) as info:
            render.render_pages(doc, dpi=72)
        assert info.value.reason == expected
        with pytest.raises(errors.DocumentError) as info:
            render.count_pages(doc)
        assert info.value.reason == expected
        assert count_pages_cheap(doc.ref, lambda uri: doc.data) == 1  # counted 1, fails in its shard
        return
    assert _outcome(list(render.render_pages(doc, dpi=72))) == expected
    assert render.count_pages(doc) == len(expected)


def test_page_work_gives_the_same_outcomes() -> None:
    with PageWork(page_timeout_s=60, dpi=72, text_layer=True) as work:
        for name, expected in sorted(EXPECTED.items()):
            if isinstance(expected, str):
                with pytest.raises(errors.DocumentError) as info:
                    work.open(_doc(name))
                assert info.value.reason == expected, name
            else:
                assert _outcome(list(work.open(_doc(name)))) == expected, name
        assert work.restarts == 0


def test_a_real_file_slow_to_fail_is_cut_at_the_page_limit() -> None:
    with PageWork(page_timeout_s=1.0, dpi=72) as work:
        opened = work.open(_doc("qpdf-fuzz-69977b.fuzz"))
        t0 = time.monotonic()
        (item,) = list(opened)
        assert isinstance(item, errors.PageError) and item.reason == errors.PAGE_TIMEOUT
        assert time.monotonic() - t0 < 5.0
        # the worker that replaced the killed one takes the next document
        assert _outcome(list(work.open(_doc("qpdf-issue-449.pdf")))) == ["ok", "ok"]
