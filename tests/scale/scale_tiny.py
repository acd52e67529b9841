"""Tiny settings shared by the scale tests (imported by the test files beside it)."""
from __future__ import annotations

from pathlib import Path

TINY_SB = {"num_classes": 4, "train_per_class": 5, "test_per_class": 2, "resolution": 64}
FAST = {"linear-probe": {"epochs": 4, "batch_size": 8}, "linear-probe-patch": {"epochs": 4, "batch_size": 8}}


def tiny_values(tmp: Path, **kw) -> dict:
    """Command-line values of a tiny run: synthbirds 4 classes, dinov2-tiny-test random weights, linear probes."""
    v = {
        "methods": "linear-probe,linear-probe-patch",
        "datasets": "synthbirds",
        "metrics": "accuracy",
        "backbone": "dinov2-tiny-test",
        "weights": "random",
        "device": "cpu",
        "results": str(tmp / "results"),
        "cache": str(tmp / "cache"),
        "quiet": True,
        "loader_workers": 0,
        "batch_size": 8,
        "dataset_options": {"synthbirds": dict(TINY_SB)},
        "params": {k: dict(v) for k, v in FAST.items()},
    }
    v.update(kw)
    return v
