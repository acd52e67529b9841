"""The runner and the feature cache: features once, records per job, resume, force, config precedence."""
from __future__ import annotations

import json

import numpy as np
import pytest
from tiny import cli_values

from xbench.config import build_config, load_config_file
from xbench.results import ResultsStore
from xbench.runner import Runner


def run(tmp, **kw):
    r = Runner(build_config(cli_values=cli_values(tmp, **kw)))
    summary = r.run()
    return r, summary


def test_features_once_across_methods_seeds_and_runs(tmp_path):
    r, s = run(tmp_path, methods="linear-probe", seeds="0")
    first = r.backbone.forward_count
    assert first == 6 * 6 + 6 * 2  # train + test images, once each
    assert len(s.done) == 1
    # a second method and a second seed in a new run: zero backbone forwards
    r2, s2 = run(tmp_path, methods="linear-probe,linear-probe-patch", seeds="0,1")
    assert r2.backbone.forward_count == 0
    assert len(s2.skipped) == 1 and len(s2.done) == 3
    # a third run skips everything
    r3, s3 = run(tmp_path, methods="linear-probe,linear-probe-patch", seeds="0,1")
    assert r3.backbone.forward_count == 0 and len(s3.skipped) == 4 and not s3.done


def test_records_are_complete_and_force_recomputes(tmp_path):
    r, s = run(tmp_path, methods="linear-probe-patch", seeds="3")
    recs = list(ResultsStore(tmp_path / "results").records())
    assert len(recs) == 1
    rec = recs[0]
    for key in ("job_id", "method", "dataset", "backbone", "weights", "weights_hash", "seed", "config",
                "config_hash", "metrics", "provenance", "timings", "status"):
        assert key in rec, key
    assert rec["status"] == "complete" and rec["seed"] == 3 and rec["weights"] == "random"
    assert 0.0 <= rec["metrics"]["accuracy"]["value"] <= 1.0
    for k in ("xbench", "torch", "timm", "git_commit", "hardware", "date"):
        assert k in rec["provenance"]
    assert rec["config"]["params"]["epochs"] == 5
    mtime = (tmp_path / "results" / "records" / f"{rec['job_id']}.json").stat().st_mtime_ns
    r2, s2 = run(tmp_path, methods="linear-probe-patch", seeds="3", force=True)
    assert len(s2.done) == 1
    assert (tmp_path / "results" / "records" / f"{rec['job_id']}.json").stat().st_mtime_ns != mtime


def test_rerun_adds_missing_metrics_without_retraining(tmp_path):
    run(tmp_path, methods="linear-probe-patch", metrics="accuracy")
    r, s = run(tmp_path, methods="linear-probe-patch", metrics="accuracy,auroc")
    rec = next(ResultsStore(tmp_path / "results").records())
    assert rec["metrics"]["auroc"]["status"] == "n/a"  # multiclass dataset
    assert "fit_s" in rec["timings"] and len(s.done) == 1


def test_same_seed_same_numbers(tmp_path):
    run(tmp_path / "a", methods="linear-probe-patch")
    run(tmp_path / "b", methods="linear-probe-patch")
    ra = next(ResultsStore(tmp_path / "a" / "results").records())
    rb = next(ResultsStore(tmp_path / "b" / "results").records())
    assert ra["job_id"] == rb["job_id"]
    assert ra["metrics"]["accuracy"]["value"] == rb["metrics"]["accuracy"]["value"]
    from safetensors.torch import load_file

    ha = load_file(str(tmp_path / "a" / "results" / ra["head"] / "head.safetensors"))
    hb = load_file(str(tmp_path / "b" / "results" / rb["head"] / "head.safetensors"))
    assert all(np.array_equal(ha[k].numpy(), hb[k].numpy()) for k in ha)


def test_config_file_then_command_line(tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("seeds: [4, 5]\nbackbone: weight-free\nparams:\n  linear-probe: {epochs: 7, lr: 0.01}\n")
    file_values = load_config_file(cfg_file)
    cfg = build_config(file_values, {"seeds": "9", "params": {"linear-probe": {"epochs": 2}}})
    assert cfg.seeds == [9] and cfg.backbone == "weight-free"
    assert cfg.params["linear-probe"] == {"epochs": 2, "lr": 0.01}
    toml_file = tmp_path / "run.toml"
    toml_file.write_text('seeds = [1]\n[params.linear-probe]\nepochs = 3\n')
    assert build_config(load_config_file(toml_file)).params["linear-probe"]["epochs"] == 3


def test_resolved_params_are_hashed(tmp_path):
    r1 = Runner(build_config(cli_values=cli_values(tmp_path, methods="linear-probe")))
    r2 = Runner(build_config(cli_values=cli_values(tmp_path, methods="linear-probe",
                                                     params={"linear-probe": {"epochs": 6}})))
    j1, j2 = r1.plan()[0], r2.plan()[0]
    assert j1.job_id != j2.job_id and j2.params["epochs"] == 6


def test_cache_detects_damage_and_reextracts(tmp_path):
    r, _ = run(tmp_path, methods="linear-probe")
    from xbench.cache import FeatureCache
    from xbench.views import PlainView

    ds = r.dataset("synthbirds")
    key = r.extractor.key(ds, "test", PlainView())
    cache = FeatureCache(tmp_path / "cache")
    store = cache.open(key)
    assert store is not None and store.np_dtype == np.float16
    # alter one value in place: the checksum catches it, only that chunk is recomputed
    arr = np.load(cache.entry_dir(key) / "patch.npy", mmap_mode="r+")
    arr[0, 0, 0, 0] += 1
    arr.flush()
    del arr
    fresh = FeatureCache(tmp_path / "cache")
    assert fresh.open(key) is None
    r2, _ = run(tmp_path, methods="linear-probe", force=True)
    assert r2.backbone.forward_count == 12  # the test split only (one chunk)
    assert FeatureCache(tmp_path / "cache").open(key) is not None


def test_meta_json_lists_key_inputs(tmp_path):
    run(tmp_path, methods="linear-probe")
    metas = [json.loads(p.read_text()) for p in (tmp_path / "cache").glob("*/meta.json")]
    assert {m["split"] for m in metas} == {"train", "test"}
    for m in metas:
        assert m["status"] == "complete" and m["dtype"] == "float16"
        assert m["backbone"] == "dinov2-tiny-test" and m["dataset"]["name"] == "synthbirds"


@pytest.mark.parametrize("bad", [{"seeds": "a,b"}, {"device": "tpu"}, {"batch_size": 0}])
def test_bad_options_one_line(tmp_path, bad):
    from xbench.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        build_config(cli_values=cli_values(tmp_path, **bad))
    assert "\n" not in str(e.value)
