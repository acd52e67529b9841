"""Imported once by the fork server that starts xbench's worker and rank processes.

Loading every registry here (the built-ins, and the names of installed plugins' entry points:
plugins themselves are imported only when named) means each process forked from the server starts
with torch, the methods, metrics, datasets and backbones already imported, instead of paying
several seconds of imports per process (see `distributed.mp_context`).
"""
from __future__ import annotations

from ..registry import BACKBONES, DATASETS, METHODS, METRICS

for _registry in (METHODS, METRICS, DATASETS, BACKBONES):
    _registry.names()
