"""Object storage: list and read documents, keep intermediate artifacts (the ``sources`` stage).

URIs
----
* Local: a plain path (relative or absolute) or ``file:///abs/path`` (``file://localhost/abs``
  is accepted too). Listed refs always carry ``file://`` + the absolute POSIX path, *not*
  percent-encoded (a space stays a space), mirroring how ``s3://`` URIs carry raw keys.
* S3: ``s3://bucket/key-or-prefix``.
* Google Cloud Storage: ``gs://bucket/key`` (``gcs://``); Azure Blob Storage: ``az://container/key``,
  ``abfs://…``, ``abfss://…`` (the account from the configuration, or
  ``abfs://container@account.dfs.core.windows.net/key``). Both live in :mod:`.cloud_storage`,
  with the same listing, versions (GCS generation, Azure ETag), errors and atomic writes as S3.

Listing treats a prefix like a folder: ``s3://b/docs`` lists ``docs`` itself (a single object)
and everything under ``docs/`` -- but not ``docs2/...``. A prefix ending in ``/`` lists what is
under it. Listings are recursive, sorted by URI, and skip folders, folder markers and hidden
entries (any path part below the prefix starting with ``.``, e.g. ``.DS_Store``; this also skips
the temporary files of an in-progress local write).

No Airflow import here: in Airflow the S3 client comes from the Amazon provider's
``S3Hook(aws_conn_id).get_conn()`` and is passed in as ``client`` / ``s3_client``.

Failures
--------
A store that cannot be used raises :class:`errors.StorageError`, one line naming the bucket (or
object) and the endpoint and the cause, with a reason code: ``no_credentials``,
``bad_credentials``, ``endpoint_unreachable``, ``no_such_bucket``, ``access_denied``,
``throttled`` (still throttled after the client's own retries) or ``storage_error``. Call
:func:`check_source` (and :meth:`WorkArea.check`) before any expensive set-up, such as loading a
model, so such a run fails in a second. Reading one document that fails is a
``read_error`` of that document only (:func:`read_document`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.records import Document, DocumentRef

log = logging.getLogger(__name__)

SUPPORTED_SCHEMES = ("file://", "s3://", "gs://", "gcs://", "az://", "abfs://", "abfss://")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def uri_scheme(uri: str) -> str:
    """``"s3"``, ``"file"``, ... or ``""`` for a plain path."""
    m = _SCHEME.match(uri)
    return m.group(1).lower() if m else ""


def check_range(start: int, length: int) -> None:
    """A ``read_range`` argument check every store makes: ``ValueError`` for a negative one."""
    if start < 0 or length < 0:
        raise ValueError(f"bad range: start={start}, length={length}")


def _is_hidden(relative_parts: Iterable[str]) -> bool:
    return any(part.startswith(".") for part in relative_parts if part)


def listed_key(key: str, prefix: str) -> bool:
    """Whether an object store's ``key`` listed under ``prefix`` is one of its documents: not a
    folder marker, the prefix itself or under it as a folder (``docs`` never matches
    ``docs2/...``), and nothing hidden below it."""
    if key.endswith("/"):
        return False
    if key == prefix:
        return True
    folder = prefix if (prefix == "" or prefix.endswith("/")) else prefix + "/"
    return key.startswith(folder) and not _is_hidden(key[len(folder) :].split("/"))


class Storage(ABC):
    """A place documents and artifacts live. Implementations: local files, S3."""

    @abstractmethod
    def list(self, prefix_uri: str) -> Iterator[DocumentRef]:
        """Every object at or under ``prefix_uri``: recursive, sorted by URI, hidden entries skipped."""

    @abstractmethod
    def read(self, uri: str) -> bytes:
        """The object's bytes. Raises the store's own error (``OSError``, ``ClientError``)."""

    def read_range(self, uri: str, start: int, length: int) -> bytes:
        """Bytes ``[start, start + length)`` of the object, clipped at its end (fewer, or none,
        when the object is shorter). Raises what :meth:`read` raises. This default reads the whole
        object and slices it; stores that can read a range override it."""
        check_range(start, length)
        return self.read(uri)[start : start + length]

    @abstractmethod
    def write(self, uri: str, data: bytes) -> None:
        """Write the whole object; readers never see a partial object."""

    @abstractmethod
    def exists(self, uri: str) -> bool:
        """Whether an object (not a folder) exists at ``uri``."""

    def check(self, uri: str) -> None:  # noqa: B027 - optional hook
        """Raise a typed error now if the store holding ``uri`` cannot be used (S3: the bucket
        cannot be listed with these credentials). Does not require ``uri`` itself to exist."""

    def _map_error(self, exc: BaseException, uri: str, action: str) -> errors.StorageError | None:
        """The store's error as one typed line, or None to raise it as it is (this default)."""
        return None

    @contextmanager
    def _errors(self, action: str, uri: str) -> Iterator[None]:
        """The store's errors in the block become one :class:`StorageError` line (no chained
        traceback), by :meth:`_map_error`; our own typed errors pass through."""
        try:
            yield
        except errors.DeepOcrError:
            raise
        except Exception as exc:
            mapped = self._map_error(exc, uri, action)
            if mapped is None:
                raise
            raise mapped from None


