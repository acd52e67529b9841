"""`xbench explain`: draw the explanation score sheet of one image (`xbench.figures.explanation`).

Two forms:

* `xbench explain --run RUN --image FILE --out FILE.png`: any image, a trained head (RUN as in
  `xbench.load`: RESULTS/JOB_ID, a record file or a head folder);
* `xbench explain --method M --dataset D --index I [--results DIR] [--seed S] [--backbone B]
  --out FILE.png`: test image I of dataset D (a name or folder:PATH), explained by the completed
  job of method M on D in the results store (seed S, default 0; when several jobs match, e.g.
  other backbones or parameters, the newest record is used and named on stderr).

For concept methods the figure shows each top concept's most activating training patches: the
training split's cached tokens are read from the feature cache (`--cache`; extracted now if
missing). With `--run` this needs the job's dataset (rebuilt from its record; `--data-root` for
the registered datasets); when it is not available, the figure is drawn without training patches
and the reason printed on stderr. `--no-train-patches` skips them.
"""
from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="draw what a trained model looks at in one image (PNG)",
                       description="Draw the image, the class attribution overlay and, for concept methods, the top "
                       "concepts with their maps and most activating training patches.")
    src = p.add_argument_group("which image and model (give --run and --image, or --method, --dataset and --index)")
    src.add_argument("--run", help="trained job: RESULTS/JOB_ID (a unique prefix is enough), a record .json or a head "
                     "folder")
    src.add_argument("--image", help="image file to explain (with --run)")
    src.add_argument("--method", help="method name (with --dataset and --index)")
    src.add_argument("--dataset", help="dataset name or folder:PATH (its test split)")
    src.add_argument("--index", type=int, help="index of the test image")
    src.add_argument("--seed", type=int, default=0, help="seed of the job (default 0)")
    src.add_argument("--backbone", help="backbone of the job, when the results hold several")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--target", help="class to explain (index or name; default: the predicted class)")
    p.add_argument("--top-concepts", type=int, default=3, help="concepts shown (default 3)")
    p.add_argument("--patches", type=int, default=5, help="training patches per concept (default 5)")
    p.add_argument("--no-train-patches", action="store_true", help="do not look up training patches")
    p.add_argument("--results", default="xbench-results", help="results folder (default: ./xbench-results)")
    p.add_argument("--cache", help="feature cache folder (default: $XBENCH_CACHE or ~/.cache/xbench/features)")
    p.add_argument("--data-root", help="dataset root (default: $XBENCH_DATA or ~/.cache/xbench/data)")
    p.add_argument("--weights", help="backbone weights to use instead of the record's (e.g. a moved .pth file)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def find_job(results: str, method: str, dataset: str, seed: int, backbone: str | None, data_root: str | None) -> dict:
    """The newest complete record of (method, dataset, seed[, backbone]) in a results folder."""
    from ..errors import ResultsError
    from ..results import ResultsStore
    from ..runner import build_dataset

    name = build_dataset(dataset, {}, data_root).spec.name if dataset.startswith("folder:") else dataset
    recs = [r for r in ResultsStore(results).records(strict=False)
            if r.get("method") == method and r.get("dataset") == name and int(r.get("seed", -1)) == seed
            and r.get("status") == "complete" and (backbone is None or r.get("backbone") == backbone)]
    if not recs:
        bb = f", backbone {backbone}" if backbone else ""
        raise ResultsError(f"no completed job of {method} on {name} (seed {seed}{bb}) in {results}; run it first: "
                           f"xbench run --methods {method} --datasets {dataset} --seeds {seed} --results {results}")
    recs.sort(key=lambda r: str(r.get("provenance", {}).get("date", "")))
    if len(recs) > 1:
        print(f"xbench: {len(recs)} jobs match; using the newest, {recs[-1]['job_id']}", file=sys.stderr)
    return recs[-1]


def _target(value: str | None, names: list[str]) -> int | None:
    from ..errors import ConfigError

    if value is None:
        return None
    if value in names:
        return names.index(value)
    try:
        t = int(value)
    except ValueError:
        raise ConfigError(f"--target {value!r} is neither a class name nor a class index") from None
    if not 0 <= t < len(names):
        raise ConfigError(f"--target {t} is out of range 0..{len(names) - 1}")
    return t


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from ..data.imageio import read_rgb
    from ..errors import ConfigError, UserError
    from ..figures import draw_explanation, top_concepts_for, top_training_patches
    from ..progress import set_quiet
    from ..results import ResultsStore
    from ..trained import load

    set_quiet(bool(args.quiet))
    by_run = args.run is not None or args.image is not None
    by_item = any(v is not None for v in (args.method, args.dataset, args.index))
    if by_run == by_item or (by_run and (args.run is None or args.image is None)) or (
            by_item and None in (args.method, args.dataset, args.index)):
        raise ConfigError("give either --run RUN --image FILE, or --method M --dataset D --index I")
    dataset = None
    if by_run:
        model = load(args.run, weights=args.weights, device=args.device, cache=args.cache, data_root=args.data_root)
        image = read_rgb(args.image)
        title = Path(args.image).name
    else:
        rec = find_job(args.results, args.method, args.dataset, args.seed, args.backbone, args.data_root)
        model = load(ResultsStore(args.results).path(rec["job_id"]), weights=args.weights, device=args.device,
                     cache=args.cache, data_root=args.data_root)
        dataset = model.dataset(args.data_root)
        test = dataset.split("test")
        if not 0 <= args.index < len(test):
            raise ConfigError(f"--index {args.index} is out of range: the test split of {dataset.spec.name} has "
                              f"{len(test)} images (0..{len(test) - 1})")
        image = test.image(args.index)
        title = f"{test.item_id(args.index)} (true: {model.class_names[int(test.labels[args.index])]})"
    target = _target(args.target, model.class_names)
    exp = model.explain([image], target=target)
    t = int(exp.extras["target"][0])
    patches = None
    concepts = top_concepts_for(exp, t, args.top_concepts)
    if concepts and not args.no_train_patches and args.patches > 0:
        try:
            ds = dataset if dataset is not None else model.dataset(args.data_root)
            store = model.train_store(ds)
            patches = top_training_patches(model, store, ds.split("train"), k=args.patches,
                                           concepts=[k for k, *_ in concepts])
        except UserError as err:
            print(f"xbench: drawing without training patches: {err}", file=sys.stderr)
    with torch.set_grad_enabled(bool(model.spec.needs_backbone_graph)):
        out = draw_explanation(exp, image, model.class_names, args.out, target=t, top_concepts=args.top_concepts,
                               train_patches=patches, title=title)
    print(f"wrote {out}")
    return 0
