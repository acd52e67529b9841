"""The class structure the suite needs, as bitmask tensors over the part slots.

* `agreement [C, C]`: bit p set where two classes have the same variant of slot p
  (from `dataset.class_parts`);
* `mss [C, S]`: each class's minimal sufficient part sets (from
  `dataset.minimal_sufficient_sets`), padded with `mss_valid`;
* `pairs [C, K, 2]`: target-sensitivity candidate pairs (c1, c2) of each class,
  in scan order, padded with `pair_valid`.

TS candidates of class y (SPEC 5.2): classes c != y sharing *exactly two* slots
with y (same variant on exactly two slots). Pairs (c1, c2) of candidates with
disjoint shared sets P1 = agreement[y, c1], P2 = agreement[y, c2] are scanned
in index order: c1 ascending, then c2 > c1 ascending (FunnyBirds' nested scan).
Only classes that occur among `labels` get pairs (the rest stay empty).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from xbench.data.base import Dataset


@dataclass
class ClassStructure:
    agreement: torch.Tensor   # long [C, C]
    mss: torch.Tensor         # long [C, S]
    mss_valid: torch.Tensor   # bool [C, S]
    pairs: torch.Tensor       # long [C, K, 2]
    pair_valid: torch.Tensor  # bool [C, K]


def agreement_masks(class_parts: np.ndarray) -> np.ndarray:
    """int64 [C, C]: bitmask of the slots on which two classes agree."""
    cp = np.asarray(class_parts)
    eq = cp[:, None, :] == cp[None, :, :]
    return (eq * (1 << np.arange(cp.shape[1], dtype=np.int64))).sum(axis=2).astype(np.int64)


def popcount(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    out = np.zeros_like(x)
    for b in range(63):
        out += (x >> b) & 1
        if not (x >> (b + 1)).any():
            break
    return out


def ts_pairs(agreement: np.ndarray, y: int) -> np.ndarray:
    """int64 [K, 2]: class y's valid (c1, c2) candidate pairs in scan order (module docstring)."""
    row = agreement[y]
    cands = np.flatnonzero((popcount(row) == 2) & (np.arange(len(row)) != y))
    shared = row[cands]
    ok = (shared[:, None] & shared[None, :]) == 0
    ok &= np.triu(np.ones_like(ok), k=1).astype(bool)
    ia, ib = np.nonzero(ok)                    # row-major: c1 ascending, then c2 ascending
    return np.stack([cands[ia], cands[ib]], axis=1).astype(np.int64)


def class_structure(dataset: Dataset, labels: torch.Tensor) -> ClassStructure:
    """The `ClassStructure` of `dataset` (pairs only for classes among `labels`)."""
    names = list(dataset.part_names)
    cp = np.asarray(dataset.class_parts)
    c = cp.shape[0]
    agree = agreement_masks(cp)
    present = sorted({int(v) for v in labels.tolist()})
    mss_lists: list[list[int]] = [[] for _ in range(c)]
    for k in present:
        mss_lists[k] = [sum(1 << names.index(p) for p in s) for s in dataset.minimal_sufficient_sets(k)]
    s_max = max([len(m) for m in mss_lists] + [1])
    mss = torch.zeros(c, s_max, dtype=torch.long)
    mss_valid = torch.zeros(c, s_max, dtype=torch.bool)
    for k, m in enumerate(mss_lists):
        mss[k, :len(m)] = torch.as_tensor(m, dtype=torch.long)
        mss_valid[k, :len(m)] = True
    pair_lists = {k: ts_pairs(agree, k) for k in present}
    k_max = max([len(p) for p in pair_lists.values()] + [1])
    pairs = torch.zeros(c, k_max, 2, dtype=torch.long)
    pair_valid = torch.zeros(c, k_max, dtype=torch.bool)
    for k, p in pair_lists.items():
        pairs[k, :len(p)] = torch.from_numpy(p)
        pair_valid[k, :len(p)] = True
    return ClassStructure(agreement=torch.from_numpy(agree), mss=mss, mss_valid=mss_valid, pairs=pairs,
                          pair_valid=pair_valid)


__all__ = ["ClassStructure", "agreement_masks", "popcount", "ts_pairs", "class_structure"]
