"""The FunnyBirds framework's own protocols and xbench's suite on the same head and data, side by side.

    python benchmarks/parity_funnybirds.py --official /path/to/funnybirds-framework \\
        --data-root DATA --run RESULTS/linear-probe-patch__funnybirds [--cache CACHE] [--out FILE.json]

Not a test: it needs a local snapshot of https://github.com/visinf/funnybirds-framework (only
`evaluation_protocols.py`, `datasets/` and `explainers/` are used; nothing of it is copied here) and a
FunnyBirds-layout folder `DATA/FunnyBirds` (the official renders, or `xbench data export synthbirds
--format funnybirds --out DATA/FunnyBirds`) with an xbench head trained on it
(`xbench run --datasets funnybirds --data-root DATA ...`).

The head reaches the framework the way any model would: `model(images)` takes its [B, 3, 256, 256]
tensors in [0, 1] (turned back into the exact uint8 images, then xbench's own preprocessing, backbone and
head) and an explainer subclassing the framework's `AbstractAttributionExplainer` returns the head's
attribution map nearest-upsampled to the image. Tokens are float32 there (as any model outside xbench
computes them); xbench is scored with `cache_dtype` float32 and float16.

Shims applied to the framework in this process only: `torch.Tensor.cuda` returns the tensor itself (the
protocols move tensors to a GPU unconditionally), `base64.decodestring` (removed in Python 3.9) is
`decodebytes`, and `requests` is an empty module when it is not installed (only its renderer client
uses it). The framework's threshold choice lives in its `main`; this script does the same selection
(the first threshold whose CSDC/3 + PC/3 + DC/3 + D beats every earlier one and 0).

Prints every number (accuracy, CSDC, PC, DC, D, BI, SD, TS, threshold, completeness, mean explainability)
from the framework, from xbench's `reference` protocol and from its default protocol, the largest
difference, and the wall time of both sides (official / xbench).
"""
from __future__ import annotations

import argparse
import base64
import json
import math
import platform
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import xbench

METRICS = ["accuracy", "csdc", "pc", "dc", "distractibility", "background_independence", "single_deletion",
           "target_sensitivity", "fb_threshold", "completeness", "mean_explainability"]


def import_framework(path: Path):
    """(evaluation_protocols, explainer_wrapper) modules of the framework snapshot at `path`, with the shims."""
    if not (path / "evaluation_protocols.py").is_file():
        sys.exit(f"--official {path}: no evaluation_protocols.py there; pass a checkout of "
                 f"visinf/funnybirds-framework")
    if not hasattr(base64, "decodestring"):
        base64.decodestring = base64.decodebytes  # type: ignore[attr-defined]
    try:
        import requests  # noqa: F401
    except ImportError:
        sys.modules["requests"] = types.ModuleType("requests")
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    sys.path.insert(0, str(path))
    import evaluation_protocols
    from explainers import explainer_wrapper
    return evaluation_protocols, explainer_wrapper


