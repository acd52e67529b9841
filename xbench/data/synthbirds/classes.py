"""Classes: one variant per part slot, drawn with a fixed seed; sufficient part sets.

A class is a vector of variant indices, one per slot in `PART_NAMES` order.
`draw_classes` picks `num_classes` *distinct* combinations uniformly without
replacement from all 4*3*4*9*6 = 2592, so every class's full part set is unique
and each class is distinguishable when all its parts are visible.

A subset S of slots is *sufficient* for class c when no other class has c's
variants on every slot of S; the *minimal* sufficient sets are the sufficient
sets none of whose proper subsets is sufficient (FunnyBirds' completeness
check uses them). Exact algorithm, on bitmasks over the P slots:

1. ``A[c, c']`` = bitmask of the slots where classes c and c' agree;
2. a set S is *not* sufficient iff S is a subset of some ``A[c, c']``
   (c' != c): mark the masks A[c, :] and close the marks downwards with a
   superset-sum (zeta) transform over the 2^P masks, O(P 2^P + C);
3. sufficiency is upward closed, so S is minimal iff removing any single slot
   makes it insufficient.
"""
from __future__ import annotations

from functools import reduce

import numpy as np

from ...errors import ConfigError
from .parts import NUM_VARIANTS, PART_NAMES

#: number of distinct classes the slots admit (every combination is distinguishable)
MAX_CLASSES: int = reduce(lambda a, b: a * b, NUM_VARIANTS, 1)

_CLASS_STREAM = 0xC1A55  # separates the class draw from every image stream


def draw_classes(num_classes: int, class_seed: int = 0) -> np.ndarray:
    """int64 [num_classes, P]: distinct variant combinations, deterministic in `class_seed`."""
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ConfigError(
            f"synthbirds num_classes={num_classes} is out of range: the part slots allow 1..{MAX_CLASSES} "
            f"distinguishable classes; choose a value in that range"
        )
    rng = np.random.default_rng([int(class_seed), _CLASS_STREAM])
    codes = rng.choice(MAX_CLASSES, size=num_classes, replace=False)
    out = np.zeros((num_classes, len(NUM_VARIANTS)), dtype=np.int64)
    for p in range(len(NUM_VARIANTS) - 1, -1, -1):  # mixed radix, last slot fastest
        out[:, p] = codes % NUM_VARIANTS[p]
        codes = codes // NUM_VARIANTS[p]
    return out


def agreement_masks(class_parts: np.ndarray) -> np.ndarray:
    """int64 [C, C]: bit p set where the two classes have the same variant of slot p."""
    eq = class_parts[:, None, :] == class_parts[None, :, :]
    weights = 1 << np.arange(class_parts.shape[1], dtype=np.int64)
    return (eq * weights).sum(axis=2)


def _mask_to_names(mask: int) -> frozenset[str]:
    return frozenset(name for p, name in enumerate(PART_NAMES) if mask >> p & 1)


def names_to_mask(names: frozenset[str] | set[str] | list[str] | tuple[str, ...]) -> int:
    m = 0
    for n in names:
        m |= 1 << PART_NAMES.index(n)
    return m


def minimal_sufficient_masks(agree_row: np.ndarray, c: int, num_slots: int = len(PART_NAMES)) -> list[int]:
    """The minimal sufficient slot sets of class c as bitmasks, given row c of `agreement_masks`."""
    full = 1 << num_slots
    insufficient = np.zeros(full, dtype=bool)
    others = np.delete(agree_row, c)
    insufficient[others] = True
    masks = np.arange(full)
    for b in range(num_slots):   # close downwards: a subset of an agreement set is insufficient
        bit = 1 << b
        lower = masks[(masks & bit) == 0]
        insufficient[lower] |= insufficient[lower | bit]
    out = []
    for m in range(full):
        if insufficient[m]:
            continue
        if all(insufficient[m & ~(1 << b)] for b in range(num_slots) if m >> b & 1):
            out.append(m)
    return sorted(out, key=lambda m: (bin(m).count("1"), m))


def minimal_sufficient_sets(agree_row: np.ndarray, c: int) -> list[frozenset[str]]:
    """The minimal sufficient sets of class c, as sets of slot names (smallest first)."""
    return [_mask_to_names(m) for m in minimal_sufficient_masks(agree_row, c)]


def consistent_classes(agree_row: np.ndarray, visible_mask: int) -> np.ndarray:
    """bool [C]: classes that share the generating class's variant on every visible slot."""
    return (agree_row & visible_mask) == visible_mask


__all__ = [
    "MAX_CLASSES", "draw_classes", "agreement_masks", "minimal_sufficient_masks", "minimal_sufficient_sets",
    "consistent_classes", "names_to_mask",
]
