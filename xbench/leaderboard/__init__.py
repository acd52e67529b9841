"""Leaderboards: a pure function of the results store."""
from __future__ import annotations

from .tables import Cell, Table, build_tables  # noqa: F401
