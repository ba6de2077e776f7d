"""The reviews table (core.review): an audit trail of review decisions, appended to, never updated."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def append_review(conn: sa.Connection, reviews: sa.Table, row: dict[str, Any]) -> None:
    """Insert one review row (there is no update or delete of these rows anywhere)."""
    conn.execute(reviews.insert(), [row])


def review_rows(engine: sa.Engine, reviews: sa.Table, doc_id: str | None = None) -> list[dict[str, Any]]:
    """Review rows, oldest first (of one document when ``doc_id`` is given)."""
    stmt = sa.select(reviews).order_by(reviews.c.reviewed_at, reviews.c.review_id)
    if doc_id is not None:
        stmt = stmt.where(reviews.c.doc_id == doc_id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]
