"""Staged MERGE (core.merge).

Snowflake, BigQuery and Redshift: their statements are compiled with the real SQLAlchemy dialects,
checked for shape and quoting, and parsed with sqlglot's grammar of each warehouse (and loaded for
real against emulators in test_cloud.py, Redshift's on PostgreSQL below). PostgreSQL 15
(``pg_url``) and DuckDB run the whole staged path for real: replace, stale rows removed, rerun
identical, other documents untouched, failures roll back.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.warehouse import (
    BLOCK_COLUMNS,
    CELL_COLUMNS,
    KEYS,
    PAGE_COLUMNS,
    block_tuples,
    build_metadata,
    cell_tuples,
    check_identifier,
    document_row,
    page_tuples,
)
from airflow_provider_deepocr.core.warehouse import merge as m
from airflow_provider_deepocr.core.warehouse.merge_sql import _estimate_bytes
from tests.core.warehouse.test_loader import SECRET, make_result

CONTENT = ("documents", "pages", "blocks", "table_cells")
DOC_COLUMNS = (
    "doc_id",
    "source_uri",
    "source_version",
    "source_size",
    "media_type",
    "page_count",
    "config_fingerprint",
    "loaded_at",
    "run_id",
)
COLUMNS = {
    "documents": DOC_COLUMNS,
    "pages": PAGE_COLUMNS,
    "blocks": BLOCK_COLUMNS,
    "table_cells": CELL_COLUMNS,
}
IDS = ["a" * 64, "b" * 64]


# --------------------------------------------------------------------------------------------
# The three warehouses without a server: compile + shape
# --------------------------------------------------------------------------------------------


def _dialect(name: str) -> sa.Dialect:
    if name == "snowflake":
        from snowflake.sqlalchemy import snowdialect

        return snowdialect.dialect()
    if name == "bigquery":
        from sqlalchemy_bigquery import BigQueryDialect

        return BigQueryDialect()
    if name == "redshift":
        from sqlalchemy_redshift.dialect import RedshiftDialect_redshift_connector

        return RedshiftDialect_redshift_connector()
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.dialect()
    raise AssertionError(name)


WAREHOUSES = ("snowflake", "bigquery", "redshift")


@pytest.fixture(params=WAREHOUSES)
def dialect(request: pytest.FixtureRequest) -> sa.Dialect:
    return _dialect(request.param)


@pytest.fixture()
def md() -> sa.MetaData:
    return build_metadata("deepocr_", "ocr")


def _q(dialect: sa.Dialect, ident: str) -> str:
    return dialect.identifier_preparer.quote(ident)


def _parse(dialect: sa.Dialect, sql: str) -> list[Any]:
    """Parse with sqlglot's grammar of that warehouse (raises on a syntax error)."""
    import sqlglot

    return sqlglot.parse(sql, read=dialect.name, error_level=sqlglot.ErrorLevel.RAISE)


def test_dialect_names() -> None:
    assert [_dialect(n).name for n in WAREHOUSES] == list(WAREHOUSES)


def test_create_table_ddl_compiles_for_every_table(dialect: sa.Dialect, md: sa.MetaData) -> None:
    assert len(md.tables) == 10
    for table in md.sorted_tables:
        ddl = str(sa.schema.CreateTable(table).compile(dialect=dialect))
        assert ddl.lstrip().startswith("CREATE TABLE ")
        assert dialect.identifier_preparer.format_table(table) in ddl
        for col in table.columns:
            assert re.search(rf"(^|\s){re.escape(_q(dialect, col.name))} ", ddl), (table.name, col.name)
        if dialect.name == "bigquery":
            assert "`ocr`.`" in ddl and '"' not in ddl
            assert "STRING" in ddl and "VARCHAR" not in ddl
        else:
            assert "`" not in ddl
        if dialect.name != "bigquery":  # BigQuery has no enforced primary keys; the dialect drops them
            assert "PRIMARY KEY" in ddl
        assert _parse(dialect, ddl)


