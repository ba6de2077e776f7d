"""Failure rows at scale: the delete a load runs stays inside SQLite's limits and on an index."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from airflow_provider_deepocr.core.warehouse import Warehouse
from airflow_provider_deepocr.core.warehouse.failures import failures_delete
from tests.core.warehouse.test_loader import _backend_url, make_result

N_FAILURES = 20_000


@pytest.fixture(params=["sqlite", "postgresql", "duckdb"])
def wh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    url, method = _backend_url(request.param, request, tmp_path)
    w = Warehouse(url, load_method=method)
    w.create()
    try:
        yield w
    finally:
        w.dispose()


def test_a_batch_of_1000_documents_is_one_transaction(wh: Warehouse) -> None:
    """One statement per 500 documents deletes their old failure rows; SQLite used to refuse it
    ("Expression tree is too large") at 499 documents, so every batch was retried doc by doc."""
    docs = [make_result(1, 1, name=f"batch-{i}", with_table=False) for i in range(1000)]
    commits = []
    sa.event.listen(wh.engine, "commit", lambda conn: commits.append(1))
    counts = wh.load_documents(docs, "run-1")
    assert counts["documents"] == 1000
    assert len(commits) == 1
    assert wh.counts()["documents"] == 1000


def _fill_failures(w: Warehouse, n: int) -> None:
    now = datetime.now(UTC)
    rows = [
        {
            "failure_id": f"{i:064x}",
            "source_uri": f"s3://bucket/in/unreadable-{i:06d}.pdf",
            "doc_id": None if i % 2 else f"{i:064x}",
            "reason": "corrupt",
            "detail": f"page tree of object {i} is broken: " + "x" * 160,
            "recorded_at": now,
        }
        for i in range(n)
    ]
    with w.engine.begin() as conn:
        conn.execute(w.failures.insert(), rows)
        if w.engine.dialect.name in ("postgresql", "sqlite"):
            conn.exec_driver_sql("ANALYZE")


def _plan(w: Warehouse) -> str:
    docs = [make_result(1, 1, name=f"new-{i}", with_table=False) for i in range(200)]
    stmt = failures_delete(w.failures, docs, keep={"0" * 64})
    sql = str(stmt.compile(w.engine, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN QUERY PLAN " if w.engine.dialect.name == "sqlite" else "EXPLAIN "
    with w.engine.connect() as conn:
        if w.engine.dialect.name == "postgresql":
            # At 20k rows a scan still costs less than 400 index probes, so PostgreSQL may pick
            # it; with scans priced out, a plan that still scans has no index it can use.
            conn.exec_driver_sql("SET enable_seqscan = off")
        return "\n".join(" ".join(map(str, row)) for row in conn.exec_driver_sql(explain + sql))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_failure_delete_uses_an_index_at_20k_failure_rows(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url, _ = _backend_url(backend, request, tmp_path)
    w = Warehouse(url)
    w.create()
    try:
        _fill_failures(w, N_FAILURES)
        plan = _plan(w)
    finally:
        w.dispose()
    print(f"\n{backend} plan of the failure delete at {N_FAILURES} rows:\n{plan}")
    if backend == "sqlite":
        assert "USING INDEX deepocr_failures_doc_uri_idx (doc_id=? AND source_uri=?)" in plan, plan
        assert "USING INDEX deepocr_failures_doc_uri_idx (doc_id=?)" in plan, plan
        assert "SCAN" not in plan, plan
    else:
        assert "Seq Scan" not in plan, plan
        assert "Index Cond: ((doc_id IS NULL) AND (source_uri = ANY" in plan, plan


def test_create_adds_an_index_an_older_table_lacks(wh: Warehouse) -> None:
    with wh.engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX deepocr_failures_doc_uri_idx")
    assert not _has_index(wh)
    wh.create()
    assert _has_index(wh)


def _has_index(w: Warehouse) -> bool:
    if w.engine.dialect.name == "duckdb":  # duckdb-engine cannot reflect indexes
        with w.engine.connect() as conn:
            sql = "SELECT count(*) FROM duckdb_indexes() WHERE index_name = 'deepocr_failures_doc_uri_idx'"
            return bool(conn.exec_driver_sql(sql).scalar())
    return sa.inspect(w.engine).has_index("deepocr_failures", "deepocr_failures_doc_uri_idx")
