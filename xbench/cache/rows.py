"""Row files: an entry's `.npy` arrays read and written with positioned I/O, never memory-mapped.

A `RowFile` knows the header of one `.npy` file (dtype, shape, where the data
starts) and reads rows with `os.preadv` straight into a caller's buffer, so a
batch costs exactly its bytes and nothing of the file stays resident in the
process (the kernel's page cache keeps what it likes; it is not counted as the
process's memory). Writers use `os.pwrite`. Every byte goes through the
process-wide counters in `IO`, which the runner records per job.
"""
from __future__ import annotations

import hashlib
import os
import threading
import zlib
from pathlib import Path

import numpy as np


class _IOStats:
    """Bytes and calls through every RowFile of this process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes_read = 0
        self.reads = 0
        self.bytes_written = 0

    def add_read(self, n: int) -> None:
        with self._lock:
            self.bytes_read += n
            self.reads += 1

    def add_written(self, n: int) -> None:
        with self._lock:
            self.bytes_written += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"bytes_read": self.bytes_read, "reads": self.reads, "bytes_written": self.bytes_written}

    def since(self, snap: dict[str, int]) -> dict[str, int]:
        now = self.snapshot()
        return {k: now[k] - snap.get(k, 0) for k in now}


IO = _IOStats()


class RowFile:
    """One `.npy` array of an entry, read and written by rows (axis 0)."""

    def __init__(self, path: Path, writable: bool = False):
        self.path = Path(path)
        self.fd = os.open(self.path, os.O_RDWR if writable else os.O_RDONLY)
        try:
            with open(self.path, "rb") as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                self.offset = f.tell()
            if fortran or dtype.hasobject:
                raise ValueError(f"{self.path}: not a C-ordered numeric array")
            self.shape = tuple(int(s) for s in shape)
            self.dtype = np.dtype(dtype)
            self.row_shape = self.shape[1:]
            self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
            if os.fstat(self.fd).st_size < self.offset + self.shape[0] * self.row_bytes:
                raise ValueError(f"{self.path}: file is shorter than its header says (truncated)")
        except BaseException:
            os.close(self.fd)
            raise

    @classmethod
    def create(cls, path: Path, dtype, shape: tuple[int, ...]) -> "RowFile":
        """A new zero-filled array file of `shape` (sparse on disk until written)."""
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                  "shape": tuple(int(s) for s in shape)}
        with open(path, "wb") as f:
            _write_header(f, header)
            start = f.tell()
            f.truncate(start + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
        return cls(path, writable=True)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.row_bytes

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    # reading ---------------------------------------------------------------------------------
    def read(self, lo: int, hi: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows [lo, hi) into `out` (allocated if None)."""
        n = hi - lo
        if out is None:
            out = np.empty((n,) + self.row_shape, self.dtype)
        if n:
            self._pread(memoryview(out.reshape(-1).view(np.uint8)), self.offset + lo * self.row_bytes)
        return out

    def read_rows(self, idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Rows `idx` (any order) into `out`; contiguous runs are read with one call each."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if out is None:
            out = np.empty((len(idx),) + self.row_shape, self.dtype)
        if not len(idx):
            return out
        if idx.min() < 0 or idx.max() >= self.shape[0]:
            raise IndexError(f"{self.path}: rows out of range 0..{self.shape[0] - 1}")
        s = 0
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        for e in list(breaks) + [len(idx)]:
            self.read(int(idx[s]), int(idx[e - 1]) + 1, out[s:e])
            s = int(e)
        return out

    def _pread(self, view: memoryview, pos: int) -> None:
        total = len(view)
        done = 0
        while done < total:
            got = os.preadv(self.fd, [view[done:]], pos + done)
            if got <= 0:
                raise OSError(f"{self.path}: unexpected end of file (truncated?)")
            done += got
        IO.add_read(total)

    # writing ---------------------------------------------------------------------------------
    def write(self, lo: int, rows: np.ndarray) -> None:
        arr = np.ascontiguousarray(rows, dtype=self.dtype)
        if arr.shape[1:] != self.row_shape or lo < 0 or lo + len(arr) > self.shape[0]:
            raise ValueError(f"{self.path}: rows {arr.shape} at {lo} do not fit {self.shape}")
        view = memoryview(arr.reshape(-1).view(np.uint8))
        pos = self.offset + lo * self.row_bytes
        done = 0
        while done < len(view):
            done += os.pwrite(self.fd, view[done:], pos + done)
        IO.add_written(len(view))

    def flush(self) -> None:
        os.fsync(self.fd)


def _write_header(f, header: dict) -> None:
    np.lib.format.write_array_header_1_0(f, header)


def chunk_checksum(arrays: dict[str, np.ndarray], lo: int, hi: int, names=("patch", "cls", "reg")) -> str:
    """The chunk digest stored in `chunks/<k>.done` (blake2b over each array's rows [lo, hi))."""
    h = hashlib.blake2b(digest_size=16)
    for name in names:
        h.update(np.ascontiguousarray(arrays[name][lo:hi]).view(np.uint8).tobytes())
    return h.hexdigest()


def row_digests(arrays: dict[str, np.ndarray], names=("patch", "cls", "reg")) -> list[int]:
    """One crc32 per row over its patch, cls and register bytes (checked lazily on first read)."""
    n = len(arrays[names[0]])
    out = []
    for i in range(n):
        c = 0
        for name in names:
            c = zlib.crc32(np.ascontiguousarray(arrays[name][i]).view(np.uint8), c)
        out.append(c)
    return out
