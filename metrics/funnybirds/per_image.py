"""The FunnyBirds suite one image at a time: a plain statement of both protocols, for cross-checks.

The registered suite (`suite`) is tensor code over images x thresholds x
units. This module computes the same numbers the slow, obvious way (explicit
nearest upsampling, a 5 x 5 max-pool per mask, Python sets and loops in test
order), with no code shared with the suite beyond the threshold grid, so that
tests and `benchmarks/bench_funnybirds.py` can check one against the other.
Both protocols are here:

* ``"xbench"``: SPEC 5.2 as `suite` states it (one mask per slot, the first
  pair passing the logit condition, images without an irrelevant unit
  skipped, the first best threshold of (CSDC + PC + DC)/3 + D);
* ``"reference"``: the FunnyBirds framework's behaviour as `reference`
  describes it in words, written here as literal loops: sufficient part sets
  found by the framework's scan (which never records a set for the last
  class), every part colour dilated on its own, the class's first disjoint
  pair (else the loop's leftover variables), D's ``1e-8`` guard, float32 logit
  drops, the strict running maximum for the threshold.

The model is seen through `ImageQueries` (logits of test image i plain, with
a part subset kept, without one background object; attribution maps).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

from .importance import thresholds as threshold_grid


@dataclass
class ImageQueries:
    """What the per-image suite asks of a model, for test image i (numpy arrays)."""

    plain: Callable[[int], np.ndarray]                 # logits [C] of the unchanged test image
    subset: Callable[[int, int], np.ndarray]           # logits [C] with exactly the parts of bitmask `keep`
    without_object: Callable[[int, int], np.ndarray]   # logits [C] with background object j removed
    attribution: Callable[[int, int], np.ndarray]      # [g, g] map of image i for class `target`


def _dilated(mask: np.ndarray) -> torch.Tensor:
    m = torch.from_numpy(np.asarray(mask, dtype=np.float64))[None, None]
    return F.max_pool2d(m, 5, stride=1, padding=2)[0, 0]


def _upsampled(a: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    t = torch.from_numpy(np.asarray(a, dtype=np.float64))[None, None]
    return F.interpolate(t, size=shape, mode="nearest")[0, 0]


def unit_masks(ds, i: int, protocol: str) -> tuple[list[list[torch.Tensor]], list[torch.Tensor]]:
    """(per slot: its dilated masks, per background object: its dilated mask) of test image i.

    xbench: one mask per slot (the part map's id); reference: one per colour of the slot (the colour map)."""
    sp = ds.split("test")
    p_n, n_obj = len(ds.part_names), sp.num_objects(i)
    if protocol == "reference":
        index, table = sp.part_colour_map_indexed(i)
        cmap = np.asarray(index) if table is None else np.asarray(table)[np.asarray(index)]
        slots = getattr(ds, "part_colour_slots", None) or tuple(range(p_n))
        parts: list[list[torch.Tensor]] = [[] for _ in range(p_n)]
        for k, p in enumerate(slots):
            parts[p].append(_dilated(cmap == k + 1))
        objects = [_dilated(cmap == len(slots) + 1 + j) for j in range(n_obj)]
    else:
        pm = np.asarray(sp.part_map(i))
        parts = [[_dilated(pm == p + 1)] for p in range(p_n)]
        objects = [_dilated(pm == p_n + 1 + j) for j in range(n_obj)]
    return parts, objects


def framework_sufficient_sets(class_parts: np.ndarray, c: int) -> list[frozenset[int]]:
    """Class c's minimal sufficient sets (slot indices) found as the FunnyBirds framework scans for them.

    Every subset of c's (slot, variant) pairs is tested against the classes in order; the class itself is
    passed over; a subset is recorded as sufficient when the scan is at the last class and no class so far
    contained it. (For the last class that position is the class itself, which is passed over: it is never
    recorded.) Minimal: no other recorded set is a proper subset of it."""
    cp = np.asarray(class_parts)
    n_classes, p_n = cp.shape
    mine = [(p, int(cp[c, p])) for p in range(p_n)]
    sufficient: list[set] = []
    for size in range(1, p_n + 1):
        for sub in combinations(mine, size):
            for k in range(n_classes):
                if k == c:
                    continue
                if set(sub) <= {(p, int(cp[k, p])) for p in range(p_n)}:
                    break
                if k == n_classes - 1:
                    sufficient.append(set(sub))
    minimal = [s for s in sufficient if not any(s > t for t in sufficient)]
    return [frozenset(p for p, _ in s) for s in minimal]


def _shared(cp: np.ndarray, a: int, b: int) -> list[int]:
    return [p for p in range(cp.shape[1]) if cp[a, p] == cp[b, p]]


def per_image_suite(ds, q: ImageQueries, protocol: str = "xbench", n_thresholds: int = 80,
                    relevance: float = 0.05, pairs: str = "image") -> dict:
    """Every number of the FunnyBirds suite, image by image (see the module docstring)."""
    ref = protocol == "reference"
    sp = ds.split("test")
    names = list(ds.part_names)
    p_n, full = len(names), (1 << len(names)) - 1
    ts = threshold_grid(n_thresholds).tolist()
    cp = np.asarray(ds.class_parts)
    n_classes = cp.shape[0]
    labels = [int(v) for v in np.asarray(sp.labels)]
    csdc: list[list[float]] = [[] for _ in ts]
    pc: list[list[float]] = [[] for _ in ts]
    dc: list[list[float]] = [[] for _ in ts]
    dd: list[list[float]] = [[] for _ in ts]
    sd: list[float] = []
    ts_out: list[float] = []
    counts = {"ts_skipped": 0, "ts_undefined": 0, "bi_objects": 0, "bi_relevant": 0, "correct": 0}
    state: tuple | None = None        # reference TS: the loop variables (c1, c2, P1, P2) carried between images

    def irrelevant_rule(o: float, r: float) -> bool:
        if ref:
            return abs(o - r) < abs(o * relevance) or o < r
        return not (o - r > 0 and o - r >= relevance * abs(o))

    for i, y in enumerate(labels):
        orig = np.asarray(q.plain(i), dtype=np.float32)
        pred = int(np.argmax(orig))
        parts, objects = unit_masks(ds, i, protocol)
        shape = tuple(parts[0][0].shape)

        def importance(target: int) -> tuple[list[float], float]:
            up = _upsampled(q.attribution(i, target), shape)
            return [sum(float((up * m).sum()) for m in ms) for ms in parts + [[o] for o in objects]], \
                float(up.sum())

        def important(imp: list[float], total: float, t: float, with_objects: bool) -> set[int]:
            n = len(imp) if with_objects else p_n
            return {u for u in range(n) if imp[u] > t * total}

        imp_y, tot_y = importance(y)
        imp_p, tot_p = importance(pred)
        if ref:
            sets = framework_sufficient_sets(cp, y)
        else:
            sets = [frozenset(names.index(n) for n in s) for s in ds.minimal_sufficient_sets(y)]
        removed = [np.asarray(q.subset(i, full & ~(1 << p)), dtype=np.float32) for p in range(p_n)]
        removed += [np.asarray(q.without_object(i, j), dtype=np.float32) for j in range(len(objects))]
        o_y = float(orig[y])
        irrelevant = {u for u in range(len(removed)) if irrelevant_rule(o_y, float(removed[u][y]))}
        for j in range(len(objects)):
            counts["bi_objects"] += 1
            r = float(removed[p_n + j][y])
            counts["bi_relevant"] += (abs(o_y - r) >= abs(o_y * relevance) and o_y > r) if ref else \
                (o_y - r > 0 and o_y - r >= relevance * abs(o_y))
        counts["correct"] += pred == y
        for k, t in enumerate(ts):
            imp_set = important(imp_y, tot_y, t, False)
            if pred == y and (sets or ref):
                csdc[k].append(max([len(s & imp_set) / len(s) for s in sets], default=0.0))
            kept = important(imp_p, tot_p, t, False)
            keep = sum(1 << p for p in kept)
            pc[k].append(float(int(np.argmax(q.subset(i, keep))) == pred))
            dc[k].append(float(int(np.argmax(q.subset(i, full & ~keep))) != pred))
            if irrelevant:
                dd[k].append(len(important(imp_y, tot_y, t, True) & irrelevant) / len(irrelevant))
        drops = [o_y - float(removed[p][y]) for p in range(p_n)]
        rho = stats.spearmanr(imp_y[:p_n], drops)[0]
        if not math.isnan(rho):
            sd.append(0.5 * rho + 0.5)
        # target sensitivity --------------------------------------------------------------------
        cands = [k for k in range(n_classes) if k != y and len(_shared(cp, k, y)) == 2]
        logit_of = lambda keep_, c: np.asarray(q.subset(i, keep_), np.float32)[c]        # noqa: E731
        keep_without = lambda s: full & ~sum(1 << p for p in s)                           # noqa: E731
        pair = None
        if ref:
            # the framework's nested scan: stop at the first disjoint pair; the loop variables keep the
            # last pair scanned; a class with fewer than two candidates leaves them as they were
            scanned, found = None, False
            for a_i in range(len(cands)):
                for b_i in range(a_i + 1, len(cands)):
                    scanned = (cands[a_i], cands[b_i])
                    found = not set(_shared(cp, scanned[0], y)) & set(_shared(cp, scanned[1], y))
                    if found:
                        break
                if found:
                    break
            if scanned is not None:
                state = (scanned[0], scanned[1], _shared(cp, scanned[0], y), _shared(cp, scanned[1], y))
            if state is None:                      # the framework stops with an error here
                counts["ts_undefined"] += 1
                counts["ts_skipped"] += 1
                continue
            a, b, s1, s2 = state
            k1, k2 = keep_without(s1), keep_without(s2)
            drop = lambda keep_, c: np.float32(logit_of(keep_, c) - orig[c])            # noqa: E731
            if drop(k1, a) < drop(k2, a) and drop(k2, b) < drop(k1, b):
                pair = (a, b, s1, s2)
        else:
            structural = [(a, b) for a_i, a in enumerate(cands) for b in cands[a_i + 1:]
                          if not set(_shared(cp, a, y)) & set(_shared(cp, b, y))]
            if pairs == "class":
                structural = structural[:1]
            for a, b in structural:
                s1, s2 = _shared(cp, a, y), _shared(cp, b, y)
                k1, k2 = keep_without(s1), keep_without(s2)
                if logit_of(k1, a) < logit_of(k2, a) and logit_of(k2, b) < logit_of(k1, b):
                    pair = (a, b, s1, s2)
                    break
        if pair is None:
            counts["ts_skipped"] += 1
            continue
        a, b, s1, s2 = pair
        ia, ib = importance(a)[0], importance(b)[0]
        ts_out.append(float(sum(ia[p] for p in s1) > sum(ib[p] for p in s1)))
        ts_out.append(float(sum(ib[p] for p in s2) > sum(ia[p] for p in s2)))

    def mean(v: list[float]) -> float:
        if not v:
            return math.nan
        total = 0.0
        for x in v:              # one after the other, in test order
            total += x
        return total / len(v)

    curves = {"csdc": [mean(v) for v in csdc], "pc": [mean(v) for v in pc], "dc": [mean(v) for v in dc]}
    if ref:
        curves["d"] = [1.0 - sum(v) / (len(v) + 1e-8) for v in dd]
        best, index = 0.0, None
        for k in range(len(ts)):
            score = curves["csdc"][k] / 3.0 + curves["pc"][k] / 3.0 + curves["dc"][k] / 3.0 + curves["d"][k]
            if score > best:
                best, index = score, k
    else:
        curves["d"] = [1.0 - mean(v) if v else math.nan for v in dd]
        obj = []
        for k in range(len(ts)):
            first = [x for x in (curves["csdc"][k], curves["pc"][k], curves["dc"][k]) if not math.isnan(x)]
            obj.append((sum(first) / len(first) if first else 0.0) + (0.0 if math.isnan(curves["d"][k])
                                                                      else curves["d"][k]))
        index = int(np.argmax(obj))
    bi = 1.0 - counts["bi_relevant"] / counts["bi_objects"] if counts["bi_objects"] else math.nan
    return {**curves, "thresholds": ts, "index": index, "sd": mean(sd), "ts": mean(ts_out),
            "ts_scored": len(ts_out) // 2, "bi": bi, "sd_images": len(sd), **counts}


def cached_queries(model, ds, test_store, view_store, batch_cls) -> ImageQueries:
    """`ImageQueries` of an xbench head on cached tokens, one image (batch of one) per call."""
    rows: dict[tuple[int, int, int], int] = {}
    keep_meta, rem_meta = view_store.index_meta["keep"], view_store.index_meta["removed_object"]
    for j, b in enumerate(view_store.base):
        rows[(int(b), int(keep_meta[j]), int(rem_meta[j]))] = j
    full = (1 << len(ds.part_names)) - 1
    explained: dict[int, object] = {}

    def run(store, j: int) -> np.ndarray:
        with torch.no_grad():
            return model.logits(batch_cls(tokens=store.tokens([j]), index=np.array([j])))[0].float().numpy()

    def attribution(i: int, target: int) -> np.ndarray:
        if i not in explained:
            explained.clear()
            with torch.no_grad():
                explained[i] = model.explain(batch_cls(tokens=test_store.tokens([i]), index=np.array([i])))
        exp = explained[i]
        with torch.no_grad():
            return exp.attribution(torch.tensor([target]))[0].double().numpy()

    return ImageQueries(plain=lambda i: run(test_store, i), subset=lambda i, k: run(view_store, rows[(i, k, -1)]),
                        without_object=lambda i, j: run(view_store, rows[(i, full, j)]), attribution=attribution)


__all__ = ["ImageQueries", "unit_masks", "framework_sufficient_sets", "per_image_suite", "cached_queries"]
