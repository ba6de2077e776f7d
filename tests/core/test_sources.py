"""Object storage: local files and a real moto S3 server on loopback."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.records import DocumentRef
from airflow_provider_deepocr.core.sources import (
    LocalStorage,
    S3Storage,
    WorkArea,
    check_source,
    list_documents,
    make_s3_client,
    read_document,
    storage_for,
)


def _tree(root: Path) -> None:
    for rel, data in {
        "b.pdf": b"%PDF-b",
        "a.pdf": b"%PDF-a",
        "sub/c.png": b"png",
        "sub/deeper/d.tiff": b"tiff",
        ".DS_Store": b"junk",
        "sub/.hidden.pdf": b"x",
        ".git/config": b"x",
        "a-b.pdf": b"%PDF-ab",
    }.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "empty_dir").mkdir()


# --------------------------------------------------------------------------------------------
# Local


def test_local_listing_recursive_sorted_hidden_skipped(tmp_path: Path) -> None:
    _tree(tmp_path)
    refs = list_documents(str(tmp_path))
    names = [r.uri.removeprefix(LocalStorage.uri(tmp_path) + "/") for r in refs]
    assert names == ["a-b.pdf", "a.pdf", "b.pdf", "sub/c.png", "sub/deeper/d.tiff"]
    assert [r.uri for r in refs] == sorted(r.uri for r in refs)
    first = refs[1]
    assert first.uri == f"file://{tmp_path.absolute().as_posix()}/a.pdf"
    st = (tmp_path / "a.pdf").stat()
    assert first.size == 6
    assert first.version == f"{st.st_mtime_ns}-{st.st_size}"


def test_local_listing_file_uri_single_file_and_limits(tmp_path: Path) -> None:
    _tree(tmp_path)
    assert [r.uri for r in list_documents(LocalStorage.uri(tmp_path / "sub"))] == [
        LocalStorage.uri(tmp_path / "sub/c.png"),
        LocalStorage.uri(tmp_path / "sub/deeper/d.tiff"),
    ]
    single = list_documents(str(tmp_path / "b.pdf"))
    assert [r.uri for r in single] == [LocalStorage.uri(tmp_path / "b.pdf")]
    assert len(list_documents(str(tmp_path), max_documents=2)) == 2
    assert list_documents(str(tmp_path), max_documents=0) == []
    with pytest.raises(errors.ConfigError, match="does not exist"):
        list_documents(str(tmp_path / "nope"))


def test_local_read_write_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = LocalStorage()
    uri = LocalStorage.uri(tmp_path / "x" / "y" / "obj.bin")
    assert not st.exists(uri)
    st.write(uri, b"one")
    assert st.exists(uri) and st.read(uri) == b"one"
    st.write(str(tmp_path / "x" / "y" / "obj.bin"), b"two")  # plain path, same object
    assert st.read(uri) == b"two"
    assert not st.exists(LocalStorage.uri(tmp_path / "x"))  # a folder is not an object

    # A write that fails half-way leaves the old object and no temp file behind.
    def boom(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        st.write(uri, b"three")
    assert st.read(uri) == b"two"
    assert sorted(p.name for p in (tmp_path / "x" / "y").iterdir()) == ["obj.bin"]


def test_read_document_hashes_and_read_error(tmp_path: Path) -> None:
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.7 hello")
    (ref,) = list_documents(str(tmp_path))
    doc = read_document(ref, LocalStorage())
    assert doc.data == b"%PDF-1.7 hello" and len(doc.sha256) == 64 and doc.ref == ref
    missing = DocumentRef(uri=LocalStorage.uri(tmp_path / "gone.pdf"))
    with pytest.raises(errors.DocumentError) as ei:
        read_document(missing)
    assert ei.value.reason == errors.SOURCE_MISSING  # listed, then gone
    (tmp_path / "folder.pdf").mkdir()
    with pytest.raises(errors.DocumentError) as ei:
        read_document(DocumentRef(uri=LocalStorage.uri(tmp_path / "folder.pdf")))
    assert ei.value.reason == errors.READ_ERROR and "IsADirectoryError" in ei.value.detail


def test_storage_for_schemes() -> None:
    assert isinstance(storage_for("/data/in"), LocalStorage)
    assert isinstance(storage_for("relative/dir"), LocalStorage)
    assert isinstance(storage_for("file:///data/in"), LocalStorage)
    assert isinstance(storage_for("s3://bucket/prefix"), S3Storage)
    for bad in ("https://example.com/a.pdf", "wasbs://c@a.blob.core.windows.net/x"):
        with pytest.raises(errors.ConfigError) as ei:
            storage_for(bad)
        assert "s3://" in str(ei.value) and "file://" in str(ei.value)
    with pytest.raises(errors.ConfigError):
        LocalStorage.path("file://somehost/x")


def test_workarea_local_round_trip(tmp_path: Path) -> None:
    wa = WorkArea(str(tmp_path / "work"))
    uri = wa.uri("docs", "ab" * 32, "page-0001.json")
    assert uri == LocalStorage.uri(tmp_path / "work") + f"/docs/{'ab' * 32}/page-0001.json"
    assert not wa.exists(uri)
    obj = {"text": "Grüße — 東京", "n": 3, "nested": [1, None, True]}
    assert wa.write_json(uri, obj) == uri
    assert wa.exists(uri) and wa.read_json(uri) == obj
    raw = (tmp_path / "work" / "docs" / ("ab" * 32) / "page-0001.json").read_bytes()
    assert raw == '{"text":"Grüße — 東京","n":3,"nested":[1,null,true]}'.encode()
    rows = [{"i": i, "s": "é"} for i in range(3)]
    wa.write_jsonl("manifests/batch.jsonl", rows)  # relative to the root
    assert wa.read_jsonl(wa.uri("manifests", "batch.jsonl")) == rows
    assert [r.uri for r in wa.list("manifests")] == [wa.uri("manifests/batch.jsonl")]
    with pytest.raises(errors.ConfigError):
        wa.uri("..", "escape.json")


# --------------------------------------------------------------------------------------------
# S3 (moto server)


@pytest.fixture()
def bucket(s3_client: Any) -> str:
    name = f"deepocr-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=name)
    return name


def test_s3_listing_prefix_semantics_and_versions(s3_client: Any, bucket: str) -> None:
    for key in ("in/b.pdf", "in/a.pdf", "in/sub/c.png", "in/.DS_Store", "in/sub/", "in2/x.pdf", "other.pdf"):
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"" if key.endswith("/") else key.encode())
    st = S3Storage(client=s3_client)
    refs = list_documents(f"s3://{bucket}/in", storage=st)
    assert [r.uri for r in refs] == [
        f"s3://{bucket}/in/a.pdf",
        f"s3://{bucket}/in/b.pdf",
        f"s3://{bucket}/in/sub/c.png",
    ]
    head = s3_client.head_object(Bucket=bucket, Key="in/a.pdf")
    assert refs[0].version == head["ETag"].strip('"') and '"' not in refs[0].version
    assert refs[0].size == len(b"in/a.pdf")
    # trailing slash, single object, whole bucket, via storage_for(s3_client=...)
    assert len(list_documents(f"s3://{bucket}/in/", s3_client=s3_client)) == 3
    assert [r.uri for r in list_documents(f"s3://{bucket}/in/b.pdf", s3_client=s3_client)] == [
        f"s3://{bucket}/in/b.pdf"
    ]
    assert len(list_documents(f"s3://{bucket}", s3_client=s3_client)) == 5
    assert list_documents(f"s3://{bucket}/nothing-here", s3_client=s3_client) == []


def test_s3_pagination(s3_client: Any, bucket: str) -> None:
    keys = [f"p/{i:03d}.pdf" for i in range(23)]
    for key in keys:
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")
    calls: list[dict[str, Any]] = []
    real = s3_client.list_objects_v2

    def spy(**kw: Any) -> Any:
        calls.append(kw)
        return real(**kw)

    s3_client.list_objects_v2 = spy
    refs = list(S3Storage(client=s3_client, page_size=5).list(f"s3://{bucket}/p/"))
    assert [r.uri for r in refs] == [f"s3://{bucket}/{k}" for k in keys]
    assert len(calls) == 5 and all(c["MaxKeys"] == 5 for c in calls)
    assert "ContinuationToken" in calls[-1]


def test_s3_read_write_exists_and_read_error(s3_client: Any, s3_endpoint: str, bucket: str) -> None:
    st = S3Storage(endpoint_url=s3_endpoint)  # lazily made boto3 client
    uri = f"s3://{bucket}/out/obj.bin"
    assert not st.exists(uri)
    st.write(uri, b"\x00payload")
    assert st.exists(uri) and st.read(uri) == b"\x00payload"
    assert not st.exists(f"s3://{bucket}/out/")
    (ref,) = list_documents(f"s3://{bucket}/out", storage=st)
    doc = read_document(ref, st)
    assert doc.data == b"\x00payload"
    with pytest.raises(errors.DocumentError) as ei:
        read_document(DocumentRef(uri=f"s3://{bucket}/missing.pdf"), st)
    assert ei.value.reason == errors.SOURCE_MISSING
    with pytest.raises(errors.DocumentError) as ei:
        read_document(DocumentRef(uri=f"s3://{bucket}-gone/a.pdf"), st)
    assert ei.value.reason == errors.READ_ERROR and "NoSuchBucket" in ei.value.detail


def test_workarea_s3_round_trip(s3_client: Any, bucket: str) -> None:
    wa = WorkArea(f"s3://{bucket}/work/", s3_client=s3_client)
    uri = wa.uri("ocr", "abc", "page-0002.json")
    assert uri == f"s3://{bucket}/work/ocr/abc/page-0002.json"
    assert not wa.exists(uri)
    wa.write_json(uri, {"k": "ü", "v": [1.5]})
    assert wa.exists(uri) and wa.read_json(uri) == {"k": "ü", "v": [1.5]}
    body = s3_client.get_object(Bucket=bucket, Key="work/ocr/abc/page-0002.json")["Body"].read()
    assert body == '{"k":"ü","v":[1.5]}'.encode()
    wa.write_jsonl(wa.uri("m.jsonl"), [{"a": 1}, {"b": 2}])
    assert wa.read_jsonl("m.jsonl") == [{"a": 1}, {"b": 2}]


# --------------------------------------------------------------------------------------------
# S3 failures: one typed line naming the bucket or endpoint and the cause


def test_s3_failures_are_typed_lines_naming_bucket_endpoint_and_cause(
    s3_client: Any, s3_endpoint: str, bucket: str
) -> None:
    st = S3Storage(client=s3_client)
    st.check(f"s3://{bucket}/anything/")  # an empty prefix of a bucket we may list is fine
    check_source(f"s3://{bucket}/in/", storage=st)
    for call in (
        lambda: st.check("s3://no-such-bucket/in/"),
        lambda: list_documents("s3://no-such-bucket/in/", storage=st),
        lambda: check_source("s3://no-such-bucket/in/", s3_client=s3_client),
        lambda: WorkArea("s3://no-such-bucket/work", s3_client=s3_client).check(),
        lambda: st.write("s3://no-such-bucket/work/x.json", b"{}"),
    ):
        with pytest.raises(errors.StorageError) as ei:
            call()
        assert ei.value.reason == errors.NO_SUCH_BUCKET
        assert "s3://no-such-bucket/" in str(ei.value) and s3_endpoint in str(ei.value)
        assert ei.value.__cause__ is None and ei.value.__suppress_context__  # no chained traceback
    with pytest.raises(errors.StorageError) as ei:  # a manifest that is not there
        WorkArea(f"s3://{bucket}/work", s3_client=s3_client).read_json("runs/r/ocr.jsonl")
    assert ei.value.reason == errors.STORAGE_ERROR and "(NoSuchKey, HTTP 404)" in str(ei.value)


def test_s3_unreachable_endpoint_and_bad_endpoint_url(
    closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    endpoint = f"http://127.0.0.1:{closed_port}"
    st = S3Storage(endpoint_url=endpoint)
    with pytest.raises(errors.StorageError) as ei:
        st.exists("s3://b/k")
    assert str(ei.value) == (
        f"endpoint_unreachable: cannot read s3://b/k via {endpoint}: "
        "endpoint unreachable (EndpointConnectionError)"
    )
    with pytest.raises(errors.ConfigError, match="bad S3 endpoint URL"):
        make_s3_client("not a url")


def test_s3_throttling_is_reported_after_the_clients_own_retries(
    slowdown_endpoint: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    from botocore.config import Config

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    endpoint = slowdown_endpoint["endpoint"]
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(retries={"mode": "standard", "total_max_attempts": 2}),
    )
    with pytest.raises(errors.StorageError) as ei:
        S3Storage(client=client).check("s3://busy/in/")
    assert ei.value.reason == errors.THROTTLED
    assert str(ei.value) == (
        f"throttled: cannot list s3://busy/in/ via {endpoint}: "
        "throttled by the server, still after 2 attempts (SlowDown, HTTP 503)"
    )
    assert len(slowdown_endpoint["requests"]) == 2
    # a document read that is throttled is that document's read_error, not the batch's
    with pytest.raises(errors.DocumentError) as ei2:
        read_document(DocumentRef(uri="s3://busy/in/a.pdf"), S3Storage(client=client))
    assert (
        ei2.value.reason == errors.READ_ERROR
        and ei2.value.detail == "cannot read document (ClientError SlowDown)"
    )


def test_check_source_local(tmp_path: Path) -> None:
    check_source(str(tmp_path))
    check_source(LocalStorage.uri(tmp_path))
    with pytest.raises(errors.ConfigError, match="source path does not exist"):
        check_source(str(tmp_path / "nope"))
    WorkArea(str(tmp_path / "not-yet")).check()  # a local work area is made when first written


# --------------------------------------------------------------------------------------------
# Ranged reads


class _WholeOnly(LocalStorage):
    """A store without its own ranged read: the ABC's default (read whole, slice) applies."""

    read_range = LocalStorage.__mro__[1].read_range  # type: ignore[attr-defined]