# --------------------------------------------------------------------------------------------
# Local files


class LocalStorage(Storage):
    """Plain paths and ``file://`` URIs on the local file system."""

    @staticmethod
    def path(uri: str) -> Path:
        """The absolute local path of a plain path or a ``file://`` URI."""
        scheme = uri_scheme(uri)
        if scheme == "file":
            rest = uri[len("file://") :]
            if rest.startswith("localhost/"):
                rest = rest[len("localhost") :]
            if not rest.startswith("/"):
                raise errors.ConfigError(
                    f"file URI must be absolute (file:///abs/path), got a host part in {uri!r}"
                )
            return Path(rest)
        if scheme:
            raise errors.ConfigError(f"LocalStorage cannot handle {scheme}:// URIs")
        return Path(uri).expanduser().absolute()

    @staticmethod
    def uri(path: str | Path) -> str:
        """``file://`` + the absolute POSIX path (not percent-encoded)."""
        return "file://" + Path(path).absolute().as_posix()

    def _ref(self, path: Path) -> DocumentRef:
        st = path.stat()
        return DocumentRef(uri=self.uri(path), size=st.st_size, version=f"{st.st_mtime_ns}-{st.st_size}")

    def list(self, prefix_uri: str) -> Iterator[DocumentRef]:
        root = self.path(prefix_uri)
        if root.is_file():
            yield self._ref(root)
            return
        if not root.is_dir():
            return
        found: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith("."):
                    continue
                p = Path(dirpath) / name
                if p.is_file():
                    found.append(p)
        for p in sorted(found, key=lambda q: self.uri(q)):
            try:
                yield self._ref(p)
            except FileNotFoundError:  # removed while listing
                continue

    def read(self, uri: str) -> bytes:
        return self.path(uri).read_bytes()

    def read_range(self, uri: str, start: int, length: int) -> bytes:
        check_range(start, length)
        with self.path(uri).open("rb") as fh:
            fh.seek(start)
            return fh.read(length)

    def write(self, uri: str, data: bytes) -> None:
        target = self.path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def exists(self, uri: str) -> bool:
        return self.path(uri).is_file()


# --------------------------------------------------------------------------------------------
# S3

_S3_NO_BUCKET = frozenset({"NoSuchBucket"})
_S3_BAD_CREDENTIALS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
    }
)
_S3_DENIED = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem", "Forbidden", "403"})
_S3_THROTTLED = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequests",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "503",
        "429",
    }
)


#: Connections a client made here keeps open: enough for the listing's ``count_threads`` reads
#: at once (botocore's default, 10, would queue them).
S3_POOL_CONNECTIONS = 128


def make_s3_client(endpoint_url: str | None = None, max_pool_connections: int = S3_POOL_CONNECTIONS) -> Any:
    """A boto3 S3 client (credentials and region from the usual AWS environment) keeping up to
    ``max_pool_connections`` connections; a malformed ``endpoint_url`` is a :class:`ConfigError`.
    Making a client contacts nothing."""
    import boto3
    from botocore.config import Config

    try:
        return boto3.client(
            "s3", endpoint_url=endpoint_url or None, config=Config(max_pool_connections=max_pool_connections)
        )
    except ValueError as exc:  # botocore: "Invalid endpoint: …"
        raise errors.ConfigError(f"bad S3 endpoint URL {endpoint_url!r}: {exc}") from None