class HeadAsModel(torch.nn.Module):
    """An xbench `TrainedModel` as a plain image classifier: [B, 3, H, W] in [0, 1] -> logits [B, C]."""

    def __init__(self, trained):
        super().__init__()
        self.trained = trained
        self.calls = 0

    @staticmethod
    def pil(images: torch.Tensor) -> list[Image.Image]:
        arr = (images.detach().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return [Image.fromarray(a) for a in arr]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += len(images)
        with torch.no_grad():
            return self.trained.predict(self.pil(images)).logits.float()


def make_explainer(explainer_wrapper, model: HeadAsModel):
    class HeadExplainer(explainer_wrapper.AbstractAttributionExplainer):
        """The head's class-evidence map for `target`, nearest-upsampled to the image (B = 1)."""

        def __init__(self):
            self.explainer = None
            self.explainer_name = "xbench-attribution"
            self.baseline = None

        def explain(self, input, target):
            t = int(torch.as_tensor(target).reshape(-1)[0])
            with torch.no_grad():
                exp = model.trained.explain(model.pil(input), target=t)
            a = exp.extras["attribution"].float()[:, None]                      # [1, 1, g, g]
            return F.interpolate(a, size=tuple(input.shape[-2:]), mode="nearest")

    return HeadExplainer()


def run_official(ep, ew, model: HeadAsModel, data: Path, nr_itrs: int) -> tuple[dict, float]:
    args = argparse.Namespace(data=str(data), gpu=None, batch_size=32, nr_itrs=nr_itrs)
    explainer = make_explainer(ew, model)
    t0 = time.perf_counter()
    out: dict = {}
    out["accuracy"] = float(ep.accuracy_protocol(model, args))
    csdc = ep.controlled_synthetic_data_check_protocol(model, explainer, args)
    pc = ep.preservation_check_protocol(model, explainer, args)
    dc = ep.deletion_check_protocol(model, explainer, args)
    d = ep.distractibility_protocol(model, explainer, args)
    out["background_independence"] = float(ep.background_independence_protocol(model, args))
    out["single_deletion"] = float(ep.single_deletion_protocol(model, explainer, args))
    out["target_sensitivity"] = float(ep.target_sensitivity_protocol(model, explainer, args))
    seconds = time.perf_counter() - t0
    best_score, best = 0.0, None
    for t in csdc:                                        # the selection of the framework's main
        score = csdc[t] / 3.0 + pc[t] / 3.0 + dc[t] / 3.0 + d[t]
        if score > best_score:
            best_score, best = score, t
    out["fb_threshold"] = float(best)
    out.update(csdc=float(csdc[best]), pc=float(pc[best]), dc=float(dc[best]), distractibility=float(d[best]))
    out["completeness"] = ((out["csdc"] + out["pc"] + out["dc"]) / 3.0 + out["distractibility"]) / 2.0
    out["mean_explainability"] = (out["completeness"] + out["single_deletion"] + out["target_sensitivity"]) / 3.0
    return out, seconds


def run_xbench(run: str, data_root: str, cache: str | None, dtype: str, protocol: str) -> tuple[dict, float, dict]:
    model = xbench.load(run, cache=cache, data_root=data_root, cache_dtype=dtype)
    t0 = time.perf_counter()
    rec = xbench.evaluate(model, "funnybirds", metrics=METRICS, data_root=data_root,
                          metric_options={"funnybirds": {"protocol": protocol}})
    seconds = time.perf_counter() - t0
    vals = {m: rec["metrics"][m].get("value") for m in METRICS}
    counts = rec["metrics"].get("completeness", {}).get("extras", {}).get("counts", {})
    return vals, seconds, counts


def fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, help="folder of a visinf/funnybirds-framework checkout")
    ap.add_argument("--data-root", required=True, help="the folder holding FunnyBirds/")
    ap.add_argument("--run", required=True, help="the trained xbench job (RESULTS/JOB_ID or a record file)")
    ap.add_argument("--cache", default=None, help="xbench feature cache (default: $XBENCH_CACHE)")
    ap.add_argument("--nr-itrs", type=int, default=2501, help="the framework's --nr_itrs (images per protocol)")
    ap.add_argument("--out", default=None, help="write everything as JSON here")
    args = ap.parse_args()
    data = Path(args.data_root) / "FunnyBirds"
    ep, ew = import_framework(Path(args.official).resolve())
    torch.set_grad_enabled(True)

    xb: dict = {}
    for dtype in ("float32", "float16"):
        for protocol in ("reference", "xbench"):
            cold = run_xbench(args.run, args.data_root, args.cache, dtype, protocol)
            warm = run_xbench(args.run, args.data_root, args.cache, dtype, protocol)
            xb[(dtype, protocol)] = {"values": warm[0], "cold_s": cold[1], "warm_s": warm[1], "counts": warm[2]}
            print(f"xbench {protocol:9s} {dtype}: {cold[1]:.1f} s cold (extraction included), {warm[1]:.1f} s warm",
                  flush=True)

    model = HeadAsModel(xbench.load(args.run, cache=args.cache, data_root=args.data_root, cache_dtype="float32"))
    official, official_s = run_official(ep, ew, model, data, args.nr_itrs)
    print(f"official protocols: {official_s:.1f} s, {model.calls} images through the model", flush=True)

    ref32 = xb[("float32", "reference")]["values"]
    cols = [("official", official), ("xbench reference fp32", ref32),
            ("xbench reference fp16", xb[("float16", "reference")]["values"]),
            ("xbench default fp32", xb[("float32", "xbench")]["values"]),
            ("xbench default fp16", xb[("float16", "xbench")]["values"])]
    print("\n| metric | " + " | ".join(c for c, _ in cols) + " | official - reference fp32 |")
    print("|---" * (len(cols) + 2) + "|")
    worst = 0.0
    for m in METRICS:
        a, b = official.get(m), ref32.get(m)
        diff = abs(a - b) if a is not None and b is not None else float("nan")
        worst = max(worst, diff) if not math.isnan(diff) else worst
        print(f"| {m} | " + " | ".join(fmt(v.get(m)) for _, v in cols) + f" | {fmt(diff)} |")
    t_ref = xb[("float32", "reference")]
    print(f"\nlargest |official - xbench reference fp32| = {worst:.2e} (goal <= 1e-4)")
    print(f"time: official {official_s:.1f} s; xbench reference fp32 {t_ref['cold_s']:.1f} s cold, "
          f"{t_ref['warm_s']:.1f} s warm; ratio official / xbench = {official_s / t_ref['cold_s']:.1f}x cold, "
          f"{official_s / t_ref['warm_s']:.1f}x warm")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "machine": platform.platform(), "run": args.run, "data": str(data), "official": official,
            "official_s": official_s, "official_images": model.calls,
            "xbench": {f"{p}/{d}": v for (d, p), v in xb.items()}, "largest_difference": worst,
        }, indent=1, default=str))


if __name__ == "__main__":
    main()
