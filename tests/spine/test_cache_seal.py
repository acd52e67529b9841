"""The feature cache at scale: sealed entries open with a stat, rows are checked lazily, nothing is mapped.

Each test builds a small entry (tiny ViT, random weights, chunks of 4 items) and then looks at what a
later open or read costs (`xbench.cache.IO` counts every byte) and how damage is caught.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from xbench.backbones import build_backbone
from xbench.cache import IO, CacheDamaged, FeatureCache, RowFile, forget_open
from xbench.cli import main
from xbench.extract import Extractor
from xbench.methods.base import TrainData
from xbench.runner import build_dataset
from xbench.views import PlainView

TINY = {"num_classes": 3, "train_per_class": 4, "test_per_class": 2, "resolution": 64}
CHUNK = 4


def _entry(tmp: Path):
    ex = Extractor(build_backbone("dinov2-tiny-test", "random"), FeatureCache(tmp / "cache", chunk_size=CHUNK),
                   "cpu", batch_size=3, num_workers=0, show_progress=False)
    ds = build_dataset("synthbirds", dict(TINY), str(tmp / "data"))
    store = ex.store(ds, "train", PlainView())
    return ex, ds, store


def _patch_value(d: Path, row: int, keep_mtime: bool) -> None:
    """Add 1 to one fp16 value of patch row `row`, with positioned I/O (no mapping); optionally restore mtime."""
    st = os.stat(d / "patch.npy")
    f = RowFile(d / "patch.npy", writable=True)
    r = f.read(row, row + 1)
    r[0, 0, 0, 0] += np.float16(1.0)
    f.write(row, r)
    f.close()
    if keep_mtime:
        os.utime(d / "patch.npy", ns=(st.st_atime_ns, st.st_mtime_ns))


def test_sealed_entry_opens_without_reading_and_is_shared(tmp_path):
    ex, ds, store = _entry(tmp_path)
    meta = json.loads((store.path / "meta.json").read_text())
    assert meta["status"] == "complete" and set(meta["seal"]) == {"patch.npy", "cls.npy", "reg.npy", "index.npz"}
    key = ex.key(ds, "train", PlainView())
    assert FeatureCache(tmp_path / "cache", chunk_size=CHUNK).open(key) is store  # one store per entry per process
    forget_open()
    before = IO.snapshot()
    again = FeatureCache(tmp_path / "cache", chunk_size=CHUNK).open(key)  # as a new process would
    assert again is not None and again is not store
    assert IO.since(before)["bytes_read"] == 0  # a stat and the chunk records: no token is read
    rows = again.rows([5, 1, 2, 11])
    per_row = sum(a.row_bytes for a in again.arrays.values())
    assert IO.since(before)["bytes_read"] == 4 * per_row  # exactly the rows asked for
    full = store.rows(slice(None))
    for n in ("patch", "cls", "reg"):
        np.testing.assert_array_equal(rows[n], full[n][[5, 1, 2, 11]])


def test_row_file_reads_any_rows_like_numpy(tmp_path):
    a = np.random.default_rng(0).standard_normal((13, 3, 5)).astype(np.float16)
    np.save(tmp_path / "a.npy", a)
    f = RowFile(tmp_path / "a.npy")
    for idx in ([], [0], [12, 0, 1, 2, 7, 7, 3], list(range(13))):
        np.testing.assert_array_equal(f.read_rows(np.array(idx, dtype=np.int64)), a[idx])
    np.testing.assert_array_equal(f.read(4, 9), a[4:9])
    with pytest.raises(IndexError):
        f.read_rows(np.array([13]))


def test_edit_that_keeps_the_mtime_is_caught_on_first_read(tmp_path):
    ex, ds, store = _entry(tmp_path)
    key = ex.key(ds, "train", PlainView())
    _patch_value(store.path, 6, keep_mtime=True)  # row 6: chunk 1; size, mtime and inode unchanged
    forget_open()
    cache = FeatureCache(tmp_path / "cache", chunk_size=CHUNK)
    st = cache.open(key)
    assert st is not None  # the seal still matches: opened cheaply
    st.rows([0, 1, 2, 3])  # chunk 0 is fine
    with pytest.raises(CacheDamaged, match="rows \\[6\\]"):
        st.rows([5, 6])
    meta = json.loads((store.path / "meta.json").read_text())
    assert meta["status"] == "partial" and not (store.path / "chunks" / "1.done").exists()
    n0 = ex.backbone.forward_count
    fixed = ex.store(ds, "train", PlainView())  # the next use extracts chunk 1 again, and only it
    assert ex.backbone.forward_count - n0 == CHUNK
    fixed.rows(slice(None))


def test_edit_that_changes_the_mtime_is_caught_on_open(tmp_path):
    ex, ds, store = _entry(tmp_path)
    _patch_value(store.path, 9, keep_mtime=False)
    forget_open()
    assert FeatureCache(tmp_path / "cache", chunk_size=CHUNK).open(ex.key(ds, "train", PlainView())) is None
    assert not (store.path / "chunks" / "2.done").exists() and (store.path / "chunks" / "1.done").exists()


def test_entry_of_the_first_format_is_verified_once_and_sealed(tmp_path):
    ex, ds, store = _entry(tmp_path)
    d = store.path
    for p in (d / "chunks").glob("*.done"):  # rewrite as the first format: the chunk digest only, no seal
        p.write_text(json.loads(p.read_text())["chunk"])
    meta = json.loads((d / "meta.json").read_text())
    meta.pop("seal")
    (d / "meta.json").write_text(json.dumps(meta))
    forget_open()
    before = IO.snapshot()
    st = FeatureCache(tmp_path / "cache", chunk_size=CHUNK).open(ex.key(ds, "train", PlainView()))
    assert st is not None and IO.since(before)["bytes_read"] == st.nbytes  # read once in full
    assert "seal" in json.loads((d / "meta.json").read_text())
    assert all("rows" in json.loads(p.read_text()) for p in (d / "chunks").glob("*.done"))
    forget_open()
    before = IO.snapshot()
    assert FeatureCache(tmp_path / "cache", chunk_size=CHUNK).open(ex.key(ds, "train", PlainView())) is not None
    assert IO.since(before)["bytes_read"] == 0


def test_cache_verify_reports_damage_with_exit_1(tmp_path, capsys):
    ex, ds, store = _entry(tmp_path)
    assert main(["cache", "verify", "--cache", str(tmp_path / "cache")]) == 0
    assert "0 damaged" in capsys.readouterr().out
    _patch_value(store.path, 2, keep_mtime=True)
    assert main(["cache", "verify", "--cache", str(tmp_path / "cache")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len([line for line in out if line.startswith("damaged:")]) == 1 and str(store.path) in out[0]
    assert json.loads((store.path / "meta.json").read_text())["status"] == "partial"


def test_train_data_on_cpu_keeps_no_copy_and_prefetch_changes_nothing(tmp_path):
    ex, ds, store = _entry(tmp_path)
    labels = np.asarray(ds.split("train").labels)
    a = TrainData(store, labels, None, ds.num_classes, torch.device("cpu"))
    b = TrainData(store, labels, None, ds.num_classes, torch.device("cpu"), prefetch=False)
    assert not a.resident
    before = IO.snapshot()
    xa = [(t.index, t.tokens.patch, t.tokens.cls) for t in a.batches(5, torch.Generator().manual_seed(3))]
    xb = [(t.index, t.tokens.patch, t.tokens.cls) for t in b.batches(5, torch.Generator().manual_seed(3))]
    assert IO.since(before)["bytes_read"] == 2 * store.nbytes  # each epoch reads the split once
    assert len(xa) == len(xb) == 3
    for (ia, pa, ca), (ib, pb, cb) in zip(xa, xb):
        assert torch.equal(ia, ib) and torch.equal(pa, pb) and torch.equal(ca, cb) and pa.dtype == torch.float32
