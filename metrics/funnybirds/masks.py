"""Unit masks of the test images, reduced to the token grid of the attribution maps.

A *unit* is a part slot (ids 1..P of the part map, in `dataset.part_names`
order) or a background object (id P+1+j). SPEC 5.2 computes a unit's
importance by nearest-upsampling the g x g attribution map to the image's
native resolution, dilating the unit's mask with a 5x5 max-pool (stride 1) and
summing the upsampled attribution inside it. Because nearest upsampling makes
every pixel a copy of one token cell, that sum equals

    importance(u) = sum_k A[k] * W[u, k],   W[u, k] = number of pixels of cell k inside u's dilated mask,

and the sum of the whole upsampled map is sum_k A[k] * pixels[k]. `W` and
`pixels` depend only on the image, so they are computed once per job (and
process-wide per dataset and grid), after which any number of maps costs one
small matrix product. The dilation runs as two 1-D maximum filters (scipy, on
uint8 masks), identical to `max_pool2d(5, stride=1, padding=2)` on binary masks
and several times faster on CPU. The pixel -> cell assignment is taken from
`torch.nn.functional.interpolate(mode="nearest")` itself, so it is exactly the
upsampling the definition names, for any resolution (also when it is not a
multiple of the grid).

Choices: colours of one slot (two eyes, feet, wings) share one part-map id
here, so a slot is dilated as one mask (as FunnyBirds does for each colour and
then adds, except that pixels where two dilated colours of one slot overlap
count once here, not twice: with our part maps the slot is a single mask). A
unit whose mask is empty (fully occluded) is still a unit, with importance 0.
Background objects j >= num_objects(i) of an image are padding (`valid` False).
"""
from __future__ import annotations

import collections
import hashlib
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from xbench.atomic import atomic_save
from xbench.data.base import Dataset
from xbench.progress import progress

_DILATION = 5          # 5x5 max-pool, stride 1
_BATCH_ELEMENTS = 1 << 24   # one-hot masks per batch: 16 MB of uint8 (64 MB as float32 for the count)
_MAX_BITS = 10              # bit-mask path up to 10 units: 1024 patterns x cells per image in the bincount


@dataclass
class UnitCells:
    """Per image: dilated unit masks counted per token cell."""

    weights: torch.Tensor   # float64 [N, U, h*w]: pixels of unit u's dilated mask in cell k
    pixels: torch.Tensor    # float64 [N, h*w]: image pixels in cell k (for the whole-map sum)
    valid: torch.Tensor     # bool [N, U]: part slots always, objects j < num_objects(i)
    num_parts: int
    grid: tuple[int, int]

    @property
    def num_units(self) -> int:
        return int(self.weights.shape[1])

    @property
    def num_objects(self) -> int:
        return self.num_units - self.num_parts


def cell_index(height: int, width: int, grid: tuple[int, int]) -> torch.Tensor:
    """LongTensor [H*W]: the token cell each pixel copies under nearest upsampling of a grid map."""
    h, w = grid
    ids = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)
    up = F.interpolate(ids, size=(int(height), int(width)), mode="nearest")
    return up.view(-1).round().long()


