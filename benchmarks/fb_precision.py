"""How many FunnyBirds decisions change when the cached tokens are float16 instead of float32.

    python benchmarks/fb_precision.py --cache /tmp/fbp/cache --results /tmp/fbp/results

The heads are trained once (`xbench run`, quickstart profile, synthbirds, weight-free backbone, float16
cache: what the quickstart does). Then each head is scored twice on the test split and its
interventions: once from the float16 cache entries and once from float32 entries of the same images
(`cache_dtype: float32`), same head, same code. The script counts every decision of the FunnyBirds
suite that differs between the two:

* predictions on the test images and on every intervention image;
* important units per (image, threshold, unit) of the true-class and the predicted-class maps;
* PC and DC outcomes per (image, threshold); CSDC per (image, threshold);
* irrelevant units per (image, unit) (distractibility) and relevant background objects (BI);
* the Spearman rank vectors (part importance, logit drops) of single deletion, per image;
* the target-sensitivity pair choice and outcomes, per image;
* the chosen threshold and every final number,

for both protocols (`xbench` and `reference`). Prints a table and writes it as JSON (`--out`).
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from xbench.cache import FeatureCache
from xbench.config import build_config
from xbench.evaluation import EvalContext
from xbench.extract import Extractor
from xbench.metrics.funnybirds import reference as ref
from xbench.metrics.funnybirds.classes import class_structure
from xbench.metrics.funnybirds.contrastivity import select_pairs
from xbench.metrics.funnybirds.correctness import average_ranks
from xbench.metrics.funnybirds.importance import important_units, thresholds
from xbench.metrics.funnybirds.interventions import intervention_logits, lowers_target
from xbench.metrics.funnybirds.suite import _irrelevant, compute_suite, explained_importance, funnybirds_background
from xbench.methods.base import HeadInfo, Method
from xbench.runner import Runner
from xbench.views import PlainView

METHODS = ("linear-probe-patch", "dino-qpm", "protofm")


def decisions(ctx: EvalContext, protocol: str) -> dict[str, torch.Tensor]:
    """Every decision tensor of the suite (the same steps as `suite.compute_suite`)."""
    reference = protocol == "reference"
    il = intervention_logits(ctx)
    y, pred, p = il.labels, il.predictions, il.num_parts
    cs = class_structure(ctx.dataset, y)
    if reference:
        cs = ref.reference_mss(cs, ctx.dataset.num_classes)
        choice, _ = ref.reference_pairs(il, cs.agreement.numpy())
    else:
        choice = select_pairs(il, cs)
    imp, total, cells = explained_importance(ctx, torch.stack([y, pred, choice.c1, choice.c2], dim=1),
                                             colours=reference)
    ts = thresholds(80)
    imp_true = important_units(imp[:, 0], total[:, 0], ts, cells.valid)
    imp_pred = important_units(imp[:, 1], total[:, 1], ts, cells.valid)
    w = 1 << torch.arange(p)
    bits_pred = (imp_pred[..., :p].long() * w).sum(-1)
    subset_pred = il.subsets.argmax(dim=2)
    pc = subset_pred.gather(1, bits_pred) == pred[:, None]
    dc = subset_pred.gather(1, ((1 << p) - 1) & ~bits_pred) != pred[:, None]
    drops = il.target_logit(y).double()[:, None] - il.single_part_removed(y).double()
    orig = il.target_logit(y)[:, None]
    rule = ref.reference_relevant_background if reference else lowers_target
    return {
        "test predictions": pred[:, None],
        "intervention predictions": subset_pred,
        "important units (true class)": imp_true,
        "important units (predicted class)": imp_pred,
        "PC outcomes": pc,
        "DC outcomes": dc,
        "irrelevant units": _irrelevant(il, cells, 0.05, reference),
        "relevant background objects": rule(orig, il.object_removed(y), 0.05) & il.object_valid,
        "SD importance ranks": average_ranks(imp[:, 0, :p]),
        "SD drop ranks": average_ranks(drops),
        "TS pairs": torch.stack([choice.c1, choice.c2, choice.ok.long()], dim=1),
    }


def compare(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, tuple[int, int, int]]:
    """(changed entries, images with a change, entries) per decision."""
    out = {}
    for k in a:
        diff = a[k] != b[k]
        per_image = diff.reshape(diff.shape[0], -1).any(dim=1)
        out[k] = (int(diff.sum()), int(per_image.sum()), int(diff.numel()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="/tmp/fbp/cache")
    ap.add_argument("--results", default="/tmp/fbp/results")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", default=None, help="write the counts as JSON here")
    args = ap.parse_args()
    methods = args.methods.split(",")
    cfg = build_config({}, {"methods": methods, "metrics": ["accuracy"], "cache": args.cache,
                            "results": args.results, "quiet": True})
    t0 = time.perf_counter()
    runner = Runner(cfg)
    summary = runner.run()
    print(f"trained {len(summary.done)} head(s), {len(summary.skipped)} already there ({time.perf_counter() - t0:.0f} s)")
    ds = runner.dataset("synthbirds")
    extractors = {dt: Extractor(runner.backbone, FeatureCache(args.cache), "cpu", batch_size=64, num_workers=1,
                                show_progress=False, cache_dtype=dt) for dt in ("float16", "float32")}
    report: dict = {"machine": platform.platform(), "dataset": ds.fingerprint(), "methods": {}}
    for job in runner.plan():
        store = extractors["float16"].store(ds, "test", PlainView())
        info = HeadInfo(num_classes=ds.num_classes, grid=store.grid, dim=store.dim, num_registers=store.num_registers,
                        backbone=runner.backbone.name, weights_hash=runner.backbone.weights_hash)
        head = Method.load(runner.store.head_dir(job.job_id), expect=info).eval()
        per_protocol = {}
        for protocol in ("xbench", "reference"):
            dec, values = {}, {}
            for dt, ex in extractors.items():
                ctx = EvalContext(head, ds, ex, device="cpu", seed=job.seed, batch_size=64, show_progress=False,
                                  options={"funnybirds": {"protocol": protocol}})
                with torch.no_grad():
                    dec[dt] = decisions(ctx, protocol)
                    r = compute_suite(ctx)
                values[dt] = {**r.values(), "threshold": r.threshold,
                              "background_independence": funnybirds_background(ctx).value}
            per_protocol[protocol] = {"changes": compare(dec["float16"], dec["float32"]), "values": values}
        report["methods"][job.method] = per_protocol
        print(f"\n{job.method}")
        for protocol, res in per_protocol.items():
            print(f"  protocol {protocol}")
            for k, (n, imgs, tot) in res["changes"].items():
                print(f"    {k:38s} {n:7d} of {tot:9d} entries changed, on {imgs} image(s)")
            v16, v32 = res["values"]["float16"], res["values"]["float32"]
            diffs = {k: (v16[k], v32[k]) for k in v16 if not (v16[k] == v32[k] or (v16[k] != v16[k] and v32[k] != v32[k]))}
            print(f"    numbers that differ: {diffs if diffs else 'none'}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
