"""Feature extraction sharded over the ranks of a process group, into one ordinary cache entry.

Protocol (every rank calls `extract_sharded` with the same arguments, in the same order):

1. rank 0 takes the entry's file lock (the one `Extractor.store` takes, so a concurrent one-process
   extraction of the same entry waits) and checks the cache; if the entry is complete, every rank
   just opens it;
2. otherwise rank 0 prepares the entry (index.npz, meta.json, preallocated fp16 memmaps, or the
   existing partial entry when resuming) and, after a barrier, the other ranks open those arrays
   for writing (they never create or resize them);
3. rank r fills the chunks k with k % world == r that are not done yet (`Extractor.fill_shard`),
   with the same batches inside each chunk as a one-process extraction, hence byte-identical tokens
   on the same hardware;
4. the ranks exchange their errors (a failing rank never leaves the others waiting at a barrier);
5. rank 0 verifies every chunk's checksum, refills any chunk still missing or damaged (e.g. a
   shared-page write lost on a non-coherent network filesystem), marks the entry complete and
   releases the lock; after a barrier every rank opens the complete entry.

The result is one cache entry whose patch.npy, cls.npy, reg.npy and index.npz are the same bytes as
those of `Extractor.store` in one process.
"""
from __future__ import annotations


from filelock import FileLock

from ..cache import PartialEntry, TokenStore
from ..data.base import Dataset
from ..errors import UserError
from ..extract import Extractor
from ..views.base import View
from .distributed import barrier, broadcast_object, gather_objects


class ShardError(RuntimeError):
    """Another rank failed; raised on every rank so that all of them stop together."""


def extract_sharded(extractor: Extractor, dataset: Dataset, split: str, view: View, rank: int,
                    world: int) -> TokenStore:
    """The complete cache entry of (dataset, split, view), filled by `world` ranks (collective call)."""
    if world <= 1:
        return extractor.store(dataset, split, view)
    cache = extractor.cache
    key = extractor.key(dataset, split, view)
    d = cache.entry_dir(key)
    lock: FileLock | None = None
    entry: PartialEntry | None = None
    status = "fill"
    if rank == 0:
        d.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(d) + ".lock")
        lock.acquire()
    try:
        if rank == 0:
            try:
                if cache.open(key) is not None:
                    status = "done"
                else:
                    sp = dataset.split(split)
                    index = view.index(sp)
                    bb = extractor.backbone
                    entry = cache.prepare(key, index.base, index.meta, bb.grid, bb.embed_dim, bb.num_registers)
            except BaseException as err:  # tell the others before raising
                broadcast_object(f"error: {type(err).__name__}: {err}")
                raise
        status = broadcast_object(status)
        if status.startswith("error"):
            raise ShardError(f"rank 0 could not prepare cache entry {d}: {status[len('error: '):]}")
        if status == "done":
            return _open(extractor, key, d)

        own: Exception | None = None
        try:
            if rank != 0:
                entry = reopen(extractor, key)
            extractor.fill_shard(entry, dataset, split, view, rank, world)
        except Exception as err:  # raised after the exchange, so that no rank waits forever
            own = err
        failures = [(r, e) for r, e in enumerate(gather_objects(None if own is None else
                                                                f"{type(own).__name__}: {own}")) if e]
        if own is not None:
            raise own
        if failures:
            r, e = failures[0]
            raise ShardError(f"rank {r} failed while filling cache entry {d}: {e}")

        if rank == 0:
            missing = set(range(entry.n_chunks)) - entry.done_chunks(verify=True)
            if missing:  # a rank's chunk did not survive; rank 0 repairs it alone
                extractor.fill_shard(entry, dataset, split, view, 0, 1)
            entry.complete()
        barrier()
    finally:
        if entry is not None:
            entry.close()
        if lock is not None:
            lock.release()
    return _open(extractor, key, d)


def reopen(extractor: Extractor, key) -> PartialEntry:
    """Rank r > 0: the partial entry rank 0 prepared, its arrays opened for writing (never created)."""
    try:
        return extractor.cache.reopen_partial(key)
    except UserError as err:
        raise ShardError(str(err)) from None


def _open(extractor: Extractor, key, d) -> TokenStore:
    store = extractor.cache.open(key)
    if store is None:
        raise ShardError(f"cache entry {d} is not complete after sharded extraction")
    return store