@pytest.mark.parametrize("store", [LocalStorage(), _WholeOnly()], ids=["seek", "default"])
def test_local_read_range_is_clipped_at_the_end(tmp_path: Path, store: LocalStorage) -> None:
    path = tmp_path / "ten.bin"
    path.write_bytes(b"0123456789")
    uri = LocalStorage.uri(path)
    assert store.read_range(uri, 2, 3) == b"234"
    assert store.read_range(uri, 8, 100) == b"89"  # clipped at the end
    assert store.read_range(uri, 10, 5) == b"" and store.read_range(uri, 50, 5) == b""
    assert store.read_range(uri, 0, 0) == b""
    with pytest.raises(ValueError, match="bad range"):
        store.read_range(uri, -1, 3)
    with pytest.raises(FileNotFoundError):
        store.read_range(LocalStorage.uri(tmp_path / "gone.bin"), 0, 3)


def test_s3_read_range_is_one_ranged_get(s3_client: Any, s3_endpoint: str, bucket: str) -> None:
    s3_client.put_object(Bucket=bucket, Key="r/ten.bin", Body=b"0123456789")
    ranges: list[str] = []
    real = s3_client.get_object

    def spy(**kwargs: Any) -> Any:
        ranges.append(kwargs.get("Range", "whole"))
        return real(**kwargs)

    s3_client.get_object = spy
    st = S3Storage(client=s3_client)
    uri = f"s3://{bucket}/r/ten.bin"
    assert st.read_range(uri, 2, 3) == b"234"
    assert st.read_range(uri, 8, 100) == b"89"
    assert st.read_range(uri, 10, 5) == b""  # S3's 416 InvalidRange: empty, not an error
    assert ranges == ["bytes=2-4", "bytes=8-107", "bytes=10-14"]
    with pytest.raises(errors.StorageError) as ei:
        st.read_range(f"s3://{bucket}-gone/a.pdf", 0, 10)
    assert ei.value.reason == errors.NO_SUCH_BUCKET and s3_endpoint in str(ei.value)
    with pytest.raises(errors.StorageError, match="NoSuchKey"):
        st.read_range(f"s3://{bucket}/r/missing.bin", 0, 10)


def test_made_s3_clients_keep_128_connections() -> None:
    assert make_s3_client("http://127.0.0.1:9").meta.config.max_pool_connections == 128
