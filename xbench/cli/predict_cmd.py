"""`xbench predict --run RUN --images DIR --out preds.csv`: a trained head's predictions for a folder of images.

Every image file under DIR (recursively; `xbench.data.userfolder.IMAGE_EXTENSIONS`, hidden files
skipped), in sorted relative-path order, in batches. One CSV row per image (written atomically):

    path,class_index,class_name,probability[,concept_1,contribution_1,...,concept_N,contribution_N]

`path` is relative to DIR (POSIX separators); `probability` is the softmax probability of the
predicted class. For concept methods the N (`--top-concepts`, default 3) largest contributions
score_k x W[predicted, k] to the predicted class's logit follow, largest first (fewer positive
contributions leave the remaining cells empty).
"""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict a folder of images with a trained head (CSV)",
                       description="Write per image: path, predicted class (index and name), probability and, for "
                       "concept methods, the top concept contributions.")
    p.add_argument("--run", required=True, help="trained job: RESULTS/JOB_ID (a unique prefix is enough), a record "
                   ".json or a head folder")
    p.add_argument("--images", required=True, help="folder of images (read recursively)")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--top-concepts", type=int, default=3, help="concept contributions per image (default 3)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    p.add_argument("--weights", help="backbone weights to use instead of the record's")
    p.add_argument("--data-root", help="dataset root, to read class names of registered datasets")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    p.set_defaults(func=run)


def image_files(folder: str) -> list[str]:
    """Relative POSIX paths of the image files under `folder`, sorted."""
    from pathlib import Path

    from ..data.folder import files_under
    from ..data.userfolder import is_image
    from ..errors import ConfigError

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ConfigError(f"--images {folder}: no such folder; pass a folder of images")
    files = sorted(f for f in files_under(root) if is_image(f) and not any(s.startswith(".") for s in f.split("/")))
    if not files:
        raise ConfigError(f"--images {folder}: no image files in it (extensions .jpg .jpeg .png .bmp .gif .tif .tiff "
                          f".webp)")
    return files


def predict_rows(model, root: str, files: list[str], top: int, batch_size: int) -> tuple[list[str], list[list]]:
    """(header, rows) of the predictions CSV."""
    from pathlib import Path

    import torch

    from ..figures import top_concepts_for

    concepts = "concepts" in model.provides and top > 0
    header = ["path", "class_index", "class_name", "probability"]
    if concepts:
        for j in range(1, top + 1):
            header += [f"concept_{j}", f"contribution_{j}"]
    rows: list[list] = []
    for s in range(0, len(files), batch_size):
        chunk = files[s:s + batch_size]
        paths = [Path(root) / f for f in chunk]
        if concepts:
            with torch.set_grad_enabled(bool(model.spec.needs_backbone_graph)):
                exp = model.head.explain(model.batch(paths))
            logits = exp.logits.float()
        else:
            logits = model.logits(paths)
        probs = torch.softmax(logits, dim=1)
        pred = logits.argmax(dim=1)
        for b, f in enumerate(chunk):
            c = int(pred[b])
            row: list = [f, c, model.class_names[c], f"{float(probs[b, c]):.6f}"]
            if concepts:
                one = type(exp)(logits=exp.logits[b:b + 1], concept_scores=exp.concept_scores[b:b + 1],
                                class_weights=exp.class_weights)
                tc = top_concepts_for(one, c, top)
                for k, _, _, contrib in tc:
                    row += [k, f"{contrib:.6g}"]
                row += ["", ""] * (top - len(tc))
            rows.append(row)
    return header, rows


def run(args: argparse.Namespace) -> int:
    import csv
    import io

    from ..atomic import atomic_write_text
    from ..trained import load

    files = image_files(args.images)
    model = load(args.run, weights=args.weights, device=args.device, data_root=args.data_root,
                 batch_size=args.batch_size)
    header, rows = predict_rows(model, args.images, files, args.top_concepts, args.batch_size)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    atomic_write_text(args.out, buf.getvalue())
    print(f"wrote {len(rows)} predictions to {args.out}")
    return 0
