"""Parsing the whitespace-separated annotation lists of CUB and Pets, collecting problems.

`parse_table(path, columns)` reads lines of `len(columns)` fields (the last
column may contain spaces when `rest=True`), converts each field with its
type, and returns the rows plus one problem line per malformed line
(`<file>:<line>: ...`), so that `check()` can report every bad line at once and a
loader can raise the first as a `DataError`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import DataError


@dataclass
class Table:
    path: Path
    rows: list[tuple[int, tuple[Any, ...]]] = field(default_factory=list)  # (line number, converted fields)
    problems: list[str] = field(default_factory=list)
    missing: bool = False

    def raise_first(self) -> None:
        if self.problems:
            more = f" (and {len(self.problems) - 1} more; run `xbench data check`)" if len(self.problems) > 1 else ""
            raise DataError(f"{self.problems[0]}{more}")

    def by_key(self, what: str = "id") -> dict[Any, tuple[int, tuple[Any, ...]]]:
        """First column -> (line, remaining fields); duplicates become problems."""
        out: dict[Any, tuple[int, tuple[Any, ...]]] = {}
        for line, row in self.rows:
            if row[0] in out:
                self.problems.append(f"{self.path}:{line}: duplicate {what} {row[0]} (first on line {out[row[0]][0]})")
                continue
            out[row[0]] = (line, row[1:])
        return out


def parse_table(path: Path, columns: list[tuple[str, Callable[[str], Any]]], rest: bool = False,
                comment: str | None = None) -> Table:
    """Parse `path`; `columns` = [(name, converter)]; `rest`: the last column takes the rest of the line."""
    t = Table(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        t.missing = True
        t.problems.append(f"{path}: file is missing")
        return t
    except OSError as err:
        t.missing = True
        t.problems.append(f"{path}: cannot read ({err.strerror})")
        return t
    n = len(columns)
    expect = " ".join(c for c, _ in columns)
    for lineno, raw in enumerate(text.splitlines(), 1):
        s = raw.strip()
        if not s or (comment and s.startswith(comment)):
            continue
        parts = s.split(maxsplit=n - 1) if rest else s.split()
        if len(parts) != n:
            t.problems.append(f"{path}:{lineno}: malformed line {s[:60]!r} (expected '{expect}')")
            continue
        try:
            row = tuple(conv(v) for (_, conv), v in zip(columns, parts))
        except ValueError:
            t.problems.append(f"{path}:{lineno}: malformed line {s[:60]!r} (expected '{expect}')")
            continue
        t.rows.append((lineno, row))
    return t


def flag(v: str) -> int:
    """A 0/1 field."""
    i = int(v)
    if i not in (0, 1):
        raise ValueError(v)
    return i


__all__ = ["Table", "parse_table", "flag"]
