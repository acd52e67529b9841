"""Writing an entry chunk by chunk, and the records that let readers trust it cheaply.

`chunks/<k>.done` holds, as JSON, the chunk's blake2b digest and one crc32 per
row, written atomically after the chunk's rows are on disk. When every chunk is
done, `seal` records each file's size, mtime and inode in meta.json: a later
open that finds the same values trusts the entry without reading it (rows are
still checked lazily against their crc32 on first read); anything else (a copy,
an edit, a truncation) makes the next open verify every chunk again.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write_json, atomic_write_with
from ..errors import UserError
from ..tokens import Tokens
from .key import ARRAYS, CacheKey
from .rows import RowFile, chunk_checksum, row_digests

SEALED_FILES = tuple(f"{n}.npy" for n in ARRAYS) + ("index.npz",)


def n_chunks(items: int, chunk_size: int) -> int:
    return (items + chunk_size - 1) // chunk_size


def read_meta(d: Path) -> dict | None:
    try:
        meta = json.loads((d / "meta.json").read_text())
        return meta if isinstance(meta, dict) else None
    except (OSError, ValueError):
        return None


def read_done(d: Path, k: int) -> tuple[str, list[int] | None] | None:
    """(chunk digest, row crc32s or None for a record of the first format) of chunk k, or None."""
    try:
        text = (d / "chunks" / f"{k}.done").read_text().strip()
    except OSError:
        return None
    if not text:
        return None
    if text.startswith("{"):
        try:
            rec = json.loads(text)
            return str(rec["chunk"]), [int(x) for x in rec["rows"]]
        except (ValueError, KeyError, TypeError):
            return None
    return text, None


def write_done(d: Path, k: int, chunk: str, rows: list[int]) -> None:
    payload = json.dumps({"chunk": chunk, "rows": rows}, separators=(",", ":")).encode()
    atomic_write_with(d / "chunks" / f"{k}.done", lambda f: f.write(payload))


def file_seal(d: Path) -> dict | None:
    out = {}
    for name in SEALED_FILES:
        try:
            st = os.stat(d / name)
        except OSError:
            return None
        out[name] = [int(st.st_size), int(st.st_mtime_ns), int(st.st_ino)]
    return out


def seal_matches(d: Path, meta: dict) -> bool:
    seal = meta.get("seal")
    return seal is not None and file_seal(d) == seal


def mark_partial(d: Path, meta: dict) -> None:
    try:
        atomic_write_json(d / "meta.json", {**{k: v for k, v in meta.items() if k != "seal"}, "status": "partial"})
    except OSError as err:
        raise UserError(f"feature cache {d} is damaged and not writable ({err}); run `xbench cache clear`") from None


def read_chunk(files: dict[str, RowFile], lo: int, hi: int) -> dict[str, np.ndarray]:
    return {n: files[n].read(lo, hi) for n in ARRAYS}


def bad_chunks(d: Path, meta: dict, files: dict[str, RowFile] | None = None,
               reseal: bool = False) -> list[int]:
    """Chunks whose rows no longer match their `.done` digest (every byte is read).

    With `reseal`, good chunks of the first record format get their row digests written.
    """
    own = files is None
    if own:
        files = {n: RowFile(d / f"{n}.npy") for n in ARRAYS}
    try:
        cs, items = meta["chunk_size"], meta["items"]
        bad = []
        for k in range(n_chunks(items, cs)):
            rec = read_done(d, k)
            lo, hi = k * cs, min((k + 1) * cs, items)
            if rec is None:
                bad.append(k)
                continue
            rows = read_chunk(files, lo, hi)
            if rec[0] != chunk_checksum(rows, 0, hi - lo):
                bad.append(k)
            elif reseal and rec[1] is None:
                write_done(d, k, rec[0], row_digests(rows))
        return bad
    finally:
        if own:
            for f in files.values():
                f.close()


class PartialEntry:
    """Writer for an entry being filled chunk by chunk (by one process, or by several owning disjoint chunks)."""

    def __init__(self, key: CacheKey, path: Path, meta: dict, files: dict[str, RowFile]):
        self.key, self.path, self.meta, self.files = key, path, meta, files
        self.chunk_size = meta["chunk_size"]
        self.items = meta["items"]

    @property
    def n_chunks(self) -> int:
        return n_chunks(self.items, self.chunk_size)

    def chunk_range(self, k: int) -> tuple[int, int]:
        return k * self.chunk_size, min((k + 1) * self.chunk_size, self.items)

    def done_chunks(self, verify: bool = True) -> set[int]:
        done = set()
        for k in range(self.n_chunks):
            rec = read_done(self.path, k)
            if rec is None:
                continue
            if verify:
                lo, hi = self.chunk_range(k)
                if rec[0] != chunk_checksum(read_chunk(self.files, lo, hi), 0, hi - lo):
                    (self.path / "chunks" / f"{k}.done").unlink(missing_ok=True)
                    continue
            done.add(k)
        return done

    def write(self, lo: int, tokens: Tokens) -> None:
        dt = torch.float32 if self.key.dtype == "float32" else torch.float16
        for n, t in zip(ARRAYS, (tokens.patch, tokens.cls, tokens.reg)):
            self.files[n].write(lo, t.detach().to("cpu", dt).numpy())

    def finish_chunk(self, k: int) -> None:
        """Record chunk k as done: its rows are read back from disk, digested, and the record written atomically."""
        for f in self.files.values():
            f.flush()
        lo, hi = self.chunk_range(k)
        rows = read_chunk(self.files, lo, hi)
        write_done(self.path, k, chunk_checksum(rows, 0, hi - lo), row_digests(rows))

    def complete(self) -> None:
        missing = set(range(self.n_chunks)) - self.done_chunks(verify=False)
        if missing:
            raise RuntimeError(f"cache entry {self.path} still misses chunks {sorted(missing)[:5]}")
        for f in self.files.values():
            f.flush()
        meta = {**self.meta, "status": "complete", "completed": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "seal": file_seal(self.path)}
        atomic_write_json(self.path / "meta.json", meta)
        self.meta = meta

    def close(self) -> None:
        for f in self.files.values():
            f.close()
