"""Snowflake and BigQuery loaded for real, against emulators on loopback (see conftest.py).

The whole ``Warehouse`` on the real dialects and drivers (snowflake-sqlalchemy over
snowflake-connector-python 5.x → fakesnow's server; sqlalchemy-bigquery over google-cloud-bigquery →
bqemulator's REST API): the records of the project's DeepSeek samples loaded through the staged
MERGE, a rerun that leaves the same digest, a forced reload, a changed document, a quarantine, a
failure in the middle of the apply (nothing changes), two racing loaders, and an unreachable
emulator. What the emulators do not cover is in the README's warehouse table.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.parse import parse_page
from airflow_provider_deepocr.core.records import DocumentResult
from airflow_provider_deepocr.core.warehouse import Warehouse, block_tuples, cell_tuples, page_tuples
from tests.conftest import RAW_FIXTURES
from tests.core.warehouse.test_loader import SECRET, make_result
from tests.digest import TableDigest, table_digest

KINDS = ("snowflake", "bigquery")
WHEN = ("run_id", "loaded_at", "recorded_at", "seen_at")
MakeEngine = Callable[[str], tuple[sa.Engine, str]]


def sample_results() -> list[DocumentResult]:
    """One single-page document per DeepSeek raw sample (real model output: headings, HTML
    tables with spans, formulas, non-ASCII text), parsed by the project's parser."""
    out = []
    for path in sorted(RAW_FIXTURES.glob("*.txt")):
        base = make_result(1, 1, name=f"sample-{path.stem}", with_table=False)
        parsed = parse_page(path.read_text(encoding="utf-8"), width=1700, height=2200)
        page = dataclasses.replace(base.pages[0], parsed=parsed)
        out.append(dataclasses.replace(base, pages=[page]))
    assert len(out) >= 4 and any(p.parsed.tables for r in out for p in r.pages)
    return out


def _content(w: Warehouse, doc_ids: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    """The content rows of ``doc_ids`` as the warehouse holds them, in the builders' column order."""
    from airflow_provider_deepocr.core.warehouse import BLOCK_COLUMNS, CELL_COLUMNS, PAGE_COLUMNS

    out: dict[str, list[tuple[Any, ...]]] = {}
    with w.engine.connect() as conn:
        for name, cols in (("pages", PAGE_COLUMNS), ("blocks", BLOCK_COLUMNS), ("table_cells", CELL_COLUMNS)):
            t = w.table(name)
            q = sa.select(*(t.c[c] for c in cols)).where(t.c.doc_id.in_(doc_ids))
            out[name] = sorted(tuple(r) for r in conn.execute(q))
    return out


def _built(results: list[DocumentResult]) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "pages": sorted(t for r in results for t in page_tuples(r)),
        "blocks": sorted(t for r in results for t in block_tuples(r)),
        "table_cells": sorted(t for r in results for t in cell_tuples(r)),
    }


def _same_values(got: dict[str, list[tuple[Any, ...]]], want: dict[str, list[tuple[Any, ...]]]) -> None:
    """Rows equal, timestamps compared as instants and floats to the warehouse's precision."""
    for name in want:
        assert len(got[name]) == len(want[name]), name
        for g, e in zip(got[name], want[name], strict=True):
            for gv, ev in zip(g, e, strict=True):
                if isinstance(ev, float) and gv is not None:
                    assert abs(float(gv) - ev) < 1e-6, (name, g[:3])
                else:
                    assert gv == ev, (name, g[:3])


def _digest(w: Warehouse, skip: tuple[str, ...] = ()) -> TableDigest:
    return table_digest(w.engine, schema=w.schema, skip=skip)


def _short(d: TableDigest) -> str:
    return " ".join(f"{k}={v[:12]}" for k, v in sorted(d.hashes.items()) if d.counts[k])


def _statements(engine: sa.Engine) -> list[str]:
    seen: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda c, cur, stmt, *a: seen.append(stmt))
    return seen