def s3_error(
    exc: BaseException, uri: str, action: str, endpoint: str | None = None
) -> errors.StorageError | None:
    """``exc`` from boto3 as one :class:`StorageError` line naming ``uri``, the endpoint and the
    cause; None for an exception that is not the store's (a bug: let it surface).

    ``action`` is a verb (``list``, ``read``, ``write``, ``check``)."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        HTTPClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    where = f"cannot {action} {uri} via {endpoint or 'the default AWS S3 endpoint'}"
    if isinstance(exc, NoCredentialsError):
        cause = (
            "no AWS credentials found (environment, AWS_SHARED_CREDENTIALS_FILE, profile or instance role)"
        )
        return errors.StorageError(errors.NO_CREDENTIALS, f"{where}: {cause}", type(exc).__name__)
    if isinstance(exc, PartialCredentialsError):
        return errors.StorageError(errors.NO_CREDENTIALS, f"{where}: {exc}", type(exc).__name__)
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        name = type(exc).__name__
        return errors.StorageError(
            errors.ENDPOINT_UNREACHABLE, f"{where}: endpoint unreachable ({name})", name
        )
    if isinstance(exc, ClientError):
        response = exc.response or {}
        code = str(response.get("Error", {}).get("Code") or "")
        meta = response.get("ResponseMetadata", {})
        status = meta.get("HTTPStatusCode")
        attempts = int(meta.get("RetryAttempts") or 0) + 1
        label = f"{code or 'no code'}, HTTP {status}" if status else code or "no code"
        name = f"{type(exc).__name__} {code}".strip()
        if code in _S3_NO_BUCKET:
            reason, cause = errors.NO_SUCH_BUCKET, "the bucket does not exist"
        elif code in _S3_BAD_CREDENTIALS:
            reason, cause = errors.BAD_CREDENTIALS, "the credentials were rejected"
        elif code in _S3_DENIED or status == 403:
            reason, cause = errors.ACCESS_DENIED, "access denied"
        elif code in _S3_THROTTLED or status in (429, 503):
            reason = errors.THROTTLED
            cause = f"throttled by the server, still after {attempts} attempts"
        else:
            reason, cause = errors.STORAGE_ERROR, "the request failed"
        return errors.StorageError(reason, f"{where}: {cause} ({label})", name)
    if isinstance(exc, BotoCoreError):
        name = type(exc).__name__
        return errors.StorageError(errors.STORAGE_ERROR, f"{where}: {name}", name)
    return None


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``("bucket", "key")`` (key may be empty)."""
    if uri_scheme(uri) != "s3":
        raise errors.ConfigError(f"not an s3:// URI: {uri!r}")
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise errors.ConfigError(f"s3 URI has no bucket: {uri!r}")
    return bucket, key


class S3Storage(Storage):
    """``s3://bucket/key`` through any boto3 S3 client.

    ``client``: in Airflow, ``S3Hook(aws_conn_id).get_conn()``; otherwise one is made lazily with
    ``boto3.client("s3", endpoint_url=endpoint_url)`` (MinIO, moto, Ceph, R2... via endpoint_url).
    ``page_size`` is the ``MaxKeys`` of each ListObjectsV2 call (S3 caps it at 1000).
    """

    def __init__(self, client: Any = None, endpoint_url: str | None = None, page_size: int = 1000) -> None:
        if page_size < 1:
            raise errors.ConfigError("page_size must be >= 1")
        self._client = client
        self.endpoint_url = endpoint_url
        self.page_size = page_size

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_s3_client(self.endpoint_url)
        return self._client

    def _map_error(self, exc: BaseException, uri: str, action: str) -> errors.StorageError | None:
        endpoint = getattr(getattr(self._client, "meta", None), "endpoint_url", None) or self.endpoint_url
        return s3_error(exc, uri, action, endpoint)

    def check(self, uri: str) -> None:
        """List at most one key under ``uri``: proves the credentials, the endpoint and the bucket."""
        bucket, prefix = split_s3_uri(uri)
        with self._errors("list", uri):
            self.client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)

    def list(self, prefix_uri: str) -> Iterator[DocumentRef]:
        bucket, prefix = split_s3_uri(prefix_uri)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": self.page_size}
        pages = 0
        while True:
            with self._errors("list", prefix_uri):
                resp = self.client.list_objects_v2(**kwargs)
            pages += 1
            for obj in resp.get("Contents", []) or []:
                key: str = obj["Key"]
                if not listed_key(key, prefix):
                    continue
                etag = obj.get("ETag")
                yield DocumentRef(
                    uri=f"s3://{bucket}/{key}",
                    size=int(obj["Size"]) if obj.get("Size") is not None else None,
                    version=etag.strip('"') if etag else None,
                )
            token = resp.get("NextContinuationToken")
            if not resp.get("IsTruncated") or not token:
                break
            kwargs["ContinuationToken"] = token
        log.debug("listed s3://%s/%s in %d page(s)", bucket, prefix, pages)

    def read(self, uri: str) -> bytes:
        bucket, key = split_s3_uri(uri)
        with self._errors("read", uri):
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            try:
                return bytes(body.read())
            finally:
                body.close()

    def read_range(self, uri: str, start: int, length: int) -> bytes:
        """One ranged GetObject (``Range: bytes=start-end``); a range starting at or past the
        object's end is empty (S3 answers 416 InvalidRange: not an error here)."""
        from botocore.exceptions import ClientError

        check_range(start, length)
        if length == 0:
            return b""
        bucket, key = split_s3_uri(uri)
        with self._errors("read", uri):
            try:
                resp = self.client.get_object(
                    Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
                )
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code == "InvalidRange" or status == 416:
                    return b""
                raise
            body = resp["Body"]
            try:
                return bytes(body.read())[:length]
            finally:
                body.close()

    def write(self, uri: str, data: bytes) -> None:
        # A PUT is atomic in S3: readers see the old object or the whole new one.
        bucket, key = split_s3_uri(uri)
        with self._errors("write", uri):
            self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def exists(self, uri: str) -> bool:
        from botocore.exceptions import ClientError

        bucket, key = split_s3_uri(uri)
        if not key or key.endswith("/"):
            return False
        with self._errors("read", uri):
            try:
                self.client.head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code in ("404", "NoSuchKey", "NotFound") or status == 404:
                    return False
                raise
        return True


