"""Rendering speed of the built-in synthbirds dataset (SPEC 1.1: >= 200 images/s at 224 px on one core).

Run pinned to one core, e.g.:

    taskset -c 0 python benchmarks/bench_synthbirds.py

Prints images per second for image-only renders (what training / feature
extraction needs), for image + part map + keypoints + fg mask in one render,
and for the 32 part interventions of one image (shared scene layout), at each
resolution asked for.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import time  # noqa: E402

from xbench.data.synthbirds import PART_NAMES, SynthBirds  # noqa: E402
from xbench.data.synthbirds.render import render  # noqa: E402


def _rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolutions", type=int, nargs="+", default=[224, 256])
    ap.add_argument("-n", "--images", type=int, default=1000, help="images per measurement")
    ap.add_argument("--split", default="train", choices=["train", "test"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"synthbirds render speed, split={args.split}, {args.images} images per row, cpu affinity {affinity}")
    subsets = [c for r in range(len(PART_NAMES) + 1) for c in itertools.combinations(PART_NAMES, r)]
    for res in args.resolutions:
        ds = SynthBirds(num_classes=50, train_per_class=max(1, args.images // 50 + 1),
                        test_per_class=max(1, args.images // 50 + 1), resolution=res, seed=args.seed)
        split = ds.split(args.split)
        split.render(0, maps=False)  # warm caches (geometry, grids)
        img = _rate(lambda i: split.render(i, maps=False), args.images)
        full = _rate(lambda i: split.render(i), args.images)

        def interventions(i: int) -> None:
            lay = split.layout(i)
            for keep in subsets:
                render(lay, sum(1 << PART_NAMES.index(p) for p in keep), maps=False)

        n_iv = max(1, args.images // len(subsets))
        iv = _rate(interventions, n_iv) * len(subsets)
        print(f"{res:4d} px  image only: {img:7.0f} img/s   image+part map+keypoints+mask: {full:7.0f} img/s   "
              f"interventions (32 per image): {iv:7.0f} img/s")


if __name__ == "__main__":
    main()
