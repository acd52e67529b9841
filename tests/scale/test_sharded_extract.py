"""Sharded feature extraction: 2 gloo processes fill one cache entry, byte for byte the one-process entry."""
from __future__ import annotations

import json
from pathlib import Path

from scale_tiny import TINY_SB, one_thread  # noqa: F401 (autouse fixture)

from xbench.backbones import build_backbone
from xbench.cache import FeatureCache
from xbench.cli import main
from xbench.executors.distributed import backend_for, process_group, spawn
from xbench.executors.sharded_extract import extract_sharded
from xbench.extract import Extractor
from xbench.runner import build_dataset
from xbench.views import PlainView

CHUNK = 4       # 20 training images -> chunks 0..4: rank 0 owns 0, 2, 4 (12 images), rank 1 owns 1, 3 (8);
                # 8 test images -> chunks 0, 1
BATCH = 3       # batches inside a chunk: [0, 1, 2], [3]
FILES = ("patch.npy", "cls.npy", "reg.npy", "index.npz")


def _extractor(cache_dir: Path) -> Extractor:
    bb = build_backbone("dinov2-tiny-test", "random")
    return Extractor(bb, FeatureCache(cache_dir, chunk_size=CHUNK), "cpu", batch_size=BATCH, num_workers=0,
                     show_progress=False)


def _dataset(data_dir: Path):
    return build_dataset("synthbirds", dict(TINY_SB), str(data_dir))


def _rank(rank: int, world: int, init: str, cache_dir: str, data_dir: str, out: str) -> None:
    """One rank: a fresh entry (train), the same entry again (complete), a partial entry (test)."""
    ex = _extractor(Path(cache_dir))
    ds = _dataset(Path(data_dir))
    counts = []
    with process_group(rank, world, backend_for("cpu"), init):
        for split in ("train", "train", "test"):
            store = extract_sharded(ex, ds, split, PlainView(), rank, world)
            assert len(store) == {"train": 20, "test": 8}[split]
            counts.append(ex.backbone.forward_count)
    Path(out, f"forwards-{rank}.json").write_text(json.dumps(counts))


def _same_bytes(a: Path, b: Path, chunks: int) -> None:
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    done_a = sorted(p.name for p in (a / "chunks").glob("*.done"))
    assert done_a == [f"{k}.done" for k in range(chunks)]
    for name in done_a:
        assert (a / "chunks" / name).read_bytes() == (b / "chunks" / name).read_bytes()
    assert json.loads((a / "meta.json").read_text())["status"] == "complete"


def _reference(tmp: Path, split: str) -> tuple[Path, int]:
    ex = _extractor(tmp / "ref-cache")
    store = ex.store(_dataset(tmp / "data"), split, PlainView())
    return store.path, ex.backbone.forward_count


def test_two_gloo_ranks_write_the_one_process_cache_byte_for_byte(tmp_path):
    ref_train, n_train = _reference(tmp_path, "train")
    ref_test, n_test = _reference(tmp_path, "test")
    assert (n_train, n_test) == (20, 8)
    # the test split's entry is left partial with chunk 0 done, as after an interrupted extraction
    ex = _extractor(tmp_path / "cache")
    ds = _dataset(tmp_path / "data")
    index = PlainView().index(ds.split("test"))
    bb = ex.backbone
    entry = ex.cache.prepare(ex.key(ds, "test", PlainView()), index.base, index.meta, bb.grid, bb.embed_dim,
                             bb.num_registers)
    ex.fill_shard(entry, ds, "test", PlainView(), rank=0, world=2)
    assert entry.done_chunks() == {0} and bb.forward_count == 4

    out = tmp_path / "out"
    out.mkdir()
    spawn(_rank, (str(tmp_path / "cache"), str(tmp_path / "data"), str(out)), 2)
    counts = [json.loads((out / f"forwards-{r}.json").read_text()) for r in range(2)]
    # cumulative backbone images per rank after: fresh train entry, train again, partial test entry
    assert counts[0] == [12, 12, 12]   # train chunks 0, 2, 4; nothing when complete; test chunk 0 was done
    assert counts[1] == [8, 8, 12]     # train chunks 1, 3; nothing when complete; test chunk 1
    _same_bytes(tmp_path / "cache" / ref_train.name, ref_train, 5)
    _same_bytes(tmp_path / "cache" / ref_test.name, ref_test, 2)


