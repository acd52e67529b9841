"""The runner: plan jobs, share backbone features, train heads, score them, store records.

    dataset -> backbone -> feature cache -> method head (train) -> explanation -> metrics -> results store

One backbone is built per run; each dataset's train/test tokens are extracted
once into the feature cache and read by every method and seed. A job whose
record is complete is skipped (a rerun only adds missing metrics, using the
saved head); `force` recomputes. Jobs are claimed with a per-job lock so two
runs sharing a results folder never duplicate work. A failing job is recorded
as failed with its reason and the others go on.
"""
from __future__ import annotations

import math
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import Timeout

from . import testhooks
from .backbones import build_backbone
from .backbones.base import Backbone
from .cache import IO, CacheDamaged, FeatureCache
from .config import RunConfig
from .data.base import Dataset
from .data.roots import cache_root, data_root
from .device import resolve_device, seed_everything  # noqa: F401 (also importable from here, as before)
from .errors import ConfigError, TrainingDiverged, UserError, unknown_name
from .evaluation import EvalContext, check_metric_options, score_metric  # noqa: F401
from .extract import Extractor
from .jobs import Job
from .progress import notice, say
from .registry import DATASETS, METHODS, METRICS, include
from .results import DamagedRecord, ResultsStore, _jsonable, base_record, job_lock, read_record  # noqa: F401
from .shared import SharedStore, data_key
from .views import PlainView


def build_dataset(name: str, options: dict, root: str | None) -> Dataset:
    from .data.userfolder import parse_dataset_arg

    name, extra = parse_dataset_arg(name)  # `folder:PATH` -> ("folder", {"path": PATH})
    entry = DATASETS.get(name)
    try:
        ds = entry.obj(root=data_root(root), **{**options, **extra})
    except TypeError as err:
        raise ConfigError(f"dataset {name!r}: bad option ({err}); see `xbench ls datasets`") from None
    return ds


@dataclass
class RunSummary:
    jobs: list[Job] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


