"""Typed records for every stage of the flow (see ARCHITECTURE.md).

object storage -> DocumentRef -> Document -> PageImage -> OcrResult -> PageRecord(+Block, Table, TableCell)

All classes are plain dataclasses so they serialise to JSON for the work area without any
third-party dependency. Nothing here imports Pillow, torch or Airflow.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

GRID = 999
"""DeepSeek-OCR boxes are on a 0..999 grid of the page image the model saw."""

BLOCK_KINDS = (
    "heading",
    "text",
    "list_item",
    "table",
    "caption",
    "figure",
    "formula",
    "footnote",
    "header",
    "footer",
    "other",
)


@dataclass(frozen=True)
class DocumentRef:
    """A document as listed in object storage, before it is read."""

    uri: str
    size: int | None = None
    version: str | None = None  # etag / version id / mtime, whatever the store offers

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DocumentRef:
        return cls(uri=d["uri"], size=d.get("size"), version=d.get("version"))


@dataclass(frozen=True)
class Document:
    """A document's bytes and its content id (sha256 of the bytes)."""

    ref: DocumentRef
    data: bytes = field(repr=False)
    sha256: str

    @classmethod
    def from_bytes(cls, ref: DocumentRef, data: bytes) -> Document:
        return cls(ref=ref, data=data, sha256=hashlib.sha256(data).hexdigest())

    @property
    def doc_id(self) -> str:
        return self.sha256


@dataclass
class PageImage:
    """One rendered page. ``image`` is a PIL image (RGB); never logged, never sent to XCom."""

    doc_id: str
    page_no: int  # 1-based
    image: Any = field(repr=False)
    dpi: int
    width: int
    height: int
    media_type: str = ""
    text_layer: str | None = field(default=None, repr=False)  # PDF text layer, when present
    flags: list[str] = field(default_factory=list)  # render flags: downscaled, first_frame_only
    rotation: int = 0  # degrees the scan was turned clockwise; page prep turned it back (core.pageprep)


@dataclass
class OcrResult:
    """What an engine returned for one page."""

    raw_text: str = field(repr=False)
    finish_reason: str  # "eos" | "length" | "error"
    engine: str
    model: str
    prompt_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    revision: str | None = None
    prompt: str | None = None
    mode: str | None = None
    attempts: int = 1
    # Engines that produce structure directly (RapidOCR, pdf-text) return blocks in grid
    # coordinates here instead of DeepSeek markup; the parser turns them into Block records.
    blocks: list[dict[str, Any]] | None = field(default=None, repr=False)
    flags: list[str] = field(default_factory=list)  # page flags from the engine (e.g. table_failed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OcrResult:
        return cls(**d)


@dataclass
class Block:
    """One layout block in reading order. ``bbox`` is on the 0..999 grid, ``bbox_px`` in page pixels."""

    index: int
    label: str
    kind: str
    bbox: tuple[int, int, int, int] | None
    bbox_px: tuple[float, float, float, float] | None
    raw: str = field(repr=False)
    text: str = field(repr=False)
    flags: list[str] = field(default_factory=list)
    extra_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)


@dataclass
class TableCell:
    row: int
    col: int
    rowspan: int
    colspan: int
    is_header: bool
    text: str = field(repr=False)


@dataclass
class Table:
    block_index: int
    caption: str | None
    n_rows: int
    n_cols: int
    cells: list[TableCell] = field(default_factory=list)


@dataclass
class ParsedPage:
    """Parser output for one page of model text."""

    page_no: int
    blocks: list[Block] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    markdown: str = field(default="", repr=False)
    flags: list[str] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        """The public JSON shape printed by ``deepocr parse --json``."""
        return {
            "page_no": self.page_no,
            "flags": list(self.flags),
            "markdown": self.markdown,
            "blocks": [
                {
                    "index": b.index,
                    "label": b.label,
                    "kind": b.kind,
                    "bbox": list(b.bbox) if b.bbox is not None else None,
                    "bbox_px": list(b.bbox_px) if b.bbox_px is not None else None,
                    "text": b.text,
                    "raw": b.raw,
                    "flags": list(b.flags),
                    "extra_boxes": [list(x) for x in b.extra_boxes],
                }
                for b in self.blocks
            ],
            "tables": [
                {
                    "block_index": t.block_index,
                    "caption": t.caption,
                    "n_rows": t.n_rows,
                    "n_cols": t.n_cols,
                    "cells": [asdict(c) for c in t.cells],
                }
                for t in self.tables
            ],
        }