def test_warehouse_ddl_skips_indexes_where_there_are_none(dialect: sa.Dialect, md: sa.MetaData) -> None:
    ddl = m.warehouse_ddl(dialect, md)
    assert len(ddl) == 10
    assert all(s.startswith("CREATE TABLE IF NOT EXISTS ") for s in ddl)
    assert not any("INDEX" in s for s in ddl)
    for s in ddl:
        assert _parse(dialect, s)
    pg = m.warehouse_ddl(_dialect("postgresql"), md)
    assert len(pg) == 13 and {s.split(" ON ")[0] for s in pg[-3:]} == {
        "CREATE INDEX IF NOT EXISTS deepocr_failures_doc_uri_idx",
        "CREATE INDEX IF NOT EXISTS deepocr_reviews_doc_idx",
        "CREATE INDEX IF NOT EXISTS deepocr_sources_doc_idx",
    }


def test_stage_ddl_per_dialect(dialect: sa.Dialect, md: sa.MetaData) -> None:
    blocks = _tbl(md, "blocks")
    name = m.new_stage_name(2)
    assert check_identifier(name, "stage") == name and name.startswith("_deepocr_stage_")
    st = m.stage_table(dialect, blocks, name)
    assert [c.name for c in st.columns] == [c.name for c in blocks.columns]
    ddl = m.stage_ddl(dialect, blocks, st, ttl_hours=3)
    drop = m.drop_stage_sql(dialect, st)
    if dialect.name == "snowflake":  # a session temp table in the session's current schema
        assert ddl == f"CREATE TEMPORARY TABLE {name} LIKE ocr.deepocr_blocks"
        assert drop == f"DROP TABLE IF EXISTS {name}"
    elif dialect.name == "bigquery":
        assert ddl == (
            f"CREATE TABLE `ocr`.`{name}` LIKE `ocr`.`deepocr_blocks` OPTIONS ("
            "expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 3 HOUR))"
        )
        assert drop == f"DROP TABLE IF EXISTS `ocr`.`{name}`"
    else:  # redshift: a session temp table, never schema-qualified
        assert ddl == f"CREATE TEMPORARY TABLE {name} (LIKE ocr.deepocr_blocks)"
        assert drop == f"DROP TABLE IF EXISTS {name}"
    assert _parse(dialect, ddl) and _parse(dialect, drop)
    with pytest.raises(errors.ConfigError):
        m.drop_stage_sql(dialect, blocks)  # only our own stages are ever dropped


def test_stage_insert_is_multi_row_and_bound(dialect: sa.Dialect, md: sa.MetaData) -> None:
    blocks = _tbl(md, "blocks")
    st = m.stage_table(dialect, blocks, m.new_stage_name())
    rows = [(IDS[0], 1, i, f"{SECRET} {i}") for i in range(250)]
    stmts = list(m.stage_inserts(st, ("doc_id", "page_no", "block_no", "text"), rows, max_params=400))
    assert [len(s._multi_values[0]) for s in stmts] == [100, 100, 50]
    sql = str(stmts[0].compile(dialect=dialect))
    assert sql.startswith(f"INSERT INTO {dialect.identifier_preparer.format_table(st)} (")
    assert sql.count("), (") == 99
    assert SECRET not in sql  # values are bound, never spliced
    if dialect.name == "bigquery":
        assert "(`doc_id`, `page_no`, `block_no`, `text`)" in sql
    else:
        assert "(doc_id, page_no, block_no, text)" in sql


def test_chunk_rows_budgets() -> None:
    rows = [("x" * 100,) for _ in range(50)]
    chunks = list(m.chunk_rows(rows, 1, max_bytes=2000))
    assert sum(map(len, chunks)) == 50 and max(map(len, chunks)) <= 2000 // 408 + 1
    assert all(sum(_estimate_bytes(r) for r in c) <= 2000 for c in chunks)
    assert [len(c) for c in m.chunk_rows([("y" * 10_000,)] * 3, 1, max_bytes=10)] == [1, 1, 1]
    assert [len(c) for c in m.chunk_rows([(1, 2, 3)] * 10, 3, max_params=9)] == [3, 3, 3, 1]
    assert list(m.chunk_rows([], 3)) == []


