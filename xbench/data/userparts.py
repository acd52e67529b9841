"""parts.json of a folder dataset (`xbench.data.userfolder`): keypoints and boxes per image.

Schema (every choice is xbench's)::

    {"keypoint_names": ["beak", "eye", "tail"],
     "images": {"test/wren/01.jpg": {"keypoints": {"beak": [120.0, 41.5], "eye": [101, 35, 1]},
                                     "box": [12, 20, 210, 188]}}}

* `keypoint_names`: a non-empty list of distinct names (the keypoint order, `Dataset.keypoint_names`);
* `images`: image path relative to the dataset folder -> an object with optional `keypoints`
  (name -> [x, y] or [x, y, visible], pixels of the image, visible 0 or 1, default 1) and
  optional `box` ([x1, y1, x2, y2] pixels, x2 > x1, y2 > y1);
* a keypoint that is not listed is invisible, (0, 0, 0); an image that is not listed has no
  visible keypoint and no box; unknown keys, unknown images or keypoint names and malformed
  values are problems (one line each, naming the entry).
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Parts:
    """What parts.json holds: keypoint names, keypoints [K, 3] and boxes [n, 4] per image path."""

    names: list[str] = field(default_factory=list)
    keypoints: dict[str, np.ndarray] = field(default_factory=dict)
    boxes: dict[str, np.ndarray] = field(default_factory=dict)


def parse_parts(p: Path, known: set[str], base: Path, problems: list[str]) -> Parts | None:
    """parts.json at `p` parsed against the dataset's image paths `known`; appends one line per problem."""
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        problems.append(f"{p}: not UTF-8 text; save it as UTF-8 JSON")
        return None
    except json.JSONDecodeError as err:
        problems.append(f"{p}:{err.lineno}:{err.colno}: not valid JSON ({err.msg})")
        return None
    if not isinstance(doc, dict):
        problems.append(f"{p}: the top level must be an object with keypoint_names and images")
        return None
    for k in sorted(set(doc) - {"keypoint_names", "images"}):
        problems.append(f"{p}: unknown key {k!r} (valid: keypoint_names, images)")
    names = doc.get("keypoint_names")
    if (not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names)
            or len(set(names)) != len(names)):
        problems.append(f"{p}: keypoint_names must be a non-empty list of distinct names")
        return None
    images = doc.get("images", {})
    if not isinstance(images, dict):
        problems.append(f"{p}: images must be an object mapping image paths to their keypoints")
        return None
    pos = {n: k for k, n in enumerate(names)}
    out = Parts(names=list(names))
    for rel, entry in images.items():
        where = f"{p}: images[{rel!r}]"
        if rel not in known:
            problems.append(f"{where}: no such image in the dataset (use the path relative to {base})")
            continue
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be an object with keypoints and/or box")
            continue
        for k in sorted(set(entry) - {"keypoints", "box"}):
            problems.append(f"{where}: unknown key {k!r} (valid: keypoints, box)")
        kp = np.zeros((len(names), 3), dtype=np.float32)
        kps = entry.get("keypoints", {})
        if not isinstance(kps, dict):
            problems.append(f"{where}.keypoints: must map keypoint names to [x, y] or [x, y, visible]")
            kps = {}
        for kname, v in kps.items():
            if kname not in pos:
                problems.append(f"{where}.keypoints: unknown keypoint {kname!r} (keypoint_names: {', '.join(names)})")
            elif not _numbers(v, (2, 3)) or (len(v) == 3 and v[2] not in (0, 1)):
                problems.append(f"{where}.keypoints[{kname!r}]: {v!r} is not [x, y] or [x, y, visible] "
                                f"with visible 0 or 1")
            else:
                kp[pos[kname]] = (float(v[0]), float(v[1]), float(v[2]) if len(v) == 3 else 1.0)
        out.keypoints[rel] = kp
        if "box" in entry:
            b = entry["box"]
            if not _numbers(b, (4,)) or not (b[2] > b[0] and b[3] > b[1]):
                problems.append(f"{where}.box: {b!r} is not [x1, y1, x2, y2] with x2 > x1 and y2 > y1")
            else:
                out.boxes[rel] = np.asarray([b], dtype=np.float32)
    return out


def _numbers(v: Any, lengths: Iterable[int]) -> bool:
    return (isinstance(v, list) and len(v) in tuple(lengths)
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v))


__all__ = ["Parts", "parse_parts"]
