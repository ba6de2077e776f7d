"""Typed errors with short machine-readable reason codes.

Messages carry ids, counts and reasons only: never document text or image content.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Reason codes, stable: they are stored in the failures table and counted in summaries."""

    ENCRYPTED = "encrypted"
    CORRUPT = "corrupt"
    TRUNCATED_FILE = "truncated_file"
    EMPTY_FILE = "empty_file"
    TOO_MANY_PAGES = "too_many_pages"
    IMAGE_TOO_LARGE = "image_too_large"
    FILE_TOO_LARGE = "file_too_large"
    UNSUPPORTED_TYPE = "unsupported_type"
    READ_ERROR = "read_error"
    OCR_ERROR = "ocr_error"
    REPETITION_LOOP = "repetition_loop"
    TOKEN_LIMIT = "token_limit"
    VALIDATION_FAILED = "validation_failed"
    REJECTED = "rejected"  # a reviewer kept the document out (core.review)
    NOTHING_TO_APPROVE = "nothing_to_approve"  # approve refused: the document has no pages
    ALREADY_LOADED = "already_loaded"  # approve/reject refused: the document is in the warehouse
    LOAD_ERROR = "load_error"
    PARSE_ERROR = "parse_error"
    INTERNAL_ERROR = "internal_error"
    NO_TEXT_LAYER = "no_text_layer"
    SOURCE_MISSING = "source_missing"  # listed, then gone before it was read
    SOURCE_CHANGED = "source_changed"  # its content changed between the listing and the OCR of a part
    BROKEN_PAGE_TREE = "broken_page_tree"  # an unusable page tree: an absurd /Count, a loop, a lost page
    PAGE_TIMEOUT = "page_timeout"  # one page's render or text extraction ran past page_timeout_s
    INCOMPLETE_DOCUMENT = "incomplete_document"  # a split document with a part no shard finished
    # Object storage that cannot be used: the run cannot proceed (exit code 3 from the CLI).
    NO_CREDENTIALS = "no_credentials"
    BAD_CREDENTIALS = "bad_credentials"
    ENDPOINT_UNREACHABLE = "endpoint_unreachable"
    NO_SUCH_BUCKET = "no_such_bucket"
    ACCESS_DENIED = "access_denied"
    THROTTLED = "throttled"
    STORAGE_ERROR = "storage_error"
    # A warehouse that cannot be used: the run cannot proceed (exit code 3 from the CLI).
    WAREHOUSE_UNREACHABLE = "warehouse_unreachable"  # connection refused, unknown host, timed out
    WAREHOUSE_AUTH_FAILED = "warehouse_auth_failed"  # wrong password, no such user
    WAREHOUSE_NO_DATABASE = "warehouse_no_database"  # the database (or SQLite/DuckDB file) is missing
    WAREHOUSE_PERMISSION_DENIED = "warehouse_permission_denied"  # a missing privilege (schema, table)


