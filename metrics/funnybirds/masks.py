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
small matrix product. With up to `_MAX_BITS` units (synthbirds, FunnyBirds)
every pixel carries one bit per unit, the dilation is an OR over shifted copies
and the cell counts are SIMD-within-a-register sums (`cells_of_bits`); with
more, each unit's one-hot mask is dilated by two 1-D maximum filters. Both are
identical to `max_pool2d(5, stride=1, padding=2)` on each unit's binary mask
(tested). The pixel -> cell assignment is taken from
`torch.nn.functional.interpolate(mode="nearest")` itself, so it is exactly the
upsampling the definition names, for any resolution (also when it is not a
multiple of the grid).

Choices: in the default (xbench) protocol the colours of one slot (two eyes,
feet, wings) share one part-map id, so a slot is dilated as one mask and a pixel
counts once. The FunnyBirds framework dilates each colour on its own and adds
the sums, so pixels where a slot's two dilated colours overlap count twice; the
reference protocol does exactly that (`colours=True`: the colour map of
`Split.part_colour_map_indexed`, one unit per colour, then a slot's rows
summed). A unit whose mask is empty (fully occluded) is still a unit, with importance 0.
Background objects j >= num_objects(i) of an image are padding (`valid` False).
"""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import threading
import zipfile
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
_MAX_BITS = 10              # bit-mask path up to 10 units (a 1024-entry spreading table)
_BATCH_BITS = 1 << 21       # pixels per counting batch on the bit-mask path (about 32 images of 256 px)
_CHUNK = 32                 # images per task of the parallel build
_PARALLEL_MIN_IMAGES = 128  # smaller splits are counted in-process (forking costs more than it saves)


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

    With at most `_MAX_BITS` units this runs on one bit-mask map per image (`unit_bits`, then
    `cells_of_bits`); otherwise on one-hot masks (same numbers; tested against each other)."""
    part_maps = np.asarray(part_maps)
    ids = np.asarray(unit_ids).reshape(-1)
    if len(ids) <= _MAX_BITS:
        bits = np.stack([unit_bits(m, ids) for m in part_maps]) if len(part_maps) else \
            np.zeros(part_maps.shape, np.uint16)
        return cells_of_bits(bits, len(ids), grid)
    return _cells_of_maps_onehot(part_maps, ids, grid)