# --------------------------------------------------------------------------------------------
# Entry points


_CLOUD_SCHEMES = frozenset({"gs", "gcs", "az", "abfs", "abfss"})
_CLOUD_MODULE = "airflow_provider_deepocr.core.cloud_storage"


def storage_for(uri: str, s3_client: Any = None, gcs_client: Any = None, azure_client: Any = None) -> Storage:
    """The storage for ``uri``'s scheme: a plain path or ``file://`` -> local; ``s3://`` -> S3 (on
    ``s3_client``); ``gs://`` -> GCS (on ``gcs_client``, a ``google.cloud.storage.Client``);
    ``az://``/``abfs://``/``abfss://`` -> Azure Blob Storage (on ``azure_client``, a
    ``BlobServiceClient``). Without a client, each is configured from the environment."""
    scheme = uri_scheme(uri)
    if scheme in ("", "file"):
        return LocalStorage()
    if scheme == "s3":
        return S3Storage(client=s3_client)
    if scheme in _CLOUD_SCHEMES:
        # By name, as fsspec's registry does: core.cloud_storage builds on this module's Storage,
        # so this module does not import it (no import cycle in core/).
        import importlib

        cloud = importlib.import_module(_CLOUD_MODULE).cloud_storage_for
        store: Storage = cloud(uri, gcs_client=gcs_client, azure_client=azure_client)
        return store
    raise errors.ConfigError(
        f"unsupported storage scheme {scheme}:// in {uri!r}; supported: a local path, "
        + ", ".join(SUPPORTED_SCHEMES)
    )


def list_documents(
    source_uri: str,
    storage: Storage | None = None,
    s3_client: Any = None,
    max_documents: int | None = None,
) -> list[DocumentRef]:
    """The documents at ``source_uri`` (a folder/prefix or a single file), sorted by URI.

    ``max_documents`` keeps the first N of the sorted listing. A local source that does not
    exist is a ``ConfigError`` (a typo should not look like an empty batch); an S3 prefix with
    nothing under it is simply empty.
    """
    if max_documents is not None and max_documents < 0:
        raise errors.ConfigError("max_documents must be >= 0")
    storage = storage or storage_for(source_uri, s3_client=s3_client)
    if isinstance(storage, LocalStorage) and not storage.path(source_uri).exists():
        raise errors.ConfigError(f"source path does not exist: {source_uri}")
    refs = list(islice(storage.list(source_uri), max_documents))
    log.info("listed %d document(s) at %s", len(refs), source_uri)
    return refs


def check_source(source_uri: str, storage: Storage | None = None, s3_client: Any = None) -> None:
    """Fail now, with one typed line, if ``source_uri`` cannot be listed: a local path that does
    not exist (:class:`ConfigError`), an S3 bucket that cannot be listed (:class:`StorageError`).
    Cheap (at most one request); run it before loading a model."""
    storage = storage or storage_for(source_uri, s3_client=s3_client)
    if isinstance(storage, LocalStorage) and not storage.path(source_uri).exists():
        raise errors.ConfigError(f"source path does not exist: {source_uri}")
    storage.check(source_uri)


