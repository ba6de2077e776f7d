"""The entries of the stage manifests (one JSON line per document) and the failure helpers the
stages share: :class:`OcrEntry` (OCR stage, assembly), :class:`RecordsEntry` (parse stage)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.records import DocumentRef, Failure
from airflow_provider_deepocr.core.shards import ShardItem
from airflow_provider_deepocr.core.vocab import Stage, Status


@dataclass
class OcrEntry:
    """One document after OCR: where its pages are, and what failed."""

    ref: DocumentRef
    doc_id: str | None
    media_type: str
    page_count: int
    config_fingerprint: str
    ocr_dir: str | None
    pages_ok: list[int] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    first: int = 1  # a part of a document split across shards: pages first..last, part of parts
    last: int | None = None
    parts: int = 1
    # the page results (by page number, as text) of a one-page document held in its summary (and
    # this entry) instead of a page file; None: in page files (WorkLayout.page)
    results: dict[str, dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(replace(self, results=None))
        d["ref"] = self.ref.to_dict()
        d["failures"] = [f.to_dict() for f in self.failures]
        d["results"] = self.results
        return d

    def page_result(self, page_no: int) -> dict[str, Any] | None:
        """A page's result held in this entry (a copy), or None: read its page file."""
        held = (self.results or {}).get(str(page_no))
        return None if held is None else dict(held)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OcrEntry:
        d = dict(d)
        d["ref"] = DocumentRef.from_dict(d["ref"])
        d["failures"] = [Failure.from_dict(f) for f in d["failures"]]
        return cls(**d)

    def for_ref(self, ref: DocumentRef) -> OcrEntry:
        """This entry for the same bytes listed under ``ref``."""
        return OcrEntry.from_dict({**self.to_dict(), "ref": ref.to_dict()})

    @property
    def rendered_whole(self) -> bool:
        """No document-level failure: every page was rendered (some may have failed alone)."""
        return not any(f.page_no is None for f in self.failures)

    @property
    def settled(self) -> bool:
        """Done for later runs (the OCR stage writes its summary, which they skip): rendered
        whole, and no page failed for a reason the next run retries (engine error, page timeout)."""
        return self.rendered_whole and not any(f.reason in errors.RETRIED_PAGE_REASONS for f in self.failures)

    def part(self, item: ShardItem) -> OcrEntry:
        """This finished whole document's summary cut down to the pages of ``item`` (a part)."""
        pages = set(item.page_numbers() or ())
        return OcrEntry(
            item.ref,
            self.doc_id,
            self.media_type,
            self.page_count,
            self.config_fingerprint,
            self.ocr_dir,
            [p for p in self.pages_ok if p in pages],
            [f for f in self.failures if f.page_no is None or f.page_no in pages],
            item.first,
            item.last,
            item.parts,
            {k: v for k, v in self.results.items() if int(k) in pages} if self.results else None,
        )


@dataclass
class RecordsEntry:
    """One document after parse and validation."""

    doc_id: str | None
    source_uri: str
    records_uri: str | None
    status: Status
    pages: int
    validation: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)  # only for documents without an id
    ref: dict[str, Any] | None = None  # the listed object (URI, size, version): the sources table's


def count_failures(failures: Iterable[Failure]) -> dict[str, int]:
    """Failures by reason (plain-string keys, sorted): what a stage result reports."""
    return dict(sorted(Counter(str(f.reason) for f in failures).items()))


def failure_of(
    ref: DocumentRef, doc_id: str | None, page_no: int | None, stage: Stage, exc: errors.DeepOcrError
) -> Failure:
    """The failure row of a typed error."""
    return Failure(
        source_uri=ref.uri, reason=exc.reason, detail=exc.detail, doc_id=doc_id, page_no=page_no, stage=stage
    )


def new_entry(
    item: ShardItem,
    doc_id: str | None,
    media_type: str,
    page_count: int,
    fp: str,
    ocr_dir: str | None,
    failures: list[Failure],
) -> OcrEntry:
    """A new OCR entry for ``item`` (with its page span when it is a part of a split document)."""
    if not item.is_part:
        return OcrEntry(item.ref, doc_id, media_type, page_count, fp, ocr_dir, failures=failures)
    return OcrEntry(
        item.ref,
        doc_id,
        media_type,
        page_count,
        fp,
        ocr_dir,
        failures=failures,
        first=item.first,
        last=item.last,
        parts=item.parts,
    )
