"""Run accounting: what an OCR shard measured (pages, engine seconds, output tokens, model load,
device, cost), the progress line it logs while it runs, and the ``deepocr_runs`` row a load writes
for it. Counts and timings only: never document text.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

#: Seconds between two progress lines of an OCR task.
PROGRESS_EVERY_S = 30.0


@dataclass
class OcrStats:
    """What one OCR stage (a shard, or a whole unsharded run) did. Written to the work area beside
    the OCR manifest, read by the load stage, which writes the ``deepocr_runs`` row."""

    shard: str
    task_id: str = ""
    started_at: str = ""  # ISO 8601, UTC
    ended_at: str = ""
    documents: int = 0
    pages: int = 0  # pages the shard covers
    pages_ocr: int = 0  # of which OCR'd by this try (the rest were finished by an earlier one)
    engine: str = ""
    model: str = ""
    device: str = ""
    config_fingerprint: str = ""
    model_load_seconds: float = 0.0
    engine_seconds: float = 0.0
    output_tokens: int = 0
    wall_seconds: float = 0.0
    gpu_hour_cost: float | None = None
    failed: dict[str, int] = field(default_factory=dict)

    @property
    def cost(self) -> float | None:
        """``(engine_seconds + model_load_seconds) / 3600 * gpu_hour_cost``: the engine's time and
        the model load, in hours, at ``gpu_hour_cost`` per hour (None without a price). Both
        figures are in the ``deepocr_runs`` row beside the cost, so the row checks itself."""
        if self.gpu_hour_cost is None:
            return None
        hours = (self.engine_seconds + self.model_load_seconds) / 3600.0
        return round(hours * self.gpu_hour_cost, 6)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OcrStats:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _duration(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """Logs ``OCR progress`` at most every ``every`` seconds: pages done of the shard's total,
    pages/s and output tokens/s since the start, and the time left at that rate."""

    def __init__(self, total_pages: int, label: str = "", every: float | None = None) -> None:
        self.total = total_pages
        self.label = label
        self.every = PROGRESS_EVERY_S if every is None else every
        self.t0 = self.last = time.monotonic()
        self.done = 0
        self.ocr_pages = 0
        self.tokens = 0
        self.lines = 0

    def add(self, pages: int, tokens: int = 0, ocr: bool = True) -> None:
        """``pages`` more are finished (``ocr``: by the engine now, not found done)."""
        self.done += pages
        self.tokens += tokens
        if ocr:
            self.ocr_pages += pages
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self.log(now)

    def log(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        elapsed = max(now - self.t0, 1e-9)
        rate = self.ocr_pages / elapsed
        left = max(0, self.total - self.done)
        eta = _duration(left / rate) if rate > 0 else "unknown"
        self.lines += 1
        log.info(
            "OCR progress%s: %d/%d pages, %.2f pages/s, %.0f output tokens/s, ETA %s",
            f" {self.label}" if self.label else "",
            self.done,
            self.total,
            rate,
            self.tokens / elapsed,
            eta,
        )


def run_row(
    stats: OcrStats | None,
    *,
    run_id: str,
    dag_id: str,
    shard: str,
    documents: int,
    pages: int,
    failed: dict[str, int],
    started_at: str,
) -> dict[str, Any]:
    """The ``deepocr_runs`` row of one shard's load (OCR figures from ``stats`` when there are:
    the assembly of split documents has none of its own)."""
    s = stats or OcrStats(shard=shard)
    return {
        "run_id": run_id,
        "dag_id": dag_id,
        "shard": shard,
        "task": s.task_id or None,
        "started_at": datetime.fromisoformat(s.started_at or started_at),
        "ended_at": datetime.now(UTC),
        "documents": documents,
        "pages": pages,
        "pages_ocr": s.pages_ocr,
        "failed": json.dumps(dict(sorted(failed.items())), separators=(",", ":")),
        "engine": s.engine or None,
        "model": s.model or None,
        "device": s.device or None,
        "config_fingerprint": s.config_fingerprint or None,
        "model_load_seconds": round(s.model_load_seconds, 3),
        "engine_seconds": round(s.engine_seconds, 3),
        "output_tokens": s.output_tokens,
        "gpu_hour_cost": s.gpu_hour_cost,
        "cost": s.cost,
    }
