"""The ``runs`` table (one row per run and shard, written by each load) and the lookups the
incremental listing makes: which objects are loaded, and under which config fingerprint a DAG last
ran. Functions over a connection and tables, so the loader stays small."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import sqlalchemy as sa

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.warehouse.schema import KEYS


def record_run(engine: sa.Engine, runs: sa.Table, row: dict[str, Any]) -> None:
    """Write ``row``, replacing the row of the same run, DAG and shard (a retried load rewrites it)."""
    key = sa.and_(*(runs.c[k] == row[k] for k in KEYS["runs"]))
    with engine.begin() as conn:
        conn.execute(runs.delete().where(key))
        conn.execute(runs.insert(), [row])


def last_fingerprint(engine: sa.Engine, runs: sa.Table, dag_id: str) -> str | None:
    """The config fingerprint of ``dag_id``'s most recent run that OCR'd something."""
    stmt = (
        sa.select(runs.c.config_fingerprint)
        .where(runs.c.dag_id == dag_id, runs.c.config_fingerprint.is_not(None))
        .order_by(runs.c.ended_at.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        return conn.execute(stmt).scalar()


def loaded_sources(
    engine: sa.Engine, tables: Mapping[str, sa.Table], prefix_uri: str
) -> Iterator[tuple[str, int | None, str | None, str]]:
    """(source URI, size, version, live config fingerprint) of every URI under ``prefix_uri`` a
    loaded document was seen under (the sources table, and the documents table for loads older than
    it), ordered by URI and streamed (a million rows stay a cursor).

    A document with an open page failure the next run retries (:data:`~errors.RETRIED_PAGE_REASONS`:
    an engine error, a page timeout) is not listed: it is not unchanged until every page is in."""
    like = prefix_uri.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    led, f = tables["load_ledger"], tables["failures"]
    selects = []
    for t in (tables["sources"], tables["documents"]):
        open_page_failure = (
            sa.select(f.c.failure_id)
            .where(
                f.c.doc_id == t.c.doc_id,
                f.c.page_no.is_not(None),
                f.c.reason.in_(sorted(errors.RETRIED_PAGE_REASONS)),
            )
            .exists()
        )
        selects.append(
            sa.select(t.c.source_uri, t.c.source_size, t.c.source_version, led.c.config_fingerprint)
            .join(led, led.c.doc_id == t.c.doc_id)
            .where(t.c.source_uri.like(like, escape="\\"), ~open_page_failure)
        )
    stmt = sa.union_all(*selects).order_by(sa.literal_column("source_uri"))
    with engine.connect().execution_options(stream_results=True, yield_per=5000) as conn:
        for row in conn.execute(stmt):
            yield row[0], row[1], row[2], row[3]


def run_rows(engine: sa.Engine, runs: sa.Table, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` rows of the runs table, newest first."""
    stmt = sa.select(runs).order_by(runs.c.ended_at.desc(), runs.c.shard).limit(limit)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]
