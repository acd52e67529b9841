"""xbench: evaluation and benchmark suite for self-explainable image classifiers."""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

#: the Python API (xbench.api), imported on first use so that `import xbench` stays light
_API = {"load", "evaluate", "TrainedModel", "Prediction"}
__all__ = ["__version__", "Explanation", *sorted(_API)]


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    if name == "Explanation":
        from .explanation import Explanation

        return Explanation
    raise AttributeError(f"module 'xbench' has no attribute {name!r}")
