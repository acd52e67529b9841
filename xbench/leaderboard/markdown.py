"""Markdown leaderboard: `render_markdown(tables)` (tables only, printed by `xbench run`) and
`markdown_document(lb)` (the full `leaderboard.md`: tables, plots, overall, published, provenance, BibTeX).
Every string from a results file goes through `esc`."""
from __future__ import annotations

import json

from .escape import esc_md as esc
from .model import LEGEND, Leaderboard, column_label, n_a_reasons
from .published import PublishedValue
from .tables import Table, format_number, format_published, format_value, metric_meta


def _banner(warnings: list[str]) -> list[str]:
    if not warnings:
        return []
    out = ["> **⚠ WARNING: not DINOv2 results.** Some tables use untrained backbone weights:"]
    out += [f"> - {esc(w)}" for w in warnings]
    return out + [""]


def render_table(t: Table) -> list[str]:
    out = []
    head = ["method", "seeds"]
    for met in t.metrics:
        arrow, unit = column_label(t, met)
        head.append(f"{esc(met)} {arrow}{unit}".strip())
    cats = ["*category*", ""]
    for cat, mets in t.categories():
        cats += [f"*{esc(cat)}*"] + [""] * (len(mets) - 1)
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join(["---"] * len(head)) + "|")
    out.append("| " + " | ".join(cats) + " |")
    for row in t.methods:
        seeds = t.seeds.get(row, [])
        cells = [esc(row), ",".join(str(s) for s in seeds) or "-"]
        for met in t.metrics:
            c = t.cells[(row, met)]
            v = format_value(c, t.meta(met)["percent"], seeds=len(seeds) if t.kind == "dataset" else None)
            cells.append(f"**{v}**" if c.best else v)
        out.append("| " + " | ".join(cells) + " |")
        pub = [(met, t.cells[(row, met)]) for met in t.metrics if t.cells[(row, met)].published]
        if pub:
            sources = sorted({p.source for _, c in pub for p in c.published})
            label = f"↳ *published* ({esc('; '.join(sources))})"
            pcells = [label, ""] + [f"*{format_published(t.cells[(row, met)], t.meta(met)['percent'])}*"
                                    if t.cells[(row, met)].published else "" for met in t.metrics]
            out.append("| " + " | ".join(pcells) + " |")
    return out


def render_markdown(tables: list[Table], warnings: list[str] | None = None) -> str:
    """The per-dataset tables alone (what `xbench run` prints)."""
    from .provenance import weights_warning

    out = ["# xbench leaderboard", ""]
    if not tables:
        out.append("_No results yet: run `xbench run`._")
    out += _banner(warnings if warnings is not None else [w for t in tables for w in [weights_warning(t)] if w])
    for t in tables:
        out += _table_section(t, level="##")
    return "\n".join(out)


def _table_section(t: Table, level: str, assets=()) -> list[str]:
    out = [f"{level} {esc(t.title)}", ""]
    if t.untrained_weights:
        out += [f"**⚠ weights: {esc(t.weights_kind)}: not a DINOv2 result.**", ""]
    if t.kind == "overall":
        out += ["Mean over datasets of each method's per-dataset means, for the metrics every dataset has; "
                "mean_rank = mean rank over every ranked column of the datasets (see docs/leaderboards.md).", ""]
    else:
        out += [f"backbone {esc(t.backbone)}, weights {esc(t.weights)} (hash {esc(t.weights_hash or '-')}), "
                f"profile {esc(t.profile)}, protocol {esc(t.protocol)}. {LEGEND}.", ""]
    out += render_table(t)
    reasons = n_a_reasons(t)
    if reasons:
        out += ["", "Not applicable or failed:"]
        out += [f"- {esc(line)}" for line in reasons]
    if t.failed:
        out += ["", "Failed jobs (not averaged):"]
        out += [f"- {esc(f['method'])} seed {esc(f['seed'])}: {esc(f['error'])}" for f in t.failed]
    gallery_started = False
    for a in assets:
        if a.kind == "gallery" and not gallery_started:
            out += ["", f"{level}# Explanation gallery"]
            gallery_started = True
        if a.png:
            out += ["", f"![{esc(a.title)}]({a.png})" + (f" ([PDF]({a.pdf}))" if a.pdf else "")]
        elif a.note:
            out += ["", f"_{esc(a.title)}: skipped: {esc(a.note)}_"]
    return out + [""]