def _error_name(exc: BaseException) -> str:
    name = type(exc).__name__
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return f"{name} {code}"
    return name


def _is_not_found(exc: BaseException) -> bool:
    """A missing file, or S3's NoSuchKey / 404."""
    if isinstance(exc, FileNotFoundError):
        return True
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code in ("NoSuchKey", "404", "NotFound") or (not code and status == 404)
    return False


def read_document(ref: DocumentRef, storage: Storage | None = None) -> Document:
    """Read and hash one document. Any failure to read is ``DocumentError(READ_ERROR)``."""
    storage = storage or storage_for(ref.uri)
    try:
        data = storage.read(ref.uri)
    except errors.StorageError as exc:
        if {"NoSuchKey", "NotFound", "404"} & set(exc.code.split()):
            raise errors.DocumentError(errors.SOURCE_MISSING, "listed, but gone before it was read") from None
        raise errors.DocumentError(
            errors.READ_ERROR, f"cannot read document ({exc.code or exc.reason})"
        ) from None
    except errors.DeepOcrError:
        raise
    except Exception as exc:
        if _is_not_found(exc):
            raise errors.DocumentError(errors.SOURCE_MISSING, "listed, but gone before it was read") from None
        raise errors.DocumentError(errors.READ_ERROR, f"cannot read document ({_error_name(exc)})") from None
    return Document.from_bytes(ref, data)


# --------------------------------------------------------------------------------------------
# Work area


class WorkArea:
    """Intermediate artifacts (manifests, OCR results, parsed pages) under one root URI.

    The root is a local folder by default (a plain path or ``file://``) or ``s3://...`` in
    production. Callers build content-addressed keys (document sha256, config fingerprint) with
    :meth:`uri`, so a re-run finds finished work with :meth:`exists` and skips it. JSON is written
    compactly as UTF-8 (``ensure_ascii=False``); every write is atomic.

    Methods taking a ``uri`` accept a full URI (from :meth:`uri`) or a path relative to the root.
    """

    def __init__(self, root_uri: str, storage: Storage | None = None, s3_client: Any = None) -> None:
        self.storage = storage or storage_for(root_uri, s3_client=s3_client)
        if uri_scheme(root_uri) in ("", "file"):
            root_uri = LocalStorage.uri(LocalStorage.path(root_uri))
        self.root_uri = root_uri.rstrip("/")

    def uri(self, *parts: str) -> str:
        """``root/part1/part2...``; parts may contain ``/`` but no empty, ``.`` or ``..`` segments."""
        segments: list[str] = []
        for part in parts:
            for seg in str(part).split("/"):
                if seg in ("", ".", ".."):
                    raise errors.ConfigError(f"bad work-area path segment {seg!r} in {parts!r}")
                segments.append(seg)
        return "/".join([self.root_uri, *segments])

    def _resolve(self, uri: str) -> str:
        if uri_scheme(uri) or uri.startswith("/"):
            return uri
        return self.uri(uri)

    def check(self) -> None:
        """Fail now, with one typed line, if the work area's store cannot be used (an S3 bucket
        that cannot be listed); a local folder is created when first written."""
        self.storage.check(self.root_uri)

    def exists(self, uri: str) -> bool:
        return self.storage.exists(self._resolve(uri))

    def write_bytes(self, uri: str, data: bytes) -> str:
        target = self._resolve(uri)
        self.storage.write(target, data)
        return target

    def read_bytes(self, uri: str) -> bytes:
        return self.storage.read(self._resolve(uri))

    def write_json(self, uri: str, obj: Any) -> str:
        """Write ``obj`` as compact JSON; returns the full URI written."""
        return self.write_bytes(uri, _dumps(obj).encode("utf-8"))

    def read_json(self, uri: str) -> Any:
        return json.loads(self.read_bytes(uri).decode("utf-8"))

    def write_jsonl(self, uri: str, rows: Iterable[Any]) -> str:
        """Write one compact JSON value per line (trailing newline); returns the full URI."""
        text = "".join(_dumps(row) + "\n" for row in rows)
        return self.write_bytes(uri, text.encode("utf-8"))

    def read_jsonl(self, uri: str) -> list[Any]:
        text = self.read_bytes(uri).decode("utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def list(self, *parts: str) -> list[DocumentRef]:
        """Artifacts under ``root/parts...`` (sorted, hidden skipped)."""
        return list(self.storage.list(self.uri(*parts) if parts else self.root_uri))


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
