"""The explanation figure ("score sheet", after ProtoFM): what a model looks at in one image.

Public functions (the leaderboard's galleries call them):

* `explanation_figure(model, image, tokens, class_names, out_path, target=None, top_concepts=3,
  train_patches=None, images=None, title=None) -> Path`: explains one image with a trained head
  (`model` is a `Method` or what `xbench.load` returns; `tokens` its backbone tokens, batch of 1,
  e.g. `store.tokens([i])` from the feature cache; `images` the normalised image [1, 3, S, S],
  needed only by methods with `needs_backbone_graph`, which must have the extractor attached) and
  draws it with `draw_explanation`;
* `draw_explanation(explanation, image, class_names, out_path, ...) -> Path`: the drawing alone,
  from an `Explanation` of a batch of 1;
* `top_training_patches(model, train_store, split, k)` (from `xbench.figures.patches`): per
  concept, its most activating training patches, to pass as `train_patches`.

Layout (a matplotlib figure saved as PNG, atomically):

* first row: the image; the class attribution overlay for the target class; the five most
  probable classes with their softmax probabilities;
* for concept methods, one row per top concept: the concept's map over the image, titled with
  its id and contribution to the target class, then its most activating training patches.

Choices:

* target = the given class, else the predicted one (argmax of the logits);
* top concepts = the `top_concepts` largest contributions score_k x W[target, k] (the terms of
  the target logit, SPEC 4), largest first; concepts with zero contribution are not shown;
* maps (token grid) are upsampled to the image bilinearly and drawn with alpha 0.5 over it; a
  map with negative and positive values uses a diverging colormap centred on 0 (RdBu_r, limits
  +-max |value|), a non-negative map `inferno` from 0 to its max; the image is shown at its native
  aspect, at most `display` pixels on its long side.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..atomic import atomic_save
from ..explanation import Explanation
from .patches import TrainingPatch, top_training_patches

ALPHA = 0.5
DISPLAY = 320


def _display(image: Image.Image, display: int) -> Image.Image:
    img = image.convert("RGB")
    s = display / max(img.size)
    if s < 1:
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.BILINEAR)
    return img


def _upsample(m: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """[g, g] map -> [H, W] float array (bilinear)."""
    x = m.detach().float().cpu()[None, None]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def _overlay(ax: Any, img: Image.Image, m: torch.Tensor, title: str) -> None:
    arr = _upsample(m, (img.height, img.width))
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0 < hi:
        lim = max(-lo, hi)
        cmap, vmin, vmax = "RdBu_r", -lim, lim
    else:
        cmap, vmin, vmax = "inferno", min(lo, 0.0), (hi if hi > 0 else 1.0)
    ax.imshow(np.asarray(img))
    ax.imshow(arr, cmap=cmap, vmin=vmin, vmax=vmax, alpha=ALPHA)
    ax.set_title(title, fontsize=8)


def top_concepts_for(exp: Explanation, target: int, n: int) -> list[tuple[int, float, float, float]]:
    """[(concept id, score, weight, contribution)] of the n largest positive contributions to class `target`."""
    if exp.concept_scores is None or exp.class_weights is None or n <= 0:
        return []
    s = exp.concept_scores[0].detach().float().cpu()
    w = exp.class_weights[int(target)].detach().float().cpu()
    contrib = s * w
    order = torch.argsort(contrib, descending=True, stable=True)[:n]
    return [(int(k), float(s[k]), float(w[k]), float(contrib[k])) for k in order if float(contrib[k]) > 0]


def draw_explanation(explanation: Explanation, image: Image.Image, class_names: Sequence[str],
                     out_path: str | Path, target: int | None = None, top_concepts: int = 3,
                     train_patches: dict[int, list[Any]] | None = None, title: str | None = None,
                     display: int = DISPLAY) -> Path:
    """Draw the score sheet of a batch-of-1 explanation over `image`; returns `out_path` (PNG)."""
    from matplotlib.figure import Figure

    exp = explanation
    logits = exp.logits[0].detach().float().cpu()
    probs = torch.softmax(logits, dim=0)
    pred = int(logits.argmax())
    t = pred if target is None else int(target)
    names = [str(c) for c in class_names] if class_names else [str(c) for c in range(len(logits))]
    concepts = top_concepts_for(exp, t, top_concepts)
    n_patch = max((len(train_patches.get(k, [])) for k, *_ in concepts), default=0) if train_patches else 0
    cols = max(3, 1 + n_patch)
    rows = 1 + len(concepts)
    img = _display(image, display)
    fig = Figure(figsize=(2.3 * cols, 2.5 * rows), dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    axes[0, 0].imshow(np.asarray(img))
    axes[0, 0].set_title(title or "image", fontsize=8)
    what = f"{names[t]} ({'predicted' if t == pred else 'given'})"
    if exp.attribution_fn is not None:
        with torch.enable_grad():  # gradient-based attributions (Grad-CAM) need it; others ignore it
            att = exp.attribution(t)[0]
        _overlay(axes[0, 1], img, att, f"evidence for {what}")
    else:
        axes[0, 1].text(0.5, 0.5, "this method gives\nno attribution map", ha="center", va="center", fontsize=8)
    top = torch.argsort(probs, descending=True)[:5]
    lines = [f"{'>' if int(c) == t else ' '} {names[int(c)][:24]}: {float(probs[c]):.3f}" for c in top]
    axes[0, 2].text(0.0, 1.0, "top classes (softmax)\n" + "\n".join(lines), ha="left", va="top", fontsize=8,
                    family="monospace")
    for r, (k, s, w, c) in enumerate(concepts, start=1):
        _overlay(axes[r, 0], img, exp.concept_maps[0, k], f"concept {k}: {s:.3g} x {w:.3g} = {c:.3g}")
        patches = (train_patches or {}).get(k, [])
        for j, p in enumerate(patches[:cols - 1], start=1):
            pim = p.image if isinstance(p, TrainingPatch) else p
            axes[r, j].imshow(np.asarray(pim.convert("RGB")))
            if isinstance(p, TrainingPatch):
                axes[r, j].set_title(f"train #{p.index} ({p.value:.3g})", fontsize=7)
        if not patches and cols > 1:
            axes[r, 1].text(0.5, 0.5, "no training\npatches", ha="center", va="center", fontsize=8)
    fig.suptitle(f"prediction: {names[pred]} (p = {float(probs[pred]):.3f})", fontsize=10)
    fig.tight_layout()
    out = Path(out_path)
    atomic_save(out, lambda p: fig.savefig(p, format="png"))
    return out


def explanation_figure(model: Any, image: Image.Image, tokens: Any, class_names: Sequence[str],
                       out_path: str | Path, target: int | None = None, top_concepts: int = 3,
                       train_patches: dict[int, list[Any]] | None = None, images: torch.Tensor | None = None,
                       title: str | None = None) -> Path:
    """Explain one image with a trained head and draw its score sheet (see the module docstring)."""
    from xbench.method_api import Batch

    head = getattr(model, "head", model)
    needs_graph = bool(head.spec.needs_backbone_graph)
    with torch.set_grad_enabled(needs_graph):
        exp = head.explain(Batch(tokens=tokens, images=images))
        return draw_explanation(exp, image, class_names, out_path, target=target, top_concepts=top_concepts,
                                train_patches=train_patches, title=title)


__all__ = ["explanation_figure", "draw_explanation", "top_concepts_for", "top_training_patches", "TrainingPatch"]
