"""One self-contained HTML page: sortable tables, embedded plots and galleries (base64 PNG), provenance, BibTeX.

Nothing is loaded from elsewhere (a Content-Security-Policy allows only inline
style and script and ``data:`` images). Every string from a results file goes
through `esc_html`; numbers are formatted by xbench. Sorting: click a column
header; each method's xbench row and its published row sort together (one
``<tbody>`` per method); cells without a value sort last.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

from .escape import esc_html as esc
from .model import LEGEND, Asset, Leaderboard, column_label, n_a_reasons
from .published import PublishedValue
from .tables import Table, format_number, format_published, format_value, metric_meta

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;max-width:1500px;padding:0 1em;
color:#222}
h1{margin-bottom:.2em} h2{margin-top:2em;border-bottom:1px solid #ccc} .meta{color:#555;font-size:.9em}
.warning{background:#fff3cd;border:2px solid #d39e00;padding:.8em 1em;margin:1em 0;font-weight:600}
.warning ul{font-weight:normal;margin:.3em 0}
table.lb{border-collapse:collapse;font-size:.82em;margin:.8em 0;display:block;overflow-x:auto}
table.lb th,table.lb td{border:1px solid #ddd;padding:.25em .45em;text-align:right;white-space:nowrap}
table.lb th:first-child,table.lb td:first-child{text-align:left}
table.lb thead th{background:#f3f3f3;cursor:pointer} table.lb tr.cats th{background:#e6e6e6;cursor:default}
th[aria-sort=ascending]::after{content:" \\25B2"} th[aria-sort=descending]::after{content:" \\25BC"}
td.best{font-weight:700;background:#e7f5e7} td.na{color:#999} td.error,td.failed{color:#b00}
tr.pub td{font-style:italic;color:#555;background:#fafafa;font-size:.92em}
.figs{display:flex;flex-wrap:wrap;gap:1em} figure{margin:0} figure img{max-width:560px;border:1px solid #eee}
figure.wide img{max-width:100%}
.gallery img{max-width:720px} .note{color:#777;font-style:italic}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:.8em}
table.kv{border-collapse:collapse;font-size:.85em} table.kv td{border-bottom:1px solid #eee;padding:.2em .6em;
vertical-align:top} code{font-size:.9em}
"""

SORT_JS = """
(function () {
  function key(body, col) {
    var cell = body.rows[0].cells[col];
    var v = cell ? cell.getAttribute('data-v') : null;
    if (v === null || v === '') return null;
    var f = parseFloat(v);
    return isNaN(f) ? v : f;
  }
  var tables = document.querySelectorAll('table.sortable');
  Array.prototype.forEach.call(tables, function (tab) {
    var heads = tab.tHead.rows[tab.tHead.rows.length - 1].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener('click', function () {
        var asc = th.getAttribute('aria-sort') !== 'ascending';
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
        var bodies = Array.prototype.slice.call(tab.tBodies);
        bodies.sort(function (a, b) {
          var x = key(a, col), y = key(b, col);
          if (x === null && y === null) return 0;
          if (x === null) return 1;
          if (y === null) return -1;
          var r = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
          return asc ? r : -r;
        });
        bodies.forEach(function (b) { tab.appendChild(b); });
      });
    });
  });
})();
"""


