"""Validation with GX Core over a document's rows, and the validate -> load/quarantine handoff."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_provider_deepocr.core import errors, validate, validate_gx
from airflow_provider_deepocr.core.warehouse import Warehouse
from tests.core.warehouse.test_loader import SECRET, make_result


@pytest.fixture(scope="module", autouse=True)
def gx_warm(request: pytest.FixtureRequest) -> float:
    """Import GX once for the module (slow: seconds) and report how long it took."""
    seconds = validate.warm_up()
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print(f"\n[bench] GX import + ephemeral context: {seconds:.2f}s")
    return seconds


def failed(report: validate.ValidationReport) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["table_name"], r["expectation"]): r for r in report.failed}


def assert_no_text(report: validate.ValidationReport) -> None:
    blob = json.dumps(report.rows) + report.summary()
    assert SECRET not in blob and "PATIENT" not in blob


# --------------------------------------------------------------------------------------------


def test_import_is_light() -> None:
    code = (
        "import sys; import airflow_provider_deepocr.core.validate as v; "
        "bad=[m for m in ('great_expectations','pandas') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_good_document_passes() -> None:
    r = make_result(3, 5, page_failure=True)
    report = validate.validate_document(r)
    assert report.passed, report.summary()
    assert report.rows and all(
        set(row) == {"table_name", "expectation", "success", "observed"} for row in report.rows
    )
    assert {row["table_name"] for row in report.rows} == {"pages", "blocks", "cells"}
    names = {row["expectation"] for row in report.rows}
    assert "expect_compound_columns_to_be_unique(doc_id,page_no,block_no)" in names
    assert "expect_column_pair_values_a_to_be_greater_than_b(x1,x0)" in names
    assert_no_text(report)


def test_document_without_tables_skips_cells_and_null_bboxes_are_fine() -> None:
    r = make_result(2, 3, with_table=False)
    r.pages[0].parsed.blocks[0].bbox = None
    report = validate.validate_document(r)
    assert report.passed, report.summary()
    assert {row["table_name"] for row in report.rows} == {"pages", "blocks"}


def test_bad_document_fails_with_rows_naming_the_expectations() -> None:
    r = make_result(3, 5)
    r.pages[0].parsed.blocks[0].bbox = (10, 10, 1200, 20)  # out of the 0..999 grid
    r.pages[0].parsed.blocks[1].bbox = (500, 10, 400, 20)  # x0 > x1
    r.pages[1].parsed.flags = ["low_confidence", "repetition_loop"]
    r.pages[2].parsed.blocks[3].index = 2  # duplicate block id
    r.pages[2].parsed.blocks[4].kind = "sidebar"
    report = validate.validate_document(r)
    assert not report.passed
    f = failed(report)
    assert set(f) == {
        ("blocks", "expect_column_values_to_be_between(x1)"),
        ("blocks", "expect_column_pair_values_a_to_be_greater_than_b(x1,x0)"),
        ("pages", "expect_column_values_to_not_match_regex(flags)"),
        ("blocks", "expect_compound_columns_to_be_unique(doc_id,page_no,block_no)"),
        ("blocks", "expect_column_values_to_be_in_set(kind)"),
    }
    assert f[("blocks", "expect_column_values_to_be_between(x1)")]["observed"]["unexpected_count"] == 1
    assert f[("pages", "expect_column_values_to_not_match_regex(flags)")]["observed"]["unexpected_count"] == 1
    assert "expect_column_values_to_be_between(x1)" in report.summary()
    assert_no_text(report)


def _set(path: str, value: Any) -> Any:
    """A mutator: ``_set("pages.1.parsed.flags", [...])`` sets that attribute on a result."""

    def mutate(r: Any) -> None:
        *parts, last = path.split(".")
        obj = r
        for p in parts:
            obj = obj[int(p)] if p.isdigit() else getattr(obj, p)
        setattr(obj, last, value)

    return mutate


RULES = {
    "truncated": (
        _set("pages.1.parsed.flags", ["truncated"]),
        "expect_column_values_to_not_match_regex(flags)",
    ),
    "blank-page": (_set("pages.1.parsed.markdown", "  \n"), "expect_column_values_to_match_regex(markdown)"),
    "page-out-of-range": (_set("pages.1.page_no", 9), "expect_column_values_to_be_between(page_no)"),
    "y-inverted": (
        _set("pages.1.parsed.blocks.0.bbox", (1, 900, 5, 100)),
        "expect_column_pair_values_a_to_be_greater_than_b(y1,y0)",
    ),
    "no-engine": (_set("pages.0.engine", None), "expect_column_values_to_not_be_null(engine)"),
    "low-coverage": (_set("pages.1.coverage", 0.4), "expect_column_values_to_be_between(coverage)"),
    "zero-colspan": (
        _set("pages.0.parsed.tables.0.cells.0.colspan", 0),
        "expect_column_values_to_be_between(colspan)",
    ),
    "duplicate-cell": (
        _set("pages.0.parsed.tables.0.cells.1.col", 0),
        "expect_compound_columns_to_be_unique(doc_id,page_no,block_no,row_no,col_no)",
    ),
}


@pytest.mark.parametrize(("mutate", "expectation"), list(RULES.values()), ids=list(RULES))
def test_each_default_rule(mutate: Any, expectation: str) -> None:
    r = make_result(2, 4)
    mutate(r)
    report = validate.validate_document(r)
    assert [row["expectation"] for row in report.failed] == [expectation]
    assert_no_text(report)


def test_empty_page_flag_allows_empty_markdown() -> None:
    r = make_result(2, 2)
    r.pages[1].parsed.markdown = ""
    r.pages[1].parsed.flags = ["empty_page"]
    assert validate.validate_document(r).passed


def test_user_suites_in_every_form(tmp_path: Path) -> None:
    import great_expectations as gx

    r = make_result(2, 3)
    suite_file = tmp_path / "suite.json"
    suite_file.write_text(
        json.dumps(
            {
                "name": "pages_extra",
                "expectations": [
                    {
                        "type": "expect_column_values_to_be_in_set",
                        "kwargs": {"column": "engine", "value_set": ["x"]},
                    }
                ],
            }
        )
    )
    gx_suite = gx.ExpectationSuite(name="cells_extra")
    gx_suite.expectations.append(gx.expectations.ExpectColumnValuesToNotBeNull(column="caption"))
    suites = {
        # short form; the second would quote document text in GX's own result
        "blocks": [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "text"}},
            {
                "type": "expect_column_values_to_match_regex",
                "kwargs": {"column": "text", "regex": "^nothing$"},
            },
        ],
        "pages": str(suite_file),
        "table_cells": gx_suite,
    }
    report = validate.validate_document(r, suites)
    names = {(row["table_name"], row["expectation"]): row["success"] for row in report.rows}
    assert names[("blocks", "expect_column_values_to_not_be_null(text)")] is True
    assert names[("cells", "expect_column_values_to_not_be_null(caption)")] is True
    assert set(failed(report)) == {
        ("blocks", "expect_column_values_to_match_regex(text)"),
        ("pages", "expect_column_values_to_be_in_set(engine)"),
    }
    assert_no_text(report)
    # a user expectation identical to a default one is kept and numbered
    dup = {"blocks": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "doc_id"}}]}
    names2 = {row["expectation"] for row in validate.validate_document(r, dup).rows}
    assert {
        "expect_column_values_to_not_be_null(doc_id)",
        "expect_column_values_to_not_be_null(doc_id)#2",
    } <= names2


@pytest.mark.parametrize(
    "suites",
    [
        {"figures": []},
        {"blocks": [{"type": "expect_nothing_at_all", "kwargs": {}}]},
        {"blocks": [{"kwargs": {"column": "text"}}]},
        {"blocks": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"colum": "text"}}]},
        {"blocks": "/nonexistent/suite.json"},
        {"blocks": 42},
    ],
)
def test_bad_user_suites_are_config_errors(suites: dict[str, Any]) -> None:
    with pytest.raises(errors.ConfigError):
        validate.validate_document(make_result(1, 1), suites)


def test_validate_then_quarantine_or_load(tmp_path: Path) -> None:
    w = Warehouse(f"sqlite:///{tmp_path / 'v.db'}")
    w.create()
    bad = make_result(2, 3)
    bad.pages[0].parsed.blocks[0].bbox = (0, 0, 1500, 10)
    report = validate.validate_document(bad)
    assert not report.passed
    w.quarantine(bad, errors.VALIDATION_FAILED, report.summary(), "run-1", report.rows)
    c = w.counts()
    assert (c["documents"], c["pages"], c["blocks"], c["failures"]) == (0, 0, 0, 1)
    assert c["validation_results"] == len(report.rows)
    with w.engine.connect() as conn:
        vr = conn.execute(sa.select(w.validation_results)).mappings().all()
        f = conn.execute(sa.select(w.failures)).mappings().one()
    assert f["reason"] == errors.VALIDATION_FAILED and "expect_column_values_to_be_between(x1)" in f["detail"]
    assert [r["expectation"] for r in vr if not r["success"]] == ["expect_column_values_to_be_between(x1)"]
    assert all(SECRET not in (r["observed"] or "") for r in vr)
    assert json.loads(vr[0]["observed"])["element_count"] > 0

    good = make_result(2, 3)
    report = validate.validate_document(good)
    assert report.passed
    out = w.load_document(good, "run-2", validation_rows=report.rows)
    assert out["validation_results"] == len(report.rows)
    c = w.counts()
    assert (c["documents"], c["blocks"], c["failures"]) == (1, 7, 0)
    w.dispose()


def test_bench_100k_block_rows(capsys: pytest.CaptureFixture[str]) -> None:
    r = make_result(100, 1000, with_table=False)
    t0 = time.perf_counter()
    report = validate.validate_document(r)
    dt = time.perf_counter() - t0
    assert report.passed
    with capsys.disabled():
        print(f"\n[bench] validate 100k block rows (+100 pages): {dt:.2f}s, {100_000 / dt:,.0f} rows/s")


def test_the_lean_blocks_frame_gives_the_full_frames_results() -> None:
    """The fast path (only the columns the default suite reads) must judge exactly like the full rows."""
    r = make_result(3, 6)
    r.pages[0].parsed.blocks[1].bbox = (5, 5, 1200, 40)  # off the grid
    r.pages[1].parsed.blocks[2].bbox = None  # no box: allowed
    r.pages[2].parsed.blocks[3].index = r.pages[2].parsed.blocks[2].index  # duplicate id
    r.pages[2].parsed.blocks[4].kind = "banner"  # unknown kind
    specs = validate.default_specs(r)["blocks"]
    with validate._LOCK:
        lean = validate_gx._run_table("blocks", validate.lean_blocks_frame(r), specs, r)
        full = validate_gx._run_table("blocks", validate.frames(r)["blocks"], specs, r)
    assert [(x["expectation"], x["success"]) for x in lean] == [
        (x["expectation"], x["success"]) for x in full
    ]
    assert sum(not x["success"] for x in lean) == 3  # bbox range, uniqueness, kind set
    assert [x["observed"] for x in lean] == [x["observed"] for x in full]
