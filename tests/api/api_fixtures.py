"""Shared helpers of the tests in tests/api: a tiny synthbirds written as a user folder, tiny run settings."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

#: 5 classes at 96 px; no training images with removed parts, so every training target is one-hot
#: (a folder dataset has no multi-target images, and then both datasets train the same head)
SB = {"num_classes": 5, "train_per_class": 4, "test_per_class": 2, "resolution": 96, "train_removal_fraction": 0.0}
FAST = {"linear-probe": {"epochs": 3}, "linear-probe-patch": {"epochs": 3}, "gradcam": {"epochs": 3}}


def synthbirds(**kw):
    from xbench.data.synthbirds import SynthBirds

    return SynthBirds(**{**SB, **kw})


def write_folder(root: Path, masks: bool = True, parts: bool = True, layout: str = "dirs", **sb) -> Path:
    """Write tiny synthbirds as PATH/{train,test}/cNN/IIII.png (or index.csv), masks/, parts.json; returns PATH.

    Class folders c00, c01, ... sort in label order and file names in item order, so the folder's items
    are synthbirds' items in the same order.
    """
    ds = synthbirds(**sb)
    root.mkdir(parents=True, exist_ok=True)
    rows = ["path,label,split"]
    kp: dict[str, dict] = {}
    for split in ("train", "test"):
        sp = ds.split(split)
        for i in range(len(sp)):
            c = int(sp.labels[i])
            rel = f"{split}/c{c:02d}/{i:04d}.png" if layout == "dirs" else f"images/{split}-{i:04d}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            sp.image(i).save(root / rel)
            rows.append(f"{rel},c{c:02d},{split}")
            if masks:
                m = root / "masks" / rel
                m.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(sp.object_mask(i).astype(np.uint8) * 255).save(m)
            if parts and split == "test":
                k = sp.keypoints(i)
                kp[rel] = {"keypoints": {n: [float(x), float(y), int(v > 0)] for n, (x, y, v) in
                                         zip(ds.keypoint_names, k)}}
    if layout == "csv":
        (root / "index.csv").write_text("\n".join(rows) + "\n")
    if parts:
        (root / "parts.json").write_text(json.dumps({"keypoint_names": list(ds.keypoint_names), "images": kp}))
    return root


def run_values(tmp: Path, datasets: str, methods: str = "linear-probe-patch", metrics: str = "accuracy", **kw) -> dict:
    v = {
        "methods": methods, "datasets": datasets, "metrics": metrics,
        "backbone": "dinov2-tiny-test", "weights": "random",
        "results": str(tmp / "results"), "cache": str(tmp / "cache"),
        "quiet": True, "loader_workers": 0, "batch_size": 16,
        "dataset_options": {"synthbirds": dict(SB)},
        "params": {k: dict(p) for k, p in FAST.items()},
    }
    v.update(kw)
    return v
