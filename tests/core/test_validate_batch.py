"""Validation in batches must give every document exactly the rows its own GX run gives."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_deepocr.core import validate, validate_gx
from airflow_provider_deepocr.core.records import DocumentResult
from tests.core.warehouse.test_loader import make_result


@pytest.fixture(scope="module", autouse=True)
def gx_warm() -> None:
    validate.warm_up()


def corpus() -> list[DocumentResult]:
    """Passing and failing documents of 1-4 pages, each fault in a different document."""
    docs = [make_result(1 + i % 4, 3 + i % 3, name=f"doc-{i}", with_table=i % 3 != 1) for i in range(12)]
    docs[1].pages[0].parsed.blocks[0].bbox = (10, 10, 1200, 20)  # off the grid
    docs[2].pages[1].parsed.flags = ["repetition_loop"]  # a bad page flag
    docs[3].pages[2].page_no = 9  # past this document's page count (4 pages: 1..4 is fine)
    docs[4].pages[0].page_no = 2  # within range for another's count, but it has 1 page
    docs[5].pages[1].parsed.blocks[2].index = 1  # a duplicate block within the document
    docs[6].pages[0].parsed.markdown = "  "  # blank, not flagged empty
    docs[7].pages[0].parsed.markdown = ""  # blank, flagged empty: allowed
    docs[7].pages[0].parsed.flags = ["empty_page"]
    docs[8].pages[0].parsed.blocks[1].bbox = None  # no box: allowed
    docs[8].pages[0].parsed.blocks[2].bbox = (500, 10, 400, 20)  # x1 < x0
    docs[9].pages[0].coverage = 0.3  # low coverage
    docs[10].pages[0].parsed.blocks[0].kind = "sidebar"  # not a kind
    docs[11].pages[1].revision = None  # judged by the user suite's row condition (page_no > 1)
    docs[2].pages[0].revision = None  # left out by that row condition
    # the same document twice (a re-listed source): uniqueness is judged within each copy
    docs.append(make_result(2, 3, name="doc-0"))
    blank = make_result(1, 0, name="blank", with_table=False)  # no blocks, no cells
    blank.pages[0].parsed.flags = ["empty_page"]
    docs.append(blank)
    return docs


USER_SUITES: dict[str, Any] = {
    "pages": [
        # row_condition: the pages after the first must name the model revision
        {
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {
                "column": "revision",
                "row_condition": "page_no > 1",
                "condition_parser": "pandas",
            },
        },
        # aggregate over the table: per document as before
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 2}},
    ],
    "blocks": [
        # mostly: at most 40% of a document's blocks may be plain text (3 and 5 blocks a page pass,
        # 4 fail)
        {
            "type": "expect_column_values_to_not_be_in_set",
            "kwargs": {"column": "kind", "value_set": ["text"], "mostly": 0.6},
        },
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "text"}},
        # aggregate (uniqueness without doc_id): per document as before
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "block_no"}},
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "doc_id"}},  # a duplicate
    ],
    "cells": [{"type": "expect_column_values_to_be_between", "kwargs": {"column": "row_no", "max_value": 1}}],
}


@pytest.mark.parametrize("suites", [None, USER_SUITES], ids=["default", "user-suites"])
def test_batch_equals_one_run_per_document(
    suites: dict[str, Any] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = corpus()
    one = [validate.validate_one(d, suites) for d in docs]
    per_doc: list[tuple[str, str, int]] = []  # GX runs of one document the batch path still makes
    run_table = validate_gx._run_table

    def counting(table: str, frame: Any, specs: list[dict[str, Any]], result: DocumentResult) -> Any:
        per_doc.extend((table, s["type"], len(frame)) for s in specs)
        return run_table(table, frame, specs, result)

    monkeypatch.setattr(validate_gx, "_run_table", counting)
    batch = validate.validate_documents(docs, suites)
    assert len(batch) == len(docs)
    for d, a, b in zip(docs, one, batch, strict=True):
        assert b.rows == a.rows, d.ref.uri
        assert b.passed == a.passed, d.ref.uri
    verdicts = [r.passed for r in one]
    assert False in verdicts and (True in verdicts or suites is not None)  # user suites fail all
    failed = {
        d.ref.uri.rsplit("/", 1)[1]: {x["expectation"] for x in r.failed}
        for d, r in zip(docs, one, strict=True)
    }
    assert "expect_column_values_to_be_between(page_no)" in failed["doc-3.pdf"]
    assert "expect_column_values_to_be_between(page_no)" in failed["doc-4.pdf"]
    assert "expect_column_values_to_match_regex(markdown)" in failed["doc-6.pdf"]
    assert (
        not failed["doc-7.pdf"] or "expect_column_values_to_match_regex(markdown)" not in failed["doc-7.pdf"]
    )
    if not suites:
        assert per_doc == []  # the default suite is batched whole
    else:
        # per document: only the aggregates, and the tables a document has no rows in (cells of the
        # documents without tables, blocks of the blank one) that a user suite names
        assert {t for _, t, n in per_doc if n} == {
            "expect_table_row_count_to_be_between",
            "expect_column_values_to_be_unique",
        }
        assert {tb for tb, _, n in per_doc if not n} == {"cells", "blocks"}
        # the row condition and mostly are judged per document: some pass, some fail
        names = [{x["expectation"] for x in r.failed} for r in one]
        cond = "expect_column_values_to_not_be_null(revision)"
        assert any(cond in n for n in names) and not all(cond in n for n in names)
        assert any("expect_table_row_count_to_be_between" in n for n in names)
        assert any("expect_column_values_to_be_unique(block_no)" in n for n in names)
        most = "expect_column_values_to_not_be_in_set(kind)"
        assert any(most in n for n in names) and not all(most in n for n in names)


def test_validate_document_is_the_batch_of_one() -> None:
    for d in corpus()[:6]:
        assert validate.validate_document(d, USER_SUITES).rows == validate.validate_one(d, USER_SUITES).rows