@pytest.mark.parametrize("kind", KINDS)
def test_the_samples_load_and_a_rerun_leaves_the_same_digest(
    kind: str, cloud_engine: MakeEngine, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    eng, schema = cloud_engine(kind)
    w = Warehouse(eng, schema=schema)
    assert (w.dialect, w.load_method) == (kind, "merge")
    statements = _statements(eng)
    assert w.create() == [] and w.create() == []  # idempotent
    samples = sample_results()
    other = make_result(3, 4, name="doc-x", page_failure=True)
    docs = [*samples, other]
    ids = [r.doc_id for r in docs]
    vrows = {r.doc_id: [{"table_name": "blocks", "expectation": "x_between", "success": True}] for r in docs}

    counts = w.load_documents(docs, "run-1", validation_rows=vrows)
    assert counts["documents"] == len(docs) and counts["unchanged"] == 0
    assert any("MERGE INTO" in s for s in statements)
    _same_values(_content(w, ids), _built(docs))  # every value as the builders made it
    first = _digest(w)
    assert first.counts["documents"] == len(docs) and first.counts["load_ledger"] == len(docs)
    assert first.counts["failures"] == 1 and first.counts["validation_results"] == len(docs)
    assert first.counts["table_cells"] == len(_built(docs)["table_cells"]) > 0

    # rerun: every document unchanged, nothing rewritten, byte for byte
    assert w.load_documents(docs, "run-2")["unchanged"] == len(docs)
    again = _digest(w)
    assert again == first
    # with validation results: only those are rewritten (they record the latest run's verdict)
    assert w.load_documents(docs, "run-2", validation_rows=vrows)["unchanged"] == len(docs)
    assert _digest(w, ("validation_results.run_id",)) == _digest(w, ("validation_results.run_id",))
    assert _digest(w, ("run_id",)).hashes == table_digest(eng, schema=schema, skip=("run_id",)).hashes
    changed = _digest(w)
    assert [k for k in first.hashes if first.hashes[k] != changed.hashes[k]] == ["validation_results"]
    with capsys.disabled():
        print(f"\n[digest] {kind} load : {_short(first)}")
        print(f"[digest] {kind} rerun: {_short(again)} identical={again == first}")

    # forced: every row rewritten under run-3, the same values otherwise
    statements.clear()
    assert w.load_documents(docs, "run-3", force=True)["documents"] == len(docs)
    assert any("MERGE INTO" in s for s in statements)
    forced = _digest(w, WHEN)
    assert forced.hashes == table_digest(eng, schema=schema, skip=WHEN).hashes
    assert _digest(w).hashes["documents"] != first.hashes["documents"]  # run_id changed
    assert forced.counts == {**first.counts, "validation_results": 0}  # forced without results

    # doc-x changed: a page fewer, no table; its stale rows go, the samples stay as they were
    before = _content(w, [r.doc_id for r in samples])
    x2 = make_result(2, 2, name="doc-x", with_table=False, fingerprint="fp-changed")
    assert w.load_document(x2, "run-4")["unchanged"] == 0
    _same_values(_content(w, [x2.doc_id]), _built([x2]))
    assert _content(w, [r.doc_id for r in samples]) == before
    assert _digest(w).counts["failures"] == 0  # doc-x's page failure went with its old load
    assert SECRET not in caplog.text


@pytest.mark.parametrize("kind", KINDS)
def test_quarantine_takes_a_loaded_document_out(kind: str, cloud_engine: MakeEngine) -> None:
    eng, schema = cloud_engine(kind)
    w = Warehouse(eng, schema=schema)
    w.create()
    good, other = make_result(2, 3, name="doc-q"), make_result(1, 2, name="doc-b")
    w.load_documents([good, other], "run-1")
    kept = _content(w, [other.doc_id])
    vrows = [
        {"table_name": "blocks", "expectation": "expect_column_values_to_be_between(x0)", "success": False,
         "observed": {"unexpected_count": 1}},
        {"table_name": "pages", "expectation": "expect_column_values_to_not_be_null(doc_id)",
         "success": True},
    ]  # fmt: skip
    out = w.quarantine(good, errors.VALIDATION_FAILED, "1 failed expectation(s): blocks", "run-2", vrows)
    assert out == {"failures": 1, "validation_results": 2}
    assert not w.is_loaded(good.doc_id, good.config_fingerprint)
    assert _content(w, [good.doc_id]) == {"pages": [], "blocks": [], "table_cells": []}
    assert _content(w, [other.doc_id]) == kept
    with eng.connect() as conn:
        f = conn.execute(sa.select(w.failures)).mappings().all()
        vr = conn.execute(sa.select(w.validation_results)).mappings().all()
    assert [(r["doc_id"], r["reason"], r["stage"]) for r in f] == [
        (good.doc_id, "validation_failed", "validate")
    ]
    assert sorted((r["expectation"], r["success"]) for r in vr) == [
        ("expect_column_values_to_be_between(x0)", False),
        ("expect_column_values_to_not_be_null(doc_id)", True),
    ]
    once = _digest(w)
    w.quarantine(good, errors.VALIDATION_FAILED, "1 failed expectation(s): blocks", "run-2", vrows)
    assert (
        _digest(w, ("recorded_at",)).hashes == table_digest(eng, schema=schema, skip=("recorded_at",)).hashes
    )
    assert _digest(w).counts == once.counts
    w.load_document(good, "run-3")  # a good load afterwards clears the failure and the results
    c = w.counts()
    assert (c["documents"], c["failures"], c["validation_results"]) == (2, 0, 0)


FAKESNOW_MERGE_NOT_ATOMIC = pytest.mark.xfail(
    strict=True,
    reason="fakesnow 0.12 runs a MERGE as CREATE TEMPORARY TABLE + DML, and the CREATE commits the "
    "open transaction (Snowflake's DDL rule), so each MERGE commits the ones before it, with or "
    "without an explicit BEGIN TRANSACTION: a load's MERGEs are atomic on Snowflake, not on fakesnow",
)


@pytest.mark.parametrize("kind", [pytest.param("snowflake", marks=FAKESNOW_MERGE_NOT_ATOMIC), "bigquery"])
def test_a_failure_inside_the_apply_changes_nothing(
    kind: str, cloud_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The apply fails after every MERGE ran (a statement appended to the apply phase fails):
    BigQuery's one ``BEGIN TRANSACTION … COMMIT TRANSACTION`` script leaves the warehouse exactly
    as before, and the stages (permanent tables there) are dropped. On fakesnow the MERGEs before
    the failure stay committed (see the xfail): the emulator cannot show Snowflake's atomicity."""
    from airflow_provider_deepocr.core.warehouse import merge

    eng, schema = cloud_engine(kind)
    w = Warehouse(eng, schema=schema)
    w.create()
    a1, b = make_result(3, 4, name="doc-a"), make_result(1, 2, name="doc-b")
    w.load_documents([a1, b], "run-1")
    before = _digest(w)
    real = merge.apply_statements

    def failing_last(dialect: Any, statements: Any) -> list[str]:
        return real(dialect, [*statements, "SELECT * FROM deepocr_no_such_table"])

    monkeypatch.setattr(merge, "apply_statements", failing_last)
    statements = _statements(eng)
    a2 = make_result(1, 1, name="doc-a", with_table=False, fingerprint="fp-changed")
    with pytest.raises(errors.DeepOcrError) as info:
        w.load_documents([a2], "run-2")
    assert info.value.reason == errors.LOAD_ERROR and SECRET not in str(info.value)
    assert any("MERGE INTO" in s for s in statements)  # the MERGEs did run before the failure
    after = _digest(w)
    assert [k for k in before.hashes if before.hashes[k] != after.hashes[k]] == []
    assert after == before
    monkeypatch.setattr(merge, "apply_statements", real)
    with eng.connect() as conn:  # and no stage is left behind
        left = [n for n in sa.inspect(conn).get_table_names(schema=schema) if "stage" in n.lower()]
    assert left == []


@pytest.mark.parametrize("kind", KINDS)
def test_two_racing_loaders_leave_one_copy(
    kind: str, cloud_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two loaders of the same document, each stopped right after its ledger read until the other
    has read it too, so both write (neither warehouse takes a lock before the read: Snowflake
    serialises DML on a table, BigQuery aborts the later of two conflicting transactions). On both
    emulators both loads succeed. Every table ends holding exactly one load's rows (the MERGE
    matches by key: no doubled rows), each table as one of the two runs left it; the emulators do
    not serialise whole transactions, so tables may come from different runs (printed)."""
    from airflow_provider_deepocr.core.warehouse import loader
    from tests.core.warehouse.test_loader import _meet_after_ledger_read

    eng, schema = cloud_engine(kind)
    w = Warehouse(eng, schema=schema)
    w.create()
    monkeypatch.setattr(loader, "ledger_state", loader.ledger_state)  # restored after the test
    _meet_after_ledger_read(threading.Barrier(2))
    outcomes: dict[str, Any] = {}

    def go(run_id: str) -> None:
        try:
            outcomes[run_id] = w.load_document(make_result(2, 5), run_id)["unchanged"]
        except errors.DeepOcrError as exc:
            outcomes[run_id] = exc

    threads = [threading.Thread(target=go, args=(f"run-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    monkeypatch.undo()
    got = _digest(w, ("loaded_at", "seen_at"))
    # the reference: one load per run id, each in its own prefix of one more database/dataset
    ref_eng, ref_schema = cloud_engine(kind)
    refs = {}
    for run_id in sorted(outcomes):
        ref = Warehouse(ref_eng, schema=ref_schema, prefix=f"{run_id.replace('-', '')}_")
        ref.create()
        ref.load_document(make_result(2, 5), run_id)
        refs[run_id] = table_digest(ref_eng, ref.prefix, schema=ref_schema, skip=("loaded_at", "seen_at"))
    source = {t: [r for r, d in refs.items() if d.hashes[t] == h] for t, h in got.hashes.items()}
    with capsys.disabled():
        print(f"\n[race] {kind}: {outcomes}; tables from: {source}")
    assert sorted(outcomes) == ["run-0", "run-1"]
    assert all(not isinstance(v, BaseException) or v.reason == errors.LOAD_ERROR for v in outcomes.values())
    # one copy: no doubled rows (the sources too: they are upserted in the MERGE script), every
    # table exactly as one of the two loads left it
    assert got.counts == refs["run-0"].counts
    assert all(source.values()), source


@pytest.mark.parametrize("kind", KINDS)
def test_racing_loaders_of_a_loaded_document_under_new_uris_leave_one_sources_row_each(
    kind: str, cloud_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A document loaded under one URI, then seen under new ones, three times each way: two
    loaders find it unchanged and record the new URI, each stopped before its sources write until
    the other gets there (this part checks the unchanged path's rows: the old read-delete-insert
    showed no doubled row here in 2 runs, so it does not prove the race); then two racing
    loaders record another new URI for a document they skipped (the pipeline's path), started
    together: that one took no lock and read before it inserted, so on BigQuery both inserts
    landed. The sources table ends with one row per URI: the URIs are upserted by a MERGE. A
    loader may lose a conflict (``load_error``: its retry finds the row there), never both."""
    from contextlib import suppress

    from airflow_provider_deepocr.core.records import DocumentRef
    from airflow_provider_deepocr.core.warehouse import loader, sources
    from airflow_provider_deepocr.core.warehouse.sources import record_sources

    eng, schema = cloud_engine(kind)
    w = Warehouse(eng, schema=schema)
    w.create()
    first = make_result(2, 3)
    w.load_document(first, "run-0")

    def under(uri: str) -> DocumentResult:
        return dataclasses.replace(first, ref=DocumentRef(uri, first.ref.size, first.ref.version))

    failed: list[str] = []

    def race(go: Callable[[str], Any]) -> None:
        def run(run_id: str) -> None:
            try:
                go(run_id)
            except errors.DeepOcrError as exc:
                failed.append(exc.reason)
            except Exception as exc:  # an untyped error: a defect, asserted below
                failed.append(type(exc).__name__)

        threads = [threading.Thread(target=run, args=(f"run-{i}",)) for i in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)

    uris = [first.ref.uri]
    rows_of = sources.source_rows
    meet: list[Any] = []

    def meeting(results: Any, run_id: str, now: Any) -> Any:  # both loaders, right before the write
        with suppress(threading.BrokenBarrierError):
            meet[-1].wait(30)
        return rows_of(results, run_id, now)

    for module in (loader, sources):  # the MERGE path calls it in loader, the other in sources
        monkeypatch.setattr(module, "source_rows", meeting)
    for n in range(3):
        meet.append(threading.Barrier(2))
        uris.append(f"s3://bucket/in/copy-{n}.pdf")
        race(lambda run_id, uri=uris[-1]: w.load_document(under(uri), run_id))  # type: ignore[misc]
    monkeypatch.undo()
    for n in range(3):
        start = threading.Barrier(2)
        uris.append(f"s3://bucket/in/skipped-{n}.pdf")

        def skip(run_id: str, uri: str = uris[-1], start: Any = start) -> None:
            start.wait(30)
            record_sources(w, [under(uri)], run_id)

        race(skip)
    t = w.table("sources")
    with w.engine.connect() as conn:
        got = sorted(u for (u,) in conn.execute(sa.select(t.c.source_uri)))
    print(f"[sources race] {kind}: {len(got)} rows for {len(uris)} URIs, loaders failed: {failed}")
    assert got == sorted(uris)
    assert set(failed) <= {errors.LOAD_ERROR} and len(failed) < 6  # a conflict lost, never both
    assert w.counts()["documents"] == 1


# --------------------------------------------------------------------------------------------
# A warehouse that cannot be used: one typed line, exit 3 from the CLI


@pytest.mark.parametrize("kind", KINDS)
def test_an_unreachable_emulator_is_one_typed_line(kind: str, closed_port: int) -> None:
    """The real drivers against a loopback port nobody listens on: the loader's usual
    ``warehouse_unreachable`` line, password masked, within seconds (BigQuery's client alone would
    retry for 10 minutes: the check bounds it)."""
    from tests.core.warehouse.conftest import bigquery_engine, snowflake_engine

    if kind == "snowflake":
        eng = snowflake_engine(closed_port, "db", "ocr", login_timeout=3)
    else:
        eng = bigquery_engine(closed_port, "ocr")
    with pytest.raises(errors.WarehouseError) as info:
        Warehouse(eng, schema="ocr").create()
    line = str(info.value)
    assert info.value.reason == errors.WAREHOUSE_UNREACHABLE
    assert line.startswith("warehouse_unreachable: cannot connect to warehouse ") and "\n" not in line
    assert line.endswith(("(connection refused)", "(timed out)"))  # Snowflake: login_timeout first
    assert "snow" not in line.split("@")[0].split(":")[-1]  # fakesnow's password is masked
    eng.dispose()


def test_the_cli_exits_3_on_a_bad_snowflake_account_or_no_bigquery_credentials(tmp_path: Any) -> None:
    """``deepocr run`` with a Snowflake account that does not resolve, and with a BigQuery URL and no
    credentials: exit 3, one line on stderr naming the warehouse (password masked) and the cause."""
    from tests.conftest import cloud_free_env
    from tests.test_cli import _cannot_run

    env = cloud_free_env(HOME=str(tmp_path))  # no gcloud application-default credentials either
    cases = {
        "snowflake://loader:hunter2@nosuchaccount-deepocr/db/ocr": (
            "deepocr: warehouse_unreachable: cannot connect to warehouse "
            "snowflake://loader:***@nosuchaccount-deepocr/db/ocr (unknown host)"
        ),
        "bigquery://deepocr-test/ocr": (
            "deepocr: warehouse_auth_failed: cannot connect to warehouse bigquery://deepocr-test/ocr "
            "(no credentials: DefaultCredentialsError)"
        ),
    }
    for url, want in cases.items():
        argv = ["run", str(tmp_path), "--warehouse", url, "--engine", "deepseek", "--model", "/nonexistent"]
        proc = subprocess.run(
            [sys.executable, "-m", "airflow_provider_deepocr.cli", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert _cannot_run(proc) == want
        assert "hunter2" not in proc.stderr and proc.stdout == ""