def axis_cells(height: int, width: int, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 one-hot [H, h] and [W, w]: the grid row / column each pixel row / column copies.

    Nearest upsampling is separable, so the 2-D assignment of `cell_index` is
    row(y) * w + col(x); cell counts are then two small matrix products.
    """
    idx = cell_index(height, width, grid).view(int(height), int(width))
    rows, cols = idx[:, 0] // grid[1], idx[0, :] % grid[1]
    return F.one_hot(rows, grid[0]).float(), F.one_hot(cols, grid[1]).float()


def dilate(masks: np.ndarray, size: int = _DILATION) -> np.ndarray:
    """Max-pool of size x size, stride 1, zero ('same') padding over the last two axes of uint8 / bool masks."""
    x = np.ascontiguousarray(masks).view(np.uint8) if masks.dtype == bool else masks
    x = ndimage.maximum_filter1d(x, size, axis=-1, mode="constant", cval=0)
    return ndimage.maximum_filter1d(x, size, axis=-2, mode="constant", cval=0)


def cells_of_maps(part_maps: np.ndarray, unit_ids: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """float32 [B, U, h*w]: pixels of each unit's dilated mask per token cell, for part maps [B, H, W].

    With at most `_MAX_BITS` units and small non-negative labels this runs on one bit-mask map (bit k =
    unit k present): the 5 x 5 dilation is an OR over shifted copies (separable), and the counts are one
    bincount over (cell, dilated bit pattern) followed by a [patterns x units] product; about 6x faster
    than dilating U one-hot masks. Otherwise, or for other label values, the one-hot path (same
    numbers; tested against each other)."""
    part_maps = np.asarray(part_maps)
    ids = np.asarray(unit_ids).reshape(-1)
    small = part_maps.size and part_maps.min() >= 0 and part_maps.max() < (1 << 16)
    if len(ids) <= _MAX_BITS and small and (ids >= 0).all():
        return _cells_of_maps_bits(part_maps, ids, grid)
    return _cells_of_maps_onehot(part_maps, ids, grid)


def _cells_of_maps_onehot(part_maps: np.ndarray, unit_ids: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    b, height, width = part_maps.shape
    ids = np.asarray(unit_ids).reshape(1, -1, 1, 1)
    dil = dilate((part_maps[:, None, :, :] == ids).view(np.uint8))
    rows, cols = axis_cells(height, width, grid)
    counts = rows.T @ torch.from_numpy(dil).float() @ cols          # [B, U, h, w]; exact integers
    return counts.reshape(b, ids.shape[1], grid[0] * grid[1])


def _or_dilate(bits: np.ndarray, axis: int, radius: int) -> np.ndarray:
    """OR of `bits` shifted by -radius..radius along `axis`, zero outside (a max-pool of a bit mask)."""
    out = bits.copy()
    n = bits.shape[axis]
    for s in range(1, min(radius, n - 1) + 1):
        lo = [slice(None)] * bits.ndim
        hi = [slice(None)] * bits.ndim
        lo[axis], hi[axis] = slice(s, None), slice(None, n - s)
        out[tuple(lo)] |= bits[tuple(hi)]
        out[tuple(hi)] |= bits[tuple(lo)]
    return out


def _cells_of_maps_bits(part_maps: np.ndarray, unit_ids: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    b, height, width = part_maps.shape
    u_n, k = len(unit_ids), grid[0] * grid[1]
    lut = np.zeros(int(max(part_maps.max(), unit_ids.max(initial=0))) + 1, dtype=np.uint16)
    for j, u in enumerate(unit_ids):
        lut[int(u)] |= np.uint16(1 << j)
    radius = _DILATION // 2
    bits = _or_dilate(_or_dilate(lut[part_maps], 2, radius), 1, radius)      # [B, H, W] dilated bit masks
    present = np.flatnonzero(np.bincount(bits.reshape(-1), minlength=1 << u_n))  # the patterns that occur
    compact = np.zeros(1 << u_n, dtype=np.int64)
    compact[present] = np.arange(len(present))
    p_n = len(present)
    cell = cell_index(height, width, grid).numpy().reshape(height, width).astype(np.int64)
    key = (np.arange(b, dtype=np.int64)[:, None, None] * k + cell[None]) * p_n + compact[bits]
    hist = np.bincount(key.reshape(-1), minlength=b * k * p_n).reshape(b, k, p_n)
    has = ((present[:, None] >> np.arange(u_n)[None, :]) & 1).astype(np.float64)  # [P, U]
    counts = torch.from_numpy(hist.astype(np.float64) @ has)                 # [B, K, U]; exact integers
    return counts.transpose(1, 2).float().contiguous()


def build_unit_cells(dataset: Dataset, split: str, grid: tuple[int, int], show_progress: bool = False) -> UnitCells:
    """The `UnitCells` of every image of `split` (part maps read once, in batches of equal size)."""
    sp = dataset.split(split)
    n = len(sp)
    num_parts = len(dataset.part_names)
    n_obj = np.asarray([sp.num_objects(i) for i in range(n)], dtype=np.int64)
    max_obj = int(n_obj.max()) if n else 0
    units = num_parts + max_obj
    unit_ids = np.arange(1, units + 1)
    k = grid[0] * grid[1]
    weights = torch.zeros(n, units, k, dtype=torch.float64)
    pixels = torch.zeros(n, k, dtype=torch.float64)
    valid = torch.ones(n, units, dtype=torch.bool)
    valid[:, num_parts:] = torch.arange(max_obj)[None, :] < torch.as_tensor(n_obj)[:, None]
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        idx = torch.as_tensor([i for i, _ in pending])
        maps = np.stack([m for _, m in pending])
        weights[idx] = cells_of_maps(maps, unit_ids, grid).double()
        height, width = maps.shape[1:]
        pixels[idx] = torch.bincount(cell_index(height, width, grid), minlength=k).double()
        pending.clear()

    # splits that declare it (synthbirds renders its maps) are read on torch's thread count, a window of
    # images ahead of the mask counting; the others in order
    threads = torch.get_num_threads() if getattr(sp, "thread_safe_part_maps", False) else 1
    with ThreadPoolExecutor(max_workers=max(threads, 1)) as pool:
        def read_all():
            if threads <= 1:
                yield from (np.asarray(sp.part_map(i)) for i in range(n))
                return
            ahead: collections.deque = collections.deque()
            for i in range(n):   # keep a window of renders in flight while the caller counts masks
                ahead.append(pool.submit(lambda j: np.asarray(sp.part_map(j)), i))
                if len(ahead) > 64:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()

        with progress(total=n, desc=f"part masks {split}", enabled=show_progress, unit="img") as bar:
            for i, pm in enumerate(read_all()):
                if pending and pending[0][1].shape != pm.shape:
                    flush()
                pending.append((i, pm))
                if len(pending) * units * pm.size >= _BATCH_ELEMENTS:
                    flush()
                bar.update(1)
            flush()
    return UnitCells(weights=weights, pixels=pixels, valid=valid, num_parts=num_parts, grid=tuple(grid))


_SHARED: dict[tuple, UnitCells] = {}
_LOCK = threading.Lock()


def unit_cells(dataset: Dataset, split: str, grid: tuple[int, int], show_progress: bool = False,
               cache_root: str | Path | None = None) -> UnitCells:
    """`build_unit_cells`, shared by every job of this process on the same dataset content and grid, and,
    with `cache_root` (the feature cache's folder), by every process: the masks are a function of the
    dataset alone, so they are stored once beside the cached tokens (`annotations/unitcells-<key>.npz`,
    written atomically; an unreadable or mismatching file is rebuilt) and a Slurm array task or a second
    `xbench run` reads them instead of rendering every part map again.

    The key is the dataset's fingerprint (name, version, options, annotation digest) plus its root, the
    split, the grid and this module's mask recipe (dilation size and format version).
    """
    key = (repr(sorted(dataset.fingerprint().items())), str(getattr(dataset, "root", None)), split, tuple(grid))
    with _LOCK:
        hit = _SHARED.get(key)
    if hit is None:
        path = _disk_path(cache_root, key) if cache_root is not None else None
        hit = _load(path, len(dataset.split(split)), len(dataset.part_names), grid) if path else None
        if hit is None:
            hit = build_unit_cells(dataset, split, grid, show_progress)
            if path is not None:
                _save(path, hit)
        with _LOCK:
            if len(_SHARED) >= 8:   # a handful of datasets per process at most
                _SHARED.pop(next(iter(_SHARED)))
            _SHARED[key] = hit
    return hit


_DISK_VERSION = "unitcells-v1"


def _disk_path(cache_root: str | Path, key: tuple) -> Path:
    digest = hashlib.blake2b(repr((_DISK_VERSION, _DILATION, key)).encode("utf-8"), digest_size=12).hexdigest()
    return Path(cache_root) / "annotations" / f"unitcells-{digest}.npz"


def _save(path: Path, uc: UnitCells) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, weights=uc.weights.numpy().astype(np.int32), pixels=uc.pixels.numpy().astype(np.int32),
                     valid=uc.valid.numpy(), num_parts=np.int64(uc.num_parts), grid=np.asarray(uc.grid, np.int64))
    try:
        atomic_save(path, write)
    except OSError:   # a read-only cache: the masks are simply rebuilt next time
        pass


def _load(path: Path, n: int, num_parts: int, grid: tuple[int, int]) -> UnitCells | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            weights, pixels, valid = z["weights"], z["pixels"], z["valid"]
            ok = (int(z["num_parts"]) == num_parts and tuple(z["grid"].tolist()) == tuple(grid)
                  and weights.ndim == 3 and weights.shape[0] == n and weights.shape[2] == grid[0] * grid[1]
                  and pixels.shape == (n, weights.shape[2]) and valid.shape == weights.shape[:2])
            if not ok:
                return None
            return UnitCells(weights=torch.from_numpy(weights.astype(np.float64)),
                             pixels=torch.from_numpy(pixels.astype(np.float64)),
                             valid=torch.from_numpy(valid.astype(bool)), num_parts=num_parts, grid=tuple(grid))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def clear_shared() -> None:
    """Forget the process-wide unit masks (benchmarks time the part-map reading with it)."""
    with _LOCK:
        _SHARED.clear()


__all__ = ["UnitCells", "cell_index", "axis_cells", "dilate", "cells_of_maps", "build_unit_cells", "unit_cells", "clear_shared"]
