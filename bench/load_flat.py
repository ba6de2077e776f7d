"""Does loading one more document stay flat as the warehouse grows?

Loads one 3-page document (a fresh one each time, best of ``--repeat``) into a warehouse that
holds (a) nothing, (b) ``--failures`` failure rows, (c) ``--blocks`` block rows, on SQLite and on
the PostgreSQL at 127.0.0.1:5432 (a database ``deepocr_flat_<pid>`` made and dropped here). The
load deletes the document's old rows and failure rows by key, so each figure should stay within 2x
of the empty one.

    .venv/bin/python bench/load_flat.py [--failures 100000] [--blocks 1000000]

Last line: ``worst_ratio=<float>`` (the largest ms_full / ms_empty over backends and sizes).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airflow_provider_deepocr.core.warehouse import Warehouse  # noqa: E402
from tests.core.warehouse.test_loader import make_result  # noqa: E402

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def one_more(w: Warehouse, tag: str, repeat: int) -> float:
    best = float("inf")
    for i in range(repeat):
        doc = make_result(3, 10, name=f"{tag}-{i}", with_table=True)
        t = time.perf_counter()
        w.load_documents([doc], f"run-{tag}-{i}")
        best = min(best, time.perf_counter() - t)
    return best * 1000


def fill_failures(w: Warehouse, n: int) -> None:
    now = datetime.now(UTC)
    with w.engine.begin() as conn:
        for start in range(0, n, 20_000):
            rows = [
                {
                    "failure_id": f"{i:064x}",
                    "source_uri": f"s3://bucket/in/bad-{i:07d}.pdf",
                    "doc_id": None if i % 2 else f"{i:064x}",
                    "reason": "corrupt",
                    "detail": "broken page tree",
                    "recorded_at": now,
                }
                for i in range(start, min(n, start + 20_000))
            ]
            conn.execute(w.failures.insert(), rows)
        if w.engine.dialect.name in ("postgresql", "sqlite"):
            conn.exec_driver_sql("ANALYZE")


def fill_blocks(w: Warehouse, n_blocks: int) -> None:
    per_doc = 10 * 100
    docs = [make_result(10, 100, name=f"filler-{i}", with_table=False) for i in range(n_blocks // per_doc)]
    for start in range(0, len(docs), 50):
        w.load_documents(docs[start : start + 50], "filler")


def measure(url: str, args: argparse.Namespace) -> list[float]:
    ratios = []
    w = Warehouse(url)
    w.create()
    try:
        empty = one_more(w, "empty", args.repeat)
        fill_failures(w, args.failures)
        with_f = one_more(w, "failures", args.repeat)
        fill_blocks(w, args.blocks)
        with_b = one_more(w, "blocks", args.repeat)
    finally:
        w.dispose()
    name = url.split(":", 1)[0]
    print(
        f"{name:12s} empty {empty:7.1f} ms   +{args.failures} failure rows {with_f:7.1f} ms "
        f"({with_f / empty:.2f}x)   +{args.blocks} block rows {with_b:7.1f} ms ({with_b / empty:.2f}x)"
    )
    ratios += [with_f / empty, with_b / empty]
    return ratios


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--failures", type=int, default=100_000)
    ap.add_argument("--blocks", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    ratios: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        ratios += measure(f"sqlite:///{tmp}/flat.db", args)
    name = f"deepocr_flat_{os.getpid()}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        ratios += measure(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", args)
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(f"worst_ratio={max(ratios):.2f}")


if __name__ == "__main__":
    main()
