"""Leaderboard plots (seaborn / matplotlib, object API only: no pyplot state, no backend switch), written
atomically as PNG and PDF with no timestamps (the same records give the same files).

Per dataset table:
- ``pareto``: accuracy (y) against mean explainability (x), one point per method
  (mean over seeds, error bars = seed std), the Pareto front (methods no other
  method beats on both) as a dashed step line; published points (where a paper
  gives both numbers) are hollow and labelled, and never part of the front.
- ``spider``: one FunnyBirds-style radar per method over FunnyBirds' eight
  scores: accuracy, background independence, CSDC, PC, DC, distractibility
  (completeness family), single deletion (= correctness) and target sensitivity
  (= contrastivity), each read from whichever of its two names the records
  have; the three aggregates are printed in the title. Axes are the
  scores that at least one method of the table has, the same for every method;
  a score a method lacks is a gap in its polygon and named in the title.
- ``heatmap``: methods x metrics, coloured by the per-column score normalised
  to [0, 1] with the metric's direction (1 = best in the column, 0 = worst;
  0.5 when the column has one value or no direction), annotated with the
  displayed value; n/a and missing cells are grey.

A plot that cannot be drawn (no method has the metrics) is skipped with a
note, never an exception.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..atomic import atomic_save
from .model import Asset
from .tables import Table, format_number, slug

# (label, metrics that give the score, first found wins): SD = correctness and TS = contrastivity are the same
# numbers under two names (the default run reports the aggregates' names)
FUNNYBIRDS_AXES = [("Acc.", ("accuracy",)), ("BI", ("background_independence",)), ("CSDC", ("csdc",)),
                   ("PC", ("pc",)), ("DC", ("dc",)), ("D", ("distractibility",)),
                   ("SD", ("single_deletion", "correctness")), ("TS", ("target_sensitivity", "contrastivity"))]
FUNNYBIRDS_AGGREGATES = ["completeness", "correctness", "contrastivity", "mean_explainability"]


def mpl_text(text: object) -> str:
    """A string from a results file as literal matplotlib text: '$' would start mathtext, and control
    characters (other than newline) have no glyph, so they are shown as '?'."""
    s = "".join(c if c == "\n" or c.isprintable() else "?" for c in str(text))
    return s.replace("$", r"\$")


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point weakly beats on both coordinates (higher is better on both) and
    strictly on one; sorted by x."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((qx >= x and qy >= y) and (qx > x or qy > y) for j, (qx, qy) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def _figure(w: float, h: float, polar: bool = False, style: str = "whitegrid"):
    """A figure with one axes styled by seaborn (a context: the global matplotlib state is left alone)."""
    import seaborn as sns
    from matplotlib.figure import Figure

    with sns.axes_style(style):
        fig = Figure(figsize=(w, h), dpi=110)
        ax = fig.add_subplot(111, projection="polar" if polar else None)
    return fig, ax


def save_figure(fig, out_dir: Path, stem: str) -> tuple[str, str]:
    """Write `stem`.png and `stem`.pdf under out_dir/plots atomically; returns their paths relative to out_dir."""
    rel = Path("plots")
    for ext, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "ModDate": None, "Producer": None})):
        atomic_save(out_dir / rel / f"{stem}.{ext}",
                    lambda tmp, ext=ext, meta=meta: fig.savefig(tmp, format=ext, metadata=meta, bbox_inches="tight"))
    return str(rel / f"{stem}.png"), str(rel / f"{stem}.pdf")


def _ok(t: Table, row: str, met: str) -> tuple[float, float] | None:
    c = t.cells.get((row, met))
    if c is None or c.status != "ok" or c.mean is None or not math.isfinite(c.mean):
        return None
    return c.mean, (c.std or 0.0)


def pareto_plot(t: Table, out_dir: Path) -> Asset:
    title = f"accuracy vs mean explainability: {t.title}"
    x_met, y_met = "mean_explainability", "accuracy"
    pts = [(row, _ok(t, row, x_met), _ok(t, row, y_met)) for row in t.methods]
    pts = [(row, x, y) for row, x, y in pts if x is not None and y is not None]
    if not pts:
        return Asset("pareto", title, note=f"no method has both {y_met} and {x_met} on this table")
    import seaborn as sns

    fig, ax = _figure(6.0, 4.5)
    colors = sns.color_palette("colorblind", len(pts))
    for (row, (x, xs), (y, ys)), col in zip(pts, colors):
        ax.errorbar(x, y, xerr=xs, yerr=ys, fmt="o", color=col, capsize=3, label=mpl_text(row))
    front = pareto_front([(x[0], y[0]) for _, x, y in pts])
    fx = [pts[i][1][0] for i in front]
    fy = [pts[i][2][0] for i in front]
    ax.step(fx, fy, where="post", linestyle="--", color="0.3", linewidth=1, label="Pareto front")
    for row in t.methods:
        px = [p for p in t.cells.get((row, x_met)).published] if (row, x_met) in t.cells else []
        py = [p for p in t.cells.get((row, y_met)).published] if (row, y_met) in t.cells else []
        for a in px:
            for b in py:
                if a.source == b.source:
                    ax.scatter([a.value], [b.value], facecolors="none", edgecolors="0.2", marker="D")
                    ax.annotate(mpl_text(f"{row} (published)"), (a.value, b.value), fontsize=7,
                                xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("mean explainability (higher is better)")
    ax.set_ylabel("accuracy (higher is better)")
    ax.set_title(mpl_text(t.title), fontsize=8)
    ax.legend(fontsize=7, loc="best")
    png, pdf = save_figure(fig, out_dir, f"{t.key}_pareto")
    return Asset("pareto", title, png, pdf)


def spider_axes(t: Table) -> list[tuple[str, str]]:
    """(metric, label) of the FunnyBirds axes some method of the table has, in FunnyBirds' order."""
    axes = []
    for label, names in FUNNYBIRDS_AXES:
        m = next((n for n in names if any(_ok(t, r, n) for r in t.methods)), None)
        if m is not None:
            axes.append((m, label))
    return axes


