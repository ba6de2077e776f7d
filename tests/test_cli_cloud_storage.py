"""`deepocr run` from gs:// and Azure sources into work areas in the same store, against the
emulators on loopback: the rows hold the documents' text, a rerun skips the unchanged objects by
their generation / ETag, and a store that cannot be used is exit 3 with one line."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_deepocr.cli import main
from airflow_provider_deepocr.core.sources import storage_for
from tests.conftest import cloud_free_env
from tests.test_cli import _cannot_run

# Born-digital one-page PDFs; --text-layer only reads their text without any model.
TEXTS = {
    "in/2026/invoice-7731.pdf": "Invoice 7731 from Harbor Supplies, total due 412.50",
    "in/2026/claim-0042.pdf": "Claim 0042 for patient reference ZX-81, approved",
    "in/letter.pdf": "Dear committee, the quarterly filing is attached",
}


def _pdf(text: str) -> bytes:
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=400, height=200)
    page.insert_text((30, 60), text, fontsize=10)
    data: bytes = doc.tobytes()
    doc.close()
    return data


def _cli(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow_provider_deepocr.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict[str, Any]:
    """The command in this process (the emulator's settings are in its environment)."""
    capsys.readouterr()
    assert main(argv) == 0
    return dict(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))


def _texts(db: Path) -> dict[str, str]:
    """source URI -> the document's text, from the loaded block rows."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "select d.source_uri, b.text from deepocr_blocks b "
            "join deepocr_documents d on d.doc_id = b.doc_id order by d.source_uri, b.page_no, b.block_no"
        ).fetchall()
    out: dict[str, str] = {}
    for uri, text in rows:
        out[uri] = (out.get(uri, "") + " " + text).strip()
    return out


def _read_in(db: Path, summary: dict[str, Any]) -> int:
    """How many documents the run read (its runs row; the summary's ``documents`` counts listed)."""
    with sqlite3.connect(db) as conn:
        row = conn.execute("select documents from deepocr_runs where run_id = ?", (summary["run_id"],))
        return int(row.fetchone()[0])


def _name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["gcs", "azure"])
def cloud(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A fresh bucket (container) holding TEXTS' documents, and the environment that reaches it."""
    name = _name()
    if request.param == "gcs":
        endpoint = request.getfixturevalue("gcs_env")
        base = f"gs://{name}"
        storage = storage_for(base)
        storage.client.create_bucket(name)  # type: ignore[attr-defined]
        env = cloud_free_env(STORAGE_EMULATOR_HOST=endpoint)
    else:
        azure = request.getfixturevalue("azure_env")
        base = f"az://{name}"
        storage = storage_for(base)
        storage.service.create_container(name)  # type: ignore[attr-defined]
        env = cloud_free_env(AZURE_STORAGE_CONNECTION_STRING=azure["connection_string"])
        endpoint = azure["endpoint"]
    for key, text in TEXTS.items():
        storage.write(f"{base}/{key}", _pdf(text))
    return {"base": base, "storage": storage, "env": env, "endpoint": endpoint}


def test_run_from_the_store_into_a_work_area_there_and_rerun_skips_unchanged(
    cloud: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, storage = cloud["base"], cloud["storage"]
    db = tmp_path / "wh.db"
    argv = ["run", f"{base}/in/", "--warehouse", f"sqlite:///{db}", "--work-dir", f"{base}/work"]
    argv += ["--engine", "rapidocr", "--text-layer", "only", "--json"]
    first = _run(capsys, argv)
    assert first["loaded_documents"] == _read_in(db, first) == len(TEXTS) and first["failed"] == {}
    texts = _texts(db)
    assert set(texts) == {f"{base}/{key}" for key in TEXTS}
    for key, text in TEXTS.items():
        assert text in texts[f"{base}/{key}"], key
    with sqlite3.connect(db) as conn:
        versions = dict(conn.execute("select source_uri, source_version from deepocr_documents").fetchall())
    listed = {r.uri: r.version for r in storage.list(f"{base}/in/")}
    assert versions == listed  # the generation / ETag the listing gave
    # the run's artifacts are in the store's work area
    assert any(r.uri.endswith(".json") for r in storage.list(f"{base}/work/ocr/"))

    again = _run(capsys, argv)  # nothing read: every object's URI, size and version match
    assert _read_in(db, again) == again["pages"] == again["loaded_documents"] == 0
    assert again["skipped_documents"] == again["listed"] == len(TEXTS)

    # the same bytes written again are a new generation / ETag: read again (the ledger finds the
    # same content, nothing is loaded twice); the other two are still skipped unread
    key = "in/letter.pdf"
    storage.write(f"{base}/{key}", storage.read(f"{base}/{key}"))
    third = _run(capsys, argv)
    assert _read_in(db, third) == third["pages"] == 1 and third["loaded_documents"] == 0
    assert third["skipped_documents"] == len(TEXTS)  # two unread, one found in the load ledger
    assert _texts(db) == texts


# An engine that cannot be built: if any check came after the engine, the error would be this one.
NO_ENGINE = ["--engine", "deepseek", "--model", "/nonexistent/deepseek-weights"]


def test_missing_bucket_or_container_exits_3(cloud: dict[str, Any], tmp_path: Path) -> None:
    base, env, endpoint = cloud["base"], cloud["env"], cloud["endpoint"]
    scheme = base.split("://")[0]
    missing = f"{scheme}://{_name()}"
    argv = ["run", f"{missing}/in/", "--warehouse", f"sqlite:///{tmp_path / 'x.db'}", *NO_ENGINE]
    line = _cannot_run(_cli(argv + ["--work-dir", str(tmp_path / "w")], env))
    assert line.startswith(f"deepocr: no_such_bucket: cannot list {missing}/in/ via {endpoint}: ")
    # a work area in a missing bucket, the source fine
    argv = ["run", f"{base}/in/", "--warehouse", f"sqlite:///{tmp_path / 'x.db'}", *NO_ENGINE]
    line = _cannot_run(_cli(argv + ["--work-dir", f"{missing}/work"], env))
    assert line.startswith(f"deepocr: no_such_bucket: cannot list {missing}/work via {endpoint}: ")


@pytest.mark.parametrize("scheme", ["gs", "az"])
def test_emulator_down_or_no_credentials_exits_3(scheme: str, closed_port: int, tmp_path: Path) -> None:
    argv = ["run", f"{scheme}://inbox/in/", "--warehouse", f"sqlite:///{tmp_path / 'x.db'}", *NO_ENGINE]
    down = f"http://127.0.0.1:{closed_port}"
    if scheme == "gs":
        env = cloud_free_env(STORAGE_EMULATOR_HOST=down)
    else:
        down += "/devstoreaccount1"
        conn = (
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint={down};"
        )
        env = cloud_free_env(AZURE_STORAGE_CONNECTION_STRING=conn)
    line = _cannot_run(_cli(argv, env))
    assert line.startswith(f"deepocr: endpoint_unreachable: cannot list {scheme}://inbox/in/ via {down}: ")
    line = _cannot_run(_cli(argv, cloud_free_env()))
    assert line.startswith(f"deepocr: no_credentials: cannot list {scheme}://inbox/in/ via ")
