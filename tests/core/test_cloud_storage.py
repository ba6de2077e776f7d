"""gs:// and Azure Blob Storage against real emulators on loopback: gcp-storage-emulator (the GCS
JSON API) and Azurite (Microsoft's Azure Storage emulator), each started once per session."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.cloud_storage import (
    AZURE_SCHEMES,
    GCS_SCHEMES,
    AzureBlobStorage,
    GcsStorage,
    ObjectStore,
)
from airflow_provider_deepocr.core.records import DocumentRef
from airflow_provider_deepocr.core.sources import (
    _CLOUD_SCHEMES,
    WorkArea,
    check_source,
    read_document,
    storage_for,
)
from tests.conftest import cloud_free_env


@dataclass
class Store:
    """One store under test: its ``Storage``, a fresh bucket/container's base URI, its endpoint."""

    storage: ObjectStore
    base: str
    endpoint: str


def _name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["gcs", "azure"])
def store(request: pytest.FixtureRequest) -> Store:
    storage: Any
    if request.param == "gcs":
        endpoint, scheme = request.getfixturevalue("gcs_env"), "gs"
        storage = storage_for("gs://x/y")
        assert isinstance(storage, GcsStorage)
        make = storage.client.create_bucket
    else:
        endpoint, scheme = request.getfixturevalue("azure_env")["endpoint"], "az"
        storage = storage_for("az://x/y")
        assert isinstance(storage, AzureBlobStorage)
        make = storage.service.create_container
    name = _name()
    make(name)
    return Store(storage, f"{scheme}://{name}", endpoint)


def test_storage_for_picks_the_cloud_stores(gcs_env: str, azure_env: dict[str, str]) -> None:
    assert isinstance(storage_for("gs://b/k"), GcsStorage)
    assert isinstance(storage_for("gcs://b/k"), GcsStorage)
    for uri in ("az://c/k", "abfs://c/k", "abfss://c/k", "abfs://c@acct.dfs.core.windows.net/k"):
        assert isinstance(storage_for(uri), AzureBlobStorage), uri
    assert _CLOUD_SCHEMES == {*GCS_SCHEMES, *AZURE_SCHEMES}  # sources names what cloud_storage handles
    # one store per configuration: documents read one by one share a client
    assert storage_for("gs://b/one") is storage_for("gs://b/two")


def test_listing_prefix_as_folder_sorted_hidden_skipped_with_versions(store: Store) -> None:
    s, base = store.storage, store.base
    files = {
        "docs": b"a single object named like the folder",
        "docs/b.pdf": b"%PDF-b",
        "docs/a.pdf": b"%PDF-a",
        "docs/sub/c.png": b"png!",
        "docs/.DS_Store": b"junk",
        "docs/sub/.hidden.pdf": b"x",
        "docs/.git/config": b"x",
        "docs/folder/": b"",
        "docs2/other.pdf": b"not under docs/",
        "a-b.pdf": b"%PDF-ab",
    }
    for key, data in files.items():
        s.write(f"{base}/{key}", data)

    refs = list(s.list(f"{base}/docs"))
    assert [r.uri for r in refs] == [f"{base}/docs", f"{base}/docs/a.pdf", f"{base}/docs/b.pdf",
                                     f"{base}/docs/sub/c.png"]  # fmt: skip
    assert [r.size for r in refs] == [len(files["docs"]), 6, 6, 4]
    assert all(r.version for r in refs) and len({r.version for r in refs}) == 4
    assert [r.uri for r in s.list(f"{base}/docs/")] == [u.uri for u in refs[1:]]
    assert [r.uri for r in s.list(f"{base}/docs/a.pdf")] == [f"{base}/docs/a.pdf"]
    assert [r.uri for r in s.list(f"{base}/nothing-here/")] == []
    everything = [r.uri.removeprefix(base + "/") for r in s.list(base)]
    assert everything == ["a-b.pdf", "docs", "docs/a.pdf", "docs/b.pdf", "docs/sub/c.png", "docs2/other.pdf"]


