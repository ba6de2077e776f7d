"""The work area's layout: every path the pipeline, the review and the report read or write.

No other module spells a work-area path; they ask :class:`WorkLayout` (content-addressed artifacts,
shared by every run) or :class:`RunLayout` (one run's manifests). The layout, under the work
area's root (content-addressed: a retried or re-run stage finds finished work and skips it)::

    runs/<run_id>/documents.jsonl             listing: one DocumentRef per line
    runs/<run_id>/listing.json                the incremental listing's fingerprint and skip count
    runs/<run_id>/shards/<NNNNN>.jsonl        a sharded listing: one ShardItem per line (core.shards)
    runs/<run_id>/spanning.jsonl              documents split across shards, with their parts
    runs/<run_id>/ocr.jsonl                   one OcrEntry per document (ocr/<shard>.jsonl per shard,
                                              ocr/spanning.jsonl for the assembled split documents)
    runs/<run_id>/stats/<shard>.json          what the OCR stage measured (core.runs.OcrStats)
    runs/<run_id>/records.jsonl               one RecordsEntry per document (records/<shard>.jsonl)
    ocr/<fingerprint>/<doc_id>/p00001.json    one OcrResult per page
    ocr/<fingerprint>/<doc_id>/document.json  the document's OCR summary (pages, failures)
    ocr/<fingerprint>/<doc_id>/part-00001-05000.json  the same for one part of a split document
    records/<fingerprint>/<doc_id>.json       DocumentResult (parsed records with provenance)
    reviews/<doc_id>.json                     a reviewer's latest decision (core.review)
    pagecounts/<key>.json                     page counts of a listed prefix by URI + version (ETag,
                                              mtime-size): a sharded re-listing reads no document

A shard is named ``00003`` (``shard_file``), ``spanning`` (the assembled split documents) or
``all`` (an unsharded run); :meth:`RunLayout.shard_of` reads the name back from a stage manifest's
URI, which is all an Airflow task receives.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.sources import WorkArea

UNSHARDED = "all"
SPANNING = "spanning"


class Manifest(StrEnum):
    """The per-stage manifests a run writes (``runs/<run_id>/<stage>.jsonl`` or ``<stage>/<shard>.jsonl``)."""

    OCR = "ocr"
    RECORDS = "records"


def shard_file(index: int) -> str:
    """The name of the ``index``-th shard: ``00003``."""
    return f"{index:05d}"


class WorkLayout:
    """Content-addressed artifacts (by config fingerprint and document sha256), shared by runs."""

    def __init__(self, work: WorkArea) -> None:
        self.work = work

    def run(self, run_id: str) -> RunLayout:
        return RunLayout(self.work, run_id)

    def ocr_dir(self, fingerprint: str, doc_id: str) -> str:
        return self.work.uri("ocr", fingerprint, doc_id)

    @staticmethod
    def page(ocr_dir: str, page_no: int) -> str:
        """One page's OCR result in a document's OCR folder."""
        return f"{ocr_dir.rstrip('/')}/p{page_no:05d}.json"

    @staticmethod
    def summary(ocr_dir: str) -> str:
        """The OCR summary of a whole document."""
        return f"{ocr_dir}/document.json"

    @staticmethod
    def part_summary(ocr_dir: str, first: int, last: int | None) -> str:
        """The OCR summary of pages ``first``..``last`` of a document split across shards."""
        return f"{ocr_dir}/part-{first:05d}-{last:05d}.json"

    def records(self, fingerprint: str, doc_id: str) -> str:
        """A document's parsed records (``DocumentResult``)."""
        return self.work.uri("records", fingerprint, f"{doc_id}.json")

    def decision(self, doc_id: str) -> str:
        """A reviewer's latest decision on a document."""
        return self.work.uri("reviews", f"{doc_id}.json")

    def page_counts(self, source_uri: str) -> str:
        """The page-count cache of the documents listed under ``source_uri`` (shared by runs)."""
        key = hashlib.sha256(source_uri.rstrip("/").encode("utf-8")).hexdigest()[:32]
        return self.work.uri("pagecounts", f"{key}.json")

    def decisions(self) -> list[str]:
        """The URIs of every decision file (one listing)."""
        return [ref.uri for ref in self.work.list("reviews")]


class RunLayout:
    """One run's manifests, under ``runs/<run_id>/``."""

    def __init__(self, work: WorkArea, run_id: str) -> None:
        self.work = work
        self.run_id = run_id

    def _uri(self, *parts: str) -> str:
        return self.work.uri("runs", self.run_id, *parts)

    def documents(self) -> str:
        return self._uri("documents.jsonl")

    def listing_note(self) -> str:
        """What the incremental listing assumed (the fingerprint it skipped under)."""
        return self._uri("listing.json")

    def shard(self, name: str) -> str:
        return self._uri("shards", f"{name}.jsonl")

    def spanning(self) -> str:
        """The documents split across shards, with their parts."""
        return self._uri(f"{SPANNING}.jsonl")

    def manifest(self, stage: Manifest, shard: str) -> str:
        """``<stage>.jsonl`` for an unsharded run, else ``<stage>/<shard>.jsonl``."""
        if shard == UNSHARDED:
            return self._uri(f"{stage.value}.jsonl")
        return self._uri(stage.value, f"{shard}.jsonl")

    def stats(self, shard: str) -> str:
        return self._uri("stats", f"{shard}.json")

    def records_manifests(self) -> list[str]:
        """Every records manifest of the run that exists (unsharded, per shard, spanning)."""
        whole = self.manifest(Manifest.RECORDS, UNSHARDED)
        found = [whole] if self.work.exists(whole) else []
        return found + [ref.uri for ref in self.work.list("runs", self.run_id, Manifest.RECORDS.value)]

    @staticmethod
    def shard_of(manifest_uri: str) -> str:
        """The shard a stage manifest belongs to: ``00003`` for ``…/shards/00003.jsonl``,
        ``…/ocr/00003.jsonl`` or ``…/records/00003.jsonl``; ``spanning`` for the assembled split
        documents; ``all`` for an unsharded run."""
        head, _, name = manifest_uri.rstrip("/").rpartition("/")
        if head.rpartition("/")[2] in ("shards", "ocr", "records", "stats"):
            return name.removesuffix(".jsonl").removesuffix(".json")
        return SPANNING if name == f"{SPANNING}.jsonl" else UNSHARDED
