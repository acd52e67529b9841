"""Markdown leaderboard."""
from __future__ import annotations

from .tables import Table, format_value, metric_meta

ARROW = {"higher": "↑", "lower": "↓", "none": ""}


def esc(text: object) -> str:
    """Escape a string from a results file for a Markdown table cell."""
    s = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")
    for ch in "<>`":
        s = s.replace(ch, "\\" + ch)
    return s


def render_markdown(tables: list[Table]) -> str:
    out = ["# xbench leaderboard", ""]
    if not tables:
        out.append("_No results yet: run `xbench run`._")
    for t in tables:
        out.append(f"## {esc(t.dataset)}")
        warn = ""
        if t.weights_kind in ("random", "weight-free"):
            warn = f" **(weights: {t.weights_kind}; not a DINOv2 result)**"
        out.append(f"backbone {esc(t.backbone)}, weights {esc(t.weights)}{warn}, profile {esc(t.profile)}; "
                   "mean ± std over seeds; **bold** = best; n/a = does not apply")
        out.append("")
        head = ["method", "seeds"] + [
            f"{esc(m)} {ARROW[metric_meta(m)['direction']]}" + (" (%)" if metric_meta(m)["percent"] else "")
            for m in t.metrics]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join(["---"] * len(head)) + "|")
        for m in t.methods:
            row = [esc(m), ",".join(str(s) for s in t.seeds.get(m, [])) or "-"]
            for met in t.metrics:
                c = t.cells[(m, met)]
                v = format_value(c, metric_meta(met)["percent"])
                row.append(f"**{v}**" if c.best else v)
            out.append("| " + " | ".join(row) + " |")
        if t.failed:
            out.append("")
            for f in t.failed:
                out.append(f"- failed: {esc(f['method'])} seed {esc(f['seed'])}: {esc(f['error'])}")
        out.append("")
    return "\n".join(out)