def test_extract_command_world_2_equals_world_1(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("dataset_options:\n  synthbirds: " + json.dumps(TINY_SB) + "\n")
    common = ["extract", "--datasets", "synthbirds", "--methods", "linear-probe", "--backbone", "dinov2-tiny-test",
              "--weights", "random", "--device", "cpu", "--config", str(cfg), "--data-root", str(tmp_path / "data"),
              "--loader-workers", "0", "--batch-size", "8", "--quiet"]
    assert main(common + ["--cache", str(tmp_path / "one")]) == 0
    one = capsys.readouterr().out.splitlines()
    assert main(common + ["--cache", str(tmp_path / "two"), "--world", "2"]) == 0
    two = capsys.readouterr().out.splitlines()
    assert [x.split(" -> ")[0] for x in one] == ["train/plain: 20 items", "test/plain: 8 items"]
    assert [x.replace(str(tmp_path / "two"), str(tmp_path / "one")) for x in two] == one
    for line in one:
        a = Path(line.split(" -> ")[1])
        b = tmp_path / "two" / a.name
        for name in FILES:
            assert (a / name).read_bytes() == (b / name).read_bytes()


def test_extract_command_rejects_world_0(tmp_path, capsys):
    assert main(["extract", "--world", "0", "--cache", str(tmp_path / "c")]) == 2
    assert "--world 0" in capsys.readouterr().err


def test_world_1_is_the_plain_extractor(tmp_path):
    ref, _ = _reference(tmp_path, "train")
    ex = _extractor(tmp_path / "cache")
    store = extract_sharded(ex, _dataset(tmp_path / "data"), "train", PlainView(), 0, 1)
    assert ex.backbone.forward_count == 20
    _same_bytes(store.path, ref, 5)


def test_extract_takes_profile_and_set_and_fills_exactly_what_run_reads(tmp_path, capsys):
    """`xbench extract --profile/--set` extracts the views `xbench run` with the same options trains on:
    protofm's paper profile caches V = 4 teacher views per image, `--set protofm.views=2` two, and the run
    that follows adds no cache entry (only accuracy is asked for, which reads the test split)."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text("dataset_options:\n  synthbirds: " + json.dumps(TINY_SB) + "\n")
    common = ["--datasets", "synthbirds", "--methods", "protofm", "--backbone", "dinov2-tiny-test",
              "--weights", "random", "--device", "cpu", "--config", str(cfg), "--data-root", str(tmp_path / "data"),
              "--loader-workers", "0", "--batch-size", "8", "--quiet", "--cache", str(tmp_path / "cache"),
              "--profile", "paper"]
    assert main(["extract", *common]) == 0
    lines = [x.split(" -> ")[0] for x in capsys.readouterr().out.splitlines()]
    assert lines[:2] == ["train/plain: 20 items", "test/plain: 8 items"] and len(lines) == 3
    assert lines[2].startswith("train/augment:") and '"views":4' in lines[2] and lines[2].endswith(": 80 items")
    two = ["--set", "protofm.views=2", "--set", "protofm.epochs=0"]
    assert main(["extract", *common, *two]) == 0
    lines = [x.split(" -> ")[0] for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and '"views":2' in lines[2] and lines[2].endswith(": 40 items")
    before = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert main(["run", *common, *two, "--metrics", "accuracy", "--results", str(tmp_path / "res"),
                 "--no-leaderboard"]) == 0
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == before