# The codes as module constants: plain strings, the members' values (``errors.CORRUPT == Reason.CORRUPT``),
# so what reaches rows, manifests and content hashes is exactly the string it always was.
ENCRYPTED = Reason.ENCRYPTED.value
CORRUPT = Reason.CORRUPT.value
TRUNCATED_FILE = Reason.TRUNCATED_FILE.value
EMPTY_FILE = Reason.EMPTY_FILE.value
TOO_MANY_PAGES = Reason.TOO_MANY_PAGES.value
IMAGE_TOO_LARGE = Reason.IMAGE_TOO_LARGE.value
FILE_TOO_LARGE = Reason.FILE_TOO_LARGE.value
UNSUPPORTED_TYPE = Reason.UNSUPPORTED_TYPE.value
READ_ERROR = Reason.READ_ERROR.value
OCR_ERROR = Reason.OCR_ERROR.value
REPETITION_LOOP = Reason.REPETITION_LOOP.value
TOKEN_LIMIT = Reason.TOKEN_LIMIT.value
VALIDATION_FAILED = Reason.VALIDATION_FAILED.value
REJECTED = Reason.REJECTED.value
NOTHING_TO_APPROVE = Reason.NOTHING_TO_APPROVE.value
ALREADY_LOADED = Reason.ALREADY_LOADED.value
LOAD_ERROR = Reason.LOAD_ERROR.value
PARSE_ERROR = Reason.PARSE_ERROR.value
INTERNAL_ERROR = Reason.INTERNAL_ERROR.value
NO_TEXT_LAYER = Reason.NO_TEXT_LAYER.value
SOURCE_MISSING = Reason.SOURCE_MISSING.value
SOURCE_CHANGED = Reason.SOURCE_CHANGED.value
BROKEN_PAGE_TREE = Reason.BROKEN_PAGE_TREE.value
PAGE_TIMEOUT = Reason.PAGE_TIMEOUT.value
INCOMPLETE_DOCUMENT = Reason.INCOMPLETE_DOCUMENT.value
# page failures the next run retries (the document is not "unchanged" while one is open)
RETRIED_PAGE_REASONS = frozenset({OCR_ERROR, PAGE_TIMEOUT})
NO_CREDENTIALS = Reason.NO_CREDENTIALS.value
BAD_CREDENTIALS = Reason.BAD_CREDENTIALS.value
ENDPOINT_UNREACHABLE = Reason.ENDPOINT_UNREACHABLE.value
NO_SUCH_BUCKET = Reason.NO_SUCH_BUCKET.value
ACCESS_DENIED = Reason.ACCESS_DENIED.value
THROTTLED = Reason.THROTTLED.value
STORAGE_ERROR = Reason.STORAGE_ERROR.value
WAREHOUSE_UNREACHABLE = Reason.WAREHOUSE_UNREACHABLE.value
WAREHOUSE_AUTH_FAILED = Reason.WAREHOUSE_AUTH_FAILED.value
WAREHOUSE_NO_DATABASE = Reason.WAREHOUSE_NO_DATABASE.value
WAREHOUSE_PERMISSION_DENIED = Reason.WAREHOUSE_PERMISSION_DENIED.value


class DeepOcrError(Exception):
    """Base error. ``reason`` is a reason code from this module."""

    reason: str = "error"

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class DocumentError(DeepOcrError):
    """A document cannot be read or rendered; recorded as a failure row, the batch goes on."""


class PageError(DeepOcrError):
    """One page failed; recorded as a failure row, the document goes on."""

    def __init__(self, reason: str, detail: str = "", page_no: int | None = None) -> None:
        super().__init__(reason, detail)
        self.page_no = page_no


class EngineUnavailable(DeepOcrError):
    """The chosen engine cannot run here (missing extra, missing weights, no device)."""

    def __init__(self, detail: str) -> None:
        super().__init__("engine_unavailable", detail)


class StorageError(DeepOcrError):
    """Object storage cannot be used (no credentials, endpoint unreachable, no such bucket,
    access denied, throttled after retries). ``detail`` is one line naming the bucket or
    endpoint and the cause; ``code`` is the store's own short code (``ClientError NoSuchKey``)."""

    def __init__(self, reason: str, detail: str, code: str = "") -> None:
        super().__init__(reason, detail)
        self.code = code


class WarehouseError(DeepOcrError):
    """The warehouse cannot be used (unreachable, authentication failed, no such database, a
    missing privilege). ``detail`` is one line naming the warehouse, its password masked, and the
    cause: ``cannot connect to warehouse postgresql://user:***@127.0.0.1:1/x (connection refused)``."""


class ConfigError(DeepOcrError):
    """Bad arguments or configuration: the run itself cannot proceed."""

    def __init__(self, detail: str) -> None:
        super().__init__("config_error", detail)


def describe(exc: BaseException) -> str:
    """A text-free description of a database error: exception class and SQLSTATE if any.

    Driver messages quote the offending values (SQLAlchemy adds the bound parameters), which may
    be document text, so errors built from a database exception carry only this."""
    orig = getattr(exc, "orig", None) or exc
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    name = f"{type(exc).__name__}/{type(orig).__name__}" if orig is not exc else type(exc).__name__
    return f"{name} (sqlstate {code})" if code else name
