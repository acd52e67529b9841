"""ProtoFM alignment-loss ablation on synthbirds (SPEC 3.4: without it the head collapses).

Trains `protofm` twice on the same cached tokens (weight-free backbone by
default), once as configured and once with `w_align = 0`, and prints for each:
test accuracy and the prototype usage over every test patch (entropy in nats,
perplexity = exp(entropy), prototypes used = arg-max of >= 1 patch, share of
the most used prototype). Example (the quickstart setting):

    python benchmarks/protofm_ablation.py --cache /tmp/me/cache --profile quickstart

`--set key=value` overrides any ProtoFM parameter (both runs); `--seeds 0 1 2`
repeats over seeds. With `--profile quickstart` the method's and the dataset's
quickstart overrides apply, as in `xbench run` on the weight-free backbone.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import xbench.methods  # noqa: F401  (registers protofm)
from xbench.backbones import build_backbone
from xbench.cache import FeatureCache
from xbench.extract import Extractor
from xbench.methods.base import Batch, FitContext, HeadInfo, TrainData, parse_params
from xbench.methods.protofm.method import ProtoFM
from xbench.methods.protofm.usage import UsageCounter
from xbench.runner import build_dataset
from xbench.views import PlainView


def prepare(dataset: str, options: dict, backbone: str, weights: str | None, cache: Path, device: str = "cpu"):
    """(dataset, extractor, train store, test store, HeadInfo)."""
    ds = build_dataset(dataset, options, None)
    bb = build_backbone(backbone, weights)
    ex = Extractor(bb, FeatureCache(cache), device, batch_size=64, num_workers=0, show_progress=True)
    train, test = ex.store(ds, "train", PlainView()), ex.store(ds, "test", PlainView())
    info = HeadInfo(num_classes=ds.num_classes, grid=train.grid, dim=train.dim, num_registers=train.num_registers,
                    backbone=bb.name, weights_hash=bb.weights_hash)
    return ds, ex, train, test, info


def train_and_measure(ds, ex, train, test, info, overrides: dict, seed: int, device: str = "cpu",
                      show_progress: bool = False) -> dict:
    """Fit protofm with `overrides` and return accuracy, test-patch usage and fit time."""
    params = parse_params(ProtoFM, overrides)
    torch.manual_seed(seed)
    model = ProtoFM(info, params).to(device)
    views = {k: ex.store(ds, "train", v) for k, v in model.extra_views().items()}
    sp = ds.split("train")
    targets = None  # soft multi-targets where the dataset has them, as the runner does
    if "multi_target" in ds.spec.annotations:
        targets = np.stack([sp.targets(i) for i in range(len(sp))])
    data = TrainData(train, np.asarray(sp.labels), targets, ds.num_classes, torch.device(device), views)
    t0 = time.perf_counter()
    log = model.fit(data, FitContext(device=torch.device(device), seed=seed, show_progress=show_progress))
    fit_s = time.perf_counter() - t0
    model.eval()
    usage = UsageCounter(params.num_prototypes)
    correct = 0
    labels = torch.as_tensor(np.asarray(ds.split("test").labels))
    with torch.no_grad():
        for idx, tok in test.batches(256, device=device):
            exp = model.explain(Batch(tokens=tok, index=idx))
            usage.add(exp.extras["assignment"], dim=1)
            correct += int((exp.logits.argmax(1).cpu() == labels[idx]).sum())
    return {"accuracy": correct / len(labels), "usage_test": usage.summary(),
            "usage_train_last_epoch": log["prototype_usage_train"], "fit_s": round(fit_s, 1),
            "final_losses": log["final"]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--dataset", default="synthbirds")
    ap.add_argument("--options", default="{}", help="dataset options as JSON")
    ap.add_argument("--backbone", default="weight-free")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--profile", default="quickstart", choices=["quickstart", "paper"])
    ap.add_argument("--set", nargs="*", default=[], help="PARAM=VALUE overrides for both runs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    base = dict(ProtoFM.quickstart) if args.profile == "quickstart" else {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        base[k] = v
    options = json.loads(args.options)
    if args.profile == "quickstart":  # the dataset's quickstart overrides, as the runner applies them
        from xbench.registry import DATASETS

        options = dict(getattr(DATASETS.get(args.dataset).obj, "quickstart", {}) or {}) | options
    ds, ex, train, test, info = prepare(args.dataset, options, args.backbone, args.weights, args.cache, args.device)
    for seed in args.seeds:
        for name, extra in (("with alignment", {}), ("without alignment", {"w_align": 0.0})):
            r = train_and_measure(ds, ex, train, test, info, base | extra, seed, args.device, show_progress=True)
            u = r["usage_test"]
            print(f"seed {seed} {name:18s} acc {100 * r['accuracy']:5.1f}%  entropy {u['entropy']:.3f} nats  "
                  f"perplexity {u['perplexity']:6.1f}  used {u['used']:3d}/{info and base.get('num_prototypes', 300)}"
                  f"  top1 share {u['top1_share']:.3f}  fit {r['fit_s']}s", flush=True)
            print("   ", json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
