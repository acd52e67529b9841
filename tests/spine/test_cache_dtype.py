"""`cache_dtype`: float32 cache entries hold the backbone's tokens unrounded; float16 stays as it was."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny import cli_values

import xbench
from xbench.cache import CacheKey, canonical
from xbench.cli import main
from xbench.config import build_config
from xbench.errors import ConfigError
from xbench.jobs import Job, protocol_label
from xbench.results import ResultsStore
from xbench.runner import Runner
from xbench.views import PlainView


def test_float16_keys_and_job_ids_are_unchanged_float32_ones_differ():
    key = CacheKey("b", "h", 224, {"name": "d"}, "test", "plain")
    # the digest of a float16 entry is the hash of exactly the inputs it had before `dtype` existed
    old = {"format": 1, "backbone": "b", "weights_hash": "h", "image_size": 224, "dataset": {"name": "d"},
           "split": "test", "view": "plain"}
    assert key.inputs() == old
    assert CacheKey("b", "h", 224, {"name": "d"}, "test", "plain", dtype="float32").digest != key.digest
    job = Job("m", "d", "b", "w", "h", 0)
    assert "cache_dtype" not in job.identity()
    assert Job("m", "d", "b", "w", "h", 0, cache_dtype="float32").job_id != job.job_id
    assert canonical(job.identity()) == canonical({k: v for k, v in job.identity().items()})


def test_float32_cache_keeps_the_tokens_unrounded(tmp_path):
    r = Runner(build_config(cli_values=cli_values(tmp_path, methods="linear-probe-patch", cache_dtype="float32")))
    r.run()
    ds = r.dataset("synthbirds")
    store = r.extractor.store(ds, "test", PlainView())
    assert store.np_dtype == np.float32 and store.torch_dtype == torch.float32
    t32 = store.tokens([0, 1]).patch
    assert not torch.equal(t32.half().float(), t32)                         # not values float16 can hold
    rec = next(ResultsStore(tmp_path / "results").records())
    assert rec["cache_dtype"] == "float32" and rec["config"]["cache_dtype"] == "float32"
    assert rec["protocol"] == "xbench"
    # xbench.load rounds new images the way the job's cache did (not at all here)
    model = xbench.load(tmp_path / "results" / rec["job_id"], cache=str(tmp_path / "cache"))
    assert model.cache_dtype == "float32"
    assert xbench.load(tmp_path / "results" / rec["job_id"], cache=str(tmp_path / "cache"),
                       cache_dtype="float16").cache_dtype == "float16"
    # the float16 run of the same job is another job with its own cache entries
    r16 = Runner(build_config(cli_values=cli_values(tmp_path, methods="linear-probe-patch")))
    r16.run()
    store16 = r16.extractor.store(r16.dataset("synthbirds"), "test", PlainView())
    assert store16.np_dtype == np.float16
    assert torch.equal(store16.tokens([0, 1]).patch, t32.half().float())  # the same tokens, rounded
    assert len(list(ResultsStore(tmp_path / "results").records())) == 2


def test_bad_cache_dtype_is_one_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match="cache-dtype"):
        build_config(cli_values={"cache_dtype": "bfloat16"})
    rc = main(["run", "--cache-dtype", "int8", "--results", str(tmp_path / "r"), "--no-leaderboard"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "--cache-dtype int8" in err[0]
    assert not (tmp_path / "r").exists()


def test_metric_option_flag_and_protocol_label(tmp_path):
    from xbench.cli.run_cmd import config_from_args
    import argparse

    from xbench.cli import build_parser

    args = build_parser().parse_args(["run", "--metric-option", "funnybirds.protocol=reference",
                                      "--metric-option", "funnybirds.thresholds=40"])
    cfg = config_from_args(args)
    assert cfg.metric_options == {"funnybirds": {"protocol": "reference", "thresholds": 40}}
    assert protocol_label(cfg.metric_options) == "funnybirds: reference"
    assert protocol_label({}) == "xbench" and protocol_label({"funnybirds": {"protocol": "xbench"}}) == "xbench"
    with pytest.raises(ConfigError, match="--metric-option"):
        config_from_args(build_parser().parse_args(["run", "--metric-option", "protocol=reference"]))
    assert isinstance(args, argparse.Namespace)
    json.dumps(cfg.metric_options)
