"""`xbench extract`: fill the feature cache ahead of `xbench run`, optionally sharded over N processes.

    xbench extract --datasets cub --backbone dinov2-vitb14 --world 4        # 4 local processes (4 GPUs, nccl)
    torchrun --nproc-per-node 4 -m xbench extract --datasets cub ...        # ranks from torchrun (env://)

It extracts what training reads (the train and test splits and every selected method's extra
views; default: the methods `xbench run` would run, with the parameters the same `--profile`,
`--config` and `--set` give them there) for every dataset. With `--world N` (or under
torchrun) each cache entry is filled by N ranks, chunk k by rank k mod N, into one cache entry
identical to a one-process extraction (xbench.executors.sharded_extract). Metric views
(interventions, noise, crops) are extracted by the first job that needs them.
"""
from __future__ import annotations

import argparse

from .config_args import config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="extract backbone features into the cache (optionally sharded over N processes)",
                       description="Fill the feature cache for datasets (train/test and the methods' training "
                       "views), in one process or sharded over --world N processes (gloo on CPU, nccl on GPU).")
    p.add_argument("--datasets", help="comma-separated dataset names (default: synthbirds)")
    p.add_argument("--methods", help="methods whose extra training views to extract too (default: every method)")
    p.add_argument("--backbone", help="backbone name (default: weight-free)")
    p.add_argument("--weights", help="auto | random | PATH to a weights file")
    p.add_argument("--device", help="auto | cpu | cuda (default: auto); with --world N on CUDA, rank r uses GPU r")
    p.add_argument("--cache", help="feature cache folder (default: $XBENCH_CACHE or ~/.cache/xbench/features)")
    p.add_argument("--data-root", help="dataset root (default: $XBENCH_DATA or ~/.cache/xbench/data)")
    p.add_argument("--config", help="YAML or TOML run config (its datasets, dataset options, backbone, ...)")
    p.add_argument("--profile", help="paper | quickstart | auto, as for `xbench run` (the views a method trains on "
                   "can depend on its parameters)")
    p.add_argument("--set", action="append", metavar="METHOD.PARAM=VALUE",
                   help="override a method parameter, as for `xbench run` (repeatable)")
    p.add_argument("--batch-size", type=int, help="backbone batch size (default 64)")
    p.add_argument("--cache-dtype", help="float16 (default) or float32: precision of the cached tokens")
    p.add_argument("--loader-workers", type=int, help="image-loading worker processes per rank (default 1)")
    p.add_argument("--include", action="append", metavar="PATH.py", help="import a Python file that registers plugins")
    p.add_argument("--skip-bad", action="store_true", default=None, help="skip unreadable images")
    p.add_argument("--quiet", action="store_true", default=None, help="no progress bars")
    p.add_argument("--world", type=int, default=1, help="processes sharing the extraction (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..executors.distributed import launcher_env
    from ..progress import set_quiet

    cfg = config_from_args(args)
    set_quiet(cfg.quiet)
    if args.world < 1:
        raise ConfigError(f"--world {args.world}: must be at least 1")
    env = launcher_env()
    if env is not None:  # under torchrun: this process is one rank
        lines = extract_rank(env.rank, env.world, "env://", _cfg_dict(cfg), env.local_rank)
    elif args.world > 1:
        from ..executors.distributed import check_devices, spawn
        from ..device import resolve_device

        check_devices(resolve_device(cfg.device), args.world, "--world")
        spawn(_spawned_rank, (_cfg_dict(cfg),), args.world)
        lines = extract_rank(0, 1, "", _cfg_dict(cfg))  # every entry is complete now: this just opens them
    else:
        lines = extract_rank(0, 1, "", _cfg_dict(cfg))
    if env is None or env.rank == 0:
        for line in lines:
            print(line)
    return 0


def _cfg_dict(cfg) -> dict:
    from ..executors.tasks import resolved_config

    return resolved_config(cfg)


def _spawned_rank(rank: int, world: int, init: str, cfg: dict) -> None:
    extract_rank(rank, world, init, cfg)


def extract_rank(rank: int, world: int, init: str, cfg: dict, local_rank: int | None = None) -> list[str]:
    """Extract on this rank (world 1: alone); returns one line per cache entry."""
    from ..executors.distributed import backend_for, device_for_rank, process_group
    from ..executors.tasks import config_from_dict, prepare_features
    from ..runner import Runner

    runner = Runner(config_from_dict(cfg))
    methods = runner.method_names()
    if world <= 1:
        stores = prepare_features(runner, list(cfg["datasets"]), methods)
    else:
        runner.device = device_for_rank(runner.device, rank if local_rank is None else local_rank)
        runner.show_progress = runner.show_progress and rank == 0
        with process_group(rank, world, backend_for(runner.device), init):
            stores = prepare_features(runner, list(cfg["datasets"]), methods, rank=rank, world=world)
    return [f"{s.meta.get('split')}/{s.meta.get('view')}: {len(s)} items -> {s.path}" for s in stores]
