"""`xbench data check`: run a dataset's layout check and summarise a good layout.

`check_dataset(ds, deep)` returns the problems, one line each: the layout
problems every loader lists (missing, malformed or inconsistent files), plus,
when `deep`, every image / mask / DICOM that does not decode. Built-in
datasets (synthbirds) have nothing on disk to check.

`summary(ds)` gives one line per split on a good layout: image count, classes
present, and for binary tasks the positives.
"""
from __future__ import annotations

import inspect

import numpy as np

from .base import Dataset


def check_dataset(ds: Dataset, deep: bool = True, show: bool = True) -> list[str]:
    if getattr(ds.spec, "builtin", False):
        return []
    params = inspect.signature(ds.check).parameters
    kwargs = {}
    if "deep" in params:
        kwargs["deep"] = deep
    if "show" in params:
        kwargs["show"] = show
    return list(ds.check(**kwargs))


def summary(ds: Dataset) -> list[str]:
    lines = []
    for name in ds.splits:
        sp = ds.split(name)
        labels = np.asarray(sp.labels)
        present = len(np.unique(labels)) if len(labels) else 0
        extra = ""
        if ds.spec.task == "binary":
            extra = f", {int((labels == 1).sum())} positive / {int((labels == 0).sum())} negative"
        lines.append(f"{name}: {len(sp)} images, {present} of {ds.num_classes} classes{extra}")
    return lines


__all__ = ["check_dataset", "summary"]
