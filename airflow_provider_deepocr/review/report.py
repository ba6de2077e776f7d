"""``deepocr report RUN_ID --html OUT.html``: one self-contained HTML file about one run.

Counts by failure reason, page flags apart, the review decisions on the run's documents (those made
after the run too), the slowest pages, the split by engine and thumbnails of the flagged pages with
their boxes, images inline as ``data:`` URIs (nothing else is fetched when the file is opened).
The file holds page images, so it is written mode 0600 (:func:`write_report`). Built from the
run's records manifests in the work area (every document the run parsed, loaded or quarantined),
the warehouse's failure rows of the run and its reviews table.
"""

from __future__ import annotations

import base64
from collections import Counter
from typing import Any

from airflow_provider_deepocr.core import errors
from airflow_provider_deepocr.core.records import DocumentResult
from airflow_provider_deepocr.core.work_layout import RunLayout
from airflow_provider_deepocr.review import pages as pg


def _records_entries(work: Any, run_id: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for uri in RunLayout(work, run_id).records_manifests():
        entries.extend(work.read_jsonl(uri))
    return entries


def build_report(settings: Any, run_id: str, max_thumbnails: int = 40, thumb_side: int = 360) -> str:
    """The report's HTML. ``settings`` is a :class:`~.app.ReviewSettings`."""
    import sqlalchemy as sa

    from airflow_provider_deepocr.review.app import render_page

    wh, work = settings.warehouse(), settings.work()
    entries = _records_entries(work, run_id)
    f = wh.failures
    with wh.engine.connect() as conn:
        frows = conn.execute(sa.select(f.c.reason, f.c.doc_id).where(f.c.run_id == run_id)).all()
    reasons = Counter(r.reason for r in frows)
    failed_docs = {r.doc_id for r in frows if r.doc_id}
    if not entries and not reasons:
        raise errors.DeepOcrError(errors.READ_ERROR, f"no run {run_id!r} in this work area and warehouse")
    statuses = Counter(e["status"] for e in entries)
    pages: list[tuple[DocumentResult, Any]] = []
    for e in entries:
        if e.get("records_uri") and work.exists(e["records_uri"]):
            result = DocumentResult.from_dict(work.read_json(e["records_uri"]))
            pages.extend((result, p) for p in result.pages)
    flags = Counter(flag for _, p in pages for flag in p.flags)
    decisions = reviews_of(wh, {e["doc_id"] for e in entries if e.get("doc_id")} | failed_docs)
    engines: dict[str, list[float]] = {}
    for _, p in pages:
        engines.setdefault(p.engine, []).append(p.seconds)
    slow = sorted(pages, key=lambda rp: rp[1].seconds, reverse=True)[:10]
    held = {e["doc_id"] for e in entries if e["status"] not in ("ok", "warned")}
    flagged = [(r, p) for r, p in pages if p.flags or r.doc_id in held][:max_thumbnails]

    names = {
        e["doc_id"]: str(e.get("source_uri") or e["doc_id"][:12]).rsplit("/", 1)[-1]
        for e in entries
        if e.get("doc_id")
    }

    def rows(items: list[tuple[Any, ...]]) -> str:
        return "".join("<tr>" + "".join(f"<td>{pg.esc(c)}</td>" for c in it) + "</tr>" for it in items)

    thumbs = []
    for result, page in flagged:
        try:
            image = render_page(settings, result, page.page_no)
            data = base64.b64encode(pg.png_bytes(image, thumb_side)).decode()
            svg = pg.page_svg(page, f"data:image/png;base64,{data}", text_limit=120)
        except errors.DeepOcrError as exc:
            svg = f"<p>cannot render: {pg.esc(exc.reason)}</p>"
        thumbs.append(
            f'<figure class="thumb" style="display:inline-block;width:{thumb_side}px;margin:.5em">{svg}'
            f"<figcaption>{pg.esc(result.ref.uri.rsplit('/', 1)[-1])} p{page.page_no} "
            f"{pg.reasons_html(page.flags)}</figcaption></figure>"
        )
    body = (
        f"<h1>Run {pg.esc(run_id)}</h1>"
        f"<p>{len(entries)} documents ({pg.esc(', '.join(f'{k} {v}' for k, v in sorted(statuses.items())))}),"
        f" {len(pages)} pages parsed.</p>"
        "<h2>Counts by reason</h2><table class='queue' id='reasons'><tr><th>failure reason</th>"
        f"<th>count</th></tr>{rows(sorted(reasons.items()))}</table>"
        "<h2>Page flags</h2><table class='queue' id='flags'><tr><th>page flag</th><th>pages</th></tr>"
        f"{rows(sorted(flags.items())) or '<tr><td>none</td><td></td></tr>'}</table>"
        "<h2>Review decisions</h2><p>Every decision on this run's documents, those made after the run"
        " included (newest last).</p><table class='queue' id='reviews'><tr><th>document</th>"
        "<th>decision</th><th>engine</th><th>reviewer</th><th>when (UTC)</th></tr>"
        + (
            rows(
                [
                    (
                        names.get(d["doc_id"], d["doc_id"][:12]),
                        d["decision"],
                        d["engine"] or "",
                        d["reviewer"],
                        d["reviewed_at"].strftime("%Y-%m-%d %H:%M:%S"),
                    )
                    for d in decisions
                ]
            )
            or "<tr><td>none</td></tr>"
        )
        + "</table>"
        "<h2>Slowest pages</h2><table class='queue'><tr><th>document</th><th>page</th><th>engine</th>"
        "<th>seconds</th><th>output tokens</th></tr>"
        + rows(
            [
                (r.ref.uri.rsplit("/", 1)[-1], p.page_no, p.engine, f"{p.seconds:.3f}", p.output_tokens)
                for r, p in slow
            ]
        )
        + "</table><h2>By engine</h2><table class='queue'><tr><th>engine</th><th>pages</th>"
        "<th>seconds</th></tr>"
        + rows([(k, len(v), f"{sum(v):.2f}") for k, v in sorted(engines.items())])
        + f"</table><h2>Flagged pages</h2>{pg.legend()}{''.join(thumbs) or '<p>none</p>'}"
    )
    return pg.layout(f"deepocr run {run_id}", body)


def reviews_of(wh: Any, doc_ids: set[str]) -> list[dict[str, Any]]:
    """The review decisions on these documents, oldest first (made during or after the run)."""
    from datetime import UTC

    out = [r for r in wh.reviews() if r["doc_id"] in doc_ids]
    for r in out:
        if r["reviewed_at"].tzinfo is None:  # SQLite hands timestamps back without their zone
            r["reviewed_at"] = r["reviewed_at"].replace(tzinfo=UTC)
    return sorted(out, key=lambda r: r["reviewed_at"])


def write_report(path: str, text: str) -> None:
    """Write the report readable by its owner only (0600): it holds page images of documents."""
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a file that was already there keeps its mode otherwise
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
