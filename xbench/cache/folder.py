"""FeatureCache: the folder of entries, and the one open TokenStore per entry per process.

Opening an entry costs a `stat` of its files and a read of its small chunk
records when its seal matches (see entry.py); every method, seed and metric of
a process then shares the same TokenStore (`_OPEN`). An entry without a valid
seal (first format, copied, edited) is verified chunk by chunk once and sealed
again; `verify()` (`xbench cache verify`) reads everything.
"""
from __future__ import annotations

import shutil
import time
import zipfile
from pathlib import Path

import numpy as np

from .. import testhooks
from ..atomic import atomic_write_json, atomic_write_with
from ..errors import UserError
from .entry import (PartialEntry, bad_chunks, file_seal, mark_partial, n_chunks, read_done, read_meta,
                    seal_matches)
from .key import ARRAYS, DTYPES, CacheKey, canonical
from .rows import RowFile
from .store import TokenStore

#: (entry folder, key digest) -> the TokenStore this process has open
_OPEN: dict[tuple[str, str], TokenStore] = {}


def forget_open(d: Path | None = None) -> None:
    """Forget this process's open stores: all, or those of entry folder `d` (the next open opens afresh).

    A store still held elsewhere stays readable; its files close when it is garbage-collected.
    """
    for k in [k for k in _OPEN if d is None or k[0] == str(d)]:
        _OPEN.pop(k)