@pytest.mark.parametrize("name", CONTENT)
def test_merge_and_delete_shape(dialect: sa.Dialect, md: sa.MetaData, name: str) -> None:
    target = _tbl(md, name)
    keys, cols = KEYS[name], COLUMNS[name]
    st = m.stage_table(dialect, target, m.new_stage_name())
    sql = m.merge_sql(dialect, target, st, keys, cols, scope_ids=IDS)
    q = dialect.identifier_preparer.quote
    tgt = dialect.identifier_preparer.format_table(target)
    stg = dialect.identifier_preparer.format_table(st)
    lines = sql.split("\n")
    on = lines[1]
    update = next(ln for ln in lines if ln.startswith("WHEN MATCHED THEN UPDATE SET "))
    insert = next(ln for ln in lines if ln.startswith("WHEN NOT MATCHED THEN INSERT ("))
    ref = tgt if dialect.name == "redshift" else "tgt"
    if dialect.name == "redshift":  # Redshift: no alias on the target
        assert lines[0] == f"MERGE INTO {tgt} USING {stg} AS src"
    else:
        assert lines[0] == f"MERGE INTO {tgt} AS tgt USING {stg} AS src"
    assert on == "ON " + " AND ".join(f"{ref}.{q(k)} = src.{q(k)}" for k in keys)
    non_key = [c for c in cols if c not in keys]
    assert update == "WHEN MATCHED THEN UPDATE SET " + ", ".join(f"{q(c)} = src.{q(c)}" for c in non_key)
    for k in keys:
        assert f"{q(k)} = src" not in update  # keys are never updated
    assert insert == (
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(map(q, cols))}) "
        f"VALUES ({', '.join(f'src.{q(c)}' for c in cols)})"
    )
    by_source = [ln for ln in lines if "NOT MATCHED BY SOURCE" in ln]
    if dialect.name == "bigquery":
        assert by_source == [
            f"WHEN NOT MATCHED BY SOURCE AND tgt.`doc_id` IN ('{IDS[0]}', '{IDS[1]}') THEN DELETE"
        ]
        assert "`" in sql and '"' not in sql
    else:
        assert by_source == []
        assert "`" not in sql
        dele = m.delete_stale_sql(dialect, target, st, keys, IDS)
        bare = q(target.name)
        assert dele.startswith(
            f"DELETE FROM {tgt} WHERE {bare}.doc_id IN ('{IDS[0]}', '{IDS[1]}') AND NOT EXISTS ("
        )
        assert dele.endswith(
            f"SELECT 1 FROM {stg} AS src WHERE "
            + " AND ".join(f"src.{q(k)} = {bare}.{q(k)}" for k in keys)
            + ")"
        )
        assert _parse(dialect, dele)
    parsed = _parse(dialect, sql)
    assert [type(p).__name__ for p in parsed] == ["Merge"]


def test_bigquery_apply_is_one_transaction_script(md: sa.MetaData) -> None:
    bq = _dialect("bigquery")
    stmts = [
        m.merge_sql(
            bq,
            _tbl(md, n),
            m.stage_table(bq, _tbl(md, n), m.new_stage_name(i)),
            KEYS[n],
            COLUMNS[n],
            scope_ids=IDS,
        )
        for i, n in enumerate(CONTENT)
    ]
    (script,) = m.apply_statements(bq, stmts)
    assert script.startswith("BEGIN TRANSACTION;\nMERGE INTO `ocr`.`deepocr_documents`")
    assert script.endswith(";\nCOMMIT TRANSACTION;")
    assert [type(p).__name__ for p in _parse(bq, script)] == ["Transaction", *["Merge"] * 4, "Commit"]
    for name in ("snowflake", "redshift"):
        assert m.apply_statements(_dialect(name), ["A", "B"]) == ["A", "B"]


