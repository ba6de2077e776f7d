"""Google Cloud Storage (``gs://``) and Azure Blob Storage (``az://``, ``abfs://``, ``abfss://``):
the same :class:`~airflow_provider_deepocr.core.sources.Storage` behaviour as S3.

URIs (the forms Airflow's ``ObjectStoragePath`` and fsspec's gcsfs/adlfs use)
-----------------------------------------------------------------------------
* GCS: ``gs://bucket/key`` (``gcs://`` is accepted too).
* Azure: ``az://container/key``, ``abfs://container/key`` or ``abfss://container/key``, the storage
  account from the configuration; or with the account in the URI, as adlfs writes it:
  ``abfs://container@account.dfs.core.windows.net/key``. Listed refs carry the scheme and
  authority of the prefix they were listed under.

Both go through the vendors' own SDKs (``google-cloud-storage``, ``azure-storage-blob``; extras
``[gcs]`` and ``[azure]``), not fsspec: each answer's error code maps to one reason, the version
(GCS generation, Azure ETag) comes with the listing, ranged reads are one request, and there is no
directory cache to go stale between a write and the next listing.

Listing, hidden entries, folder markers and the prefix-as-folder rule are exactly S3's
(:func:`~airflow_provider_deepocr.core.sources.storage_for` documents them). A write is one upload
(GCS: a single or resumable upload; Azure: one Put Blob, or blocks committed at the end): readers
see the old object or the whole new one.

Configuration
-------------
* GCS: a ``google.cloud.storage.Client`` (in Airflow, ``GCSHook(gcp_conn_id).get_conn()``), or one
  made from the environment: Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``,
  ``gcloud auth application-default login``, the metadata server), ``GOOGLE_CLOUD_PROJECT``;
  ``STORAGE_EMULATOR_HOST`` points it at an emulator (anonymous credentials).
* Azure: a ``BlobServiceClient`` (in Airflow, ``WasbHook(wasb_conn_id).get_conn()``), or one made
  from the environment: ``AZURE_STORAGE_CONNECTION_STRING``; or ``AZURE_STORAGE_ACCOUNT`` (or the
  account in the URI) with ``AZURE_STORAGE_KEY`` or ``AZURE_STORAGE_SAS_TOKEN``, at
  ``AZURE_STORAGE_BLOB_ENDPOINT`` (default ``https://<account>.blob.core.windows.net``).

Failures are :class:`~airflow_provider_deepocr.core.errors.StorageError` lines with S3's reasons
(``no_credentials``, ``bad_credentials``, ``endpoint_unreachable``, ``no_such_bucket``,
``access_denied``, ``throttled``, ``storage_error``), naming the bucket or container and the endpoint.
"""

from __future__ import annotations

import functools
import logging
import os
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.records import DocumentRef
from airflow_provider_deepocr.core.sources import Storage, check_range, listed_key, uri_scheme

log = logging.getLogger(__name__)

GCS_SCHEMES = ("gs", "gcs")
AZURE_SCHEMES = ("az", "abfs", "abfss")
GCS_DEFAULT_ENDPOINT = "https://storage.googleapis.com"


def _unreachable(where: str, name: str) -> errors.StorageError:
    return errors.StorageError(errors.ENDPOINT_UNREACHABLE, f"{where}: endpoint unreachable ({name})", name)


class ObjectStore(Storage):
    """What GCS and Azure share with S3: ``scheme://bucket/key`` URIs, the listing's filtering, and
    one :class:`StorageError` line for any error of the store."""

    schemes: tuple[str, ...] = ()
    kind = "object"  # "bucket" / "container" in messages

    def split(self, uri: str) -> tuple[str, str, str]:
        """``scheme://bucket/key`` -> (``scheme://authority``, bucket, key); key may be empty."""
        scheme = uri_scheme(uri)
        if scheme not in self.schemes:
            raise errors.ConfigError(f"{type(self).__name__} cannot handle {uri!r}")
        authority, _, key = uri[len(scheme) + 3 :].partition("/")
        bucket = authority.partition("@")[0]
        if not bucket:
            raise errors.ConfigError(f"{scheme} URI has no {self.kind}: {uri!r}")
        return f"{scheme}://{authority}", bucket, key

    # -- per store ------------------------------------------------------------------------------
    @property
    @abstractmethod
    def endpoint(self) -> str:
        """The endpoint requests go to (for messages)."""

    @abstractmethod
    def _map_error(self, exc: BaseException, uri: str, action: str) -> errors.StorageError | None:
        """``exc`` as one StorageError line, or None when it is not the store's (a bug)."""

    @abstractmethod
    def _objects(self, bucket: str, prefix: str) -> Iterator[tuple[str, int | None, str | None]]:
        """(key, size, version) of every object whose key starts with ``prefix``, in key order."""

    # -- shared ---------------------------------------------------------------------------------
    def _where(self, action: str, uri: str) -> str:
        try:
            endpoint = self.endpoint
        except Exception:  # the endpoint itself could not be worked out (no configuration)
            endpoint = "an unknown endpoint"
        return f"cannot {action} {uri} via {endpoint}"

    def list(self, prefix_uri: str) -> Iterator[DocumentRef]:
        base, bucket, prefix = self.split(prefix_uri)
        with self._errors("list", prefix_uri):
            for key, size, version in self._objects(bucket, prefix):
                if listed_key(key, prefix):
                    yield DocumentRef(uri=f"{base}/{key}", size=size, version=version)


