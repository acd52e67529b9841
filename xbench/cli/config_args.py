"""One translation of parsed command-line options into a `RunConfig` (shared by `xbench run` and `xbench extract`).

Every `RunConfig` field that the sub-command's parser defines is read from the namespace (None: not
given); `--set` and `--metric-option` become `params` and `metric_options`, `--slurm-*` the `slurm`
mapping, and `--include` files add to the config file's. Defaults < config file < command line.
"""
from __future__ import annotations

import argparse
import dataclasses


def config_from_args(args: argparse.Namespace):
    from ..config import RunConfig, build_config, load_config_file, parse_set

    file_values = load_config_file(args.config) if getattr(args, "config", None) else {}
    cli = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)
           if f.name not in ("params", "metric_options", "dataset_options", "slurm") and hasattr(args, f.name)}
    sets = parse_set(getattr(args, "set", None))
    if sets:
        cli["params"] = sets
    metric_sets = parse_set(getattr(args, "metric_option", None), flag="--metric-option")
    if metric_sets:
        cli["metric_options"] = metric_sets
    slurm = {k[len("slurm_"):]: v for k, v in vars(args).items() if k.startswith("slurm_") and v is not None}
    if slurm:
        cli["slurm"] = slurm
    if cli.get("include") is not None:
        cli["include"] = list(file_values.get("include", [])) + list(cli["include"])
    return build_config(file_values, cli)
