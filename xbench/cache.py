"""The on-disk feature cache: backbone tokens computed once, shared by every method and seed.

One entry per (backbone, weights hash, image size, preprocessing, dataset
fingerprint, split, view), keyed by a hash of exactly those inputs. An entry is a folder:

    meta.json          the key's inputs, shapes, chunking, status ("partial" / "complete")
    index.npz          the view's items (base image per item) and per-item metadata
    patch.npy          fp16 [M, g, g, D]   (memory-mapped; fp32 with `dtype="float32"`)
    cls.npy            fp16 [M, D]
    reg.npy            fp16 [M, R, D]
    chunks/<k>.done    one file per finished chunk of items, holding its checksum

Chunks are written in place into preallocated memory-mapped arrays; a chunk
counts as done only after its data is flushed and its `.done` file has been
written atomically, so an interrupted extraction resumes at the first missing
chunk and never trusts a half-written one. Opening an entry verifies every
chunk's checksum (blake2b); a chunk whose data no longer matches is
re-extracted. Chunks can be filled by several processes at once (sharded
extraction), each owning a disjoint set.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from . import testhooks
from .atomic import atomic_write_json, atomic_write_with
from .errors import UserError
from .tokens import Tokens

FORMAT_VERSION = 1
ARRAYS = ("patch", "cls", "reg")


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


#: token precisions an entry can hold (`CacheKey.dtype`)
DTYPES = {"float16": np.float16, "float32": np.float32}


@dataclass(frozen=True)
class CacheKey:
    backbone: str
    weights_hash: str
    image_size: int
    dataset: dict
    split: str
    view: str
    dtype: str = "float16"    # token precision on disk; float16 entries keep the digest they always had
    preprocessing: dict | None = None   # Preprocessing.cache_key(): None for the original rule (same digest)

    def inputs(self) -> dict[str, Any]:
        out = {"format": FORMAT_VERSION, "backbone": self.backbone, "weights_hash": self.weights_hash,
               "image_size": self.image_size, "dataset": self.dataset, "split": self.split, "view": self.view}
        if self.dtype != "float16":
            out["dtype"] = self.dtype
        if self.preprocessing is not None:
            out["preprocessing"] = self.preprocessing
        return out

    @property
    def digest(self) -> str:
        return hashlib.sha256(canonical(self.inputs()).encode()).hexdigest()[:24]


def chunk_checksum(arrays: dict[str, np.ndarray], lo: int, hi: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name in ARRAYS:
        h.update(np.ascontiguousarray(arrays[name][lo:hi]).view(np.uint8).tobytes())
    return h.hexdigest()


class TokenStore:
    """A complete cache entry, memory-mapped. Rows follow the view's items."""

    def __init__(self, path: Path, meta: dict, arrays: dict[str, np.ndarray], index_base: np.ndarray,
                 index_meta: dict[str, np.ndarray]):
        self.path = path
        self.meta = meta
        self.patch, self.cls, self.reg = arrays["patch"], arrays["cls"], arrays["reg"]
        self.base = index_base
        self.index_meta = index_meta

    def __len__(self) -> int:
        return int(self.patch.shape[0])

    @property
    def grid(self) -> int:
        return int(self.patch.shape[1])

    @property
    def dim(self) -> int:
        return int(self.patch.shape[-1])

    @property
    def num_registers(self) -> int:
        return int(self.reg.shape[1])

    @property
    def torch_dtype(self) -> torch.dtype:
        """The precision the tokens are stored in (float16, or float32 for `cache_dtype: float32`)."""
        return torch.float32 if self.patch.dtype == np.float32 else torch.float16

    def tokens(self, idx: np.ndarray | slice | list[int], device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> Tokens:
        if isinstance(idx, slice):
            sel = idx
        else:
            sel = np.asarray(idx, dtype=np.int64)
            if sel.size > 1 and np.all(np.diff(sel) == 1):
                sel = slice(int(sel[0]), int(sel[-1]) + 1)

        def get(a: np.ndarray) -> torch.Tensor:
            part = a[sel]
            arr = np.array(part, copy=True) if isinstance(sel, slice) else np.ascontiguousarray(part)
            return torch.from_numpy(arr).to(device=device, dtype=dtype)

        return Tokens(get(self.patch), get(self.cls), get(self.reg))

    def batches(self, batch_size: int, indices: np.ndarray | None = None, device="cpu",
                dtype=torch.float32) -> Iterator[tuple[np.ndarray, Tokens]]:
        idx = np.arange(len(self)) if indices is None else np.asarray(indices)
        for s in range(0, len(idx), batch_size):
            sel = idx[s:s + batch_size]
            yield sel, self.tokens(sel, device, dtype)

    def in_memory(self) -> "TokenStore":
        arrays = {n: np.array(getattr(self, n)) for n in ARRAYS}
        return TokenStore(self.path, self.meta, arrays, self.base, self.index_meta)


class FeatureCache:
    """Folder of cache entries; see the module docstring for the layout."""

    def __init__(self, root: str | Path, chunk_size: int | None = None):
        self.root = Path(root)
        self.chunk_size = int(chunk_size) if chunk_size else testhooks.chunk_size()  # 256 unless a test sets it
        self._verified: set[str] = set()

    def entry_dir(self, key: CacheKey) -> Path:
        return self.root / key.digest

    # reading ------------------------------------------------------------------------
    def open(self, key: CacheKey, verify: bool = True) -> TokenStore | None:
        """The complete, verified entry for `key`, or None (missing, partial or damaged chunks)."""
        d = self.entry_dir(key)
        meta = _read_meta(d)
        if meta is None or meta.get("status") != "complete":
            return None
        try:
            arrays = {n: np.load(d / f"{n}.npy", mmap_mode="r") for n in ARRAYS}
            with np.load(d / "index.npz") as z:
                base = z["base"]
                imeta = {k[5:]: z[k] for k in z.files if k.startswith("meta_")}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # truncated, deleted or altered
            _mark_partial(d, meta)
            return None
        if any(a.shape[0] != meta["items"] for a in arrays.values()) or base.shape[:1] != (meta["items"],):
            _mark_partial(d, meta)
            return None
        if verify and key.digest not in self._verified:
            bad = self._bad_chunks(d, meta, arrays)
            if bad:
                for k in bad:
                    (d / "chunks" / f"{k}.done").unlink(missing_ok=True)
                _mark_partial(d, meta)
                return None
            self._verified.add(key.digest)
        return TokenStore(d, meta, arrays, base, imeta)

    def _bad_chunks(self, d: Path, meta: dict, arrays: dict[str, np.ndarray]) -> list[int]:
        bad = []
        cs = meta["chunk_size"]
        for k in range(_n_chunks(meta["items"], cs)):
            rec = _read_done(d, k)
            if rec is None or rec != chunk_checksum(arrays, k * cs, min((k + 1) * cs, meta["items"])):
                bad.append(k)
        return bad

    def entries(self) -> list[dict]:
        out = []
        if not self.root.is_dir():
            return out
        for d in sorted(self.root.iterdir()):
            meta = _read_meta(d)
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
                shutil.rmtree(e["path"], ignore_errors=True)
                n += 1
        if match is None:  # derived annotations stored beside the tokens (FunnyBirds unit masks)
            shutil.rmtree(self.root / "annotations", ignore_errors=True)
        return n

    # writing ------------------------------------------------------------------------
    def prepare(self, key: CacheKey, base: np.ndarray, index_meta: dict[str, np.ndarray], grid: int, dim: int,
                num_registers: int) -> "PartialEntry":
        """Create (or reopen for resuming) the entry's arrays; returns a writer."""
        d = self.entry_dir(key)
        (d / "chunks").mkdir(parents=True, exist_ok=True)
        items = int(base.shape[0])
        shapes = {"patch": (items, grid, grid, dim), "cls": (items, dim), "reg": (items, num_registers, dim)}
        meta = _read_meta(d)
        fresh = meta is None or meta.get("shapes") != {k: list(v) for k, v in shapes.items()} \
            or meta.get("chunk_size") != self.chunk_size
        if not fresh:
            try:
                arrays = {n: np.load(d / f"{n}.npy", mmap_mode="r+") for n in ARRAYS}
                fresh = any(tuple(arrays[n].shape) != shapes[n] for n in ARRAYS)
            except (OSError, ValueError, EOFError):
                fresh = True
        if fresh:
            for f in (d / "chunks").glob("*.done"):
                f.unlink()
            arrays = {}
            if key.dtype not in DTYPES:
                raise UserError(f"cache dtype {key.dtype!r} is not supported: use {' or '.join(DTYPES)}")
            for n in ARRAYS:
                arrays[n] = np.lib.format.open_memmap(d / f"{n}.npy", mode="w+", dtype=DTYPES[key.dtype],
                                                      shape=shapes[n])
            _write_index(d, base, index_meta)
            meta = {**key.inputs(), "key": key.digest, "items": items, "chunk_size": self.chunk_size,
                    "shapes": {k: list(v) for k, v in shapes.items()}, "dtype": key.dtype,
                    "status": "partial", "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            atomic_write_json(d / "meta.json", meta)
        elif not _index_matches(d, base, index_meta):  # index.npz deleted or damaged: the key fixes its content
            _write_index(d, base, index_meta)
        return PartialEntry(self, key, d, meta, arrays)


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


class PartialEntry:
    """Writer for an entry being filled chunk by chunk."""

    def __init__(self, cache: FeatureCache, key: CacheKey, path: Path, meta: dict, arrays: dict[str, np.ndarray]):
        self.cache, self.key, self.path, self.meta, self.arrays = cache, key, path, meta, arrays
        self.chunk_size = meta["chunk_size"]
        self.items = meta["items"]

    @property
    def n_chunks(self) -> int:
        return _n_chunks(self.items, self.chunk_size)

    def chunk_range(self, k: int) -> tuple[int, int]:
        return k * self.chunk_size, min((k + 1) * self.chunk_size, self.items)

    def done_chunks(self, verify: bool = True) -> set[int]:
        done = set()
        for k in range(self.n_chunks):
            rec = _read_done(self.path, k)
            if rec is None:
                continue
            if verify and rec != chunk_checksum(self.arrays, *self.chunk_range(k)):
                (self.path / "chunks" / f"{k}.done").unlink(missing_ok=True)
                continue
            done.add(k)
        return done

    def write(self, lo: int, tokens: Tokens) -> None:
        hi = lo + len(tokens)
        dt = torch.float32 if self.key.dtype == "float32" else torch.float16
        self.arrays["patch"][lo:hi] = tokens.patch.detach().to("cpu", dt).numpy()
        self.arrays["cls"][lo:hi] = tokens.cls.detach().to("cpu", dt).numpy()
        self.arrays["reg"][lo:hi] = tokens.reg.detach().to("cpu", dt).numpy()

    def finish_chunk(self, k: int) -> None:
        for a in self.arrays.values():
            a.flush()
        digest = chunk_checksum(self.arrays, *self.chunk_range(k))
        atomic_write_with(self.path / "chunks" / f"{k}.done", lambda f: f.write(digest.encode()))

    def complete(self) -> None:
        missing = set(range(self.n_chunks)) - self.done_chunks(verify=False)
        if missing:
            raise RuntimeError(f"cache entry {self.path} still misses chunks {sorted(missing)[:5]}")
        for a in self.arrays.values():
            a.flush()
        meta = {**self.meta, "status": "complete", "completed": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_json(self.path / "meta.json", meta)
        self.meta = meta


def _n_chunks(items: int, chunk_size: int) -> int:
    return (items + chunk_size - 1) // chunk_size


def _read_meta(d: Path) -> dict | None:
    try:
        return json.loads((d / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def _read_done(d: Path, k: int) -> str | None:
    try:
        return (d / "chunks" / f"{k}.done").read_text().strip() or None
    except OSError:
        return None


def _mark_partial(d: Path, meta: dict) -> None:
    try:
        atomic_write_json(d / "meta.json", {**meta, "status": "partial"})
    except OSError as err:
        raise UserError(f"feature cache {d} is damaged and not writable ({err}); run `xbench cache clear`") from None
