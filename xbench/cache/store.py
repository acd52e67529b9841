"""TokenStore: the tokens of one complete cache entry, read by rows.

A store reads rows on demand (positioned reads into fresh or caller-given
buffers; see rows.py) so the resident memory of a process is bounded by its
batches, not by the entry. The first time a row is read in a process its crc32
is compared with the digest recorded when the entry was written; a mismatch
marks the row's chunk for re-extraction and raises `CacheDamaged`. Stores can
also hold plain in-memory arrays (tests, external tokens).
"""
from __future__ import annotations

import threading
import zlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..errors import UserError
from ..tokens import Tokens
from .key import ARRAYS
from .rows import RowFile


class CacheDamaged(UserError):
    """A cache entry's rows no longer match the digests recorded when they were written."""


class TokenStore:
    """A complete cache entry. Rows follow the view's items."""

    def __init__(self, path: Path | None, meta: dict, arrays: dict[str, np.ndarray | RowFile],
                 index_base: np.ndarray, index_meta: dict[str, np.ndarray],
                 digests: np.ndarray | None = None, on_damage: Callable[[list[int]], None] | None = None):
        self.path = path
        self.meta = meta
        self.arrays = {n: arrays[n] for n in ARRAYS}
        self.base = index_base
        self.index_meta = index_meta
        self._digests = digests
        self._checked = np.zeros(len(self), bool) if digests is not None else None
        self._on_damage = on_damage
        self._lock = threading.Lock()

    # shape --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.arrays["patch"].shape[0])

    @property
    def grid(self) -> int:
        return int(self.arrays["patch"].shape[1])

    @property
    def dim(self) -> int:
        return int(self.arrays["patch"].shape[-1])

    @property
    def num_registers(self) -> int:
        return int(self.arrays["reg"].shape[1])

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.arrays["patch"].dtype)

    @property
    def torch_dtype(self) -> torch.dtype:
        """The precision the tokens are stored in (float16, or float32 for `cache_dtype: float32`)."""
        return torch.float32 if self.np_dtype == np.float32 else torch.float16

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.arrays.values()))

    @property
    def on_disk(self) -> bool:
        return isinstance(self.arrays["patch"], RowFile)

    # reading ------------------------------------------------------------------------------
    def rows(self, idx: np.ndarray | slice | list[int], out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """The raw rows `idx` of each array (stored dtype), read into `out` when given."""
        if isinstance(idx, slice):
            lo, hi, step = idx.indices(len(self))
            sel = np.arange(lo, hi, step, dtype=np.int64)
        else:
            sel = np.asarray(idx, dtype=np.int64).reshape(-1)
        res: dict[str, np.ndarray] = {}
        for n, a in self.arrays.items():
            buf = None if out is None else out[n][:len(sel)]
            if isinstance(a, RowFile):
                res[n] = a.read_rows(sel, buf)
            else:
                part = a[sel]
                if buf is not None:
                    buf[...] = part
                    part = buf
                res[n] = part
        if self._checked is not None:
            self._check(sel, res)
        return res

    def _check(self, sel: np.ndarray, res: dict[str, np.ndarray]) -> None:
        todo = np.flatnonzero(~self._checked[sel])
        if not len(todo):
            return
        bad = []
        for j in todo:
            c = 0
            for n in ARRAYS:
                c = zlib.crc32(np.ascontiguousarray(res[n][j]).view(np.uint8), c)
            if c != int(self._digests[sel[j]]):
                bad.append(int(sel[j]))
        if bad:
            if self._on_damage is not None:
                self._on_damage(bad)
            raise CacheDamaged(f"feature cache entry {self.path}: rows {bad[:3]} no longer match the digests "
                               f"recorded when they were written; their chunks are marked for re-extraction: "
                               f"run again (or `xbench cache verify`)")
        with self._lock:
            self._checked[sel[todo]] = True

    def mark_checked(self) -> None:
        """Every row is known good in this process (it was just written and digested)."""
        if self._checked is not None:
            self._checked[:] = True

    def tokens(self, idx: np.ndarray | slice | list[int], device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> Tokens:
        r = self.rows(idx)
        return Tokens(*(torch.from_numpy(np.ascontiguousarray(r[n])).to(device=device, dtype=dtype) for n in ARRAYS))

    def batches(self, batch_size: int, indices: np.ndarray | None = None, device="cpu",
                dtype=torch.float32) -> Iterator[tuple[np.ndarray, Tokens]]:
        idx = np.arange(len(self)) if indices is None else np.asarray(indices)
        for s in range(0, len(idx), batch_size):
            sel = idx[s:s + batch_size]
            yield sel, self.tokens(sel, device, dtype)

    def in_memory(self) -> "TokenStore":
        """A copy whose rows live in this process's memory (small entries, tests)."""
        return TokenStore(self.path, self.meta, self.rows(slice(None)), self.base, self.index_meta)

    def close(self) -> None:
        for a in self.arrays.values():
            if isinstance(a, RowFile):
                a.close()
