"""HTML for the review app and the static report: the page image with one box per block.

Plain strings (no template engine); every value from a document goes through :func:`html.escape`.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any

from airflow_provider_deepocr.core.records import BLOCK_KINDS, GRID

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.records import Block, PageRecord, Table
    from airflow_provider_deepocr.core.review import QueueItem

# one colour per block kind
KIND_COLOURS = dict(
    zip(
        BLOCK_KINDS,
        (
            "#d62728",
            "#1f77b4",
            "#17becf",
            "#2ca02c",
            "#9467bd",
            "#ff7f0e",
            "#e377c2",
            "#8c564b",
            "#7f7f7f",
            "#bcbd22",
            "#393b79",
        ),
        strict=True,
    )
)

CSS = """
body{font-family:system-ui,sans-serif;margin:1.2em;color:#222}
table.queue{border-collapse:collapse;width:100%}
table.queue td,table.queue th{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;font-size:.9em}
.reason{display:inline-block;background:#fde2e1;border-radius:3px;padding:0 .35em;margin:0 .15em}
.page{display:flex;gap:1.5em;align-items:flex-start;margin-bottom:2em}
svg.page-image{border:1px solid #999;max-width:720px;width:100%;height:auto;background:#fafafa}
svg .box{fill-opacity:.08;stroke-width:2;vector-effect:non-scaling-stroke}
svg .box:hover{fill-opacity:.3;stroke-width:3}
.hover{min-height:3em;font-size:.9em;white-space:pre-wrap;max-width:420px}
table.cells{border-collapse:collapse;margin:.5em 0}
table.cells td,table.cells th{border:1px solid #888;padding:.15em .4em;font-size:.85em}
.legend span{display:inline-block;margin-right:.8em;font-size:.85em}
.legend i{display:inline-block;width:.8em;height:.8em;margin-right:.25em;vertical-align:middle}
form.actions{display:inline-block;margin-right:1em}
.flash{background:#e6f4ea;padding:.4em .8em;border-radius:4px}
tr.item.sel{background:#fff3bf}
.keys{color:#666;font-size:.8em}
"""

HOVER_JS = """
document.querySelectorAll('svg .box').forEach(function(b){
  b.addEventListener('mouseenter',function(){
    var out=document.getElementById('hover-'+b.dataset.page);
    if(out){out.textContent=b.dataset.label+': '+b.querySelector('title').textContent;}
  });
});
"""


QUEUE_JS = """
(function(){
  var rows=Array.prototype.slice.call(document.querySelectorAll('tr.item')), at=0;
  function sel(i){if(!rows.length)return;at=Math.max(0,Math.min(rows.length-1,i));
    rows.forEach(function(r){r.classList.remove('sel');});rows[at].classList.add('sel');
    rows[at].scrollIntoView({block:'nearest'});}
  sel(0);
  document.addEventListener('keydown',function(ev){
    var t=ev.target.tagName;
    if(t==='INPUT'||t==='SELECT'||t==='TEXTAREA'||ev.ctrlKey||ev.metaKey||ev.altKey)return;
    if(ev.key==='j'||ev.key==='ArrowDown'){sel(at+1);}
    else if(ev.key==='k'||ev.key==='ArrowUp'){sel(at-1);}
    else if((ev.key==='Enter'||ev.key==='o')&&rows.length){location.href=rows[at].querySelector('a').href;}
    else return;
    ev.preventDefault();
  });
})();
"""


def queue_layout(title: str, body: str) -> str:
    """The queue page: the shared layout, with keys to move through the rows (j/k) and open one
    (Enter or o)."""
    keys = '<p class="keys">keys: j/k or ↓/↑ select · Enter or o open</p>'
    return layout(title, body + keys).replace("</body>", f"<script>{QUEUE_JS}</script></body>", 1)


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def box_px(block: Block, width: int, height: int) -> tuple[float, float, float, float] | None:
    """A block's box in page pixels (from the 0..999 grid when the pixel box is missing)."""
    if block.bbox_px is not None:
        return block.bbox_px
    if block.bbox is None:
        return None
    x0, y0, x1, y1 = block.bbox
    return (x0 * width / GRID, y0 * height / GRID, x1 * width / GRID, y1 * height / GRID)


def page_svg(page: PageRecord, image_href: str, text_limit: int = 400, failing: Collection[int] = ()) -> str:
    """The page image with one ``<rect class="box">`` per block that has a box (``failing``: the
    blocks a failed expectation named, drawn dashed)."""
    w, h = max(page.width, 1), max(page.height, 1)
    parts = [
        f'<svg class="page-image" data-page="{page.page_no}" viewBox="0 0 {w} {h}" '
        f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="page {page.page_no}">',
        f'<image href="{esc(image_href)}" x="0" y="0" width="{w}" height="{h}"/>',
    ]
    for block in page.parsed.blocks:
        box = box_px(block, w, h)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        colour = KIND_COLOURS.get(block.kind, "#393b79")
        cls = f"box kind-{esc(block.kind)}" + (" failing" if block.index in failing else "")
        parts.append(
            f'<rect class="{cls}" data-page="{page.page_no}" data-block="{block.index}" '
            f'data-kind="{esc(block.kind)}" data-label="{esc(block.label)}" x="{x0:.1f}" y="{y0:.1f}" '
            f'width="{max(x1 - x0, 1):.1f}" height="{max(y1 - y0, 1):.1f}" stroke="{colour}" fill="{colour}">'
            f"<title>{esc(block.text[:text_limit])}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def table_grid(table: Table) -> str:
    """A parsed table as a grid of its cells."""
    rows: dict[int, list[Any]] = {}
    for c in table.cells:
        rows.setdefault(c.row, []).append(c)
    out = [f'<table class="cells" data-block="{table.block_index}">']
    if table.caption:
        out.append(f"<caption>{esc(table.caption)}</caption>")
    for r in sorted(rows):
        out.append("<tr>")
        for c in sorted(rows[r], key=lambda c: c.col):
            tag = "th" if c.is_header else "td"
            out.append(f'<{tag} rowspan="{c.rowspan}" colspan="{c.colspan}">{esc(c.text)}</{tag}>')
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def legend() -> str:
    return (
        '<div class="legend">'
        + "".join(f'<span><i style="background:{c}"></i>{esc(k)}</span>' for k, c in KIND_COLOURS.items())
        + "</div>"
    )


def layout(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f'<meta name="referrer" content="no-referrer"><style>{CSS}</style></head>'
        f"<body>{body}<script>{HOVER_JS}</script></body></html>"
    )


def reasons_html(reasons: Iterable[str]) -> str:
    """One pill per reason, separated by a space (their text never runs together)."""
    return " ".join(f'<span class="reason">{esc(r)}</span>' for r in reasons)


def run_html(run_id: str, url: str | None) -> str:
    """A run id, linked to its run where there is a page for it (the DAG run in Airflow's UI)."""
    return (
        f'<a class="run" href="{esc(url)}">{esc(run_id)}</a>'
        if url
        else f'<span class="run">{esc(run_id)}</span>'
    )


def queue_rows(
    items: list[QueueItem], base: str, run_link: Callable[[str, str], str | None] | None = None
) -> str:
    rows = []
    for it in items:
        run = run_html(it.run_id, run_link(it.dag_id, it.run_id) if run_link and it.run_id else None)
        rows.append(
            f'<tr class="item" data-doc="{esc(it.doc_id)}">'
            f'<td><a href="{esc(base)}/doc/{esc(it.doc_id)}">{esc(it.source_uri.rsplit("/", 1)[-1])}</a></td>'
            f"<td>{esc(it.status)}</td><td>{reasons_html(it.reasons)}</td>"
            f"<td>{esc(','.join(map(str, it.flagged_pages)))}</td>"
            f"<td>{run}</td><td>{esc(it.dag_id)}</td>"
            f"<td>{esc(it.when.strftime('%Y-%m-%d %H:%M:%S'))}</td>"
            f"<td>{esc(it.last_decision or '')}</td></tr>"
        )
    return "".join(rows)


def png_bytes(image: Any, max_side: int | None = None) -> bytes:
    """A PIL image as PNG bytes (shrunk to ``max_side`` when given)."""
    if max_side is not None and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