# --------------------------------------------------------------------------------------------
# Google Cloud Storage


class GcsStorage(ObjectStore):
    """``gs://bucket/key`` through ``google-cloud-storage``.

    :param client: a ``google.cloud.storage.Client`` (in Airflow, ``GCSHook(gcp_conn_id).get_conn()``);
        None: made on first use from the environment (see the module's docstring).
    :param retry_timeout_s: how long reads, writes and listings retry throttling (429/503) and
        dropped connections, the SDK's own retry with this deadline.
    :param check_timeout_s: :meth:`check` makes one request, no retries, with this timeout.
    """

    schemes = GCS_SCHEMES
    kind = "bucket"

    def __init__(self, client: Any = None, retry_timeout_s: float = 60.0, check_timeout_s: float = 5.0):
        self._client = client
        self.retry_timeout_s = retry_timeout_s
        self.check_timeout_s = check_timeout_s

    @property
    def client(self) -> Any:
        if self._client is None:
            from google.cloud import storage

            emulator = os.environ.get("STORAGE_EMULATOR_HOST")
            if emulator:  # what the SDK does by itself, said here so no ADC lookup can run
                from google.auth.credentials import AnonymousCredentials

                project = os.environ.get("GOOGLE_CLOUD_PROJECT") or "emulator"
                self._client = storage.Client(project=project, credentials=AnonymousCredentials())
            else:
                self._client = storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT") or None)
        return self._client

    @property
    def endpoint(self) -> str:
        if self._client is None:
            return os.environ.get("STORAGE_EMULATOR_HOST") or GCS_DEFAULT_ENDPOINT
        connection = getattr(self._client, "_connection", None)
        return str(getattr(connection, "API_BASE_URL", None) or GCS_DEFAULT_ENDPOINT)

    @property
    def _retry(self) -> Any:
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(self.retry_timeout_s)

    def _map_error(self, exc: BaseException, uri: str, action: str) -> errors.StorageError | None:
        return gcs_error(exc, self._where(action, uri), action)

    def _objects(self, bucket: str, prefix: str) -> Iterator[tuple[str, int | None, str | None]]:
        for blob in self.client.list_blobs(bucket, prefix=prefix or None, retry=self._retry):
            generation = blob.generation
            yield blob.name, blob.size, str(generation) if generation is not None else None

    def check(self, uri: str) -> None:
        """One listing request for at most one object under ``uri`` (no retries): proves the
        credentials, the endpoint and the bucket in about a second."""
        _, bucket, prefix = self.split(uri)
        with self._errors("list", uri):
            blobs = self.client.list_blobs(
                bucket, prefix=prefix or None, max_results=1, retry=None, timeout=self.check_timeout_s
            )
            next(iter(blobs.pages), None)

    def _blob(self, uri: str) -> Any:
        _, bucket, key = self.split(uri)
        return self.client.bucket(bucket).blob(key)

    def read(self, uri: str) -> bytes:
        with self._errors("read", uri):
            return bytes(self._blob(uri).download_as_bytes(retry=self._retry))

    def read_range(self, uri: str, start: int, length: int) -> bytes:
        """Bytes ``[start, start + length)`` of the object, clipped at its end (one ranged GET)."""
        check_range(start, length)
        if length == 0:
            return b""
        from google.api_core.exceptions import RequestRangeNotSatisfiable

        with self._errors("read", uri):
            try:
                data = self._blob(uri).download_as_bytes(
                    start=start, end=start + length - 1, retry=self._retry
                )
            except RequestRangeNotSatisfiable:  # start at or past the end
                return b""
        return bytes(data[:length])

    def write(self, uri: str, data: bytes) -> None:
        # One upload; the object appears whole when it completes. Overwriting is idempotent here
        # (the work area's keys are content-addressed), so the write is retried like a read.
        with self._errors("write", uri):
            self._blob(uri).upload_from_string(
                data, content_type="application/octet-stream", retry=self._retry
            )

    def exists(self, uri: str) -> bool:
        _, _, key = self.split(uri)
        if not key or key.endswith("/"):
            return False
        with self._errors("read", uri):
            return bool(self._blob(uri).exists(retry=self._retry))