def test_quoting_style_per_dialect() -> None:
    t = sa.Table(
        "Mixed_Case",
        sa.MetaData(),
        sa.Column("doc_id", sa.String(64), primary_key=True),
        sa.Column("Order_No", sa.Integer, primary_key=True),
        sa.Column("select", sa.Text),
        schema="Ocr_Schema",
    )
    for name, open_, close in (("snowflake", '"', '"'), ("redshift", '"', '"'), ("bigquery", "`", "`")):
        d = _dialect(name)
        st = m.stage_table(d, t, m.new_stage_name())
        sql = m.merge_sql(d, t, st, ("doc_id", "Order_No"), ("doc_id", "Order_No", "select"), scope_ids=IDS)
        assert f"{open_}Ocr_Schema{close}.{open_}Mixed_Case{close}" in sql, name
        assert (
            f"src.{open_}Order_No{close}" in sql and f"{open_}select{close} = src.{open_}select{close}" in sql
        )
        if name != "bigquery":
            dele = m.delete_stale_sql(d, t, st, ("doc_id", "Order_No"), IDS)
            assert '"Mixed_Case"."Order_No"' in dele


def test_bad_identifiers_and_ids_rejected(dialect: sa.Dialect, md: sa.MetaData) -> None:
    blocks = _tbl(md, "blocks")
    st = m.stage_table(dialect, blocks, m.new_stage_name())
    bad_table = sa.Table("bad-name", sa.MetaData(), sa.Column("doc_id", sa.String, primary_key=True))
    bad_schema = sa.Table(
        "t", sa.MetaData(), sa.Column("doc_id", sa.String, primary_key=True), schema="x;drop"
    )
    bad_col = sa.Table("t", sa.MetaData(), sa.Column("doc_id", sa.String), sa.Column("a b", sa.Text))
    for t in (bad_table, bad_schema):
        with pytest.raises(errors.ConfigError, match="invalid"):
            m.merge_sql(dialect, t, st, ("doc_id",), ("doc_id",), scope_ids=IDS)
        with pytest.raises(errors.ConfigError, match="invalid"):
            m.stage_ddl(dialect, t, st)
    with pytest.raises(errors.ConfigError, match="invalid column"):
        m.merge_sql(dialect, bad_col, st, ("doc_id",), ("doc_id", "a b"), scope_ids=IDS)
    with pytest.raises(errors.ConfigError, match="invalid stage"):
        m.stage_table(dialect, blocks, 'x"; drop table y; --')
    with pytest.raises(errors.ConfigError, match="no column"):
        m.merge_sql(dialect, blocks, st, ("doc_id",), ("doc_id", "nope"), scope_ids=IDS)
    with pytest.raises(errors.ConfigError, match="key column"):
        m.merge_sql(dialect, blocks, st, ("doc_id", "page_no"), ("doc_id", "text"), scope_ids=IDS)
    for bad_ids in (["a'); drop table x; --"], ["a%s"], [], "abc"):
        with pytest.raises(errors.ConfigError):
            if dialect.name == "bigquery":
                m.merge_sql(dialect, blocks, st, ("doc_id",), ("doc_id",), scope_ids=bad_ids)
            else:
                m.delete_stale_sql(dialect, blocks, st, ("doc_id",), bad_ids)
    if dialect.name != "bigquery":
        with pytest.raises(errors.ConfigError, match="NOT MATCHED BY SOURCE"):
            m.merge_sql(dialect, blocks, st, ("doc_id",), ("doc_id",), scope_ids=IDS, delete_by_source=True)


def test_unsupported_dialect_rejected(md: sa.MetaData) -> None:
    from sqlalchemy.dialects import sqlite

    with pytest.raises(errors.ConfigError, match="not supported on 'sqlite'"):
        m.stage_table(sqlite.dialect(), _tbl(md, "blocks"), m.new_stage_name())


# --------------------------------------------------------------------------------------------
# Real execution: PostgreSQL 15 and DuckDB
# --------------------------------------------------------------------------------------------

LOADED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _loads(
    md: sa.MetaData, results: list[Any], *, run_id: str = "run-1", broken_doc: bool = False
) -> list[m.TableLoad]:
    docs = [
        tuple({**document_row(r), "loaded_at": LOADED_AT, "run_id": run_id}[c] for c in DOC_COLUMNS)
        for r in results
    ]
    if broken_doc:  # source_uri is NOT NULL in the target
        docs = [(d[0], None, *d[2:]) for d in docs]
    rows = {
        "documents": docs,
        "pages": [t for r in results for t in page_tuples(r)],
        "blocks": [t for r in results for t in block_tuples(r)],
        "table_cells": [t for r in results for t in cell_tuples(r)],
    }
    # documents last: a failing documents MERGE comes after the other tables were merged
    return [
        m.TableLoad(_tbl(md, n), KEYS[n], COLUMNS[n], rows[n])
        for n in ("pages", "blocks", "table_cells", "documents")
    ]