def _img(out_dir: Path, rel: str, alt: str) -> str:
    data = base64.b64encode((out_dir / rel).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def _table_html(t: Table) -> list[str]:
    out = [f'<table class="lb sortable" id="table-{esc(t.key)}">', "<thead>", '<tr class="cats"><th></th><th></th>']
    for cat, mets in t.categories():
        out.append(f'<th colspan="{len(mets)}">{esc(cat)}</th>')
    out.append("</tr><tr><th>method</th><th>seeds</th>")
    for met in t.metrics:
        arrow, unit = column_label(t, met)
        direction = t.meta(met)["direction"]
        out.append(f'<th data-metric="{esc(met)}" title="{esc(direction)} is better">{esc(met)} {arrow}{esc(unit)}'
                   "</th>")
    out.append("</tr></thead>")
    for row in t.methods:
        seeds = t.seeds.get(row, [])
        out.append(f'<tbody data-method="{esc(row)}"><tr class="xb"><td data-v="{esc(row)}">{esc(row)}</td>'
                   f'<td data-v="{len(seeds)}">{esc(",".join(map(str, seeds)) or "-")}</td>')
        for met in t.metrics:
            c = t.cells[(row, met)]
            text = format_value(c, t.meta(met)["percent"], seeds=len(seeds) if t.kind == "dataset" else None)
            cls = "best" if c.best else {"n/a": "na", "error": "error", "failed": "failed", "missing": "na"}.get(
                c.status, "")
            v = repr(c.mean) if c.status == "ok" and c.mean is not None else ""
            tip = f' title="{esc(c.reason)}"' if c.reason else ""
            out.append(f'<td class="{cls}" data-v="{v}"{tip}>{esc(text)}</td>')
        out.append("</tr>")
        if any(t.cells[(row, met)].published for met in t.metrics):
            srcs = sorted({p.source for met in t.metrics for p in t.cells[(row, met)].published})
            out.append(f'<tr class="pub"><td>↳ published ({esc("; ".join(srcs))})</td><td></td>')
            for met in t.metrics:
                c = t.cells[(row, met)]
                tip = "; ".join(f"{p.source}: {p.raw} {p.unit}" + (f" ({p.note})" if p.note else "")
                                for p in c.published)
                out.append(f'<td title="{esc(tip)}">{esc(format_published(c, t.meta(met)["percent"]))}</td>'
                           if c.published else "<td></td>")
            out.append("</tr>")
        out.append("</tbody>")
    out.append("</table>")
    return out


def _assets_html(out_dir: Path, assets: list[Asset]) -> list[str]:
    out = []
    figs = [a for a in assets if a.png and a.kind != "gallery"]
    if figs:
        out.append('<div class="figs">')
        for a in figs:
            cls = ' class="wide"' if a.kind == "heatmap" else ""
            out.append(f"<figure{cls}>{_img(out_dir, a.png, a.title)}<figcaption>{esc(a.title)}</figcaption>"
                       "</figure>")
        out.append("</div>")
    gal = [a for a in assets if a.kind == "gallery" and a.group]
    if gal:
        out.append("<h3>Explanation gallery</h3>")
        for group in dict.fromkeys(a.group for a in gal):
            out.append(f'<h4>{esc(group)}</h4><div class="figs gallery">')
            for a in gal:
                if a.group == group and a.png:
                    out.append(f"<figure>{_img(out_dir, a.png, a.title)}<figcaption>{esc(a.title)}</figcaption>"
                               "</figure>")
            out.append("</div>")
    for a in assets:
        if not a.png and a.note:
            out.append(f'<p class="note">{esc(a.title)}: skipped: {esc(a.note)}</p>')
    return out


def _section(t: Table, out_dir: Path, assets: list[Asset]) -> list[str]:
    out = [f'<section id="s-{esc(t.key)}"><h2>{esc(t.title)}</h2>']
    if t.untrained_weights:
        out.append(f'<div class="warning">weights: {esc(t.weights_kind)}: not a DINOv2 result</div>')
    if t.kind == "overall":
        out.append('<p class="meta">Mean over datasets of each method\'s per-dataset means, for the metrics every '
                   "dataset has; mean_rank = mean rank over every ranked column of the datasets (lower is better)."
                   "</p>")
    else:
        out.append(f'<p class="meta">backbone <b>{esc(t.backbone)}</b>, weights <b>{esc(t.weights)}</b> (hash '
                   f"<code>{esc(t.weights_hash or '-')}</code>), profile {esc(t.profile)}, protocol "
                   f"{esc(t.protocol)}. {esc(LEGEND)}.</p>")
    out += _table_html(t)
    reasons = n_a_reasons(t)
    if reasons:
        out.append('<ul class="reasons">')
        out += [f"<li>{esc(line)}</li>" for line in reasons]
        out.append("</ul>")
    if t.failed:
        out.append('<p>Failed jobs (not averaged):</p><ul class="failed">')
        out += [f"<li>{esc(f['method'])} seed {esc(f['seed'])}: {esc(f['error'])}</li>" for f in t.failed]
        out.append("</ul>")
    out += _assets_html(out_dir, assets)
    return out + ["</section>"]


def _published_html(rows: list[PublishedValue]) -> list[str]:
    if not rows:
        return []
    out = ['<section id="published"><h2>Published numbers (reference)</h2>',
           '<p class="meta">As published (raw value and unit), normalised to xbench\'s display scale; shown beside '
           "xbench's cells only for the same method, dataset and metric, and never averaged in.</p>",
           '<table class="lb sortable" id="table-published"><thead><tr><th>method</th><th>dataset</th><th>metric'
           "</th><th>published</th><th>shown as</th><th>backbone</th><th>source</th><th>note</th></tr></thead>"]
    for p in rows:
        pct = metric_meta(p.metric)["percent"]
        shown = format_number(p.value, pct) + (" %" if pct else "")
        cells = [p.method, p.dataset, p.metric if p.metric == p.published_metric else
                 f"{p.metric} ({p.published_metric})", f"{p.raw} {p.unit}", shown, p.backbone or "?", p.source, p.note]
        out.append("<tbody><tr>" + "".join(f'<td data-v="{esc(c)}">{esc(c)}</td>' for c in cells) + "</tr></tbody>")
    return out + ["</table></section>"]


def _kv(rows: list[tuple[str, str]]) -> list[str]:
    return ['<table class="kv">'] + [f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows] + ["</table>"]


def _provenance_html(lb: Leaderboard) -> list[str]:
    pv = lb.provenance
    out = ['<section id="provenance"><h2>Provenance</h2>']
    out += _kv([(k, ", ".join(v) or "?") for k, v in pv.versions.items()] +
               [("git commit(s)", ", ".join(pv.git_commits) or "?"), ("hardware", "; ".join(pv.hardware) or "?"),
                ("runs dated", f"{pv.dates[0] or '?'} to {pv.dates[1] or '?'}")])
    for tp in pv.tables:
        out.append(f"<h3>{esc(tp.title)}</h3>")
        rows = [("backbone", tp.backbone), ("weights", f"{tp.weights} (kind {tp.weights_kind})"),
                ("weights hash", tp.weights_hash or "-"), ("profile", tp.profile),
                ("jobs", f"{tp.jobs_complete} complete, {tp.jobs_failed} failed"),
                ("runs dated", f"{tp.dates[0]} to {tp.dates[1]}"), ("recreate the runs", tp.command)]
        rows += [("dataset", json.dumps(d, sort_keys=True)) for d in tp.datasets]
        rows += [("backbone details", json.dumps(b, sort_keys=True)) for b in tp.backbone_info]
        rows += [(f"{row}", f"seeds {','.join(map(str, s)) or '-'}; params "
                  + "; ".join(json.dumps(p, sort_keys=True) for p in tp.params.get(row, []))) for row, s in
                 tp.seeds.items()]
        rows += [("versions", json.dumps(tp.versions, sort_keys=True)), ("git commit(s)", ", ".join(tp.git_commits)),
                 ("hardware", "; ".join(tp.hardware))]
        out += _kv(rows)
    return out + ["</section>"]


def html_document(lb: Leaderboard, out_dir: Path) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
           "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>xbench leaderboard</title>", f"<style>{CSS}</style></head><body>", "<h1>xbench leaderboard</h1>"]
    if lb.warnings:
        out.append('<div class="warning" id="weights-warning">⚠ WARNING: not DINOv2 results. Some tables use '
                   "untrained backbone weights:<ul>" + "".join(f"<li>{esc(w)}</li>" for w in lb.warnings) +
                   "</ul></div>")
    nav = [(f"s-{t.key}", t.title) for t in lb.tables + lb.overall]
    nav += [("published", "published numbers"), ("provenance", "provenance"), ("bibtex", "BibTeX")]
    out.append("<nav><ul>" + "".join(f'<li><a href="#{esc(i)}">{esc(n)}</a></li>' for i, n in nav) + "</ul></nav>")
    if not lb.tables:
        out.append("<p>No results yet: run <code>xbench run</code>.</p>")
    for t in lb.tables:
        out += _section(t, out_dir, lb.assets_of(t))
    if lb.overall:
        out.append('<h2 id="overall">Overall</h2>')
        for t in lb.overall:
            out += _section(t, out_dir, lb.assets_of(t))
    out += _published_html(lb.reference)
    out += _provenance_html(lb)
    if lb.notes:
        out.append("<ul>" + "".join(f'<li class="note">{esc(n)}</li>' for n in lb.notes) + "</ul>")
    out.append('<section id="bibtex"><h2>BibTeX</h2><ul>')
    out += [f"<li><code>{esc(k)}</code>: {esc(', '.join(u))}</li>" for k, u in lb.citations.uses.items()]
    out += [f"<li>no BibTeX entry for <code>{esc(k)}</code> ({esc(', '.join(u))})</li>"
            for k, u in lb.citations.missing.items()]
    out.append(f"</ul><pre>{esc(lb.citations.bibtex)}</pre></section>")
    out.append(f"<script>{SORT_JS}</script></body></html>")
    return "\n".join(out) + "\n"
