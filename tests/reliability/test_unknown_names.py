"""An unknown or invalid name in every option: one line naming the value, exit 2, nothing written.

Covers each `xbench run` option that takes a name or a value (methods, datasets, metrics, backbone,
weights, profile, executor, device, seeds, --set method / parameter / value, --include), every config
file key family (top-level keys, params, dataset_options and their keys, metric_options groups and
keys), a missing or malformed config file, argparse-level errors (unknown flag, bad integer) and the
names other sub-commands take (ls, leaderboard --formats, data check, extract, cache).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from rel_harness import cli, run_args

RUN_CASES = {
    # id: (extra arguments, needles that the one line must contain)
    "method": (["--methods", "linear-prob"], ["unknown method 'linear-prob'", "did you mean 'linear-probe'"]),
    "dataset": (["--datasets", "synthbird"], ["unknown dataset 'synthbird'", "'synthbirds'"]),
    "metric": (["--metrics", "acuracy"], ["unknown metric 'acuracy'", "'accuracy'"]),
    "backbone": (["--backbone", "vit_tiny"], ["unknown backbone 'vit_tiny'", "dinov2-tiny-test"]),
    "weights": (["--weights", "no-such-weights.pth"], ["weights file no-such-weights.pth does not exist"]),
    "profile": (["--profile", "fast"], ["--profile fast", "paper or quickstart"]),
    "executor": (["--executor", "k8s"], ["--executor k8s", "local or slurm"]),
    "device": (["--device", "tpu"], ["--device tpu"]),
    "seeds": (["--seeds", "0,x"], ["seeds='0,x'"]),
    "batch-size-0": (["--batch-size", "0"], ["--batch-size 0"]),
    "set-method": (["--set", "linear-probz.epochs=3"], ["unknown method 'linear-probz'"]),
    "set-param": (["--set", "linear-probe.epoch=3"], ["'linear-probe' has no parameter 'epoch'", "epochs"]),
    "set-value": (["--set", "linear-probe.epochs=three"], ["linear-probe.epochs='three'"]),
    "set-form": (["--set", "epochs=3"], ["--set epochs=3", "METHOD.PARAM=VALUE"]),
    "include": (["--include", "no_such_plugin.py"], ["--include no_such_plugin.py: no such file"]),
    "flag": (["--methodz", "linear-probe"], ["unrecognized arguments: --methodz"]),
    "int": (["--batch-size", "many"], ["argument --batch-size: invalid int value: 'many'"]),
}
if not torch.cuda.is_available():
    RUN_CASES["device-cuda"] = (["--device", "cuda"], ["--device cuda: no CUDA device"])
if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
    RUN_CASES["device-mps"] = (["--device", "mps"], ["--device mps: no Apple GPU"])

CONFIG_CASES = {
    "top-level-key": ({"methodz": ["linear-probe"]}, ["unknown option 'methodz' in the config file"]),
    "params-method": ({"params": {"linear-prob": {"epochs": 1}}}, ["params for unknown method 'linear-prob'"]),
    "params-key": ({"params": {"linear-probe": {"epoks": 1}}}, ["has no parameter 'epoks'"]),
    "dataset-options-key": ({"dataset_options": {"synthbirds": {"num_clases": 3}}},
                            ["dataset 'synthbirds': bad option", "num_clases"]),
    "dataset-options-dataset": ({"dataset_options": {"synthbirdz": {"num_classes": 3}}},
                                ["unknown dataset in dataset_options 'synthbirdz'", "'synthbirds'"]),
    "metric-options-group": ({"metric_options": {"funnybird": {"thresholds": 10}}},
                             ["unknown metric_options group", "'funnybird'", "'funnybirds'"]),
    "metric-options-key": ({"metric_options": {"funnybirds": {"thresolds": 10}}},
                           ["metric_options.funnybirds: unknown option 'thresolds'", "thresholds"]),
    "metric-options-own-key": ({"metric_options": {"stability": {"protocl": "auto"}}},
                               ["metric_options.stability: unknown option 'protocl'", "protocol"]),
}


def one_line(r, needles, value_in_line=True) -> None:
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert r.rc == 2, (r.rc, r.err[-2000:])
    assert len(lines) == 1, r.err
    assert lines[0].startswith("xbench") and ": error: " in lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _nothing_written(tmp: Path) -> None:
    rec = tmp / "results" / "records"
    assert not rec.exists() or not list(rec.iterdir())
    assert not (tmp / "cache").exists() or not list((tmp / "cache").iterdir())


@pytest.mark.parametrize("case", sorted(RUN_CASES))
def test_run_option(tmp_path, case):
    extra, needles = RUN_CASES[case]
    one_line(cli(run_args(tmp_path, tmp_path / "results", tmp_path / "cache", extra=extra), cwd=tmp_path), needles)
    _nothing_written(tmp_path)


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_config_file_names(tmp_path, case):
    values, needles = CONFIG_CASES[case]
    cfg = tmp_path / "extra.json"
    cfg.write_text(json.dumps(values))
    args = run_args(tmp_path, tmp_path / "results", tmp_path / "cache", methods="linear-probe",
                    metrics="accuracy,stability")
    args[args.index("--config") + 1] = str(cfg)  # tiny data options are lost: nothing runs anyway
    one_line(cli(args), needles)
    _nothing_written(tmp_path)


def test_config_file_missing_or_malformed(tmp_path):
    base = run_args(tmp_path, tmp_path / "results", tmp_path / "cache")
    i = base.index("--config") + 1
    missing = tmp_path / "absent.yaml"
    one_line(cli(base[:i] + [str(missing)] + base[i + 1:]), [f"config file {missing}: cannot read it"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods: [linear-probe\nseeds: 0\n")
    one_line(cli(base[:i] + [str(bad)] + base[i + 1:]), [f"config file {bad}: not valid YAML"])
    wrong = tmp_path / "run.ini"
    wrong.write_text("[x]\n")
    one_line(cli(base[:i] + [str(wrong)] + base[i + 1:]), [f"config file {wrong}: use a .yaml"])
    _nothing_written(tmp_path)


@pytest.mark.parametrize("args,needles", [
    (["ls", "method"], ["argument kind: invalid choice: 'method'"]),
    (["leaderboard", "--formats", "md,pdf"], ["--formats md,pdf"]),
    (["data", "check", "cubb"], ["unknown dataset 'cubb'", "'cub'"]),
    (["data", "fetch", "cubb"], ["unknown dataset 'cubb'"]),
    (["extract", "--datasets", "synthbird", "--backbone", "dinov2-tiny-test", "--weights", "random"],
     ["unknown dataset 'synthbird'"]),
    (["extract", "--backbone", "nope"], ["unknown backbone 'nope'"]),
    (["cache", "purge"], ["invalid choice: 'purge'"]),
    (["frobnicate"], ["invalid choice: 'frobnicate'"]),
], ids=["ls", "leaderboard-formats", "data-check", "data-fetch", "extract-dataset", "extract-backbone", "cache",
        "command"])
def test_other_commands(tmp_path, args, needles):
    if args[0] == "leaderboard":
        (tmp_path / "results" / "records").mkdir(parents=True)
        args = args + ["--results", str(tmp_path / "results"), "--out", str(tmp_path / "board")]
    if args[0] == "extract":
        args = args + ["--cache", str(tmp_path / "cache"), "--quiet"]
    one_line(cli(args, cwd=tmp_path), needles)
    _nothing_written(tmp_path)
    assert not (tmp_path / "board").exists()
