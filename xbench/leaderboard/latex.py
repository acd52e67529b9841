r"""LaTeX leaderboard: a complete document (booktabs tables, category headers, best in bold, published rows
in italics with a dagger, figures, provenance, `\nocite` of the cited keys against `leaderboard.bib`).

Each table is also usable alone: copy its `table` environment into a paper
(it needs booktabs and graphicx). Every string from a results file goes through
`esc_tex`; numbers are formatted by xbench.
"""
from __future__ import annotations

import json

from .escape import esc_tex as esc
from .model import Leaderboard, column_label, n_a_reasons
from .tables import Table, format_published, format_value

PREAMBLE = r"""\documentclass{article}
\usepackage[T1]{fontenc}
\usepackage[utf8]{inputenc}
\usepackage[landscape,margin=1.5cm]{geometry}
\usepackage{booktabs}
\usepackage{graphicx}
\usepackage{amssymb}
\begin{document}
"""


def _num(text: str) -> str:
    return text.replace(" ± ", r" $\pm$ ").replace("±", r"$\pm$")


def table_tex(t: Table) -> list[str]:
    n = len(t.metrics)
    out = [r"\begin{table}[ht]", r"\centering", r"\scriptsize",
           r"\caption{" + esc(t.title) + (r" (\textbf{weights: " + esc(t.weights_kind) + r", not a DINOv2 result})"
                                            if t.untrained_weights else "") + "}",
           r"\resizebox{\textwidth}{!}{%", r"\begin{tabular}{ll" + "r" * n + "}", r"\toprule"]
    cat_cells, rules, col = [], [], 3
    for cat, mets in t.categories():
        cat_cells.append(r"\multicolumn{" + str(len(mets)) + r"}{c}{" + esc(cat) + "}")
        rules.append(r"\cmidrule(lr){" + f"{col}-{col + len(mets) - 1}" + "}")
        col += len(mets)
    out.append(" & & " + " & ".join(cat_cells) + r" \\")
    out.append(" ".join(rules))
    heads = []
    for met in t.metrics:
        arrow, unit = column_label(t, met)
        sym = {"↑": r"$\uparrow$", "↓": r"$\downarrow$"}.get(arrow, "")
        heads.append(esc(met) + sym + esc(unit))
    out.append("method & seeds & " + " & ".join(heads) + r" \\")
    out.append(r"\midrule")
    for row in t.methods:
        seeds = t.seeds.get(row, [])
        cells = [esc(row), esc(",".join(map(str, seeds)) or "-")]
        for met in t.metrics:
            c = t.cells[(row, met)]
            v = _num(esc(format_value(c, t.meta(met)["percent"], seeds=len(seeds) if t.kind == "dataset" else None)))
            cells.append(r"\textbf{" + v + "}" if c.best else v)
        out.append(" & ".join(cells) + r" \\")
        if any(t.cells[(row, met)].published for met in t.metrics):
            pcells = [r"\quad\textit{published}$^\dagger$", ""]
            for met in t.metrics:
                c = t.cells[(row, met)]
                pcells.append(r"\textit{" + esc(format_published(c, t.meta(met)["percent"])) + "}"
                              if c.published else "")
            out.append(" & ".join(pcells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}}"]
    notes = [r"Mean $\pm$ sample std over seeds; bold: best; n/a: does not apply."]
    if any(c.published for c in t.cells.values()):
        srcs = sorted({p.source for c in t.cells.values() for p in c.published})
        notes.append(r"$^\dagger$Published by " + esc("; ".join(srcs)) +
                     " under their own backbone and protocol; never averaged in.")
    out += [r"\par\smallskip " + " ".join(notes), r"\end{table}", ""]
    return out


def latex_document(lb: Leaderboard) -> str:
    out = [PREAMBLE, r"\section*{xbench leaderboard}"]
    if lb.warnings:
        out.append(r"\noindent\fbox{\parbox{\dimexpr\linewidth-2\fboxsep-2\fboxrule}{\textbf{WARNING: not DINOv2 "
                   r"results.} Some tables use untrained backbone weights:\\ " +
                   r"\\ ".join(esc(w) for w in lb.warnings) + "}}")
        out.append("")
    for t in lb.tables + lb.overall:
        out += table_tex(t)
        for line in n_a_reasons(t):
            out.append(r"\noindent\footnotesize " + esc(line) + r"\par")
        for f in t.failed:
            out.append(r"\noindent\footnotesize failed: " + esc(f"{f['method']} seed {f['seed']}: {f['error']}")
                       + r"\par")
        for a in lb.assets_of(t):
            if a.pdf:
                out += [r"\begin{figure}[ht]\centering", r"\includegraphics[width=0.6\linewidth]{" + a.pdf + "}",
                        r"\caption{" + esc(a.title) + "}", r"\end{figure}"]
        out.append(r"\clearpage")
    pv = lb.provenance
    out += [r"\section*{Provenance}", r"\begin{itemize}",
            r"\item versions: " + esc(json.dumps(pv.versions, sort_keys=True)),
            r"\item git commit(s): " + esc(", ".join(pv.git_commits) or "?"),
            r"\item hardware: " + esc("; ".join(pv.hardware) or "?"),
            r"\item runs dated " + esc(pv.dates[0] or "?") + " to " + esc(pv.dates[1] or "?")]
    for tp in pv.tables:
        out.append(r"\item " + esc(tp.title) + ": weights " + esc(tp.weights) + " (" + esc(tp.weights_kind) +
                   ", hash " + esc(tp.weights_hash or "-") + "); datasets " +
                   esc("; ".join(json.dumps(d, sort_keys=True) for d in tp.datasets)) + "; seeds " +
                   esc(json.dumps(tp.seeds, sort_keys=True)) + r"; recreate: \texttt{" + esc(tp.command) + "}")
    out += [r"\end{itemize}", ""]
    if lb.citations.keys:
        out += [r"\nocite{" + ",".join(lb.citations.keys) + "}", r"\bibliographystyle{plain}",
                r"\bibliography{leaderboard}"]
    out += [r"\end{document}", ""]
    return "\n".join(out)
