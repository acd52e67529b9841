"""Feature-extraction speed: xbench's cached extractor vs a bare timm forward loop (issue 3).

Both sides see the same images (synthbirds test split, rendered at the
backbone's resolution), the same model object and the same batch size, in one
process, alternating, so machine load hits both alike:

* **bare, preloaded**: the images are decoded and normalised before the clock
  starts; the loop is only `model.forward_features(batch)` (the strictest
  baseline: no loading at all);
* **bare, DataLoader**: the loop a researcher would write: a torch DataLoader
  (same worker count) yields normalised batches, `model.forward_features`, and
  the tokens are kept in memory;
* **xbench**: `Extractor.store(...)` into an empty cache directory: loading in
  DataLoader workers, the backbone, the fp16 memory-mapped write with chunk
  checksums, the index and the completion marker.

Tokens/s = images/s x (grid^2 + 1 + registers). Run:

    python benchmarks/bench_extract.py                       # ViT-S/14 DINOv2, random weights, CPU
    python benchmarks/bench_extract.py --device cuda --backbone vit_base_patch14_dinov2 --images 2048 --batch-size 128

Random weights: the speed of a forward does not depend on the weights' values.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from xbench.backbones.build import build_backbone
from xbench.cache import FeatureCache
from xbench.data.synthbirds import SynthBirds
from xbench.extract import Extractor
from xbench.views.plain import PlainView


class _Images(torch.utils.data.Dataset):
    def __init__(self, view, split, index, pre):
        self.args = (view, split, index, pre)

    def __len__(self) -> int:
        return len(self.args[2])

    def __getitem__(self, j: int) -> torch.Tensor:
        view, split, index, pre = self.args
        return view.load(split, index, j, pre)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="vit_small_patch14_dinov2")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    bb = build_backbone(args.backbone, weights="random").to(device).eval()
    per_class = -(-args.images // 50)
    ds = SynthBirds(num_classes=50, train_per_class=1, test_per_class=per_class, resolution=bb.image_size)
    split = ds.split("test")
    view = PlainView()
    index = view.index(split)
    n = len(index)  # --images rounded up to whole classes
    tokens_per_image = bb.grid ** 2 + 1 + bb.num_registers
    amp = device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else torch.no_grad

    images = torch.stack([view.load(split, index, j, bb.preprocessing) for j in range(n)])
    model = bb.model  # the timm VisionTransformer inside xbench's wrapper

    @torch.no_grad()
    def bare_preloaded() -> float:
        _sync(device)
        t0 = time.perf_counter()
        for s in range(0, n, args.batch_size):
            with autocast():
                model.forward_features(images[s:s + args.batch_size].to(device, non_blocking=True))
        _sync(device)
        return time.perf_counter() - t0

    @torch.no_grad()
    def bare_loader() -> float:
        sub = torch.utils.data.Subset(_Images(view, split, index, bb.preprocessing), range(n))
        dl = torch.utils.data.DataLoader(sub, batch_size=args.batch_size, num_workers=args.workers,
                                         pin_memory=amp)
        _sync(device)
        t0 = time.perf_counter()
        kept = []
        for x in dl:
            with autocast():
                kept.append(model.forward_features(x.to(device, non_blocking=True)).float().cpu())
        _sync(device)
        return time.perf_counter() - t0

    def xbench_cached() -> float:
        with tempfile.TemporaryDirectory() as root:
            ex = Extractor(bb, FeatureCache(root), device=device, batch_size=args.batch_size,
                           num_workers=args.workers, show_progress=False)
            sub = SynthBirds(num_classes=50, train_per_class=1, test_per_class=per_class,
                             resolution=bb.image_size)
            _sync(device)
            t0 = time.perf_counter()
            store = ex.store(sub, "test", view)
            _sync(device)
            dt = time.perf_counter() - t0
            assert len(store) == len(index)
        return dt

    bare_preloaded()  # warm-up (allocator, kernels)
    times: dict[str, list[float]] = {"bare, preloaded": [], "bare, DataLoader": [], "xbench extractor": []}
    for _ in range(args.repeats):
        times["bare, preloaded"].append(bare_preloaded())
        times["bare, DataLoader"].append(bare_loader())
        times["xbench extractor"].append(xbench_cached())

    print(f"{args.backbone} (random weights), {n} images at {bb.image_size} px, batch {args.batch_size}, "
          f"{args.workers} loader worker(s), device {device}, torch threads {torch.get_num_threads()}, "
          f"median of {args.repeats}")
    print(f"{'loop':<18} {'seconds':>8} {'images/s':>9} {'tokens/s':>10} {'xbench speed / this':>21}")
    xb = statistics.median(times["xbench extractor"])
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"{name:<18} {t:8.2f} {n / t:9.1f} {n * tokens_per_image / t:10.0f} {t / xb:21.3f}")


if __name__ == "__main__":
    main()
