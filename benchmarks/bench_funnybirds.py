"""Speed of the FunnyBirds suite (SPEC 5.2) against a one-image-at-a-time loop over the same definitions.

    python benchmarks/bench_funnybirds.py --cache /tmp/fb/cache

Setup (not timed, reported): synthbirds (defaults: 50 classes x 10 test images =
500, 256 px), the feature cache of the train / test / intervention views for the
backbone (default the tiny test ViT `dinov2-tiny-test` with random weights, as
the issue asks; `--backbone weight-free --weights none` gives 660-d tokens,
where reading the cached tokens dominates both sides), and a `linear-probe-patch` head trained on the cached train tokens.
The first run extracts the features (the cold time is printed); the timed part
always runs with the cache warm: both implementations read the same cached
tokens, and both read the part maps from the dataset (rendered on demand).

Timed, in one process and one run:

* `vectorised`: the registered suite (`compute_suite` + `background_independence`)
  on a fresh `EvalContext`, the process-wide part-mask memo cleared and the
  stored masks deleted first, so the part maps are rendered and the masks built:
  intervention logits in batches, explanations in batches, tensor math over
  images x thresholds x units;
* `naive`: the per-image statement of the suite that the tests also check it
  against (`xbench.metrics.funnybirds.per_image`), image by image: the model on
  each intervention (batch of one), one explanation per image and target, the
  map upsampled and each unit's mask dilated per image, Python sets per
  threshold. It is also a cross-check: every curve and number must agree.

* `vectorised, masks from the cache`: the same suite in a fresh context with the
  process memo cleared, so the unit masks come from the file the first call
  stored beside the tokens: what another process pays (a later `xbench run`,
  a Slurm array task);
* `vectorised, masks shared`: the same suite once more on a fresh `EvalContext`
  without clearing the part-mask memo: what every further method and seed of
  one `xbench run` pays (the unit masks depend on the dataset alone).

Prints images per second for both and their ratios (the goal is >= 10x).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from xbench.backbones import build_backbone
from xbench.cache import FeatureCache
from xbench.evaluation import EvalContext
from xbench.extract import Extractor
from xbench.metrics.funnybirds.masks import clear_shared
from xbench.metrics.funnybirds.per_image import cached_queries, per_image_suite
from xbench.metrics.funnybirds.suite import compute_suite, funnybirds_background
from xbench.methods.base import Batch, FitContext, HeadInfo, TrainData
from xbench.methods.linear_probe import LinearParams, LinearProbePatch
from xbench.registry import DATASETS
from xbench.views import InterventionView, PlainView


# the naive reference: the suite image by image, the same module the tests check the suite against -----
def naive_suite(model, ds, test_store, view_store, n_thr: int = 80, relevance: float = 0.05) -> dict:
    """`per_image.per_image_suite` (xbench protocol) on the same cached tokens, one image (batch of one) per call."""
    return per_image_suite(ds, cached_queries(model, ds, test_store, view_store, Batch), protocol="xbench",
                           n_thresholds=n_thr, relevance=relevance)


def agree(res, bi: float, ref: dict, tol: float = 1e-9) -> list[str]:
    """Differences between the vectorised result and the naive one (empty when they agree)."""
    bad = []
    for name in ("csdc", "pc", "dc", "d"):
        a, b = getattr(res, name).numpy(), np.asarray(ref[name])
        if not np.allclose(a, b, atol=tol, equal_nan=True):
            bad.append(f"{name}: max diff {np.nanmax(np.abs(a - b)):.3g}")
    if res.index != ref["index"]:
        bad.append(f"threshold index {res.index} != {ref['index']}")
    for name, v in (("sd", res.sd), ("ts", res.ts), ("bi", bi)):
        if not ((math.isnan(v) and math.isnan(ref[name])) or abs(v - ref[name]) <= tol):
            bad.append(f"{name}: {v} != {ref[name]}")
    if res.counts["ts_skipped"] != ref["ts_skipped"]:
        bad.append(f"ts_skipped {res.counts['ts_skipped']} != {ref['ts_skipped']}")
    return bad


# setup -------------------------------------------------------------------------------------------
def train_head(store, ds, epochs: int, seed: int) -> LinearProbePatch:
    sp = ds.split("train")
    targets = np.stack([sp.targets(i) for i in range(len(sp))])
    info = HeadInfo(num_classes=ds.num_classes, grid=store.grid, dim=store.dim, num_registers=store.num_registers)
    model = LinearProbePatch(info, LinearParams(epochs=epochs))
    data = TrainData(store, np.asarray(sp.labels), targets, ds.num_classes, torch.device("cpu"))
    model.fit(data, FitContext(device=torch.device("cpu"), seed=seed, show_progress=False))
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="/tmp/xbench-bench-funnybirds", help="feature cache folder (kept between runs)")
    ap.add_argument("--backbone", default="dinov2-tiny-test")
    ap.add_argument("--weights", default="random")
    ap.add_argument("--classes", type=int, default=50)
    ap.add_argument("--train-per-class", type=int, default=40)
    ap.add_argument("--test-per-class", type=int, default=10)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=30, help="linear-probe-patch training epochs")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args(argv)

    ds = DATASETS.get("synthbirds").obj(num_classes=args.classes, train_per_class=args.train_per_class,
                                         test_per_class=args.test_per_class, resolution=args.resolution)
    ex = Extractor(build_backbone(args.backbone, args.weights), FeatureCache(args.cache), "cpu",
                   batch_size=args.batch_size, show_progress=True)
    setup = {}
    for split, view in (("train", PlainView()), ("test", PlainView()), ("test", InterventionView())):
        t = time.perf_counter()
        store = ex.store(ds, split, view)
        setup[f"extract {split}/{view.kind} ({len(store)} items) s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    model = train_head(ex.store(ds, "train", PlainView()), ds, args.epochs, args.seed)
    setup["train linear-probe-patch s"] = round(time.perf_counter() - t, 2)
    n = len(ds.split("test"))

    clear_shared()
    shutil.rmtree(Path(args.cache) / "annotations", ignore_errors=True)   # masks not stored yet: built here
    ctx = EvalContext(model, ds, ex, device="cpu", seed=args.seed, batch_size=args.batch_size, show_progress=False)
    t = time.perf_counter()
    res = compute_suite(ctx)
    bi = funnybirds_background(ctx).value
    t_vec = time.perf_counter() - t
    parts = {k: round(v, 3) for k, v in ctx.timings.items() if not k.startswith("store:")}
    # another process (a method, seed or Slurm task after the first): the masks are read from the cache folder
    clear_shared()
    ctx_disk = EvalContext(model, ds, ex, device="cpu", seed=args.seed, batch_size=args.batch_size,
                           show_progress=False)
    t = time.perf_counter()
    compute_suite(ctx_disk)
    funnybirds_background(ctx_disk)
    t_disk = time.perf_counter() - t
    # a second method / seed in the same process: the part masks (a function of the dataset alone) are shared
    ctx2 = EvalContext(model, ds, ex, device="cpu", seed=args.seed, batch_size=args.batch_size, show_progress=False)
    t = time.perf_counter()
    compute_suite(ctx2)
    funnybirds_background(ctx2)
    t_shared = time.perf_counter() - t

    test_store, view_store = ex.store(ds, "test", PlainView()), ex.store(ds, "test", InterventionView())
    t = time.perf_counter()
    ref = naive_suite(model, ds, test_store, view_store)
    t_naive = time.perf_counter() - t
    bad = agree(res, bi, ref)

    out = {
        "images": n, "backbone": args.backbone, "resolution": args.resolution,
        "intervention_items": len(view_store), "setup (not timed; cache warm when ~0)": setup,
        "vectorised_s": round(t_vec, 3), "vectorised_img_per_s": round(n / t_vec, 1),
        "vectorised_parts_s (memo timings, nested)": parts,
        "naive_s": round(t_naive, 3), "naive_img_per_s": round(n / t_naive, 2),
        "speedup": round(t_naive / t_vec, 1),
        "vectorised_masks_from_cache_s": round(t_disk, 3),
        "speedup_masks_from_cache": round(t_naive / t_disk, 1),
        "vectorised_masks_shared_s": round(t_shared, 3),
        "speedup_masks_shared": round(t_naive / t_shared, 1),
        "values": {**{k: round(v, 4) for k, v in res.values().items()}, "background_independence": round(bi, 4),
                   "threshold": round(res.threshold, 4)},
        "cross_check": "identical" if not bad else bad,
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    if bad:
        raise SystemExit("the vectorised suite and the naive loop disagree: " + "; ".join(bad))


if __name__ == "__main__":
    main()