def gcs_error(exc: BaseException, where: str, action: str) -> errors.StorageError | None:
    """``exc`` from google-cloud-storage / google-auth as one line ``where: cause``."""
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    name = type(exc).__name__
    if isinstance(exc, gexc.RetryError) and exc.cause is not None:
        inner = gcs_error(exc.cause, where, action)
        if inner is not None:
            return errors.StorageError(inner.reason, f"{inner.detail}, still after retries", inner.code)
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):
            cause = "the credentials file in GOOGLE_APPLICATION_CREDENTIALS cannot be used"
            return errors.StorageError(errors.BAD_CREDENTIALS, f"{where}: {cause}", name)
        cause = (
            "no Google credentials found (GOOGLE_APPLICATION_CREDENTIALS, gcloud application-default "
            "login or the metadata server; STORAGE_EMULATOR_HOST for an emulator)"
        )
        return errors.StorageError(errors.NO_CREDENTIALS, f"{where}: {cause}", name)
    if isinstance(exc, auth_exc.RefreshError):
        return errors.StorageError(errors.BAD_CREDENTIALS, f"{where}: the credentials were rejected", name)
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, auth_exc.TransportError)):
        return _unreachable(where, name)
    if isinstance(exc, gexc.GoogleAPICallError):
        status = int(exc.code) if exc.code is not None else None
        code = f"{name} {status}" if status else name
        if status == 404 and action == "list":
            reason, cause = errors.NO_SUCH_BUCKET, "the bucket does not exist"
        elif status == 404:
            reason, cause = errors.STORAGE_ERROR, "no such object (or bucket)"
        elif status == 401:
            reason, cause = errors.BAD_CREDENTIALS, "the credentials were rejected"
        elif status == 403:
            reason, cause = errors.ACCESS_DENIED, "access denied"
        elif status in (429, 503):
            reason, cause = errors.THROTTLED, "throttled by the server"
        else:
            reason, cause = errors.STORAGE_ERROR, "the request failed"
        return errors.StorageError(reason, f"{where}: {cause} ({code})", code)
    return None


# --------------------------------------------------------------------------------------------
# Azure Blob Storage

# Azure's error codes (x-ms-error-code) by reason
_AZ_NO_CONTAINER = frozenset({"ContainerNotFound", "ContainerBeingDeleted"})
_AZ_BAD_CREDENTIALS = frozenset({"AuthenticationFailed", "InvalidAuthenticationInfo"})
_AZ_NO_CREDENTIALS = frozenset({"NoAuthenticationInformation"})
_AZ_THROTTLED = frozenset({"ServerBusy", "OperationTimedOut", "TooManyRequests"})


