"""Tiny settings shared by the scale tests (imported by the test files beside it)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

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


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread in the test process: on a shared 2-core machine, more threads only spin and wait."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
