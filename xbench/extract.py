"""The cached extractor: the one path from images to backbone tokens.

`Extractor.store(dataset, split, view)` returns the cached tokens of a view,
computing only the chunks that are missing (a second run, method or seed
costs no backbone forward). Images are loaded by DataLoader workers while the
backbone runs; tokens are written by a background thread, so the backbone is
the bottleneck. `Extractor.tokens(images)` runs the backbone on a batch without
caching (new images given by a user).
"""
from __future__ import annotations

import contextlib
import queue
import threading
from typing import Iterator

import numpy as np
import torch
from filelock import FileLock

from . import testhooks
from .backbones.base import Backbone
from .cache import CacheKey, FeatureCache, PartialEntry, TokenStore
from .data.base import Dataset
from .errors import DataError, UserError
from .preprocessing import Preprocessing
from .progress import progress
from .tokens import Tokens
from .views.base import View, ViewIndex


class _Items(torch.utils.data.Dataset):
    """Loads a batch (list of item ids) of a view; used with batch_size=None."""

    def __init__(self, view: View, split, index: ViewIndex, pre: Preprocessing, skip_bad: bool):
        self.view, self.split, self.index = view, split, index
        self.pre = pre
        self.skip_bad = skip_bad

    def __len__(self) -> int:  # pragma: no cover - not used with a batch sampler
        return len(self.index)

    def __getitem__(self, js: list[int]) -> tuple[list[int], torch.Tensor, list[int]]:
        try:
            xs = self.view.load_many(self.split, self.index, js, self.pre)
            return js, torch.stack(xs), []
        except DataError:
            if not self.skip_bad:
                raise
        xs, bad = [], []
        for j in js:  # find the bad items one by one; substitute zeros and report them
            try:
                xs.append(self.view.load(self.split, self.index, j, self.pre))
            except DataError:
                xs.append(torch.zeros(3, self.pre.size, self.pre.size))
                bad.append(j)
        return js, torch.stack(xs), bad


def _one_line(err: UserError) -> UserError:
    """DataLoader workers re-raise errors with the worker traceback in the message; recover the original line."""
    msg = str(err)
    marker = f"{type(err).__module__}.{type(err).__qualname__}: "
    lines = [line for line in msg.splitlines() if line.startswith(marker)]
    return type(err)(lines[-1][len(marker):]) if "\n" in msg and lines else err


