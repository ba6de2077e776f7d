"""Faults that must not lose or duplicate data, against the real PostgreSQL.

Every check after a fault or a rerun compares :func:`tests.digest.table_digest` (every table, rows
ordered by key), not only row counts: a rerun that rewrote every document, or a half document left
behind, has the right counts but not the right content.
"""

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
from tests.digest import TableDigest, table_digest

#: Differ between a load and a reference load of the same documents made at another moment.
WHEN = ("loaded_at", "recorded_at", "seen_at")


def _docs(n: int, blocks: int) -> list:
    return [make_result(4, blocks, name=f"fault-{i}") for i in range(n)]


def _reference(url: str, prefix: str, loads: list[tuple[list, str]]) -> TableDigest:
    """The digest (without load times) of a clean warehouse under ``prefix`` in the same database
    after these (documents, run id) loads, one document per transaction, nothing interrupted."""
    ref = Warehouse(url, prefix=prefix)
    ref.create()
    for docs, run_id in loads:
        for r in docs:
            ref.load_document(r, run_id)
    ref.dispose()
    return table_digest(url, prefix, skip=WHEN)


def test_backend_terminated_mid_load_then_retry_gives_exact_counts(pg_url: str) -> None:
    url = sa.make_url(pg_url).update_query_dict({"application_name": "deepocr_fault_a"})
    engine = sa.create_engine(url)
    wh = Warehouse(engine)
    wh.create()
    docs = _docs(20, 100)
    wh.load_documents(docs[:5], "run-0")  # an earlier load whose rows the batch replaces
    before = table_digest(pg_url)
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
    # the interrupted batch left the earlier load exactly as it was, every row of every table
    assert table_digest(pg_url) == before
    engine.dispose()  # the pool may hold the dead connection
    wh.load_documents(docs, "run-2")
    # the retry wrote the 15 new documents and left the 5 unchanged ones alone (still run-0's)
    expected = _reference(pg_url, "clean_", [(docs[:5], "run-0"), (docs, "run-2")])
    assert table_digest(pg_url, skip=WHEN) == expected
    assert expected.counts["documents"] == 20 and expected.counts["blocks"] == 20 * (4 * 100 + 1)
    done = table_digest(pg_url)
    wh.load_documents(docs, "run-3")
    assert table_digest(pg_url) == done


def _load_all(url: str, n: int, blocks: int, run_id: str) -> None:
    w = Warehouse(url)
    for r in _docs(n, blocks):
        w.load_document(r, run_id)


def _waiting_on(conn: sa.Connection, application_name: str, holder_pid: int) -> list[tuple[int, bool, str]]:
    """(pid, has a transaction id, statement) of the backends of ``application_name`` blocked by
    ``holder_pid``."""
    rows = conn.execute(
        sa.text(
            "select pid, backend_xid is not null, query from pg_stat_activity "
            "where application_name = :a and :h = any(pg_blocking_pids(pid))"
        ),
        {"a": application_name, "h": holder_pid},
    ).all()
    return [(int(pid), bool(xid), str(query)) for pid, xid, query in rows]


def test_process_killed_mid_run_then_rerun_loads_each_document_once(pg_url: str) -> None:
    """A loader process is SIGKILLed inside a document's transaction, after it deleted the
    document's old rows and wrote its blocks and before its pages: nothing of that document is
    visible, neither while its backend lives nor after; the rerun loads each document once."""
    n, blocks, stop = 40, 50, 6
    docs = _docs(n, blocks)
    wh = Warehouse(pg_url)
    wh.create()
    app = "deepocr_doomed"
    child_url = sa.make_url(pg_url).update_query_dict({"application_name": app})
    # Hold the key of document `stop`'s first page in an open transaction: the loader's insert into
    # the pages table waits on it (a unique key another transaction may still commit), after the
    # deletes and the block rows of that document, inside the loader's transaction.
    holder = sa.create_engine(pg_url).connect()
    holder.execute(wh.pages.insert(), {"doc_id": docs[stop].doc_id, "page_no": 1})
    holder_pid = holder.execute(sa.text("select pg_backend_pid()")).scalar_one()
    proc = mp.get_context("spawn").Process(
        target=_load_all, args=(child_url.render_as_string(hide_password=False), n, blocks, "doomed")
    )
    proc.start()
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            deadline = time.monotonic() + 60
            waiting = _waiting_on(conn, app, holder_pid)
            while not waiting and proc.is_alive() and time.monotonic() < deadline:
                time.sleep(0.02)
                waiting = _waiting_on(conn, app, holder_pid)
            # one backend waits on its insert into the pages table, inside a transaction that has
            # written rows (it has an xid): the document's blocks
            assert len(waiting) == 1 and waiting[0][1], waiting
            victim, _, statement = waiting[0]
            assert statement.lstrip().upper().startswith("INSERT INTO DEEPOCR_PAGES"), statement
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(10)
            assert proc.exitcode == -signal.SIGKILL
            # right after the kill: documents 0..stop-1 whole, nothing of document `stop`, every table
            expected = _reference(pg_url, "clean_", [(docs[:stop], "doomed")])
            assert table_digest(pg_url, skip=WHEN) == expected
            holder.rollback()  # the orphaned backend wakes, finds its client gone, and rolls back
            deadline = time.monotonic() + 30
            while (
                time.monotonic() < deadline
                and conn.execute(
                    sa.text("select count(*) from pg_stat_activity where pid = :p"), {"p": victim}
                ).scalar_one()
            ):
                time.sleep(0.02)
            assert table_digest(pg_url, skip=WHEN) == expected
    finally:
        holder.close()
        admin.dispose()
        if proc.is_alive():
            proc.kill()
    c = expected.counts
    assert (c["documents"], c["pages"], c["blocks"], c["table_cells"], c["load_ledger"]) == (
        stop,
        4 * stop,
        stop * (4 * blocks + 1),
        6 * stop,
        stop,
    )

    wh.load_documents(docs, "rerun")
    # the rerun loads the other documents and leaves the ones loaded before the kill alone
    expected = _reference(pg_url, "clean_", [(docs, "rerun")])
    assert table_digest(pg_url, skip=WHEN) == expected
    c = expected.counts
    assert (c["documents"], c["pages"], c["blocks"], c["table_cells"], c["load_ledger"]) == (
        n,
        4 * n,
        n * (4 * blocks + 1),
        6 * n,
        n,
    )
    done = table_digest(pg_url)
    wh.load_documents(docs, "rerun-again")
    assert table_digest(pg_url) == done
