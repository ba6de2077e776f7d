"""Shared fixtures: real services on loopback (PostgreSQL, a moto S3 server), the tiny model."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("DEEPOCR_FIXTURES", REPO.parent / "shared" / "fixtures"))
RAW_FIXTURES = FIXTURES / "deepseek_raw"

PG_ADMIN_URL = os.environ.get("DEEPOCR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def cloud_free_env(**extra: str) -> dict[str, str]:
    """This environment without any Google or Azure setting and no way to find any (no gcloud
    configuration, no metadata-server lookup), then ``extra``: for a subprocess (the CLI)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "GOOGLE_", "GCE_", "CLOUDSDK_")) and k != "STORAGE_EMULATOR_HOST"
    }
    return env | {"CLOUDSDK_CONFIG": "/nonexistent/gcloud", "NO_GCE_CHECK": "True"} | extra


def _free_port() -> int:
    from airflow_provider_deepocr.testing.cluster import free_port

    return free_port()


@pytest.fixture(scope="session")
def raw_fixture_files() -> list[Path]:
    files = sorted(RAW_FIXTURES.glob("*.txt"))
    assert files, f"no DeepSeek raw fixtures under {RAW_FIXTURES}"
    return files


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """Admin URL of the real PostgreSQL on this machine (fails loudly if it is not up)."""
    import sqlalchemy as sa

    eng = sa.create_engine(PG_ADMIN_URL)
    try:
        with eng.connect() as c:
            c.execute(sa.text("select 1"))
    except Exception as exc:  # pragma: no cover - environment problem
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    finally:
        eng.dispose()
    return PG_ADMIN_URL


@pytest.fixture()
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    import sqlalchemy as sa

    name = f"deepocr_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = pg_server_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real moto S3 server on loopback (the in-process mock does not cover every client)."""
    from airflow_provider_deepocr.testing.latency_proxy import start_moto

    try:
        proc, url = start_moto()
    except RuntimeError:  # pragma: no cover
        pytest.fail("moto server did not start")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture()
def s3_client(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random DeepSeek-OCR-2 checkpoint, written once per test session."""
    from airflow_provider_deepocr.testing.tiny_model import write_tiny_model

    out = tmp_path_factory.mktemp("tiny-deepseek-ocr2")
    write_tiny_model(out)
    return out


@pytest.fixture(scope="session")
def s3_auth_endpoint() -> Iterator[dict[str, str]]:
    """A moto S3 server that enforces IAM: a bucket ``locked``, and the keys of an IAM user with
    no policy (``denied_key``/``denied_secret``: every S3 call is AccessDenied; any key moto does
    not know is InvalidAccessKeyId)."""
    import boto3

    from airflow_provider_deepocr.testing.latency_proxy import start_moto

    # moto lets the first N requests through unauthenticated: the three set-up calls below
    proc, url = start_moto(env_extra={"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
    try:
        kw = {"endpoint_url": url, "region_name": "us-east-1"}
        kw |= {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        boto3.client("s3", **kw).create_bucket(Bucket="locked")
        iam = boto3.client("iam", **kw)
        iam.create_user(UserName="no-policy")
        key = iam.create_access_key(UserName="no-policy")["AccessKey"]
        yield {
            "endpoint": url,
            "bucket": "locked",
            "denied_key": key["AccessKeyId"],
            "denied_secret": key["SecretAccessKey"],
        }
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture()
def slowdown_endpoint() -> Iterator[dict[str, Any]]:
    """A real HTTP server on loopback that answers every S3 request ``503 SlowDown`` (what S3
    says when a prefix is over its request rate); ``requests`` counts what it received."""
    import http.server
    import threading

    seen: list[str] = []
    body = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>" + (
        b"<Message>Please reduce your request rate.</Message></Error>"
    )

    class SlowDown(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append(f"{self.command} {self.path}")
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowDown)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"endpoint": f"http://127.0.0.1:{server.server_address[1]}", "requests": seen}
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    return _free_port()


@pytest.fixture(scope="session")
def pg_password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private PostgreSQL cluster that checks passwords (scram-sha-256), unlike the machine's
    trust-auth server: ``admin`` (postgres, a real password), ``reader`` (a role with a password and
    no privilege to create anything) and ``port``. Started once per session (about 2 s)."""
    import glob
    import shutil

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:  # pragma: no cover - environment problem
        pytest.fail("PostgreSQL's initdb is not installed (Debian package postgresql)")
    bindir = Path(bins[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="deepocr-pgpw-"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(root, "postgres")
    pwfile = root / "pw"
    pwfile.write_text("admin-secret\n")
    if as_postgres:
        shutil.chown(pwfile, "postgres")
    port = _free_port()
    data = root / "data"
    subprocess.run(
        [*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-N",
         "--auth=scram-sha-256", f"--pwfile={pwfile}"],
        check=True, capture_output=True,
    )  # fmt: skip
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    ctl = [*as_postgres, str(bindir / "pg_ctl"), "-D", str(data)]
    start = [*ctl, "-o", opts, "-l", str(root / "log"), "-w", "start"]
    subprocess.run(start, check=True, capture_output=True)
    admin = f"postgresql+psycopg://postgres:admin-secret@127.0.0.1:{port}/postgres"
    try:
        import sqlalchemy as sa

        eng = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.exec_driver_sql("CREATE ROLE reader LOGIN PASSWORD 'reader-secret'")
            c.exec_driver_sql("CREATE SCHEMA locked")  # owned by postgres: reader may not create in it
        eng.dispose()
        yield {
            "port": str(port),
            "admin": admin,
            "reader": f"postgresql+psycopg://reader:reader-secret@127.0.0.1:{port}/postgres",
        }
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_port(proc: subprocess.Popen[bytes], port: int, what: str, seconds: float = 60) -> None:
    from airflow_provider_deepocr.testing.cluster import wait_for_port

    try:
        wait_for_port(proc, port, seconds)
    except RuntimeError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"{what} {exc}")


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """A real GCS JSON-API server on loopback (``gcp-storage-emulator``, in memory); its URL is
    what ``STORAGE_EMULATOR_HOST`` takes. Started once per session (about 1 s)."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port),
         "--in-memory", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _wait_for_port(proc, port, "gcp-storage-emulator")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


AZURITE = REPO / ".node" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account (public, in Microsoft's documentation)
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@pytest.fixture(scope="session")
def azurite() -> Iterator[dict[str, str]]:
    """Azurite's blob service on loopback (in memory), installed into .node/ by ``make azurite``
    (``make test`` runs it): ``endpoint``, ``account``, ``key`` and ``connection_string``."""
    if not AZURITE.exists():  # pragma: no cover - environment problem
        pytest.fail(f"Azurite is not installed at {AZURITE}: run `make azurite` (make test does)")
    port = _free_port()
    proc = subprocess.Popen(
        [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
         "--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _wait_for_port(proc, port, "Azurite")
    endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    try:
        yield {
            "endpoint": endpoint,
            "account": AZURITE_ACCOUNT,
            "key": AZURITE_KEY,
            "connection_string": (
                f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                f"BlobEndpoint={endpoint};"
            ),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture()
def gcs_env(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """This process pointed at the GCS emulator (and at nothing else Google)."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    return gcs_emulator


@pytest.fixture()
def azure_env(azurite: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This process pointed at Azurite through ``AZURE_STORAGE_CONNECTION_STRING``."""
    for name in ("AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite["connection_string"])
    return azurite