class AzureBlobStorage(ObjectStore):
    """``az://container/key`` (``abfs://``, ``abfss://``) through ``azure-storage-blob``.

    :param service_client: a ``BlobServiceClient`` (in Airflow, ``WasbHook(wasb_conn_id).get_conn()``);
        None: made on first use from the environment or the account in the URI.
    :param account: the storage account when the environment names none (else the URI's).
    :param check_timeout_s: :meth:`check` makes one request, no retries, with this connect timeout.
    """

    schemes = AZURE_SCHEMES
    kind = "container"

    def __init__(
        self, service_client: Any = None, account: str | None = None, check_timeout_s: float = 5.0
    ) -> None:
        self._service = service_client
        self._account_hint = account
        self.check_timeout_s = check_timeout_s

    def split(self, uri: str) -> tuple[str, str, str]:
        base, container, key = super().split(uri)
        authority = base.partition("://")[2]
        if "@" in authority and self._account_hint is None:
            self._account_hint = azure_account_of(authority)
        return base, container, key

    @property
    def service(self) -> Any:
        if self._service is None:
            self._service = azure_client_from_env(self._account_hint)
        return self._service

    @property
    def endpoint(self) -> str:
        if self._service is None:
            return _azure_endpoint_from_env(self._account_hint)
        return str(self._service.url).rstrip("/")

    def _map_error(self, exc: BaseException, uri: str, action: str) -> errors.StorageError | None:
        return azure_error(exc, self._where(action, uri), action)

    def _container(self, name: str) -> Any:
        return self.service.get_container_client(name)

    def _objects(self, bucket: str, prefix: str) -> Iterator[tuple[str, int | None, str | None]]:
        blobs = self._container(bucket).list_blobs(name_starts_with=prefix or None, include=["metadata"])
        for blob in blobs:
            if (blob.metadata or {}).get("hdi_isfolder") == "true":
                continue  # a directory of a hierarchical-namespace (ADLS Gen2) account
            etag = blob.etag
            yield blob.name, blob.size, etag.strip('"') if etag else None

    def check(self, uri: str) -> None:
        """One listing request for at most one blob under ``uri`` (no retries)."""
        _, container, prefix = self.split(uri)
        with self._errors("list", uri):
            pages = (
                self._container(container)
                .list_blobs(
                    name_starts_with=prefix or None,
                    results_per_page=1,
                    retry_total=0,
                    connection_timeout=self.check_timeout_s,
                )
                .by_page()
            )
            list(next(pages, []))

    def read(self, uri: str) -> bytes:
        _, container, key = self.split(uri)
        with self._errors("read", uri):
            return bytes(self._container(container).download_blob(key).readall())

    def read_range(self, uri: str, start: int, length: int) -> bytes:
        """Bytes ``[start, start + length)`` of the blob, clipped at its end (one ranged GET)."""
        check_range(start, length)
        if length == 0:
            return b""
        from azure.core.exceptions import HttpResponseError

        _, container, key = self.split(uri)
        with self._errors("read", uri):
            try:
                stream = self._container(container).download_blob(key, offset=start, length=length)
                return bytes(stream.readall())
            except HttpResponseError as exc:
                if exc.status_code == 416:  # start at or past the end
                    return b""
                raise

    def write(self, uri: str, data: bytes) -> None:
        # One Put Blob (or blocks committed by one Put Block List): the blob appears whole.
        _, container, key = self.split(uri)
        with self._errors("write", uri):
            self._container(container).upload_blob(key, data, overwrite=True)

    def exists(self, uri: str) -> bool:
        _, container, key = self.split(uri)
        if not key or key.endswith("/"):
            return False
        with self._errors("read", uri):
            return bool(self._container(container).get_blob_client(key).exists())


def azure_account_of(authority: str) -> str | None:
    """The account named in an Azure URI's authority (``container@account.dfs.core.windows.net``)."""
    return authority.partition("@")[2].split(".")[0] or None


def connection_string_fields() -> dict[str, str]:
    """The fields of ``AZURE_STORAGE_CONNECTION_STRING`` (none when it is not set)."""
    conn = os.environ.get("AZURE_STORAGE_CONNECTION_STRING") or ""
    return dict(p.split("=", 1) for p in conn.split(";") if "=" in p)


def _azure_env_account(hint: str | None) -> str | None:
    return os.environ.get("AZURE_STORAGE_ACCOUNT") or os.environ.get("AZURE_STORAGE_ACCOUNT_NAME") or hint


def _azure_endpoint_from_env(hint: str | None) -> str:
    parts = connection_string_fields()
    if parts:
        if parts.get("BlobEndpoint"):
            return parts["BlobEndpoint"].rstrip("/")
        account = parts.get("AccountName", "?")
        suffix = parts.get("EndpointSuffix", "core.windows.net")
        return f"{parts.get('DefaultEndpointsProtocol', 'https')}://{account}.blob.{suffix}"
    endpoint = os.environ.get("AZURE_STORAGE_BLOB_ENDPOINT")
    if endpoint:
        return endpoint.rstrip("/")
    name = _azure_env_account(hint)
    return f"https://{name}.blob.core.windows.net" if name else "no configured Azure account"


class AzureCredentialsError(Exception):
    """No usable Azure credentials in the environment (``reason``: a StorageError reason)."""

    def __init__(self, reason: str, cause: str) -> None:
        super().__init__(cause)
        self.reason = reason
        self.cause = cause


