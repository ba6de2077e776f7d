"""Snowflake and BigQuery emulators on loopback, started once per test session.

- Snowflake: fakesnow's HTTP server (DuckDB underneath), run from its own venv ``.venv-sf`` by
  ``fakesnow_server.py``; the project's snowflake-connector-python and snowflake-sqlalchemy talk
  to it over HTTP exactly as to an account (``host``/``port``/``protocol`` in ``connect_args``).
- BigQuery: bqemulator's REST server (DuckDB + SQLGlot), run from its own venv ``.venv-bq``; the
  project's google-cloud-bigquery and sqlalchemy-bigquery reach it through ``api_endpoint`` with
  anonymous credentials.

Both venvs are made by ``make emulators`` (which ``make test`` runs): fakesnow and bqemulator pin
two different sqlglot versions, and fakesnow needs connector 4.x while the project uses 5.x, so
neither shares the project's environment. Each test gets its own database (Snowflake) or dataset
(BigQuery), so tests and two test runs never see each other's tables.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import REPO, _free_port

SF_PYTHON = REPO / ".venv-sf" / "bin" / "python"
BQ_VENV = REPO / ".venv-bq"
BQ_PROJECT = "deepocr-test"


def _wait_for_port(
    proc: subprocess.Popen[bytes], port: int, log: Path, what: str, timeout: float = 90
) -> None:
    from airflow_provider_deepocr.testing.cluster import wait_for_port

    try:
        wait_for_port(proc, port, timeout)
    except RuntimeError as exc:
        pytest.fail(f"{what} {exc}: {log.read_text()[-2000:]}")


def _serve(
    cmd: list[str], port: int, what: str, tmp: Path, env: dict[str, str] | None = None
) -> Iterator[int]:
    log = tmp / f"{what}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        _wait_for_port(proc, port, log, what)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="session")
def fakesnow_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """fakesnow's server (Snowflake on DuckDB) on a free loopback port, for the whole session."""
    if not SF_PYTHON.exists():
        pytest.skip("no .venv-sf: run `make emulators` (make test does)")
    port = _free_port()
    script = Path(__file__).with_name("fakesnow_server.py")
    yield from _serve(
        [str(SF_PYTHON), str(script), str(port)], port, "fakesnow", tmp_path_factory.mktemp("fakesnow")
    )


@pytest.fixture(scope="session")
def bqemulator_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """bqemulator's REST server (BigQuery on DuckDB + SQLGlot) on a free loopback port."""
    exe = BQ_VENV / "bin" / "bqemulator"
    if not exe.exists():
        pytest.skip("no .venv-bq: run `make emulators` (make test does)")
    port, grpc = _free_port(), _free_port()
    cmd = [str(exe), "start", "--rest-port", str(port), "--grpc-port", str(grpc), "--project", BQ_PROJECT]
    cmd += ["--ephemeral", "--log-level", "warning"]
    # HOME: DuckDB finds the spatial extension `make emulators` installed there (no download)
    env = {"HOME": str(BQ_VENV / "home")}
    yield from _serve(cmd, port, "bqemulator", tmp_path_factory.mktemp("bqemulator"), env)


def snowflake_engine(port: int, database: str, schema: str = "public", **connect: Any) -> sa.Engine:
    """snowflake-sqlalchemy on the fakesnow server at ``port`` (the driver's own HTTP client)."""
    args = {
        "host": "127.0.0.1",
        "port": port,
        "protocol": "http",
        "session_parameters": {"CLIENT_OUT_OF_BAND_TELEMETRY_ENABLED": False},
        "network_timeout": 30,
        "login_timeout": 10,
        **connect,
    }
    return sa.create_engine(f"snowflake://fake:snow@fakesnow/{database}/{schema}", connect_args=args)


def bigquery_engine(port: int, dataset: str) -> sa.Engine:
    """sqlalchemy-bigquery on the bqemulator at ``port``: anonymous credentials, api_endpoint."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    client = bigquery.Client(
        project=BQ_PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": f"http://127.0.0.1:{port}"},
        # jobs.insert rather than jobs.query: bqemulator answers a failed jobs.query with HTTP 200
        # and the error in the body, which the client reads as success; a failed job's status
        # (jobs.insert, then jobs.get) raises as real BigQuery does. INTERACTIVE is the default.
        default_query_job_config=bigquery.QueryJobConfig(priority=bigquery.QueryPriority.INTERACTIVE),
    )
    return sa.create_engine(
        f"bigquery://{BQ_PROJECT}/{dataset}?user_supplied_client=true", connect_args={"client": client}
    )


def unique(name: str) -> str:
    return f"{name}_{uuid.uuid4().hex[:10]}"


@pytest.fixture()
def cloud_engine(request: pytest.FixtureRequest) -> Iterator[Callable[[str], tuple[sa.Engine, str]]]:
    """``make(kind)`` → (engine, schema) for ``snowflake`` or ``bigquery``: a fresh database or
    dataset on the session's emulator; engines disposed after the test."""
    made: list[sa.Engine] = []

    def make(kind: str) -> tuple[sa.Engine, str]:
        if kind == "snowflake":
            port = request.getfixturevalue("fakesnow_port")
            eng, schema = snowflake_engine(port, unique("db"), "ocr"), "ocr"
        elif kind == "bigquery":
            schema = unique("ocr")
            eng = bigquery_engine(request.getfixturevalue("bqemulator_port"), schema)
        else:
            raise AssertionError(kind)
        made.append(eng)
        return eng, schema

    yield make
    for eng in made:
        eng.dispose()