def test_read_read_range_write_exists(store: Store) -> None:
    s, uri = store.storage, f"{store.base}/in/doc.bin"
    data = bytes(range(256)) * 4
    s.write(uri, data)
    assert s.read(uri) == data
    assert s.read_range(uri, 0, 10) == data[:10]
    assert s.read_range(uri, 100, 17) == data[100:117]
    assert s.read_range(uri, 1000, 500) == data[1000:]  # clipped at the end
    assert s.read_range(uri, 1024, 5) == b"" and s.read_range(uri, 5000, 5) == b""
    assert s.read_range(uri, 7, 0) == b""
    with pytest.raises(ValueError):
        s.read_range(uri, -1, 3)
    assert s.exists(uri)
    assert not s.exists(f"{store.base}/in/missing.bin")
    assert not s.exists(f"{store.base}/in/")  # a folder is not an object
    # a whole-object overwrite: the new bytes and a new version
    before = next(iter(s.list(uri))).version
    s.write(uri, b"replaced")
    assert s.read(uri) == b"replaced"
    after = next(iter(s.list(uri)))
    assert after.size == 8 and after.version != before


def test_check_and_missing_bucket_is_one_typed_line(store: Store) -> None:
    s = store.storage
    s.check(f"{store.base}/not/yet/written/")  # an empty prefix of an existing bucket is fine
    check_source(f"{store.base}/in/", storage=s)
    missing = store.base.rsplit("/", 1)[0] + "/" + _name()
    for call in (lambda: s.check(f"{missing}/in/"), lambda: list(s.list(f"{missing}/in/"))):
        with pytest.raises(errors.StorageError) as ei:
            call()
        line = str(ei.value)
        assert ei.value.reason == errors.NO_SUCH_BUCKET
        assert line.startswith(f"no_such_bucket: cannot list {missing}/in/ via {store.endpoint}")
        assert "\n" not in line


def test_a_missing_or_unreadable_document_fails_alone(store: Store) -> None:
    s = store.storage
    s.write(f"{store.base}/in/ok.pdf", b"%PDF-1.7 fine")
    doc = read_document(DocumentRef(f"{store.base}/in/ok.pdf"), s)
    assert doc.data == b"%PDF-1.7 fine"
    with pytest.raises(errors.DocumentError) as ei:
        read_document(DocumentRef(f"{store.base}/in/gone.pdf"), s)
    assert ei.value.reason == errors.SOURCE_MISSING


def test_work_area_round_trip(store: Store) -> None:
    work = WorkArea(f"{store.base}/work/", storage_for(f"{store.base}/work"))
    assert work.root_uri == f"{store.base}/work"
    work.check()
    uri = work.write_json("ocr/abc/p00001.json", {"text": "Grüße", "n": 1})
    assert uri == f"{store.base}/work/ocr/abc/p00001.json"
    assert work.read_json(uri) == {"text": "Grüße", "n": 1}
    work.write_jsonl("runs/r1/ocr.jsonl", [{"a": 1}, {"b": 2}])
    assert work.read_jsonl("runs/r1/ocr.jsonl") == [{"a": 1}, {"b": 2}]
    assert work.exists("ocr/abc/p00001.json") and not work.exists("ocr/abc/p00002.json")
    assert [r.uri for r in work.list("ocr")] == [uri]


def test_azure_account_in_the_uri_and_abfs_forms(azure_env: dict[str, str]) -> None:
    """adlfs' ``abfs://container@account.dfs.core.windows.net/key`` form lists under the same URI
    form it was given (the client from the connection string)."""
    s = storage_for("abfs://x/y")
    assert isinstance(s, AzureBlobStorage)
    name = _name()
    s.service.create_container(name)
    base = f"abfs://{name}@{azure_env['account']}.dfs.core.windows.net"
    s.write(f"{base}/in/a.pdf", b"%PDF-a")
    assert [r.uri for r in s.list(f"{base}/in/")] == [f"{base}/in/a.pdf"]
    assert [r.uri for r in s.list(f"az://{name}/in")] == [f"az://{name}/in/a.pdf"]
    assert s.read(f"abfss://{name}/in/a.pdf") == b"%PDF-a"


# --------------------------------------------------------------------------------------------
# Failures: one line naming the bucket and the endpoint, the right reason


def test_unreachable_endpoints_fail_in_a_second(closed_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{closed_port}")
    endpoint = f"http://127.0.0.1:{closed_port}/devstoreaccount1"
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint={endpoint};",
    )
    for uri, where in (("gs://inbox/in/", f"http://127.0.0.1:{closed_port}"), ("az://inbox/in/", endpoint)):
        t0 = time.monotonic()
        with pytest.raises(errors.StorageError) as ei:
            check_source(uri)
        assert time.monotonic() - t0 < 3
        assert ei.value.reason == errors.ENDPOINT_UNREACHABLE
        line = str(ei.value)
        assert line.startswith(f"endpoint_unreachable: cannot list {uri} via {where}: endpoint unreachable")


