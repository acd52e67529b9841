"""The Python API: `xbench.load(RUN)` and `xbench.evaluate(model, dataset, metrics=...)`.

    import xbench
    model = xbench.load("xbench-results/linear-probe-patch__synthbirds")   # RESULTS/JOB_ID (prefix)
    pred = model.predict(["bird.jpg"])                 # Prediction: logits, probabilities, classes, names
    exp = model.explain(["bird.jpg"])                  # Explanation (SPEC 4) + extras target / attribution
    record = xbench.evaluate(model, "synthbirds", metrics=["accuracy", "plausibility"])

`load` is `xbench.trained.load` (RUN forms, weights, class names: see `xbench.trained`).

`evaluate(model, dataset, metrics=None, ...)` scores

* a model from `xbench.load` (its head on its backbone; tokens come from the feature cache, as in
  the runner), or
* any object following the image protocol of `xbench.external` (a model trained outside xbench:
  `explain(images) -> Explanation`, optional `logits(images)`, `provides`, `name`...),

on `dataset` (a registered name such as "synthbirds", "folder:PATH", or a `Dataset` object) and
returns the record the runner writes for a job (same schema: `xbench.results.validate_record`
passes; `status` "complete"; each metric ok / n/a with the reason / error). Choices:

* metrics default to the runner's default list (every metric marked `in_quickstart`); a metric
  whose needs the model or dataset do not meet is "n/a", never 0;
* the job identity is (method name, dataset, backbone, weights hash, seed, params, dataset
  fingerprint, metric options) as for the runner, with profile "api"; an external model's
  backbone is "external", its weights label "external" and its weights hash the hash of its state
  dict (nn.Module) or "";
* `results=DIR` also writes the record into that results store (the leaderboard then shows it);
  the model itself is not copied there;
* the dataset must have the model's class count (one-line `ConfigError` otherwise);
* `seed` seeds python / numpy / torch before scoring (metrics with randomness use `ctx.seed`).
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from .errors import ConfigError
from .trained import Prediction, TrainedModel, load


def _dataset(dataset: Any, options: dict | None, data_root: str | None):
    from .data.base import Dataset
    from .runner import build_dataset

    if isinstance(dataset, Dataset):
        return dataset
    if isinstance(dataset, str):
        return build_dataset(dataset, dict(options or {}), data_root)
    raise ConfigError(f"dataset must be a name (e.g. 'synthbirds', 'folder:PATH') or an xbench Dataset, "
                      f"not a {type(dataset).__name__}")


def _metric_names(metrics: Sequence[str] | str | None) -> list[str]:
    from .registry import METRICS

    if metrics is None:
        return [e.name for e in METRICS.entries() if e.spec.in_quickstart]
    names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else list(metrics)
    for m in names:
        METRICS.get(m)  # unknown names: one line with the valid ones
    return names


def evaluate(model: Any, dataset: Any, metrics: Sequence[str] | str | None = None, *, name: str | None = None,
             seed: int = 0, device: str | torch.device | None = None, batch_size: int = 32,
             metric_options: dict | None = None, dataset_options: dict | None = None, data_root: str | None = None,
             results: str | os.PathLike | None = None, show_progress: bool = False) -> dict:
    """Score `model` on `dataset` with xbench's metrics; returns the job record (see the module docstring)."""
    from .evaluation import EvalContext
    from .external import ExternalModel, ImagesOnlyExtractor
    from .jobs import Job
    from .results import ResultsStore, validate_record
    from .device import resolve_device, seed_everything
    from .evaluation import check_metric_options, score_metric
    from .results import _jsonable, base_record

    t0 = time.perf_counter()
    ds = _dataset(dataset, dataset_options, data_root)
    names = _metric_names(metrics)
    check_metric_options(metric_options or {})   # a misspelt option is one clear error, as in `xbench run`
    if isinstance(model, TrainedModel):
        dev = model.device if device is None else resolve_device(str(device))
        scored, spec, extractor = model.head.to(dev), model.spec, model.extractor
        if name is not None and name != spec.name:
            spec = dataclasses.replace(spec, name=name)
        n_classes = model.num_classes
        bb = model.backbone
        backbone, weights, weights_hash, kind, desc = bb.name, bb.weights_label, bb.weights_hash, bb.weights_kind, \
            bb.describe()
        params = dict((model.record or {}).get("config", {}).get("params") or _jsonable(
            dataclasses.asdict(model.head.params) if dataclasses.is_dataclass(model.head.params) else {}))
        needs_images = bool(spec.needs_backbone_graph)
    else:
        from .specs import MethodSpec

        if isinstance(model, torch.nn.Module) and isinstance(getattr(model, "spec", None), MethodSpec):
            raise ConfigError(f"model is a bare {model.spec.name} head without its backbone: score what "
                              f"xbench.load(RUN) returns (the head on the backbone it was trained on)")
        dev = resolve_device(str(device or "cpu"))
        ext = ExternalModel(model, name).to(dev)
        scored, spec = ext, ext.spec
        extractor = ImagesOnlyExtractor(ext.geometry, dev)
        n_classes = getattr(model, "num_classes", None)
        backbone, weights, weights_hash, kind = "external", "external", ext.weights_hash(), "external"
        desc = {"name": "external", "weights": "external", "weights_kind": "external", "weights_hash": weights_hash,
                "image_size": ext.geometry.image_size, "grid": ext.geometry.grid}
        params = _jsonable(ext.params())
        needs_images = True
    if n_classes is not None and int(n_classes) != ds.num_classes:
        raise ConfigError(f"model {spec.name} has {n_classes} classes but dataset {ds.spec.name} has "
                          f"{ds.num_classes}; score it on the dataset it was trained for")
    job = Job(method=spec.name, dataset=ds.spec.name, backbone=backbone, weights=weights, weights_hash=weights_hash,
              seed=int(seed), params=params, dataset_fingerprint=ds.fingerprint(),
              metric_options=dict(metric_options or {}), profile="api", metrics=tuple(names),
              cache_dtype=getattr(extractor, "cache_dtype", "float16"))
    record = base_record(job, None, kind, desc, dev)
    seed_everything(int(seed))
    ectx = EvalContext(scored, ds, extractor, device=dev, seed=int(seed), batch_size=batch_size,
                       options=job.metric_options, show_progress=show_progress, needs_images=needs_images)
    timings: dict[str, Any] = {}
    mt = timings.setdefault("metrics_s", {})
    for m in names:
        record["metrics"][m] = score_metric(m, spec, ds, ectx, mt)
    timings["total_s"] = round(time.perf_counter() - t0, 3)
    record["timings"] = timings
    record["status"] = "complete"
    if extractor.bad_items:
        record["skipped_files"] = dict(extractor.bad_items)
    validate_record(record, where=f"record of {spec.name} on {ds.spec.name}")
    if results is not None:
        store = ResultsStore(Path(results))
        store.ensure_writable()
        store.put(record)
    return record


__all__ = ["load", "evaluate", "TrainedModel", "Prediction"]