def spider_plots(t: Table, out_dir: Path) -> list[Asset]:
    axes = spider_axes(t)
    if len(axes) < 3:
        return [Asset("spider", f"FunnyBirds spider: {t.title}",
                      note="fewer than three FunnyBirds scores on this table (FunnyBirds-style datasets only)")]
    import seaborn as sns

    out = []
    angles = np.linspace(0, 2 * np.pi, len(axes), endpoint=False).tolist()
    for i, row in enumerate(t.methods):
        vals = [(_ok(t, row, m) or (float("nan"), 0.0))[0] for m, _ in axes]
        if sum(not math.isnan(v) for v in vals) < 3:
            out.append(Asset("spider", f"FunnyBirds spider: {row}",
                             note=f"{row} has fewer than three FunnyBirds scores (attribution methods only)"))
            continue
        fig, ax = _figure(4.2, 4.2, polar=True)
        color = sns.color_palette("colorblind", max(len(t.methods), 1))[i]
        ax.plot(angles + angles[:1], vals + vals[:1], color=color, linewidth=1.5)
        ax.fill(angles + angles[:1], [0 if math.isnan(v) else v for v in vals + vals[:1]], color=color, alpha=0.2)
        ax.set_xticks(angles)
        ax.set_xticklabels([label for _, label in axes], fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_yticks([0.25, 0.5, 0.75, 1.0])
        ax.tick_params(axis="y", labelsize=6)
        agg = []
        for m in FUNNYBIRDS_AGGREGATES[:3]:
            v = _ok(t, row, m)
            agg.append(f"{m} {v[0]:.2f}" if v else f"{m} n/a")
        missing = [label for (m, label), v in zip(axes, vals) if math.isnan(v)]
        ax.set_title(mpl_text(f"{row}\n" + " · ".join(agg) + (f"\nmissing: {', '.join(missing)}" if missing else "")),
                     fontsize=8)
        h = hashlib.sha1(row.encode()).hexdigest()[:6]
        png, pdf = save_figure(fig, out_dir, f"{t.key}_spider_{slug(row, 24)}_{h}")
        out.append(Asset("spider", f"FunnyBirds spider: {row}", png, pdf))
    return out


def heatmap_values(t: Table) -> tuple[list[str], np.ndarray, list[list[str]]]:
    """(columns, normalised scores [rows x cols] with NaN for no value, annotations) for the heat map."""
    cols = [m for m in t.metrics if any(_ok(t, r, m) for r in t.methods)]
    score = np.full((len(t.methods), len(cols)), np.nan)
    notes = [["" for _ in cols] for _ in t.methods]
    for j, met in enumerate(cols):
        meta = t.meta(met)
        vals = {r: _ok(t, r, met) for r in t.methods}
        nums = [v[0] for v in vals.values() if v]
        lo, hi = min(nums), max(nums)
        for i, r in enumerate(t.methods):
            c = t.cells[(r, met)]
            if vals[r] is None:
                notes[i][j] = {"n/a": "n/a", "error": "err", "failed": "fail"}.get(c.status, "-")
                continue
            v = vals[r][0]
            notes[i][j] = format_number(v, meta["percent"], 2)
            if meta["direction"] not in ("higher", "lower") or hi - lo <= 1e-12:
                score[i, j] = 0.5
            else:
                s = (v - lo) / (hi - lo)
                score[i, j] = s if meta["direction"] == "higher" else 1.0 - s
    return cols, score, notes


def heatmap_plot(t: Table, out_dir: Path) -> Asset:
    title = f"metric heat map: {t.title}"
    if not t.methods:
        return Asset("heatmap", title, note="no methods")
    cols, score, notes = heatmap_values(t)
    if not cols:
        return Asset("heatmap", title, note="no metric has a value on this table")
    import seaborn as sns

    fig, ax = _figure(max(4.0, 0.7 * len(cols) + 2.5), max(2.0, 0.45 * len(t.methods) + 1.8), style="white")
    ax.set_facecolor("0.85")
    mask = np.isnan(score)
    sns.heatmap(np.where(mask, 0.0, score), mask=mask, ax=ax, cmap="viridis", vmin=0, vmax=1, cbar=True,
                cbar_kws={"label": "column score (1 = best)"}, linewidths=0.5, linecolor="white")
    for i in range(score.shape[0]):
        for j in range(score.shape[1]):
            dark = not mask[i, j] and score[i, j] < 0.6
            ax.text(j + 0.5, i + 0.5, mpl_text(notes[i][j]), ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    ax.set_xticks(np.arange(len(cols)) + 0.5)
    ax.set_xticklabels([mpl_text(c) for c in cols], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(np.arange(len(t.methods)) + 0.5)
    ax.set_yticklabels([mpl_text(r) for r in t.methods], rotation=0, fontsize=8)
    ax.set_title(mpl_text(t.title), fontsize=8)
    png, pdf = save_figure(fig, out_dir, f"{t.key}_heatmap")
    return Asset("heatmap", title, png, pdf)


def draw_plots(tables: Sequence[Table], out_dir: Path) -> dict[str, list[Asset]]:
    """Every plot of every table; a plot that fails to draw becomes a note, never an exception."""
    out: dict[str, list[Asset]] = {}
    for t in tables:
        assets: list[Asset] = []
        makers = [lambda t=t: [heatmap_plot(t, out_dir)]]
        if t.kind == "dataset":
            makers = [lambda t=t: [pareto_plot(t, out_dir)], lambda t=t: spider_plots(t, out_dir)] + makers
        for make in makers:
            try:
                assets += make()
            except Exception as err:  # a plot is never worth losing the leaderboard
                assets.append(Asset("plot", f"plot for {t.title}", note=f"could not draw: {type(err).__name__}: "
                                                                        f"{str(err).splitlines()[0] if str(err) else ''}"))
        out[t.key] = assets
    return out