class FeatureCache:
    """Folder of cache entries; see the package docstring for the layout."""

    def __init__(self, root: str | Path, chunk_size: int | None = None):
        self.root = Path(root)
        self.chunk_size = int(chunk_size) if chunk_size else testhooks.chunk_size()  # 256 unless a test sets it

    def entry_dir(self, key: CacheKey) -> Path:
        return self.root / key.digest

    # reading ------------------------------------------------------------------------
    def open(self, key: CacheKey, verify: bool = True) -> TokenStore | None:
        """The complete entry for `key`, or None (missing, partial or damaged: it is then marked partial).

        `verify=False` only asks whether the entry is complete (no chunk is read for an unsealed entry).
        """
        d = self.entry_dir(key)
        meta = read_meta(d)
        slot = (str(d), key.digest)
        if meta is None or meta.get("status") != "complete":
            forget_open(d)
            return None
        sealed = seal_matches(d, meta)
        if slot in _OPEN:
            if sealed:
                return _OPEN[slot]
            forget_open(d)
        try:
            files = {n: RowFile(d / f"{n}.npy") for n in ARRAYS}
        except (OSError, ValueError):  # missing, truncated or not an array
            mark_partial(d, meta)
            return None
        try:
            with np.load(d / "index.npz") as z:
                base = z["base"]
                imeta = {k[5:]: z[k] for k in z.files if k.startswith("meta_")}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # truncated, deleted or altered
            return self._reject(d, meta, files, [])
        if any(len(f) != meta["items"] for f in files.values()) or base.shape[:1] != (meta["items"],):
            return self._reject(d, meta, files, [])
        records = [read_done(d, k) for k in range(n_chunks(meta["items"], meta["chunk_size"]))]
        missing = [k for k, r in enumerate(records) if r is None]
        if missing:
            return self._reject(d, meta, files, missing)
        if not sealed:
            if not verify:
                return TokenStore(d, meta, files, base, imeta)
            bad = bad_chunks(d, meta, files, reseal=True)
            if bad:
                return self._reject(d, meta, files, bad)
            meta = {**meta, "seal": file_seal(d)}
            atomic_write_json(d / "meta.json", meta)
            records = [read_done(d, k) for k in range(len(records))]
        digests = np.asarray([c for r in records for c in r[1]], dtype=np.uint64) \
            if all(r is not None and r[1] is not None for r in records) else None

        def damaged(rows: list[int], d=d, meta=meta, cs=meta["chunk_size"]) -> None:
            for k in sorted({r // cs for r in rows}):
                (d / "chunks" / f"{k}.done").unlink(missing_ok=True)
            mark_partial(d, meta)
            _OPEN.pop(slot, None)

        store = TokenStore(d, meta, files, base, imeta, digests=digests, on_damage=damaged)
        _OPEN[slot] = store
        return store

    @staticmethod
    def _reject(d: Path, meta: dict, files: dict[str, RowFile], bad: list[int]) -> None:
        for f in files.values():
            f.close()
        for k in bad:
            (d / "chunks" / f"{k}.done").unlink(missing_ok=True)
        mark_partial(d, meta)
        return None

    def verify(self) -> list[tuple[str, str]]:
        """Read every complete entry in full; returns (entry folder, problem) for each damaged one (marked partial)."""
        out = []
        for e in self.entries():
            d = Path(e["path"])
            if e.get("status") != "complete":
                continue
            try:
                files = {n: RowFile(d / f"{n}.npy") for n in ARRAYS}
            except (OSError, ValueError) as err:
                mark_partial(d, e)
                out.append((str(d), f"unreadable array ({err})"))
                continue
            try:
                bad = bad_chunks(d, e, files)
            finally:
                for f in files.values():
                    f.close()
            if bad:
                for k in bad:
                    (d / "chunks" / f"{k}.done").unlink(missing_ok=True)
                mark_partial(d, {k: v for k, v in e.items() if k not in ("path", "bytes")})
                forget_open(d)
                out.append((str(d), f"{len(bad)} chunk(s) fail their digest (first: {bad[0]})"))
        return out

    def entries(self) -> list[dict]:
        out = []
        if not self.root.is_dir():
            return out
        for d in sorted(self.root.iterdir()):
            meta = read_meta(d)
            if meta is None:
                continue
            size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
            out.append({**meta, "path": str(d), "bytes": size})
        return out

    def clear(self, match: str | None = None) -> int:
        """Delete entries whose backbone/dataset/split/view mention `match` (all if None); returns the count."""
        n = 0
        for e in self.entries():
            text = canonical({k: e.get(k) for k in ("backbone", "dataset", "split", "view")})
            if match is None or match in text:
                forget_open(Path(e["path"]))
                shutil.rmtree(e["path"], ignore_errors=True)
                n += 1
        if match is None:  # derived annotations stored beside the tokens (FunnyBirds unit masks)
            shutil.rmtree(self.root / "annotations", ignore_errors=True)
        return n

    # writing ------------------------------------------------------------------------
    def prepare(self, key: CacheKey, base: np.ndarray, index_meta: dict[str, np.ndarray], grid: int, dim: int,
                num_registers: int) -> PartialEntry:
        """Create (or reopen for resuming) the entry's arrays; returns a writer."""
        d = self.entry_dir(key)
        forget_open(d)
        (d / "chunks").mkdir(parents=True, exist_ok=True)
        items = int(base.shape[0])
        shapes = {"patch": (items, grid, grid, dim), "cls": (items, dim), "reg": (items, num_registers, dim)}
        meta = read_meta(d)
        fresh = meta is None or meta.get("shapes") != {k: list(v) for k, v in shapes.items()} \
            or meta.get("chunk_size") != self.chunk_size
        files: dict[str, RowFile] = {}
        if not fresh:
            try:
                files = {n: RowFile(d / f"{n}.npy", writable=True) for n in ARRAYS}
                fresh = any(files[n].shape != shapes[n] or files[n].dtype != DTYPES.get(key.dtype) for n in ARRAYS)
            except (OSError, ValueError, EOFError):
                fresh = True
        if fresh:
            for f in files.values():
                f.close()
            for f in (d / "chunks").glob("*.done"):
                f.unlink()
            if key.dtype not in DTYPES:
                raise UserError(f"cache dtype {key.dtype!r} is not supported: use {' or '.join(DTYPES)}")
            files = {n: RowFile.create(d / f"{n}.npy", DTYPES[key.dtype], shapes[n]) for n in ARRAYS}
            _write_index(d, base, index_meta)
            meta = {**key.inputs(), "key": key.digest, "items": items, "chunk_size": self.chunk_size,
                    "shapes": {k: list(v) for k, v in shapes.items()}, "dtype": key.dtype,
                    "status": "partial", "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            atomic_write_json(d / "meta.json", meta)
        else:
            if meta.get("status") != "partial" or "seal" in meta:
                meta = {k: v for k, v in meta.items() if k != "seal"}
                meta["status"] = "partial"
                atomic_write_json(d / "meta.json", meta)
            if not _index_matches(d, base, index_meta):  # index.npz deleted or damaged: the key fixes its content
                _write_index(d, base, index_meta)
        return PartialEntry(key, d, meta, files)

    def reopen_partial(self, key: CacheKey) -> PartialEntry:
        """Another process's prepared entry, opened for writing its own chunks (never created here)."""
        d = self.entry_dir(key)
        meta = read_meta(d)
        if meta is None or meta.get("key") != key.digest or meta.get("chunk_size") != self.chunk_size:
            raise UserError(f"cache entry {d} does not match this process's key or chunk size")
        return PartialEntry(key, d, meta, {n: RowFile(d / f"{n}.npy", writable=True) for n in ARRAYS})


def _write_index(d: Path, base: np.ndarray, index_meta: dict[str, np.ndarray]) -> None:
    arrays_meta = {"base": base, **{f"meta_{k}": v for k, v in index_meta.items()}}
    atomic_write_with(d / "index.npz", lambda f: np.savez(f, **arrays_meta))


def _index_matches(d: Path, base: np.ndarray, index_meta: dict[str, np.ndarray]) -> bool:
    try:
        with np.load(d / "index.npz") as z:
            want = {"base": base, **{f"meta_{k}": v for k, v in index_meta.items()}}
            return set(z.files) == set(want) and all(np.array_equal(z[k], np.asarray(v)) for k, v in want.items())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return False
