"""The on-disk feature cache: backbone tokens computed once, shared by every method and seed.

One entry per (backbone, weights hash, image size, preprocessing, dataset
fingerprint, split, view), keyed by a hash of exactly those inputs. An entry is a folder:

    meta.json          the key's inputs, shapes, chunking, status ("partial" / "complete"), seal
    index.npz          the view's items (base image per item) and per-item metadata
    patch.npy          fp16 [M, g, g, D]   (fp32 with `dtype="float32"`)
    cls.npy            fp16 [M, D]
    reg.npy            fp16 [M, R, D]
    chunks/<k>.done    one file per finished chunk of items: its digest and one crc32 per row

Chunks are written in place into preallocated files with positioned writes; a
chunk counts as done only after its rows are on disk and its `.done` record has
been written atomically, so an interrupted extraction resumes at the first
missing chunk and never trusts a half-written one. Entries are verified once,
when written; opening one later is a `stat` against the seal recorded at
completion (size, mtime, inode of each file), and each row is checked against
its crc32 the first time a process reads it. Nothing is memory-mapped: reads go
into batch buffers, so a process's memory is bounded by its batches, not by the
entries (modules: key, rows, store, entry, folder).
"""
from .entry import PartialEntry, bad_chunks
from .folder import FeatureCache, forget_open
from .key import ARRAYS, DTYPES, FORMAT_VERSION, CacheKey, canonical
from .rows import IO, RowFile, chunk_checksum, row_digests
from .store import CacheDamaged, TokenStore

__all__ = ["ARRAYS", "DTYPES", "FORMAT_VERSION", "CacheKey", "CacheDamaged", "FeatureCache", "IO", "PartialEntry",
           "RowFile", "TokenStore", "bad_chunks", "canonical", "chunk_checksum", "forget_open", "row_digests"]
