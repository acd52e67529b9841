"""Run configuration: defaults < config file (YAML or TOML) < command line.

The fully resolved configuration is what each job hashes and stores. A config
file may hold every command-line option plus per-method hyper-parameters,
per-dataset options and per-metric options:

    methods: [linear-probe-patch, dino-qpm]
    datasets: [synthbirds]
    backbone: weight-free
    seeds: [0, 1, 2]
    params:            # per-method hyper-parameters (the method's Params fields)
      dino-qpm: {dense_epochs: 5}
    dataset_options:   # per-dataset constructor options
      synthbirds: {train_per_class: 40}
    metric_options:
      funnybirds: {thresholds: 80}
    cache_dtype: float16   # or float32: tokens as the backbone gives them (reference parity)
    gpu_resident_gb: 4     # training tokens held on the GPU when they fit in this many GB (0: read per batch)

`profile` chooses a set of built-in parameter overrides: `paper` (the papers'
hyper-parameters) or `quickstart` (smaller heads and fewer epochs so that the
whole benchmark runs on a laptop CPU in minutes). The default, `auto`, is
`quickstart` with the weight-free or a test backbone and `paper` otherwise;
the profile in force is stored in every record.
"""
from __future__ import annotations

import copy
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

QUICKSTART_BACKBONES = ("weight-free", "dinov2-tiny-test", "dinov3-tiny-test", "dino-tiny-test", "clip-tiny-test",
                       "resnet-tiny-test")
#: token precision of the feature cache (`cache_dtype`): float16 halves the disk and memory, float32 gives
#: the backbone's own numbers (for parity with code that runs the backbone in float32)
CACHE_DTYPES = ("float16", "float32")


@dataclass
class RunConfig:
    methods: list[str] | None = None          # None: every registered method that applies
    datasets: list[str] = field(default_factory=lambda: ["synthbirds"])
    metrics: list[str] | None = None          # None: every metric that applies
    backbone: str = "weight-free"
    weights: str | None = None                # None: the backbone's default (auto / none / random)
    seeds: list[int] = field(default_factory=lambda: [0])
    device: str = "auto"
    results: str = "xbench-results"
    cache: str | None = None
    data_root: str | None = None
    profile: str = "auto"
    batch_size: int = 64
    loader_workers: int = 1
    workers: int = 1
    threads: int = 0                          # torch CPU threads per process (0: torch's default, as serial)
    ddp: int = 1                              # heads of methods with supports_ddp train on this many processes
    executor: str = "local"
    force: bool = False
    quiet: bool = False
    skip_bad: bool = False
    include: list[str] = field(default_factory=list)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    metric_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    cache_dtype: str = "float16"              # float16 (default) or float32 tokens in the feature cache
    gpu_resident_gb: float = 4.0              # training tokens kept on a CUDA device when they fit (0: never)
    slurm: dict[str, Any] = field(default_factory=dict)

    def resolved_profile(self) -> str:
        if self.profile in ("paper", "quickstart"):
            return self.profile
        return "quickstart" if self.backbone in QUICKSTART_BACKBONES else "paper"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_LIST_FIELDS = {"methods", "datasets", "metrics", "seeds", "include"}
_DICT_FIELDS = {"params", "dataset_options", "metric_options", "slurm"}


def _as_list(name: str, v: Any) -> list:
    if v is None:
        return None
    if isinstance(v, str):
        items = [x.strip() for x in v.split(",") if x.strip()]
    elif isinstance(v, (list, tuple)):
        items = list(v)
    else:
        items = [v]
    if name == "seeds":
        try:
            return [int(x) for x in items]
        except (TypeError, ValueError):
            raise ConfigError(f"seeds={v!r}: give integers, e.g. --seeds 0,1,2") from None
    return [str(x) for x in items]


def load_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise ConfigError(f"config file {p}: cannot read it ({err.strerror}); check the path") from None
    try:
        if p.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif p.suffix.lower() in (".yaml", ".yml", ".json"):
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"config file {p}: use a .yaml, .yml, .toml or .json file")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"config file {p}: not valid {p.suffix[1:].upper()} ({first})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p}: the top level must be a mapping of options")
    return data


