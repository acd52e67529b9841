"""`xbench run`: train and evaluate (method x dataset x seed) jobs, then print the leaderboard."""
from __future__ import annotations

import argparse
import sys

from .config_args import config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train and evaluate methods on datasets (no arguments: the offline quickstart)",
                       description="Train and evaluate jobs (method x dataset x seed) and print the leaderboard. "
                       "Without arguments: synthbirds, weight-free backbone, every method, seed 0.")
    p.add_argument("--methods", help="comma-separated method names (default: every registered method)")
    p.add_argument("--datasets", help="comma-separated dataset names (default: synthbirds)")
    p.add_argument("--metrics", help="comma-separated metric names (default: every metric that applies)")
    p.add_argument("--backbone", help="backbone name (default: weight-free); see `xbench ls backbones`")
    p.add_argument("--weights", help="auto | random | PATH to a FAIR .pth or timm .safetensors file")
    p.add_argument("--seeds", help="comma-separated seeds (default: 0)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps (default: auto)")
    p.add_argument("--results", help="results folder (default: ./xbench-results)")
    p.add_argument("--cache", help="feature cache folder (default: $XBENCH_CACHE or ~/.cache/xbench/features)")
    p.add_argument("--data-root", help="dataset root (default: $XBENCH_DATA or ~/.cache/xbench/data)")
    p.add_argument("--config", help="YAML or TOML file with these options plus per-method parameters")
    p.add_argument("--profile", help="paper | quickstart | auto (default auto: quickstart with the weight-free backbone)")
    p.add_argument("--set", action="append", metavar="METHOD.PARAM=VALUE", help="override a method parameter (repeatable)")
    p.add_argument("--metric-option", action="append", metavar="METRIC.OPTION=VALUE",
                   help="set a metric option (repeatable), e.g. funnybirds.protocol=reference")
    p.add_argument("--cache-dtype", help="float16 (default) or float32: precision of the cached backbone tokens")
    p.add_argument("--gpu-resident-gb", type=float, help="keep the training tokens on the GPU when they fit in "
                   "this many GB (default 4; 0: read them from the cache batch by batch)")
    p.add_argument("--batch-size", type=int, help="backbone / evaluation batch size (default 64)")
    p.add_argument("--loader-workers", type=int, help="image-loading worker processes (default 1)")
    p.add_argument("--workers", type=int, help="independent jobs run in parallel processes (default 1; one per GPU)")
    p.add_argument("--threads", type=int, help="torch CPU threads in this process and in every --workers process "
                   "(default: torch's default, the serial run's count, so --workers N gives the serial numbers)")
    p.add_argument("--ddp", type=int, help="train heads of methods that support it with DistributedDataParallel "
                   "on N processes (default 1)")
    p.add_argument("--executor", help="local (default) or slurm (one array task per job; see docs/cluster.md)")
    p.add_argument("--wait", action="store_true", help="with --executor slurm: follow the tasks, then print the "
                   "leaderboard")
    s = p.add_argument_group("slurm options (or a `slurm:` mapping in --config)")
    s.add_argument("--slurm-partition", help="partition to submit to")
    s.add_argument("--slurm-time", help="time limit per job: minutes or [D-]H:MM:SS (default 60)")
    s.add_argument("--slurm-gpus", type=int, help="GPUs per task (default 0)")
    s.add_argument("--slurm-cpus", type=int, help="CPUs per task (default 1)")
    s.add_argument("--slurm-mem", help="memory per task, e.g. 32G")
    s.add_argument("--slurm-array-parallelism", type=int, help="array tasks running at once (default 64)")
    s.add_argument("--slurm-account", help="account to charge")
    s.add_argument("--slurm-qos", help="quality of service")
    s.add_argument("--slurm-constraint", help="node features, e.g. a100")
    s.add_argument("--slurm-setup", action="append", metavar="LINE", help="shell line run before each task "
                   "(repeatable), e.g. 'source /path/venv/bin/activate'")
    s.add_argument("--slurm-logs", help="folder for submitit's scripts and logs (default RESULTS/slurm/logs)")
    s.add_argument("--slurm-extract-tasks", type=int, help="tasks sharding each dataset's feature extraction "
                   "(default 1)")
    s.add_argument("--slurm-poll", type=float, help="--wait: seconds between status checks (default 30)")
    p.add_argument("--include", action="append", metavar="PATH.py", help="import a Python file that registers methods/metrics")
    p.add_argument("--skip-bad", action="store_true", default=None, help="skip unreadable images (counted in the record)")
    p.add_argument("--force", action="store_true", default=None, help="recompute jobs that are already complete")
    p.add_argument("--quiet", action="store_true", default=None, help="no progress bars")
    p.add_argument("--no-leaderboard", action="store_true", help="do not print the leaderboard at the end")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..progress import set_quiet

    cfg = config_from_args(args)
    set_quiet(cfg.quiet)
    if cfg.executor == "slurm":
        from ..executors.slurm import run_slurm

        summary = run_slurm(cfg, args)
        if summary is None:  # submitted, not followed (no --wait)
            return 0
    elif cfg.workers > 1:
        from ..executors.local_pool import run_pool

        summary = run_pool(cfg)
    else:
        from ..runner import Runner

        summary = Runner(cfg).run()
    n_done, n_skip, n_fail = len(summary.done), len(summary.skipped), len(summary.failed)
    print(f"xbench: {n_done} job(s) run, {n_skip} already complete, {n_fail} failed; results in {cfg.results}",
          file=sys.stderr)
    if not args.no_leaderboard:
        from ..leaderboard.markdown import render_markdown
        from ..leaderboard.tables import build_tables
        from ..results import ResultsStore

        print(render_markdown(build_tables(ResultsStore(cfg.results).records(strict=False))))
    for job_id, reason in summary.failed:
        print(f"xbench: job {job_id} failed: {reason}", file=sys.stderr)
    return 1 if n_fail else 0
