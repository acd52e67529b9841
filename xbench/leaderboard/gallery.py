"""Explanation galleries: a few test images per method, drawn with the explanation score sheet
(`xbench.figures.draw_explanation`: the image, the class evidence overlay, the top classes and, for
concept methods, the top concepts with their maps and most activating training patches).

Choices:

* one gallery per dataset table; per method row, the head of its complete job with the lowest
  seed (`xbench.load` rebuilds the backbone from the record: ``random`` weights come back
  identical, ``weight-free`` has none, pretrained / file weights need the same source, and a
  weights-hash mismatch is refused);
* the same test images for every method of a table: `per_method` indices evenly spaced over the
  test split (``round(j (n - 1) / (per_method - 1))``), so the gallery spans classes;
* the explanation of the images is computed in one batch per method; the target is the predicted
  class; concept methods show their top `top_concepts` concepts and `patches` training patches
  each (one scan of the cached training tokens per method, extracted if the cache lacks them);
* anything that stops a gallery (dataset not on this machine, weights unavailable, head missing)
  becomes a note in the leaderboard, never an error: the tables do not depend on it.

Files: ``plots/<table key>_gallery_<method slug>_<hash>_<j>.png`` (PNG only).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

from ..errors import UserError
from ..results import ResultsStore
from .model import Asset, Leaderboard
from .plots import mpl_text
from .tables import Table, slug


def gallery_indices(n: int, k: int) -> list[int]:
    """k test indices evenly spaced over n items (all of them when n <= k)."""
    if n <= 0 or k <= 0:
        return []
    if n <= k:
        return list(range(n))
    if k == 1:
        return [0]
    return sorted({round(j * (n - 1) / (k - 1)) for j in range(k)})


def _one(exp, i: int):
    """The batch-of-1 explanation of image i, with its attribution for the predicted class precomputed."""
    from ..explanation import Explanation

    att = exp.extras.get("attribution")
    fn = None
    if att is not None:
        a = att[i:i + 1].detach()
        fn = lambda target, a=a: a  # noqa: E731 - drawn only for the predicted class, the one computed
    pick = (lambda x: None if x is None else x[i:i + 1].detach())
    return Explanation(logits=exp.logits[i:i + 1].detach(), attribution_fn=fn, concept_maps=pick(exp.concept_maps),
                       concept_scores=pick(exp.concept_scores), class_weights=exp.class_weights,
                       class_bias=exp.class_bias)


def method_gallery(store: ResultsStore, t: Table, row: str, out: Path, indices: list[int], dataset,
                   top_concepts: int = 2, patches: int = 3, device: str = "cpu", cache: str | None = None,
                   data_root: str | None = None) -> list[Asset]:
    from ..figures import draw_explanation, top_concepts_for, top_training_patches
    from ..trained import load

    recs = t.row_records(row)
    if not recs:
        return [Asset("gallery", f"{row}: gallery", note="no complete job", group=row)]
    rec = recs[0]
    model = load(store.path(str(rec["job_id"])), device=device, cache=cache, data_root=data_root)
    test = dataset.split("test")
    images = [test.image(i) for i in indices]
    exp = model.explain(images)
    preds = exp.predictions().tolist()
    train_patches = None
    wanted = sorted({k for j in range(len(indices)) for k, *_ in top_concepts_for(_one(exp, j), preds[j],
                                                                                  top_concepts)})
    if wanted and patches > 0:
        train_patches = top_training_patches(model, model.train_store(dataset), dataset.split("train"), k=patches,
                                             concepts=wanted)
    h = hashlib.sha1(row.encode()).hexdigest()[:6]
    assets = []
    labels = test.labels
    for j, i in enumerate(indices):
        rel = Path("plots") / f"{t.key}_gallery_{slug(row, 24)}_{h}_{j}.png"
        true = model.class_names[int(labels[i])]
        title = mpl_text(f"test #{i} (true {true})")
        draw_explanation(_one(exp, j), images[j], [mpl_text(c) for c in model.class_names], out / rel,
                         target=preds[j], top_concepts=top_concepts, train_patches=train_patches, title=title)
        assets.append(Asset("gallery", f"{row} (seed {rec['seed']}): test image {i}, true class {true}", png=str(rel),
                            group=row))
    return assets


def make_gallery(store: ResultsStore, per_method: int = 3, top_concepts: int = 2, patches: int = 3,
                 device: str = "cpu", cache: str | None = None, data_root: str | None = None
                 ) -> Callable[[Leaderboard, Path], dict[str, list[Asset]]]:
    """The gallery step of `write_leaderboard` (see the module docstring)."""

    def gallery(lb: Leaderboard, out: Path) -> dict[str, list[Asset]]:
        from ..trained import dataset_of

        result: dict[str, list[Asset]] = {}
        for t in lb.tables:
            assets: list[Asset] = []
            first = next((r for row in t.methods for r in t.row_records(row)), None)
            if first is None:
                continue
            try:
                dataset = dataset_of(first, data_root)
                indices = gallery_indices(len(dataset.split("test")), per_method)
            except (UserError, OSError) as err:
                result[t.key] = [Asset("gallery", f"explanation gallery of {t.dataset}",
                                       note=f"dataset unavailable here: {str(err).splitlines()[0]}")]
                continue
            for row in t.methods:
                try:
                    assets += method_gallery(store, t, row, out, indices, dataset, top_concepts, patches, device,
                                             cache, data_root)
                except Exception as err:  # a gallery is never worth losing the leaderboard
                    msg = str(err).splitlines()[0] if str(err) else ""
                    kind = "" if isinstance(err, UserError) else f"{type(err).__name__}: "
                    assets.append(Asset("gallery", f"{row}: gallery", note=f"{kind}{msg}", group=row))
            result[t.key] = assets
        return result

    return gallery