def build_config(file_values: dict[str, Any] | None = None, cli_values: dict[str, Any] | None = None) -> RunConfig:
    """Defaults < file < command line (None on the command line means 'not given')."""
    names = {f.name for f in fields(RunConfig)}
    merged: dict[str, Any] = asdict(RunConfig())
    for source, values in (("config file", file_values or {}), ("command line", cli_values or {})):
        for k, v in values.items():
            k2 = k.replace("-", "_")
            if k2 not in names:
                raise ConfigError(f"unknown option {k!r} in the {source} (valid: {', '.join(sorted(names))})")
            if v is None:
                continue
            if k2 in _LIST_FIELDS:
                v = _as_list(k2, v)
            if k2 in _DICT_FIELDS:
                if not isinstance(v, dict):
                    raise ConfigError(f"option {k!r} in the {source} must be a mapping")
                base = copy.deepcopy(merged.get(k2) or {})
                for sub, val in v.items():
                    if isinstance(val, dict) and isinstance(base.get(sub), dict):
                        base[sub] = {**base[sub], **val}
                    else:
                        base[sub] = val
                v = base
            merged[k2] = v
    cfg = RunConfig(**merged)
    _validate(cfg)
    return cfg


def _validate(cfg: RunConfig) -> None:
    if cfg.device not in ("auto", "cpu", "cuda", "mps") and not cfg.device.startswith("cuda:"):
        raise ConfigError(f"--device {cfg.device}: use auto, cpu, cuda, cuda:N or mps")
    if cfg.profile not in ("auto", "paper", "quickstart"):
        raise ConfigError(f"--profile {cfg.profile}: use auto, paper or quickstart")
    if cfg.executor not in ("local", "slurm"):
        raise ConfigError(f"--executor {cfg.executor}: use local or slurm")
    if not cfg.seeds:
        raise ConfigError("--seeds is empty: give at least one seed, e.g. --seeds 0")
    if not cfg.datasets:
        raise ConfigError("--datasets is empty: give at least one dataset, e.g. --datasets synthbirds")
    for k in ("batch_size", "workers", "ddp"):
        if int(getattr(cfg, k)) < 1:
            raise ConfigError(f"--{k.replace('_', '-')} {getattr(cfg, k)}: must be at least 1")
    if cfg.cache_dtype not in CACHE_DTYPES:
        raise ConfigError(f"--cache-dtype {cfg.cache_dtype}: use {' or '.join(CACHE_DTYPES)}")
    try:
        ok = float(cfg.gpu_resident_gb) >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"--gpu-resident-gb {cfg.gpu_resident_gb}: give a number of GB, 0 or more")
    if int(cfg.threads) < 0:
        raise ConfigError(f"--threads {cfg.threads}: must be 0 (torch's default) or more")
    if int(cfg.loader_workers) < 0:
        raise ConfigError(f"--loader-workers {cfg.loader_workers}: must be 0 or more")


def parse_set(items: list[str] | None, flag: str = "--set") -> dict[str, dict[str, Any]]:
    """`--set dino-qpm.dense_epochs=5` -> {"dino-qpm": {"dense_epochs": 5}} (typed later by the method);
    `--metric-option funnybirds.protocol=reference` -> {"funnybirds": {"protocol": "reference"}}. Values are
    read as JSON where they parse (numbers, true/false), else kept as text."""
    example = ("METRIC.OPTION=VALUE, e.g. --metric-option funnybirds.protocol=reference" if flag == "--metric-option"
               else "METHOD.PARAM=VALUE, e.g. --set dino-qpm.dense_epochs=5")
    out: dict[str, dict[str, Any]] = {}
    for it in items or []:
        if "=" not in it or "." not in it.split("=", 1)[0]:
            raise ConfigError(f"{flag} {it}: write {example}")
        lhs, val = it.split("=", 1)
        method, param = lhs.rsplit(".", 1)
        try:
            parsed = json.loads(val)
        except ValueError:
            parsed = val
        out.setdefault(method, {})[param] = parsed
    return out
