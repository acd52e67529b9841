"""Shared tiny settings for spine tests (imported by the test files beside it)."""
from __future__ import annotations

from pathlib import Path

TINY_SB = {"num_classes": 6, "train_per_class": 6, "test_per_class": 2, "resolution": 96}
FAST = {"linear-probe": {"epochs": 5}, "linear-probe-patch": {"epochs": 5}}


def cli_values(tmp: Path, **kw) -> dict:
    v = {
        "methods": "linear-probe,linear-probe-patch",
        "datasets": "synthbirds",
        "metrics": "accuracy",
        "backbone": "dinov2-tiny-test",
        "weights": "random",
        "results": str(tmp / "results"),
        "cache": str(tmp / "cache"),
        "quiet": True,
        "loader_workers": 0,
        "batch_size": 16,
        "dataset_options": {"synthbirds": dict(TINY_SB)},
        "params": {k: dict(v) for k, v in FAST.items()},
    }
    v.update(kw)
    return v
