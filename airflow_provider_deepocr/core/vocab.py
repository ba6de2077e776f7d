"""The words stored in rows and manifests, as string enums: a misspelt member is an error (at import,
and for the type checker), a member is still its plain string (``Status.OK == "ok"``, JSON and SQL
see ``"ok"``), and the README's lists come from here (``python -m airflow_provider_deepocr.core.vocab``
prints them; a test keeps the README equal to it).

Failure reasons are :class:`~airflow_provider_deepocr.core.errors.Reason` (beside the typed errors).
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """Where a failure happened: the ``stage`` of a failure row."""

    READ = "read"  # the document could not be read from its store
    RENDER = "render"  # it could not be opened or rendered into page images
    ROUTE = "route"  # text-layer routing: text_layer=only and the page has no usable text layer
    OCR = "ocr"  # the engine failed on the page
    PARSE = "parse"  # the parser raised on the page's output
    VALIDATE = "validate"  # the document failed its expectations (quarantined)
    ASSEMBLE = "assemble"  # a document split across shards could not be put back together
    LOAD = "load"  # the warehouse refused the document
    REVIEW = "review"  # a reviewer kept it out


class Status(StrEnum):
    """What the parse stage decided for a document (the ``status`` of a records-manifest entry)."""

    OK = "ok"  # parsed and valid: it loads
    FAILED = "failed"  # no page parsed: only failure rows
    QUARANTINED = "quarantined"  # failed validation: quarantined unless a reviewer approves it
    WARNED = "warned"  # failed validation with on_failure=warn: it loads

    @property
    def loads(self) -> bool:
        return self in (Status.OK, Status.WARNED)


class OnValidationFailure(StrEnum):
    """What the parse stage does with a document that fails validation."""

    QUARANTINE = "quarantine"
    FAIL = "fail"
    WARN = "warn"


class PageFlag(StrEnum):
    """Flags on a page row (and, the parser's, on block rows): what to look at before trusting it."""

    REPETITION_LOOP = "repetition_loop"  # the output degenerated into repetition; the loop is cut off
    TRUNCATED = "truncated"  # the output stopped at the token limit
    UNCLOSED_DET = "unclosed_det"  # a <|det|> coordinate list never closed
    BAD_BBOX = "bad_bbox"  # a box off the 0..999 grid, empty or unparsable (dropped)
    NO_BOX = "no_box"  # a block without a box
    EMPTY_PAGE = "empty_page"  # the page has no content at all
    DOWNSCALED = "downscaled"  # rendered below the asked DPI, or shrunk, to fit max_pixels
    FIRST_FRAME_ONLY = "first_frame_only"  # an animated image, read as its first frame
    DPI_UNKNOWN = "dpi_unknown"  # an image without a resolution: pages.dpi is NULL, 144 assumed
    TABLES_SKIPPED = "tables_skipped"  # a text-layer page whose table finder raised: read without tables
    TABLE_FAILED = "table_failed"  # a scan whose table recogniser raised: read without tables
    ORIENTATION_FAILED = "orientation_failed"  # the orientation step raised: read as it was scanned
    ORIENTATION_UNCHECKED = "orientation_unchecked"  # a sideways page whose 0/180 could not be told
    CLEANUP_FAILED = "cleanup_failed"  # the despeckle step raised: read uncleaned
    LOW_COVERAGE = "low_coverage"  # the blocks account for too little of the page's ink


def readme_section() -> str:
    """The README's vocabulary lists (between its ``vocab`` markers), one line per vocabulary."""
    from airflow_provider_deepocr.core.errors import Reason

    titles = (
        (Reason, "Failure reasons (`reason` of a failure row)"),
        (Stage, "Failure stages (`stage` of a failure row)"),
        (PageFlag, "Page flags (`flags` of page and block rows)"),
        (Status, "Parse statuses (records manifest)"),
        (OnValidationFailure, "On validation failure"),
    )
    lines = [f"- {title}: " + ", ".join(f"`{m.value}`" for m in vocab) for vocab, title in titles]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - prints the README's lists
    print(readme_section())