def _tbl(md: sa.MetaData, name: str) -> sa.Table:
    (t,) = [t for t in md.tables.values() if t.name == f"deepocr_{name}"]
    return t


def _snapshot(engine: sa.Engine, md: sa.MetaData) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with engine.connect() as conn:
        for n in CONTENT:
            t = _tbl(md, n)
            rows = conn.execute(sa.select(t).order_by(*(t.c[k] for k in KEYS[n]))).all()
            out[n] = [tuple(r) for r in rows]
    return out


def _by_doc(snap: dict[str, list[tuple[Any, ...]]], doc_id: str) -> dict[str, list[tuple[Any, ...]]]:
    return {n: [r for r in rows if r[0] == doc_id] for n, rows in snap.items()}


def _stage_tables(conn: sa.Connection) -> list[str]:
    """Staging tables this connection can see (its own temporary ones included)."""
    stmt = sa.text("SELECT table_name FROM information_schema.tables WHERE table_name LIKE '%deepocr_stage%'")
    return [r[0] for r in conn.execute(stmt)]


@pytest.fixture(params=["postgresql", "postgresql-schema", "duckdb", "duckdb-by-source"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    schema = "ocr" if request.param.endswith("-schema") else None
    if request.param.startswith("postgresql"):
        url = request.getfixturevalue("pg_url")
        eng = sa.create_engine(url)
        with eng.connect() as c:
            assert int(c.execute(sa.text("SHOW server_version_num")).scalar_one()) >= 150000
    else:
        eng = sa.create_engine(f"duckdb:///{tmp_path / 'w.duckdb'}")
    md = build_metadata("deepocr_", schema)
    with eng.begin() as c:
        if schema:
            c.execute(sa.schema.CreateSchema(schema))
        md.create_all(c)
    # duckdb-by-source executes BigQuery's form: stale rows deleted inside the MERGE
    opts = {"delete_by_source": True} if request.param == "duckdb-by-source" else {}
    yield eng, md, opts
    eng.dispose()


def test_staged_replace_semantics_on_real_databases(engine: Any, caplog: pytest.LogCaptureFixture) -> None:
    eng, md, opts = engine
    a1 = make_result(3, 4, name="doc-a")
    b = make_result(2, 3, name="doc-b")
    with eng.connect() as conn:
        counts = m.staged_replace_many(conn, _loads(md, [a1, b]), [a1.doc_id, b.doc_id], **opts)
    assert counts["deepocr_pages"] == 5 and counts["deepocr_table_cells"] == 12
    first = _snapshot(eng, md)
    assert len(first["documents"]) == 2 and len(first["pages"]) == 5
    assert len(first["blocks"]) == 3 * 4 + 1 + 2 * 3 + 1 and len(first["table_cells"]) == 12
    b_rows = _by_doc(first, b.doc_id)

    # doc-a again: one page fewer, fewer blocks per page, a changed engine, no table at all
    a2 = make_result(2, 2, name="doc-a", with_table=False, engine="deepseek-ocr-2-rerun")
    assert a2.doc_id == a1.doc_id
    with eng.connect() as conn:
        m.staged_replace_many(conn, _loads(md, [a2], run_id="run-2"), [a2.doc_id], **opts)
    second = _snapshot(eng, md)
    a_rows = _by_doc(second, a2.doc_id)
    assert [r[1] for r in a_rows["pages"]] == [1, 2]  # page 3 is gone
    assert [(r[1], r[2]) for r in a_rows["blocks"]] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert a_rows["table_cells"] == []  # a table that no longer exists loses all its cells
    assert {r[BLOCK_COLUMNS.index("engine")] for r in a_rows["blocks"]} == {"deepseek-ocr-2-rerun"}
    assert a_rows["documents"][0][DOC_COLUMNS.index("run_id")] == "run-2"
    # exactly the rows the builders made for the new load, nothing more
    assert sorted(r[: len(PAGE_COLUMNS)] for r in a_rows["pages"]) == sorted(page_tuples(a2))
    assert _by_doc(second, b.doc_id) == b_rows  # the other document is untouched

    # rerun: identical tables
    with eng.connect() as conn:
        m.staged_replace_many(conn, _loads(md, [a2], run_id="run-2"), [a2.doc_id], **opts)
        assert _stage_tables(conn) == []  # stages are dropped
    assert _snapshot(eng, md) == second
    assert SECRET not in caplog.text


def test_failed_apply_rolls_back_everything(engine: Any, caplog: pytest.LogCaptureFixture) -> None:
    eng, md, opts = engine
    a1 = make_result(3, 4, name="doc-a")
    with eng.connect() as conn:
        m.staged_replace_many(conn, _loads(md, [a1]), [a1.doc_id], **opts)
    before = _snapshot(eng, md)
    a2 = make_result(1, 1, name="doc-a", with_table=False)
    with eng.connect() as conn:
        with pytest.raises(errors.DeepOcrError) as ei:
            m.staged_replace_many(conn, _loads(md, [a2], broken_doc=True), [a2.doc_id], **opts)
        assert _stage_tables(conn) == []
    assert ei.value.reason == errors.LOAD_ERROR
    assert SECRET not in str(ei.value) and "s3://" not in str(ei.value)
    assert _snapshot(eng, md) == before  # pages/blocks/cells merges were rolled back with it
    assert SECRET not in caplog.text


def test_rows_are_checked_before_anything_is_written(engine: Any) -> None:
    eng, md, _ = engine
    a = make_result(1, 2, name="doc-a")
    pages = _tbl(md, "pages")
    row = page_tuples(a)[0]
    with eng.connect() as conn:
        with pytest.raises(errors.DeepOcrError, match="1 duplicate key") as ei:
            m.staged_replace(conn, pages, KEYS["pages"], [a.doc_id], [row, row], columns=PAGE_COLUMNS)
        assert SECRET not in str(ei.value)
        with pytest.raises(errors.DeepOcrError, match="belong to no document"):
            m.staged_replace(conn, pages, KEYS["pages"], ["c" * 64], [row], columns=PAGE_COLUMNS)
        # mappings work too, and a single-table replace returns its row count
        n = m.staged_replace(
            conn, pages, KEYS["pages"], [a.doc_id], [dict(zip(PAGE_COLUMNS, row, strict=True))]
        )
        assert _stage_tables(conn) == []
    assert n == 1
    with eng.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(pages)).scalar_one() == 1


def test_phases_by_hand_and_stage_visibility(engine: Any) -> None:
    """The phased API the warehouse uses: stages exist between stage() and drop(), and apply()
    runs inside the caller's transaction (rolled back here, so nothing changes)."""
    eng, md, opts = engine
    a = make_result(1, 2, name="doc-a")
    with eng.connect() as conn:
        sm = m.StagedMerge(conn, _loads(md, [a]), [a.doc_id], **opts)
        with pytest.raises(errors.ConfigError, match="before stage"):
            sm.apply()
        sm.stage()
        assert len(_stage_tables(conn)) == 4
        assert len(sm.statements()) == (4 if opts else 8)  # with BY SOURCE: no separate DELETEs
        assert sm.apply() == {
            f"deepocr_{n}": len(ld.rows)
            for n, ld in zip(("pages", "blocks", "table_cells", "documents"), sm.loads, strict=True)
        }
        pages = _tbl(md, "pages")
        assert conn.execute(sa.select(sa.func.count()).select_from(pages)).scalar_one() == 1
        conn.rollback()
        assert _stage_tables(conn) == []  # transactional DDL: the rollback took the stages too
        sm._created.clear()
    assert _snapshot(eng, md) == {n: [] for n in CONTENT}


def test_redshift_form_runs_on_postgresql(pg_url: str) -> None:
    """Redshift is PostgreSQL-derived: its statements (target without alias, columns referenced
    through the schema-qualified target, temp stage ``(LIKE target)``) run unchanged on
    PostgreSQL 15, which checks their grammar and semantics for real."""
    rs = _dialect("redshift")
    eng = sa.create_engine(pg_url)
    md = build_metadata("deepocr_", "ocr")
    a1, b = make_result(2, 3, name="doc-a"), make_result(1, 2, name="doc-b")
    a2 = make_result(1, 2, name="doc-a", engine="e2")
    pages, blocks = _tbl(md, "pages"), _tbl(md, "blocks")
    try:
        with eng.begin() as c:
            c.execute(sa.schema.CreateSchema("ocr"))
            md.create_all(c)
            c.execute(blocks.insert(), [dict(zip(BLOCK_COLUMNS, r, strict=True)) for r in block_tuples(a1)])
            c.execute(blocks.insert(), [dict(zip(BLOCK_COLUMNS, r, strict=True)) for r in block_tuples(b)])
        with eng.begin() as c:
            st = m.stage_table(rs, blocks, m.new_stage_name())
            c.exec_driver_sql(m.stage_ddl(rs, blocks, st))
            for stmt in m.stage_inserts(st, BLOCK_COLUMNS, block_tuples(a2)):
                c.execute(stmt)
            c.exec_driver_sql(m.delete_stale_sql(rs, blocks, st, KEYS["blocks"], [a2.doc_id]))
            c.exec_driver_sql(m.merge_sql(rs, blocks, st, KEYS["blocks"], BLOCK_COLUMNS))
            c.exec_driver_sql(m.drop_stage_sql(rs, st))
        with eng.connect() as c:
            got = c.execute(
                sa.select(blocks).order_by(blocks.c.doc_id, blocks.c.page_no, blocks.c.block_no)
            ).all()
            assert c.execute(sa.select(sa.func.count()).select_from(pages)).scalar_one() == 0
        assert sorted(tuple(r) for r in got if r[0] == a2.doc_id) == sorted(block_tuples(a2))
        assert sorted(tuple(r) for r in got if r[0] == b.doc_id) == sorted(block_tuples(b))
    finally:
        eng.dispose()


def test_a_redshift_warehouse_loads_for_real_on_postgresql(pg_url: str) -> None:
    """The whole Warehouse on the Redshift dialect (sqlalchemy-redshift over psycopg2: Redshift's
    DDL, its staged MERGE, its locks) against PostgreSQL 15: a load, a rerun that changes
    nothing, a forced reload that rewrites the same rows, a quarantine."""
    from airflow_provider_deepocr.core.warehouse import Warehouse
    from tests.core.warehouse.test_loader import redshift_url
    from tests.digest import table_digest

    w = Warehouse(redshift_url(pg_url), schema="ocr")
    assert (w.dialect, w.load_method) == ("redshift", "merge")
    statements: list[str] = []
    sa.event.listen(w.engine, "before_cursor_execute", lambda c, cur, stmt, *a: statements.append(stmt))
    docs = [make_result(2, 3, name=f"doc-{i}") for i in range(3)]
    when = ("run_id", "loaded_at", "recorded_at", "seen_at")
    try:
        w.create()
        assert w.load_documents(docs, "run-1")["documents"] == 3
        assert any(s.lstrip().upper().startswith("MERGE INTO") for s in statements)
        first = table_digest(pg_url, schema="ocr")
        assert first.counts["documents"] == 3 and first.counts["blocks"] == 21
        assert w.load_documents(docs, "run-2")["unchanged"] == 3
        assert table_digest(pg_url, schema="ocr") == first  # byte for byte
        w.load_documents(docs, "run-3", force=True)
        assert (
            table_digest(pg_url, schema="ocr", skip=when).hashes
            == table_digest(pg_url, schema="ocr", skip=when).hashes
        )
        assert table_digest(pg_url, schema="ocr", skip=when).counts == first.counts
        w.quarantine(docs[0], "validation_failed", "1 of 20 expectation(s) failed", "run-4")
        after = table_digest(pg_url, schema="ocr")
        assert after.counts["documents"] == 2 and after.counts["failures"] == 1
    finally:
        w.dispose()