@dataclass
class PageRecord:
    """A parsed page with its provenance: what lands in the warehouse."""

    doc_id: str
    page_no: int
    source_uri: str
    source_version: str | None
    width: int
    height: int
    dpi: int | None  # None: the image had no resolution (flag dpi_unknown)
    engine: str
    model: str
    revision: str | None
    prompt: str | None
    mode: str | None
    finish_reason: str
    attempts: int
    prompt_tokens: int
    output_tokens: int
    seconds: float
    config_fingerprint: str
    parsed: ParsedPage = field(repr=False)
    rotation: int | None = None
    """Degrees (0/90/180/270) the scan was turned clockwise and turned back before OCR; None for a
    page not prepared (read from its text layer)."""
    coverage: float | None = None
    """Share of the page's ink inside its blocks' boxes (core.coverage); None when not computed."""

    @property
    def markdown(self) -> str:
        return self.parsed.markdown

    @property
    def flags(self) -> list[str]:
        return self.parsed.flags

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "parsed"}
        d["parsed"] = self.parsed.to_json_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PageRecord:
        d = dict(d)
        p = d.pop("parsed")
        parsed = ParsedPage(
            page_no=p["page_no"],
            flags=list(p["flags"]),
            markdown=p["markdown"],
            blocks=[
                Block(
                    index=b["index"],
                    label=b["label"],
                    kind=b["kind"],
                    bbox=tuple(b["bbox"]) if b["bbox"] is not None else None,  # type: ignore[arg-type]
                    bbox_px=tuple(b["bbox_px"]) if b.get("bbox_px") is not None else None,  # type: ignore[arg-type]
                    raw=b.get("raw", b["text"]),
                    text=b["text"],
                    flags=list(b["flags"]),
                    extra_boxes=[tuple(x) for x in b.get("extra_boxes", [])],  # type: ignore[misc]
                )
                for b in p["blocks"]
            ],
            tables=[
                Table(
                    block_index=t["block_index"],
                    caption=t["caption"],
                    n_rows=t["n_rows"],
                    n_cols=t["n_cols"],
                    cells=[TableCell(**c) for c in t["cells"]],
                )
                for t in p["tables"]
            ],
        )
        return cls(parsed=parsed, **d)


@dataclass
class Failure:
    """A document or page that did not make it, recorded as a row with a reason code."""

    source_uri: str
    reason: str
    detail: str = ""
    doc_id: str | None = None
    page_no: int | None = None
    stage: str = ""

    def __post_init__(self) -> None:
        # a vocabulary member (errors.Reason, vocab.Stage) is kept as its plain string: rows,
        # manifests and content hashes see exactly the string (some drivers map values by class)
        self.reason, self.stage = str(self.reason), str(self.stage)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Failure:
        return cls(**d)


@dataclass
class DocumentResult:
    """Everything known about one document after OCR and parse: what a load consumes."""

    ref: DocumentRef
    doc_id: str
    media_type: str
    page_count: int
    config_fingerprint: str
    pages: list[PageRecord] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    # other URIs with the same bytes in this load (the sources table keeps them); not stored
    seen_as: list[DocumentRef] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref.to_dict(),
            "doc_id": self.doc_id,
            "media_type": self.media_type,
            "page_count": self.page_count,
            "config_fingerprint": self.config_fingerprint,
            "pages": [p.to_dict() for p in self.pages],
            "failures": [f.to_dict() for f in self.failures],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DocumentResult:
        return cls(
            ref=DocumentRef.from_dict(d["ref"]),
            doc_id=d["doc_id"],
            media_type=d["media_type"],
            page_count=d["page_count"],
            config_fingerprint=d["config_fingerprint"],
            pages=[PageRecord.from_dict(p) for p in d["pages"]],
            failures=[Failure.from_dict(f) for f in d["failures"]],
        )


def fingerprint(config: dict[str, Any]) -> str:
    """A short, stable hash of everything that changes the output of a run."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