def _check_in_a_clean_process(uri: str, env: dict[str, str]) -> str:
    code = (
        "import sys\nfrom airflow_provider_deepocr.core import errors\n"
        "from airflow_provider_deepocr.core.sources import check_source\n"
        "try:\n    check_source(sys.argv[1])\nexcept errors.StorageError as exc:\n    print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, uri], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return proc.stdout.strip()


def test_no_credentials_and_bad_credentials(tmp_path: Path) -> None:
    env = cloud_free_env()
    line = _check_in_a_clean_process("gs://inbox/in/", env)
    assert line.startswith("no_credentials: cannot list gs://inbox/in/ via https://storage.googleapis.com: ")
    assert "GOOGLE_APPLICATION_CREDENTIALS" in line
    bad = tmp_path / "key.json"
    bad.write_text('{"type": "service_account", "oops": true}')
    line = _check_in_a_clean_process("gs://inbox/in/", env | {"GOOGLE_APPLICATION_CREDENTIALS": str(bad)})
    assert line.startswith("bad_credentials: cannot list gs://inbox/in/ via https://storage.googleapis.com: ")

    line = _check_in_a_clean_process("az://inbox/in/", env)
    assert line.startswith("no_credentials: cannot list az://inbox/in/ via ")
    assert "AZURE_STORAGE_CONNECTION_STRING" in line
    # the account in the URI names the endpoint, but a key is still needed
    line = _check_in_a_clean_process("abfs://inbox@acct.dfs.core.windows.net/in/", env)
    assert line.startswith(
        "no_credentials: cannot list abfs://inbox@acct.dfs.core.windows.net/in/ via "
        "https://acct.blob.core.windows.net: "
    )
    line = _check_in_a_clean_process("az://inbox/in/", env | {"AZURE_STORAGE_CONNECTION_STRING": "nonsense"})
    assert line.startswith("bad_credentials: cannot list az://inbox/in/ via ")


def test_azurite_rejects_a_wrong_key_as_access_denied(azurite: dict[str, str]) -> None:
    """Azurite answers a wrongly signed request ``403 AuthorizationFailure`` (Azure itself says
    ``AuthenticationFailed``, mapped to bad_credentials): either way one typed line, with the
    account and key from the environment (``AZURE_STORAGE_ACCOUNT`` + ``AZURE_STORAGE_KEY``)."""
    env = cloud_free_env() | {
        "AZURE_STORAGE_ACCOUNT": azurite["account"],
        "AZURE_STORAGE_KEY": "d3Jvbmcga2V5",
        "AZURE_STORAGE_BLOB_ENDPOINT": azurite["endpoint"],
    }
    line = _check_in_a_clean_process("az://inbox/in/", env)
    want = f"access_denied: cannot list az://inbox/in/ via {azurite['endpoint']}: access denied"
    assert line.startswith(want)
    # the right key through the same variables works (nothing printed: the check passed... up to
    # the container, which does not exist)
    line = _check_in_a_clean_process("az://inbox/in/", env | {"AZURE_STORAGE_KEY": azurite["key"]})
    assert line.startswith("no_such_bucket: cannot list az://inbox/in/ via ")


def test_a_throttling_server_is_throttled(
    slowdown_endpoint: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server answering every request ``503`` (what GCS and Azure say when over their request
    rate; neither emulator throttles): the check's one request is ``throttled``, one line."""
    endpoint = str(slowdown_endpoint["endpoint"])
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    conn = f"DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=a2V5;BlobEndpoint={endpoint}/acct;"
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", conn)
    for uri, where in (("gs://busy/in/", endpoint), ("az://busy/in/", f"{endpoint}/acct")):
        with pytest.raises(errors.StorageError) as ei:
            check_source(uri)
        assert ei.value.reason == errors.THROTTLED
        assert str(ei.value).startswith(f"throttled: cannot list {uri} via {where}: throttled by the server")
    # the check's one listing request each, no retries (google-cloud-storage 3.x also fetches the
    # bucket's metadata for its tracing attributes, on a background thread: not counted)
    lists = [r for r in slowdown_endpoint["requests"] if "/o?" in r or "comp=list" in r]
    assert len(lists) == 2, slowdown_endpoint["requests"]
