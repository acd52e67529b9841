"""Write a leaderboard folder from a results store.

    out/leaderboard.md    Markdown: tables, plots (linked), overall, published numbers, provenance, BibTeX
    out/leaderboard.tex   LaTeX document (booktabs) + out/leaderboard.bib (the cited entries)
    out/leaderboard.csv   one row per (table, method, metric) and per published number
    out/leaderboard.json  everything, machine-readable
    out/leaderboard.html  one self-contained page (sortable tables, embedded plots and galleries)
    out/plots/*.png|pdf   the plots and galleries

Every file is written atomically. The content is a function of the records,
the packaged published numbers and the installed specs only (no clock, no
machine information from the machine that builds it), so the same results
folder gives the same files. Plot files of an earlier build in the same folder
that this build did not write again are removed (they are listed in
``plots/.manifest``; nothing else there is touched).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..atomic import atomic_write_text
from ..errors import ConfigError
from ..results import ResultsStore
from .bibtex import Citations
from .exports import leaderboard_csv, leaderboard_json
from .html_page import html_document
from .latex import latex_document
from .markdown import markdown_document
from .model import Asset, Leaderboard, build_leaderboard
from .published import load_published

FORMATS = ("md", "tex", "csv", "json", "html")
DEFAULT_FORMATS = ",".join(FORMATS)


def parse_formats(text: str) -> list[str]:
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(f"--formats {text}: unknown or empty format list (valid: {', '.join(FORMATS)})")
    return formats


def _clean_stale(out: Path, written: set[str]) -> None:
    manifest = out / "plots" / ".manifest"
    if manifest.exists():
        for line in manifest.read_text().splitlines():
            rel = Path(line.strip())
            ok = rel.parent == Path("plots") and not rel.name.startswith(".") and rel.name not in ("", "..")
            if ok and str(rel) not in written:
                (out / rel).unlink(missing_ok=True)
    if written or manifest.exists():
        atomic_write_text(manifest, "".join(f"{p}\n" for p in sorted(written)))


def write_leaderboard(store: ResultsStore, out: Path, formats: list[str], plots: bool = True,
                      gallery: Callable[[Leaderboard, Path], dict[str, list[Asset]]] | None = None,
                      published_path: Path | None = None) -> list[Path]:
    """Build the leaderboard of `store` and write the requested formats (and plots) under `out`.

    `gallery(lb, out)` may add explanation figures per table (see `gallery.py`);
    its failures become notes.
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ConfigError(f"--formats {','.join(bad)}: unknown format (valid: {', '.join(FORMATS)})")
    lb = build_leaderboard(store.records(), load_published(published_path))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if plots:
        from .plots import draw_plots

        lb.assets = draw_plots(lb.tables + lb.overall, out)
    if gallery is not None:
        for key, assets in gallery(lb, out).items():
            lb.assets.setdefault(key, []).extend(assets)
    written: list[Path] = []

    def put(name: str, text: str) -> None:
        atomic_write_text(out / name, text)
        written.append(out / name)

    if "md" in formats:
        put("leaderboard.md", markdown_document(lb))
    if "tex" in formats:
        put("leaderboard.tex", latex_document(lb))
        put("leaderboard.bib", _bib(lb.citations))
    if "csv" in formats:
        put("leaderboard.csv", leaderboard_csv(lb))
    if "json" in formats:
        put("leaderboard.json", json.dumps(leaderboard_json(lb), indent=2, sort_keys=True, allow_nan=False) + "\n")
    if "html" in formats:
        put("leaderboard.html", html_document(lb, out))
    files = {p for assets in lb.assets.values() for a in assets for p in (a.png, a.pdf) if p}
    _clean_stale(out, files)
    written += [out / p for p in sorted(files)]
    return written


def _bib(c: Citations) -> str:
    return "% BibTeX entries cited by this leaderboard (from xbench/resources/references.bib)\n\n" + c.bibtex