class Extractor:
    def __init__(self, backbone: Backbone, cache: FeatureCache, device: torch.device | str = "cpu",
                 batch_size: int = 64, num_workers: int = 1, show_progress: bool = True, amp: bool = True,
                 skip_bad: bool = False, cache_dtype: str = "float16"):
        self.backbone = backbone.to(device)
        self.cache_dtype = str(cache_dtype)
        self.cache = cache
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.show_progress = show_progress
        self.amp = amp and self.device.type == "cuda"
        self.skip_bad = skip_bad
        self.bad_items: dict[str, list[str]] = {}

    # keys -----------------------------------------------------------------------------
    def key(self, dataset: Dataset, split: str, view: View) -> CacheKey:
        return CacheKey(backbone=self.backbone.name, weights_hash=self.backbone.weights_hash,
                        image_size=self.backbone.image_size, dataset=dataset.fingerprint(), split=split,
                        view=view.key, dtype=self.cache_dtype,
                        preprocessing=self.backbone.preprocessing.cache_key())

    # uncached ---------------------------------------------------------------------------
    @torch.no_grad()
    def tokens(self, images: torch.Tensor) -> Tokens:
        """Backbone tokens of a normalised batch (no cache), in float32 on the extractor's device."""
        with self._autocast():
            t = self.backbone(images.to(self.device, non_blocking=True))
        return t.to(self.device, torch.float32)

    def _autocast(self):
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # cached -----------------------------------------------------------------------------
    def store(self, dataset: Dataset, split: str, view: View, rank: int = 0, world: int = 1) -> TokenStore:
        """Tokens of every item of `view` on `split`, from the cache or computed now."""
        key = self.key(dataset, split, view)
        hit = self.cache.open(key)
        if hit is not None:
            return hit
        d = self.cache.entry_dir(key)
        d.mkdir(parents=True, exist_ok=True)
        with FileLock(str(d) + ".lock"):
            hit = self.cache.open(key)
            if hit is not None:
                return hit
            sp = dataset.split(split)
            index = view.index(sp)
            entry = self.cache.prepare(key, index.base, index.meta, self.backbone.grid, self.backbone.embed_dim,
                                       self.backbone.num_registers)
            try:
                self._fill(entry, sp, view, index, f"{dataset.spec.name}/{split}/{view.kind}")
                entry.complete()
            finally:
                entry.close()
            store = self.cache.open(key)
        if store is None:  # pragma: no cover - would mean a bug in the cache
            raise RuntimeError(f"cache entry {d} unreadable right after extraction")
        store.mark_checked()  # every chunk was digested (or verified) by this process just now
        return store

    def fill_shard(self, entry: PartialEntry, dataset: Dataset, split: str, view: View, rank: int, world: int) -> None:
        """Fill the chunks k with k % world == rank (sharded extraction, see xbench.distributed)."""
        sp = dataset.split(split)
        index = view.index(sp)
        self._fill(entry, sp, view, index, f"{dataset.spec.name}/{split}/{view.kind} [{rank}/{world}]",
                   rank=rank, world=world)

    def _batches(self, entry: PartialEntry, todo: list[int]) -> Iterator[list[int]]:
        for k in todo:
            lo, hi = entry.chunk_range(k)
            for s in range(lo, hi, self.batch_size):
                yield list(range(s, min(s + self.batch_size, hi)))

    @torch.no_grad()
    def _fill(self, entry: PartialEntry, split, view: View, index: ViewIndex, label: str,
              rank: int = 0, world: int = 1) -> None:
        done = entry.done_chunks(verify=True)
        todo = [k for k in range(entry.n_chunks) if k % world == rank and k not in done]
        if not todo:
            return
        n_items = sum(entry.chunk_range(k)[1] - entry.chunk_range(k)[0] for k in todo)
        bb = self.backbone
        items = _Items(view, split, index, bb.preprocessing, self.skip_bad)
        loader = torch.utils.data.DataLoader(
            items, batch_size=None, sampler=list(self._batches(entry, todo)), num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
            prefetch_factor=2 if self.num_workers > 0 else None,
        )
        writes: queue.Queue = queue.Queue(maxsize=4)
        error: list[BaseException] = []

        def writer() -> None:
            remaining = {k: entry.chunk_range(k)[1] - entry.chunk_range(k)[0] for k in todo}
            while True:
                job = writes.get()
                if job is None:
                    return
                if error:
                    continue
                try:
                    lo, toks = job
                    entry.write(lo, toks)
                    testhooks.point(f"extract:batch:{label}:{lo}")
                    k = lo // entry.chunk_size
                    remaining[k] -= len(toks)
                    if remaining[k] == 0:
                        entry.finish_chunk(k)
                        testhooks.point(f"extract:chunk:{label}:{k}")
                except BaseException as err:  # surfaced in the main thread
                    error.append(err)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        bad_ids: list[str] = []
        try:
            with progress(total=n_items, desc=f"extract {label}", enabled=self.show_progress, unit="img") as bar:
                for js, x, bad in loader:
                    if error:
                        break
                    with self._autocast():
                        toks = bb(x.to(self.device, non_blocking=True))
                    toks = Tokens(toks.patch.float().cpu(), toks.cls.float().cpu(), toks.reg.float().cpu())
                    writes.put((js[0], toks))
                    bad_ids.extend(split.item_id(int(index.base[j])) for j in bad)
                    bar.update(len(js))
        except UserError as err:  # a worker's error carries its traceback in the message: keep the one line
            raise _one_line(err) from None
        finally:
            writes.put(None)
            t.join()
        if error:
            raise error[0]
        if bad_ids:
            self.bad_items.setdefault(label, []).extend(bad_ids)
