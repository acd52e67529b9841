"""Escaping of every string that comes from results files, one function per output format.

Method and dataset names, errors, config values, paths and hardware strings
are data: a results file may hold anything (``<script>``, ``&``, ``|``, LaTeX
specials, newlines). Renderers pass every such string through these.
"""
from __future__ import annotations

import html

_MD_SPECIALS = "\\`*_[]<>|&~"
_TEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}",
}


def esc_md(text: object) -> str:
    """Markdown (GitHub / CommonMark) inline text: backslash-escape the characters that format, link, start
    HTML or entities, or end a table cell; newlines become spaces; other control characters (which a
    terminal printing `xbench leaderboard` would obey: ESC sequences, BEL) become ``?``."""
    s = str(text).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return "".join("\\" + ch if ch in _MD_SPECIALS else "?" if _is_control(ch) else ch for ch in s)


def _is_control(ch: str) -> bool:
    return ch < " " or "\x7f" <= ch <= "\x9f"


def esc_tex(text: object) -> str:
    r"""LaTeX text mode: ``\ & % $ # _ { } ~ ^`` (and ``< > |``, which T1 needs as commands); newlines -> space;
    characters beyond Latin Extended-A (which pdflatex with T1 + utf8 cannot typeset: emoji, CJK, control
    characters) become ``?`` so that the document always compiles."""
    s = str(text).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return "".join(_TEX.get(ch, ch) if (" " <= ch <= "~" or "\u00a0" <= ch <= "\u017f") else "?" for ch in s)


def esc_html(text: object) -> str:
    """HTML text and attribute values (quotes included)."""
    return html.escape(str(text), quote=True)


def csv_text(text: object) -> str:
    """A text field for CSV: a leading = + - @ (or tab / CR) would make a spreadsheet run a formula, so it gets
    a leading apostrophe. Numbers are written as numbers, not through this."""
    s = str(text)
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s