def azure_client_from_env(account_hint: str | None = None) -> Any:
    """A ``BlobServiceClient`` from ``AZURE_STORAGE_CONNECTION_STRING``, or an account (the
    environment's, else ``account_hint`` from the URI) with ``AZURE_STORAGE_KEY`` or
    ``AZURE_STORAGE_SAS_TOKEN``. Nothing is contacted. No credentials, or a malformed connection
    string: :class:`AzureCredentialsError` (``no_credentials`` / ``bad_credentials``)."""
    from azure.storage.blob import BlobServiceClient

    conn = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if conn:
        try:
            return BlobServiceClient.from_connection_string(conn)
        except ValueError:
            raise AzureCredentialsError(
                errors.BAD_CREDENTIALS, "AZURE_STORAGE_CONNECTION_STRING is malformed"
            ) from None
    account = _azure_env_account(account_hint)
    key = os.environ.get("AZURE_STORAGE_KEY") or os.environ.get("AZURE_STORAGE_ACCOUNT_KEY")
    sas = os.environ.get("AZURE_STORAGE_SAS_TOKEN")
    if not account or not (key or sas):
        raise AzureCredentialsError(
            errors.NO_CREDENTIALS,
            "no Azure credentials found (AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT "
            "with AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN; in Airflow, wasb_conn_id)",
        )
    url = _azure_endpoint_from_env(account)
    credential: Any = {"account_name": account, "account_key": key} if key else sas
    return BlobServiceClient(url, credential=credential)


def azure_error(exc: BaseException, where: str, action: str) -> errors.StorageError | None:
    """``exc`` from azure-storage-blob as one line ``where: cause``."""
    from azure.core import exceptions as aexc

    name = type(exc).__name__
    if isinstance(exc, AzureCredentialsError):
        return errors.StorageError(exc.reason, f"{where}: {exc.cause}", name)
    if isinstance(exc, aexc.ServiceRequestError):  # no response: refused, unknown host, timed out
        return _unreachable(where, name)
    if isinstance(exc, aexc.HttpResponseError):
        raw = getattr(exc, "error_code", None)
        az_code = str(getattr(raw, "value", raw) or "")
        status = exc.status_code
        code = " ".join(str(p) for p in (name, az_code, status) if p)
        if az_code in _AZ_NO_CONTAINER or (action == "list" and status == 404):
            reason, cause = errors.NO_SUCH_BUCKET, "the container does not exist"
        elif status == 404:
            reason, cause = errors.STORAGE_ERROR, "no such blob"
        elif az_code in _AZ_NO_CREDENTIALS:
            reason, cause = errors.NO_CREDENTIALS, "the request carried no credentials"
        elif az_code in _AZ_BAD_CREDENTIALS or isinstance(exc, aexc.ClientAuthenticationError):
            reason, cause = errors.BAD_CREDENTIALS, "the credentials were rejected"
        elif status == 403:
            reason, cause = errors.ACCESS_DENIED, "access denied"
        elif az_code in _AZ_THROTTLED or status in (429, 503):
            reason, cause = errors.THROTTLED, "throttled by the server"
        else:
            reason, cause = errors.STORAGE_ERROR, "the request failed"
        return errors.StorageError(reason, f"{where}: {cause} ({az_code or 'no code'}, HTTP {status})", code)
    if isinstance(exc, aexc.AzureError):
        return errors.StorageError(errors.STORAGE_ERROR, f"{where}: {name}", name)
    return None


# --------------------------------------------------------------------------------------------
# From the environment, one store per configuration (a client per document would cost a
# connection and a credential lookup each)


@functools.lru_cache(maxsize=8)
def _gcs_from_env(_config: tuple[str | None, ...]) -> GcsStorage:
    return GcsStorage()


@functools.lru_cache(maxsize=8)
def _azure_from_env(config: tuple[str | None, ...]) -> AzureBlobStorage:
    return AzureBlobStorage(account=config[0])


_GCS_ENV = ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT")
_AZURE_ENV = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_BLOB_ENDPOINT",
)


def cloud_storage_for(uri: str, gcs_client: Any = None, azure_client: Any = None) -> ObjectStore | None:
    """The store for a ``gs://`` or Azure URI (None for any other scheme): on the given client, or
    one shared per environment configuration (an Azure URI naming its account gets its own)."""
    scheme = uri_scheme(uri)
    if scheme in GCS_SCHEMES:
        if gcs_client is not None:
            return GcsStorage(gcs_client)
        return _gcs_from_env(tuple(os.environ.get(k) for k in _GCS_ENV))
    if scheme in AZURE_SCHEMES:
        if azure_client is not None:
            return AzureBlobStorage(azure_client)
        account = azure_account_of(uri[len(scheme) + 3 :].partition("/")[0])
        return _azure_from_env((account, *(os.environ.get(k) for k in _AZURE_ENV)))
    return None
