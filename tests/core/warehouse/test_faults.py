"""Faults that must not lose or duplicate data, against the real PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time

import sqlalchemy as sa

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.warehouse import Warehouse
from tests.core.warehouse.test_loader import make_result


def _docs(n: int, blocks: int) -> list:
    return [make_result(4, blocks, name=f"fault-{i}") for i in range(n)]


def _expected(n: int, blocks: int) -> dict[str, int]:
    clean = Warehouse("sqlite://")
    clean.create()
    clean.load_documents(_docs(n, blocks), "clean")
    c = clean.counts()
    clean.dispose()
    return c


def test_backend_terminated_mid_load_then_retry_gives_exact_counts(pg_url: str) -> None:
    url = sa.make_url(pg_url).update_query_dict({"application_name": "deepocr_fault_a"})
    engine = sa.create_engine(url)
    wh = Warehouse(engine)
    wh.create()
    docs = _docs(20, 100)
    wh.load_documents(docs[:5], "run-0")  # an earlier load whose rows the batch replaces
    mid, resume = threading.Event(), threading.Event()

    @sa.event.listens_for(engine, "before_cursor_execute")
    def pause_before_ledger(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        # the deletes and COPYs of the batch are done, its ledger rows not yet written
        if (
            statement.lstrip().upper().startswith("INSERT")
            and "load_ledger" in statement
            and not mid.is_set()
        ):
            mid.set()
            resume.wait(30)

    outcome: list[BaseException] = []

    def load() -> None:
        try:
            wh.load_documents(docs, "run-1", force=True)
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=load)
    t.start()
    assert mid.wait(60)
    admin = sa.create_engine(pg_url)
    with admin.connect() as conn:
        (n,) = conn.execute(
            sa.text(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity "
                "where application_name = 'deepocr_fault_a' and backend_xid is not null"
            )
        ).one()
    admin.dispose()
    resume.set()
    t.join(60)
    assert n == 1
    assert outcome and isinstance(outcome[0], errors.DeepOcrError) and outcome[0].reason == errors.LOAD_ERROR
    # the interrupted batch left the earlier load exactly as it was
    assert wh.counts() == _expected(5, 100)
    engine.dispose()  # the pool may hold the dead connection
    wh.load_documents(docs, "run-2")
    assert wh.counts() == _expected(20, 100)


def _load_slowly(url: str, n: int, blocks: int) -> None:
    w = Warehouse(url)
    for r in _docs(n, blocks):
        w.load_document(r, "doomed")
        time.sleep(0.05)


def test_process_killed_mid_run_then_rerun_loads_each_document_once(pg_url: str) -> None:
    Warehouse(pg_url).create()
    proc = mp.get_context("spawn").Process(target=_load_slowly, args=(pg_url, 40, 50))
    proc.start()
    wh = Warehouse(pg_url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and wh.counts()["load_ledger"] < 5:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    partial = wh.counts()
    assert 5 <= partial["documents"] < 40 and partial["documents"] == partial["load_ledger"]
    # every committed document is whole: 4 pages and its blocks each
    assert partial["pages"] == 4 * partial["documents"]
    wh.load_documents(_docs(40, 50), "rerun")
    assert wh.counts() == _expected(40, 50)
    wh.load_documents(_docs(40, 50), "rerun-again")
    assert wh.counts() == _expected(40, 50)