def _published_section(rows: list[PublishedValue]) -> list[str]:
    if not rows:
        return []
    out = ["## Published numbers (reference)", "",
           "As published (the `raw` value), normalised to xbench's display scale; from "
           "`xbench/resources/published.csv`. They are shown beside xbench's cells only for the same method, "
           "dataset and metric, and never averaged in.", "",
           "| method | dataset | metric | published | shown as | backbone | source | note |",
           "|---|---|---|---|---|---|---|---|"]
    for p in rows:
        pct = metric_meta(p.metric)["percent"]
        name = p.metric if p.metric == p.published_metric else f"{p.metric} ({p.published_metric})"
        out.append(f"| {esc(p.method)} | {esc(p.dataset)} | {esc(name)} | {esc(p.raw)} {esc(p.unit)} | "
                   f"{format_number(p.value, pct)}{' %' if pct else ''} | {esc(p.backbone or '?')} | "
                   f"{esc(p.source)} | {esc(p.note)} |")
    return out + [""]


def _provenance_section(lb: Leaderboard) -> list[str]:
    pv = lb.provenance
    out = ["## Provenance", "",
           f"- xbench: {esc(', '.join(pv.versions.get('xbench', [])) or '?')}; "
           f"torch: {esc(', '.join(pv.versions.get('torch', [])) or '?')}; "
           f"timm: {esc(', '.join(pv.versions.get('timm', [])) or '?')}; "
           f"python: {esc(', '.join(pv.versions.get('python', [])) or '?')}",
           f"- git commit(s): {esc(', '.join(pv.git_commits) or '?')}",
           f"- hardware: {esc('; '.join(pv.hardware) or '?')}",
           f"- runs dated {esc(pv.dates[0] or '?')} to {esc(pv.dates[1] or '?')}", ""]
    for tp in pv.tables:
        out += [f"### {esc(tp.title)}", "",
                f"- backbone **{esc(tp.backbone)}**, weights **{esc(tp.weights)}** (kind {esc(tp.weights_kind)}, "
                f"hash {esc(tp.weights_hash or '-')})",
                f"- jobs: {tp.jobs_complete} complete, {tp.jobs_failed} failed; runs dated {esc(tp.dates[0])} to "
                f"{esc(tp.dates[1])}",
                f"- recreate the runs: {esc(tp.command)}"]
        for d in tp.datasets:
            out.append(f"- dataset: {esc(json.dumps(d, sort_keys=True))}")
        for b in tp.backbone_info:
            out.append(f"- backbone: {esc(json.dumps(b, sort_keys=True))}")
        for row, seeds in tp.seeds.items():
            params = "; ".join(json.dumps(p, sort_keys=True) for p in tp.params.get(row, []))
            out.append(f"- {esc(row)}: seeds {esc(','.join(map(str, seeds)) or '-')}; params {esc(params or '{}')}")
        out.append(f"- versions: {esc(json.dumps(tp.versions, sort_keys=True))}; commits "
                   f"{esc(', '.join(tp.git_commits))}; hardware {esc('; '.join(tp.hardware))}")
        out.append("")
    return out


def markdown_document(lb: Leaderboard) -> str:
    out = ["# xbench leaderboard", ""]
    out += _banner(lb.warnings)
    if not lb.tables:
        out += ["_No results yet: run `xbench run`._", ""]
    for t in lb.tables:
        out += _table_section(t, "##", lb.assets_of(t))
    if lb.overall:
        out += ["# Overall", ""]
        for t in lb.overall:
            out += _table_section(t, "##", lb.assets_of(t))
    out += _published_section(lb.reference)
    out += _provenance_section(lb)
    for note in lb.notes:
        out.append(f"- note: {esc(note)}")
    out += ["## BibTeX", "", "Cite the methods, metrics, datasets and backbones that appear above:", ""]
    for k, uses in lb.citations.uses.items():
        out.append(f"- {esc(k)}: {esc(', '.join(uses))}")
    for k, uses in lb.citations.missing.items():
        out.append(f"- no BibTeX entry for {esc(k)} ({esc(', '.join(uses))})")
    out += ["", "```bibtex", lb.citations.bibtex.rstrip(), "```", ""]
    return "\n".join(out)
