"""The review page of one document: why it is in the queue, one page at a time with the engine's
text beside the image (blocks in reading order, tables as grids, each linked to its box both
ways), zoom, and the way through the queue (previous / next page and document, keyboard keys).

Plain strings like :mod:`.pages`; every value from a document goes through :func:`.pages.esc`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from airflow_provider_deepocr.review import pages as pg

if TYPE_CHECKING:
    from airflow_provider_deepocr.core.records import DocumentResult, PageRecord
    from airflow_provider_deepocr.core.review import FailedExpectation, FailureReason, QueueItem

CSS = """
.why{border-left:4px solid #d62728;background:#fff5f5;padding:.4em .9em;margin:.6em 0}
.why.resolved{border-color:#2ca02c;background:#f3fbf4}
.why table{border-collapse:collapse}.why td,.why th{padding:.1em .6em;text-align:left;font-size:.9em}
.refused{background:#fde2e1;border:1px solid #d62728;padding:.5em .9em;border-radius:4px}
.nav{display:flex;gap:.8em;align-items:center;flex-wrap:wrap;margin:.5em 0}
.nav a.off{color:#aaa;pointer-events:none}
.tabs a{margin-right:.5em}.tabs a.current{font-weight:bold;text-decoration:none;color:#222}
.keys{color:#666;font-size:.8em}
.workspace{display:flex;gap:1em;align-items:flex-start}
.viewer{flex:1 1 58%;overflow:auto;max-height:82vh;border:1px solid #999;background:#eee}
.viewer svg.page-image{max-width:none;border:0;display:block}
.textpanel{flex:1 1 42%;max-height:82vh;overflow:auto;font-size:.95em}
.textpanel ol{padding-left:2.2em;margin:0}
.textpanel li.blk{padding:.25em .4em;margin:.15em 0;border-left:4px solid transparent;cursor:pointer;
  white-space:pre-wrap}
.textpanel li.blk .kind{font-size:.75em;color:#555;margin-right:.4em}
.textpanel .btext{display:block}
.textpanel li.blk.failing{border-left-color:#d62728;background:#fff5f5}
.textpanel li.blk.hl{background:#fff3bf;outline:2px solid #f08c00}
svg .box.hl{fill-opacity:.35;stroke-width:4;stroke:#f08c00}
svg .box.failing{stroke-dasharray:6 3;stroke-width:3}
"""

JS = """
(function(){
  function pair(page,block){
    return [document.querySelector('svg .box[data-page="'+page+'"][data-block="'+block+'"]'),
            document.querySelector('li.blk[data-page="'+page+'"][data-block="'+block+'"]')];
  }
  function light(el,on,scroll){
    var p=pair(el.dataset.page,el.dataset.block);
    document.querySelectorAll('.hl').forEach(function(x){x.classList.remove('hl');});
    if(!on)return;
    p.forEach(function(x){if(x){x.classList.add('hl');}});
    if(scroll){var other=el.tagName.toLowerCase()==='li'?p[0]:p[1];
      if(other&&other.scrollIntoView){other.scrollIntoView({block:'nearest'});}}
  }
  document.querySelectorAll('svg .box, li.blk').forEach(function(el){
    el.addEventListener('mouseenter',function(){light(el,true,false);});
    el.addEventListener('click',function(){light(el,true,true);});
  });
  var zoom=1, svg=document.querySelector('.viewer svg.page-image');
  function setZoom(z){zoom=Math.max(0.25,Math.min(6,z));
    if(svg){svg.style.width=(zoom*100)+'%';}
    var out=document.getElementById('zoom-level');if(out){out.textContent=Math.round(zoom*100)+'%';}}
  [['zoom-in',1.25],['zoom-out',0.8]].forEach(function(b){var e=document.getElementById(b[0]);
    if(e){e.addEventListener('click',function(){setZoom(zoom*b[1]);});}});
  var fit=document.getElementById('zoom-fit');if(fit){fit.addEventListener('click',function(){setZoom(1);});}
  function go(id){var a=document.getElementById(id);
    if(a&&a.href&&!a.classList.contains('off')){location.href=a.href;}}
  document.addEventListener('keydown',function(ev){
    var t=ev.target.tagName;
    if(t==='INPUT'||t==='SELECT'||t==='TEXTAREA'||ev.ctrlKey||ev.metaKey||ev.altKey)return;
    var k=ev.key;
    if(k==='j'||k==='ArrowRight'){go('next-page');}
    else if(k==='k'||k==='ArrowLeft'){go('prev-page');}
    else if(k==='n'){go('next-doc');}
    else if(k==='p'){go('prev-doc');}
    else if(k==='q'){go('to-queue');}
    else if(k==='+'||k==='='){setZoom(zoom*1.25);}
    else if(k==='-'){setZoom(zoom*0.8);}
    else if(k==='0'){setZoom(1);}
    else return;
    ev.preventDefault();
  });
})();
"""


def why_html(reasons: list[FailureReason], failed: list[FailedExpectation]) -> str:
    """Why the document is here: each failure row (reason, detail, page, stage, resolved or not)
    and each failed expectation (table, column, rows that failed, and which blocks)."""
    if not reasons and not failed:
        return ""
    rows = []
    for r in reasons:
        where = f"page {r.page_no}" if r.page_no is not None else "document"
        state = (
            f"resolved ({pg.esc(r.resolution)}, {r.resolved_at:%Y-%m-%d %H:%M} UTC)"
            if r.resolved_at is not None
            else "open"
        )
        rows.append(
            f'<tr class="failure"><td>{pg.reasons_html([r.reason])}</td><td class="detail">'
            f"{pg.esc(r.detail)}</td><td>{where}</td><td>{pg.esc(r.stage)}</td><td>{state}</td></tr>"
        )
    exp = []
    for e in failed:
        blocks = " ".join(
            f'<a class="failing-block" href="?page={p}#b{p}-{b}">p{p}' + (f" b{b}" if b >= 0 else "") + "</a>"
            for p, b in e.rows
        )
        count = "?" if e.unexpected is None else str(e.unexpected)
        exp.append(
            f'<tr class="expectation"><td>{pg.esc(e.table)}</td><td class="column">{pg.esc(e.column)}</td>'
            f'<td class="name">{pg.esc(e.expectation.split("(", 1)[0])}</td>'
            f'<td class="count">{count} rows failed</td><td class="blocks">{blocks}</td></tr>'
        )
    resolved = bool(reasons) and all(r.resolved_at is not None for r in reasons)
    return (
        f'<section class="why{" resolved" if resolved else ""}" id="why"><b>Why it is here</b>'
        f"<table><tr><th>reason</th><th>detail</th><th>where</th><th>stage</th><th>state</th></tr>"
        f"{''.join(rows)}</table>"
        + (
            "<table><tr><th>table</th><th>column</th><th>failed expectation</th><th>rows</th>"
            f"<th>blocks</th></tr>{''.join(exp)}</table>"
            if exp
            else ""
        )
        + "</section>"
    )


def text_panel(page: PageRecord, failing: set[tuple[int, int]]) -> str:
    """The page's blocks in reading order (tables as grids), each ``li.blk`` linked to its box."""
    tables = {t.block_index: t for t in page.parsed.tables}
    items = []
    for b in page.parsed.blocks:
        body = pg.table_grid(tables[b.index]) if b.index in tables else pg.esc(b.text)
        cls = "blk failing" if (page.page_no, b.index) in failing else "blk"
        flags = pg.reasons_html(b.flags)
        items.append(
            f'<li class="{cls}" id="b{page.page_no}-{b.index}" data-page="{page.page_no}" '
            f'data-block="{b.index}" data-kind="{pg.esc(b.kind)}"><span class="kind">'
            f'{pg.esc(b.label)}</span>{flags}<div class="btext">{body}</div></li>'
        )
    empty = "" if items else "<p>the engine found no text on this page</p>"
    return f'<div class="textpanel" id="text-{page.page_no}"><ol>{"".join(items)}</ol>{empty}</div>'


def action_form(base: str, doc_id: str, token: str, decision: str) -> str:
    """One decision's form (POST with the form token); re-OCR with its engine list."""
    from airflow_provider_deepocr.core.review import REOCR, REOCR_ENGINES

    extra = ""
    if decision == REOCR:
        extra = '<select name="engine">' + "".join(f'<option value="{e}">{e}</option>' for e in REOCR_ENGINES)
        extra += "</select> "
    return (
        f'<form class="actions" method="post" action="{pg.esc(base)}/doc/{doc_id}/decide">'
        f'<input type="hidden" name="csrf" value="{token}">'
        f'<input type="hidden" name="decision" value="{decision}">{extra}'
        f'<input name="note" placeholder="note" size="18"> '
        f'<button id="{decision}" type="submit">{decision}</button></form>'
    )


def _link(id_: str, label: str, href: str | None) -> str:
    if href is None:
        return f'<a id="{id_}" class="off">{label}</a>'
    return f'<a id="{id_}" href="{pg.esc(href)}">{label}</a>'


def document_body(
    *,
    base: str,
    item: QueueItem,
    result: DocumentResult,
    page_no: int,
    reasons: list[FailureReason],
    failed: list[FailedExpectation],
    neighbours: tuple[str | None, str | None],
    actions: str,
    run_link: Callable[[str, str], str | None],
    flash: str = "",
) -> str:
    """The body of the document page, showing page ``page_no`` (clamped to the document's)."""
    doc_id = item.doc_id
    numbers = [p.page_no for p in result.pages]
    page = next((p for p in result.pages if p.page_no == page_no), result.pages[0] if result.pages else None)
    prev_doc, next_doc = neighbours
    doc_href = f"{base}/doc/"
    nav = [
        _link("to-queue", "← queue", f"{base}/"),
        _link("prev-doc", "‹ previous document", prev_doc and doc_href + prev_doc),
        _link("next-doc", "next document ›", next_doc and doc_href + next_doc),
    ]
    run_url = run_link(item.dag_id, item.run_id) if item.run_id else None
    run = pg.run_html(item.run_id, run_url)
    head = (
        f'<div class="nav">{"".join(nav)}</div><h1>{pg.esc(item.source_uri)}</h1>{flash}'
        f'<p>status <span class="status">{pg.esc(item.status)}</span> {pg.reasons_html(item.reasons)}'
        f" · run {run} · DAG {pg.esc(item.dag_id)} · doc {doc_id[:12]} · {len(numbers)} pages</p>"
    )
    why = why_html(reasons, failed)
    if page is None:
        return head + why + actions + "<p>no pages: nothing was read from this document</p>"
    i = numbers.index(page.page_no)
    here = f"{base}/doc/{doc_id}?page="
    tabs = " ".join(
        f'<a class="{"current" if n == page.page_no else ""}" href="{pg.esc(here)}{n}">{n}'
        f"{pg.reasons_html(next(p for p in result.pages if p.page_no == n).flags)}</a>"
        for n in numbers
    )
    pager = (
        '<div class="nav">'
        + _link("prev-page", "‹ previous page", here + str(numbers[i - 1]) if i > 0 else None)
        + f'<span class="tabs">page {tabs}</span>'
        + _link("next-page", "next page ›", here + str(numbers[i + 1]) if i + 1 < len(numbers) else None)
        + '<button id="zoom-out" type="button">−</button><span id="zoom-level">100%</span>'
        '<button id="zoom-in" type="button">+</button><button id="zoom-fit" type="button">fit</button>'
        '<span class="keys">keys: j/k or →/← page · n/p document · q queue · +/−/0 zoom</span></div>'
    )
    failing = {(p, b) for e in failed for p, b in e.rows}
    image = pg.page_svg(
        page,
        f"{base}/doc/{doc_id}/page/{page.page_no}.png",
        failing={b for p, b in failing if p == page.page_no},
    )
    info = (
        f'<p class="pageinfo"><small>page {page.page_no}: {page.width}×{page.height} px at {page.dpi} dpi, '
        f"{pg.esc(page.engine)}, {len(page.parsed.blocks)} blocks</small> {pg.reasons_html(page.flags)}</p>"
    )
    work = (
        f'<section class="pageview" id="page-{page.page_no}" data-page="{page.page_no}">{info}'
        f'<div class="workspace"><div class="viewer">{image}</div>{text_panel(page, failing)}</div></section>'
    )
    return head + why + actions + pager + pg.legend() + work


def layout(title: str, body: str) -> str:
    """The document page: the shared layout with this page's style and script."""
    html = pg.layout(title, body)
    html = html.replace("</style>", CSS + "</style>", 1)
    return html.replace("</body>", f"<script>{JS}</script></body>", 1)