def _cells_of_maps_onehot(part_maps: np.ndarray, unit_ids: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    b, height, width = part_maps.shape
    ids = np.asarray(unit_ids).reshape(1, -1, 1, 1)
    dil = dilate((part_maps[:, None, :, :] == ids).view(np.uint8))
    rows, cols = axis_cells(height, width, grid)
    counts = rows.T @ torch.from_numpy(dil).float() @ cols          # [B, U, h, w]; exact integers
    return counts.reshape(b, ids.shape[1], grid[0] * grid[1])


def unit_bits(index: np.ndarray, unit_ids: np.ndarray, table: np.ndarray | None = None) -> np.ndarray:
    """uint16 [H, W]: bit j set where the pixel's label is ``unit_ids[j]`` (at most 16 units).

    The labels are ``table[index]`` (a palette, `Split.part_map_indexed`) or ``index`` itself; either way
    this is one gather through a small table of bits, never a full-size label map."""
    ids = np.asarray(unit_ids).reshape(-1)
    if len(ids) > 16:
        raise ValueError(f"unit_bits holds at most 16 units; got {len(ids)}")
    labels = np.asarray(index if table is None else table)
    if labels.size == 0:
        return np.zeros(np.shape(index), np.uint16)
    lo, hi = int(labels.min()), int(labels.max())
    if table is None and (lo < 0 or hi >= (1 << 16)):   # labels a small table cannot index
        out = np.zeros(labels.shape, np.uint16)
        for j, u in enumerate(ids):
            out[labels == u] |= np.uint16(1 << j)
        return out
    if table is None:
        lut = np.zeros(hi + 1, np.uint16)
        for j, u in enumerate(ids):
            if 0 <= u <= hi:
                lut[int(u)] |= np.uint16(1 << j)
    else:
        lut = np.zeros(labels.shape, np.uint16)
        for j, u in enumerate(ids):
            lut[labels == u] |= np.uint16(1 << j)
    return lut[index]


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


def _runs(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start of each run, its cell id) of a non-decreasing pixel -> cell sequence."""
    start = np.flatnonzero(np.r_[True, cells[1:] != cells[:-1]])
    return start, cells[start]


def cells_of_bits(bits: np.ndarray, n_units: int, grid: tuple[int, int]) -> torch.Tensor:
    """float32 [B, U, h*w]: per token cell, the pixels of each unit's 5 x 5-dilated mask, from bit masks
    [B, H, W] (`unit_bits`).

    The dilation is an OR over shifted copies (separable). The counting is SIMD-within-a-register: a table
    spreads each pixel's bit pattern into one field per unit of a uint64 (fields just wide enough for the
    longest run of pixels in one cell column), so one sum over each cell's column run counts every unit at
    once; the fields are then split and summed over each cell's row run. Exact integer counts."""
    bits = np.asarray(bits, dtype=np.uint16)
    b, height, width = bits.shape
    gh, gw = grid
    radius = _DILATION // 2
    bits = _or_dilate(_or_dilate(bits, 2, radius), 1, radius)
    idx = cell_index(height, width, grid).numpy().reshape(height, width)
    r_start, r_cell = _runs(idx[:, 0] // gw)
    c_start, c_cell = _runs(idx[0, :] % gw)
    width_bits = int(np.diff(np.r_[c_start, width]).max()).bit_length()
    per_word = 64 // width_bits
    mask = np.uint64((1 << width_bits) - 1)
    patterns = np.arange(1 << n_units, dtype=np.uint64) if n_units else np.zeros(1, np.uint64)
    out = np.zeros((b, n_units, gh, gw), dtype=np.float32)
    for first in range(0, n_units, per_word):
        units = range(first, min(n_units, first + per_word))
        spread = np.zeros(len(patterns), dtype=np.uint64)
        for f, u in enumerate(units):
            spread |= ((patterns >> np.uint64(u)) & np.uint64(1)) << np.uint64(f * width_bits)
        packed = np.add.reduceat(spread[bits], c_start, axis=2)              # [B, H, runs of columns]
        fields = np.stack([(packed >> np.uint64(f * width_bits)) & mask for f in range(len(units))])
        counts = np.add.reduceat(fields, r_start, axis=2, dtype=np.uint64)  # [u, B, runs of rows, runs of cols]
        out[:, first:first + len(units)][:, :, r_cell[:, None], c_cell[None, :]] = \
            counts.transpose(1, 0, 2, 3).astype(np.float32)
    return torch.from_numpy(out.reshape(b, n_units, gh * gw))


def _read_map(sp, i: int, colours: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(index, table) of image i's part map (`Split.part_map_indexed`) or colour map
    (`Split.part_colour_map_indexed`)."""
    index, table = sp.part_colour_map_indexed(i) if colours else sp.part_map_indexed(i)
    return np.asarray(index), None if table is None else np.asarray(table)


def _count_images(sp, indices: np.ndarray, unit_ids: np.ndarray, grid: tuple[int, int],
                  colours: bool = False) -> list[tuple]:
    """``[(indices, float32 [n, U, h*w] counts, (H, W)), ...]`` for images `indices` of split `sp`, counted
    in batches of equal image size (the one code path of the serial and the parallel build). Units are the
    part map's ids, or with `colours` the colour map's (`_read_map`)."""
    as_bits = len(unit_ids) <= _MAX_BITS
    batch = _BATCH_BITS if as_bits else _BATCH_ELEMENTS // max(len(unit_ids), 1)
    out: list[tuple] = []
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        if pending:
            maps = np.stack([m for _, m in pending])
            counted = (cells_of_bits(maps, len(unit_ids), grid) if as_bits
                       else _cells_of_maps_onehot(maps, unit_ids, grid))
            out.append((np.array([i for i, _ in pending]), counted.numpy(), maps.shape[1:]))
            pending.clear()

    for i in indices:
        index, table = _read_map(sp, int(i), colours)
        if as_bits:
            pm = unit_bits(index, unit_ids, table)
        else:
            pm = index if table is None else table[index]
        if pending and pending[0][1].shape != pm.shape:
            flush()
        pending.append((int(i), pm))
        if len(pending) * pm.size >= batch:
            flush()
    flush()
    return out


_FORK_JOB: tuple | None = None   # (split, unit ids, grid, colours) handed to forked workers by inheritance


def _count_in_worker(indices: np.ndarray) -> list[tuple]:
    torch.set_num_threads(1)   # as DataLoader workers do: no intra-op pool in a forked child
    sp, unit_ids, grid, colours = _FORK_JOB  # type: ignore[misc]
    return _count_images(sp, indices, unit_ids, grid, colours)


def _workers(n: int) -> int:
    """Processes for the parallel build: torch's thread count (what the user allowed this job), at most
    the CPUs this process may use; 0 (serial) for small splits, where `fork` is not available, or in a
    daemonic process."""
    if n < _PARALLEL_MIN_IMAGES or "fork" not in mp.get_all_start_methods() or mp.current_process().daemon:
        return 0   # (a daemonic process, such as an `xbench run --workers` worker, may not have children)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    w = min(torch.get_num_threads(), cpus)
    return w if w >= 2 else 0


def build_unit_cells(dataset: Dataset, split: str, grid: tuple[int, int], show_progress: bool = False,
                     workers: int | None = None, colours: bool = False) -> UnitCells:
    """The `UnitCells` of every image of `split`: each part map read once (as unit bit masks when there are
    at most `_MAX_BITS` units) and counted in batches.

    Reading a part map is mostly Python (synthbirds rasterises it; FunnyBirds decodes a PNG), so a large
    split is split into chunks counted by `workers` forked processes (default `_workers`: torch's thread
    count, where `fork` exists and the split has at least `_PARALLEL_MIN_IMAGES` images); each returns only
    its counts. The numbers are the same either way (tested).

    With `colours` (the reference protocol) every colour of a slot is dilated and counted on its own and
    a slot's row is the sum of its colours' rows: where the dilated masks of a slot's two colours overlap,
    those pixels count twice, as in the FunnyBirds framework (`_slot_rows`)."""
    global _FORK_JOB
    sp = dataset.split(split)
    n = len(sp)
    num_parts = len(dataset.part_names)
    n_obj = np.asarray([sp.num_objects(i) for i in range(n)], dtype=np.int64)
    max_obj = int(n_obj.max()) if n else 0
    units = num_parts + max_obj
    colour_slots = _colour_slots(dataset) if colours else None
    n_colours = len(colour_slots) if colour_slots is not None else num_parts
    counted_units = n_colours + max_obj
    unit_ids = np.arange(1, counted_units + 1)
    k = grid[0] * grid[1]
    # filled with numpy while the workers run: a torch op here would wake torch's OpenMP threads, whose
    # spin-waiting takes CPU from the workers
    weights = np.zeros((n, units, k), dtype=np.float64)
    shapes: dict[tuple[int, int], list[np.ndarray]] = {}

    def store(results: list[tuple]) -> int:
        for idx, counted, shape in results:
            weights[idx] = counted if colour_slots is None else _slot_rows(counted, colour_slots, num_parts)
            shapes.setdefault(tuple(shape), []).append(idx)
        return sum(len(r[0]) for r in results)

    w = _workers(n) if workers is None else int(workers)
    chunks = np.array_split(np.arange(n), max(1, -(-n // _CHUNK))) if n else []
    with progress(total=n, desc=f"part masks {split}", enabled=show_progress, unit="img") as bar:
        if w >= 2:
            _FORK_JOB = (sp, unit_ids, grid, colour_slots is not None)
            try:
                with mp.get_context("fork").Pool(w) as pool:
                    for results in pool.imap_unordered(_count_in_worker, chunks):
                        bar.update(store(results))
            finally:
                _FORK_JOB = None
        else:
            for chunk in chunks:
                bar.update(store(_count_images(sp, chunk, unit_ids, grid, colour_slots is not None)))
    pixels = torch.zeros(n, k, dtype=torch.float64)
    for (height, width), idx in shapes.items():
        pixels[torch.as_tensor(np.concatenate(idx))] = torch.bincount(cell_index(height, width, grid),
                                                                      minlength=k).double()
    valid = torch.ones(n, units, dtype=torch.bool)
    valid[:, num_parts:] = torch.arange(max_obj)[None, :] < torch.as_tensor(n_obj)[:, None]
    weights = torch.from_numpy(weights)
    return UnitCells(weights=weights, pixels=pixels, valid=valid, num_parts=num_parts, grid=tuple(grid))


def _colour_slots(dataset: Dataset) -> tuple[int, ...]:
    slots = getattr(dataset, "part_colour_slots", None)
    return tuple(range(len(dataset.part_names))) if slots is None else tuple(int(p) for p in slots)


def _slot_rows(counted: np.ndarray, colour_slots: tuple[int, ...], num_parts: int) -> np.ndarray:
    """[n, P + O, k] from colour-unit counts [n, K + O, k]: slot p's row is the sum of its colours' rows."""
    k_col = len(colour_slots)
    out = np.zeros((counted.shape[0], num_parts + counted.shape[1] - k_col, counted.shape[2]), counted.dtype)
    for c, p in enumerate(colour_slots):
        out[:, p] += counted[:, c]
    out[:, num_parts:] = counted[:, k_col:]
    return out


_SHARED: dict[tuple, UnitCells] = {}
_LOCK = threading.Lock()


def unit_cells(dataset: Dataset, split: str, grid: tuple[int, int], show_progress: bool = False,
               cache_root: str | Path | None = None, colours: bool = False) -> UnitCells:
    """`build_unit_cells`, shared by every job of this process on the same dataset content and grid, and,
    with `cache_root` (the feature cache's folder), by every process: the masks are a function of the
    dataset alone, so they are stored once beside the cached tokens (`annotations/unitcells-<key>.npz`,
    written atomically; an unreadable or mismatching file is rebuilt) and a Slurm array task or a second
    `xbench run` reads them instead of rendering every part map again.

    The key is the dataset's fingerprint (name, version, options, annotation digest) plus its root, the
    split, the grid and this module's mask recipe (dilation size, format version, and `colours`: per-colour
    dilation for the reference protocol, see `build_unit_cells`).
    """
    key = (repr(sorted(dataset.fingerprint().items())), str(getattr(dataset, "root", None)), split, tuple(grid))
    if colours:   # (the default protocol's key stays as it was, so stored masks remain valid)
        key = key + ("colours",)
    with _LOCK:
        hit = _SHARED.get(key)
    if hit is None:
        path = _disk_path(cache_root, key) if cache_root is not None else None
        hit = _load(path, len(dataset.split(split)), len(dataset.part_names), grid) if path else None
        if hit is None:
            hit = build_unit_cells(dataset, split, grid, show_progress, colours=colours)
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


__all__ = ["UnitCells", "cell_index", "axis_cells", "dilate", "cells_of_maps", "unit_bits", "cells_of_bits", "build_unit_cells", "unit_cells", "clear_shared"]