class Runner:
    def __init__(self, cfg: RunConfig):
        from .memory import bound_heap

        bound_heap()  # freed batch buffers go back to the system (see xbench/memory.py)
        self.cfg = cfg
        for path in cfg.include:
            include(path)
        if int(cfg.threads) > 0:
            torch.set_num_threads(int(cfg.threads))
        self.device = resolve_device(cfg.device)
        self.store = ResultsStore(Path(cfg.results))
        self.cache = FeatureCache(cache_root(cfg.cache))
        self.profile = cfg.resolved_profile()
        self._datasets: dict[str, Dataset] = {}
        self._backbone: Backbone | None = None
        self._extractor: Extractor | None = None
        self.show_progress = not cfg.quiet

    # building blocks ------------------------------------------------------------------------
    def dataset(self, name: str) -> Dataset:
        if name not in self._datasets and name not in self.cfg.datasets:
            # a job names its dataset by spec name (`folder:PATH` -> folder-NAME): build the configured ones
            for configured in self.cfg.datasets:
                self.dataset(configured)
        if name not in self._datasets:
            ds = build_dataset(name, self.dataset_options(name), self.cfg.data_root)
            self._datasets[name] = ds
            self._datasets.setdefault(ds.spec.name, ds)
        return self._datasets[name]

    def dataset_options(self, name: str) -> dict:
        """Constructor options: the dataset's quickstart overrides (quickstart profile), then the config's."""
        from .data.userfolder import parse_dataset_arg

        base, _ = parse_dataset_arg(name)
        opts: dict = {}
        if self.profile == "quickstart" and base in DATASETS:
            opts.update(getattr(DATASETS.get(base).obj, "quickstart", {}) or {})
        opts.update(self.cfg.dataset_options.get(name, {}))
        return opts

    @property
    def backbone(self) -> Backbone:
        if self._backbone is None:
            self._backbone = build_backbone(self.cfg.backbone, self.cfg.weights)
        return self._backbone

    @property
    def extractor(self) -> Extractor:
        if self._extractor is None:
            self._extractor = Extractor(self.backbone, self.cache, self.device, batch_size=self.cfg.batch_size,
                                        num_workers=self.cfg.loader_workers, show_progress=self.show_progress,
                                        skip_bad=self.cfg.skip_bad, cache_dtype=self.cfg.cache_dtype)
        return self._extractor

    # planning -------------------------------------------------------------------------------
    def method_names(self) -> list[str]:
        if self.cfg.methods:
            for m in self.cfg.methods:
                METHODS.get(m)  # unknown names fail here, before any work
            return list(self.cfg.methods)
        return [e.name for e in METHODS.entries() if getattr(e.obj, "in_quickstart", True)]

    def metric_names(self) -> list[str]:
        if self.cfg.metrics:
            for m in self.cfg.metrics:
                METRICS.get(m)
            return list(self.cfg.metrics)
        return [e.name for e in METRICS.entries() if e.spec.in_quickstart]

    def method_params(self, name: str) -> dict:
        from .method_api import parse_params

        cls = METHODS.get(name).obj
        overrides: dict[str, Any] = {}
        if self.profile == "quickstart":
            overrides.update(getattr(cls, "quickstart", {}) or {})
        overrides.update(self.cfg.params.get(name, {}))
        params = parse_params(cls, overrides)
        if hasattr(params, "identity_dict"):
            return params.identity_dict()   # (parameters added later, at their default, stay out of the job id)
        return params.to_dict() if hasattr(params, "to_dict") else dict(vars(params))

    def ddp_notice(self) -> str | None:
        """With `--ddp N`, the one line naming the selected methods that train in one process anyway."""
        if int(self.cfg.ddp) <= 1:
            return None
        names = self.method_names()
        plain = [m for m in names if not METHODS.get(m).spec.supports_ddp]
        if not plain:
            return None
        ddp = [m for m in names if m not in plain]
        return (f"xbench: --ddp {self.cfg.ddp}: {', '.join(plain)} {'does' if len(plain) == 1 else 'do'} not support "
                f"DistributedDataParallel and train{'s' if len(plain) == 1 else ''} in one process"
                + (f" (DDP: {', '.join(ddp)})" if ddp else ""))

    def warn_ddp(self) -> None:
        line = self.ddp_notice()
        if line:
            print(line, file=sys.stderr, flush=True)   # an option that does not apply is said even with --quiet

    def plan(self) -> list[Job]:
        methods = self.method_names()
        metrics = tuple(self.metric_names())
        for k in self.cfg.params:
            if k not in methods and k not in METHODS:
                raise ConfigError(f"params for unknown method {k!r} in the config (methods: {', '.join(methods)})")
        check_metric_options(self.cfg.metric_options)
        datasets = [self.dataset(d) for d in self.cfg.datasets]
        for k in self.cfg.dataset_options:
            if k not in self._datasets and k not in DATASETS:
                raise unknown_name("dataset in dataset_options", k, set(self.cfg.datasets) | set(DATASETS.names()))
        for ds in datasets:
            problems = ds.check() if not ds.spec.builtin else []
            if problems:
                raise problems_error(ds, problems)
        bb = self.backbone
        jobs = []
        for ds in datasets:
            for m in methods:
                params = self.method_params(m)
                for seed in self.cfg.seeds:
                    jobs.append(Job(
                        method=m, dataset=ds.spec.name, backbone=bb.name, weights=bb.weights_label,
                        weights_hash=bb.weights_hash, seed=int(seed), params=params,
                        dataset_options=dict(ds.options),
                        dataset_fingerprint=ds.fingerprint(),
                        metric_options=dict(self.cfg.metric_options), profile=self.profile, metrics=metrics,
                        cache_dtype=self.cfg.cache_dtype,
                    ))
        return jobs

    # running --------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        jobs = self.plan()  # unknown names and missing data stop here, before anything is written
        self.store.ensure_writable()
        for job in jobs:  # a record from a newer xbench stops the run here, before any work (never overwritten)
            if self.store.path(job.job_id).exists():
                try:
                    read_record(self.store.path(job.job_id))
                except DamagedRecord:
                    pass  # run_one warns and runs the job again
        summary = RunSummary(jobs=jobs)
        self.warn_ddp()
        say(f"xbench: {len(jobs)} job(s); backbone {self.backbone.name} (weights: {self.backbone.weights_label}); "
            f"profile {self.profile}; device {self.device}; results in {self.store.root}")
        pending = list(jobs)
        deferred: list[Job] = []
        for blocking in (False, True):
            for job in pending:
                status = self.run_one(job, blocking=blocking)
                if status == "busy":
                    deferred.append(job)
                elif status == "skipped":
                    summary.skipped.append(job.job_id)
                elif status.startswith("failed"):
                    summary.failed.append((job.job_id, status[len("failed: "):]))
                else:
                    summary.done.append(job.job_id)
            pending, deferred = deferred, []
        return summary

    def needed_metrics(self, job: Job, rec: dict | None, announce: bool = False) -> list[str]:
        """Metrics of `job` that `rec` lacks, failed, or holds from an older metric version (all if the
        head's method changed version since: it is retrained)."""
        if rec is None or rec.get("status") != "complete" or self.cfg.force or method_changed(job, rec):
            return list(job.metrics)
        have = rec.get("metrics", {})
        out = []
        for m in job.metrics:
            e = have.get(m, {})
            if e.get("status") not in ("ok", "n/a"):
                out.append(m)
                continue
            now, then = METRICS.get(m).spec.version, int(e.get("version", 1))
            if now != then:
                if announce:
                    notice(f"  {job.label()}: metric {m} is at version {now}, the record holds version {then}: "
                           "recomputing it")
                out.append(m)
        return out

    def run_one(self, job: Job, blocking: bool = False) -> str:
        lock = job_lock(self.store, job.job_id)
        try:
            lock.acquire(timeout=-1 if blocking else 0)
        except Timeout:
            return "busy"
        try:
            rec = self.store.get(job.job_id, redo_damaged=True)  # damaged = truncated: the job runs again
            if rec is not None and rec.get("status") == "complete" and method_changed(job, rec):
                notice(f"  {job.label()}: method {job.method} is at version {method_version(job)}, the record "
                       f"holds version {rec.get('method_version', 1)}: retraining")
                rec = None
            todo = self.needed_metrics(job, rec, announce=True)
            if rec is not None and rec.get("status") == "complete" and not todo and not self.cfg.force:
                return "skipped"
            rec = self.execute(job, rec if (rec and rec.get("status") == "complete" and not self.cfg.force) else None,
                               todo)
            self.store.put(rec)
            if rec["status"] == "failed":
                say(f"  FAILED {job.label()}: {rec['error']}")
                return f"failed: {rec['error']}"
            return "done"
        finally:
            lock.release()

    def execute(self, job: Job, previous: dict | None, metrics: list[str], retry: bool = True) -> dict:
        """Train (or reload) the head of `job` and compute `metrics`; returns the record.

        Cache rows found damaged while reading (see xbench.cache) are re-extracted and the job runs once more.
        """
        from .method_api import FitContext, HeadInfo, TrainData, load_head, parse_params

        t0 = time.perf_counter()
        io0 = IO.snapshot()
        timings: dict[str, Any] = dict(previous.get("timings", {})) if previous else {}
        record = self._base_record(job, previous)
        ds = self.dataset(job.dataset)
        entry = METHODS.get(job.method)
        ex = self.extractor
        say(f"- {job.label()}")
        try:
            seed_everything(job.seed)
            te = time.perf_counter()
            train_store = ex.store(ds, "train", PlainView())
            test_store = ex.store(ds, "test", PlainView())
            timings["extract_s"] = round(time.perf_counter() - te, 3)
            info = HeadInfo(num_classes=ds.num_classes, grid=train_store.grid, dim=train_store.dim,
                            num_registers=train_store.num_registers, backbone=self.backbone.name,
                            weights_hash=self.backbone.weights_hash)
            head_dir = self.store.head_dir(job.job_id)
            if previous is not None and (head_dir / "head.json").exists():
                model = load_head(head_dir, expect=info).to(self.device)
            else:
                model = entry.obj(info, parse_params(entry.obj, job.params)).to(self.device)
                if entry.spec.needs_backbone_graph:
                    model.attach_extractor(ex)
                sp = ds.split("train")
                views = {name: ex.store(ds, "train", v) for name, v in model.extra_views().items()}
                targets = None
                if "multi_target" in ds.spec.annotations:
                    targets = np.stack([sp.targets(i) for i in range(len(sp))])
                data = TrainData(train_store, np.asarray(sp.labels), targets, ds.num_classes, self.device, views,
                                 gpu_resident_bytes=int(float(self.cfg.gpu_resident_gb) * (1 << 30)))
                ctx = FitContext(device=self.device, seed=job.seed, show_progress=self.show_progress,
                                 shared=SharedStore(self.store.root / "shared"), data_key=data_key(job.identity()))
                tf = time.perf_counter()
                if self.cfg.ddp > 1 and entry.spec.supports_ddp:
                    log = self._fit_ddp(model, job, ds, targets, views)
                else:
                    seed_everything(job.seed)
                    model.train()
                    log = model.fit(data, ctx) or {}
                model.eval()
                data.release()  # nothing of the training split stays referenced while the metrics run
                del data, views
                timings["fit_s"] = round(time.perf_counter() - tf, 3)
                testhooks.point(f"fit:{job.method}:s{job.seed}")
                _check_finite(model, log)
                record["training"] = _jsonable(log)
                model.save(head_dir)
                testhooks.point(f"head:{job.method}:s{job.seed}")
                record["head"] = str(Path("heads") / job.job_id)
            if entry.spec.needs_backbone_graph:
                model.attach_extractor(ex)
            io_fit = IO.since(io0)
            ectx = EvalContext(model, ds, ex, device=self.device, seed=job.seed, batch_size=self.cfg.batch_size,
                               options=job.metric_options, show_progress=self.show_progress,
                               needs_images=entry.spec.needs_backbone_graph)
            mt = timings.setdefault("metrics_s", {})
            for name in metrics:
                record["metrics"][name] = self._metric(name, entry.spec, ds, ectx, mt)
            del test_store, ectx
            total = IO.since(io0)
            record["io"] = {"fit": io_fit, "metrics": {k: total[k] - io_fit[k] for k in total}, "total": total}
        except CacheDamaged as err:
            if not retry:
                raise
            notice(f"  {job.label()}: {err}; extracting those chunks again and rerunning the job")
            return self.execute(job, previous, metrics, retry=False)
        except TrainingDiverged as err:
            return self._failed(record, job, f"training diverged: {err}", t0, timings)
        except UserError:
            raise
        except Exception as err:  # recorded; the other jobs go on
            return self._failed(record, job, f"{type(err).__name__}: {err}", t0, timings, tb=traceback.format_exc())
        timings["total_s"] = round(time.perf_counter() - t0 + (previous or {}).get("timings", {}).get("total_s", 0), 3)
        record["timings"] = timings
        record["status"] = "complete"
        if ex.bad_items:
            record["skipped_files"] = {k: v for k, v in ex.bad_items.items()}
        return record

    def _fit_ddp(self, model, job: Job, ds: Dataset, targets, views: dict) -> dict:
        """`--ddp N`: train the head with DistributedDataParallel on N processes (xbench.executors.ddp_fit)."""
        from .executors.ddp_fit import DDPTrainSpec, fit_ddp

        ex = self.extractor
        spec = DDPTrainSpec(
            cache_root=str(self.cache.root), chunk_size=self.cache.chunk_size,
            train_key=ex.key(ds, "train", PlainView()), labels=np.asarray(ds.split("train").labels),
            num_classes=ds.num_classes, targets=targets,
            view_keys={name: ex.key(ds, "train", v) for name, v in model.extra_views().items()},
            include=[str(Path(p).resolve()) for p in self.cfg.include],
            gpu_resident_bytes=int(float(self.cfg.gpu_resident_gb) * (1 << 30)))
        return fit_ddp(model, spec, job.seed, self.device, int(self.cfg.ddp), show_progress=self.show_progress)

    def _metric(self, name: str, method_spec, ds: Dataset, ectx: EvalContext, mt: dict) -> dict:
        return score_metric(name, method_spec, ds, ectx, mt)

    def _base_record(self, job: Job, previous: dict | None) -> dict:
        bb = self.backbone
        return {**base_record(job, previous, bb.weights_kind, bb.describe(), self.device),
                "method_version": method_version(job)}

    def _failed(self, record: dict, job: Job, reason: str, t0: float, timings: dict, tb: str | None = None) -> dict:
        record["status"] = "failed"
        record["error"] = reason.splitlines()[0][:500] if reason else "unknown error"
        if tb:
            record["traceback"] = tb[-4000:]
        timings["total_s"] = round(time.perf_counter() - t0, 3)
        record["timings"] = timings
        return record


def method_version(job: Job) -> int:
    """The registered version of `job`'s method (1 for a method no longer registered)."""
    return int(METHODS.get(job.method).spec.version) if job.method in METHODS else 1


def method_changed(job: Job, rec: dict) -> bool:
    """Whether `rec` holds a head trained by another version of the job's method (records before versions: 1)."""
    return int(rec.get("method_version", 1)) != method_version(job)


def problems_error(ds: Dataset, problems: list[str]) -> UserError:
    from .errors import DataError

    first = problems[0]
    name = getattr(ds, "cli_name", ds.spec.name)  # `folder:PATH` datasets are checked by that name
    more = f" (and {len(problems) - 1} more; run `xbench data check {name}`)" if len(problems) > 1 else ""
    return DataError(f"{first}{more}")


def _check_finite(model: torch.nn.Module, log: dict) -> None:
    for n, p in model.state_dict().items():
        if p.dtype.is_floating_point and not torch.isfinite(p).all():
            raise TrainingDiverged(f"parameter {n} is not finite after training")
    loss = log.get("final_loss") if isinstance(log, dict) else None
    if isinstance(loss, float) and not math.isfinite(loss):
        raise TrainingDiverged(f"final loss is {loss}")


