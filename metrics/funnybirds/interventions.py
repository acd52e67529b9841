"""The model's logits on every intervention of every test image, as dense tensors (SPEC 5.2).

`ctx.logits("test", InterventionView())` runs the model over the cached tokens of
the whole intervention view in batches (the backbone saw those images once, in
the feature cache). Its rows are then scattered, by the view's metadata, into

* `subsets [N, 2^P, C]`: the image with exactly the parts of bitmask `keep` kept
  (bit p = `dataset.part_names[p]`; `keep = 2^P - 1` is the unchanged image);
* `objects [N, O, C]`: the image with background object j alone removed
  (`object_valid [N, O]` marks the objects an image has; the rest is padding).

`original [N, C]` are the logits of the plain test view (what the explanation
sees); `subsets[:, 2^P - 1]` is the same image re-rendered and equals it.

The 5 % relevance rule shared by distractibility and background independence
(`lowers_target`): removing a unit *lowers the target logit by at least 5 %* iff

    d = logit(original) - logit(removed) > 0   and   d >= 0.05 * |logit(original)|.

Choices: the 5 % is of the absolute logit, so the rule also works for negative
logits; d > 0 is required, so a removal that leaves the logit unchanged (or
raises it) never counts as relevant, also when the logit is 0. Distractibility
calls a unit *irrelevant* exactly when this rule is false ("changes the target
logit by less than 5 % of it, or raises it"), which is FunnyBirds' rule
(|d| < |0.05 logit| or a raise) for every logit except exactly 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from xbench.errors import DataError
from xbench.evaluation import EvalContext
from xbench.views import InterventionView

#: fraction of the target logit a removal must take away to count as relevant
RELEVANCE = 0.05


@dataclass
class InterventionLogits:
    original: torch.Tensor       # float [N, C]: plain test images
    subsets: torch.Tensor        # float [N, 2^P, C]: parts of bitmask `keep` kept
    objects: torch.Tensor        # float [N, O, C]: background object j removed (padding where invalid)
    object_valid: torch.Tensor   # bool [N, O]
    labels: torch.Tensor         # long [N]
    num_parts: int

    @property
    def full(self) -> int:
        """The bitmask with every part kept."""
        return (1 << self.num_parts) - 1

    @property
    def predictions(self) -> torch.Tensor:
        """long [N]: the model's prediction on the unchanged image."""
        return self.original.argmax(dim=1)

    def target_logit(self, target: torch.Tensor) -> torch.Tensor:
        """float [N]: logit of class target[n] on the unchanged image n."""
        return self.original.gather(1, target[:, None])[:, 0]

    def single_part_removed(self, target: torch.Tensor) -> torch.Tensor:
        """float [N, P]: logit of target[n] with part p alone removed."""
        keep = self.full & ~(1 << torch.arange(self.num_parts))
        return self.subsets[:, keep, :].gather(2, target[:, None, None].expand(-1, self.num_parts, 1))[..., 0]

    def object_removed(self, target: torch.Tensor) -> torch.Tensor:
        """float [N, O]: logit of target[n] with background object j alone removed."""
        return self.objects.gather(2, target[:, None, None].expand(-1, self.objects.shape[1], 1))[..., 0]


def lowers_target(original: torch.Tensor, removed: torch.Tensor, fraction: float = RELEVANCE) -> torch.Tensor:
    """bool: removing the unit lowers the target logit by at least `fraction` of it (module docstring)."""
    d = original - removed
    return (d > 0) & (d >= fraction * original.abs())


def scatter_intervention_logits(logits: torch.Tensor, base: np.ndarray, keep: np.ndarray, removed: np.ndarray,
                                original: torch.Tensor, labels: torch.Tensor, num_parts: int,
                                where: str = "interventions") -> InterventionLogits:
    """Dense `InterventionLogits` from the view's rows (logits [M, C] and the view's metadata)."""
    n, c = original.shape
    full = (1 << num_parts) - 1
    base_t = torch.as_tensor(np.asarray(base), dtype=torch.long)
    keep_t = torch.as_tensor(np.asarray(keep), dtype=torch.long)
    rem_t = torch.as_tensor(np.asarray(removed), dtype=torch.long)
    logits = logits.float()
    subsets = torch.zeros(n, 1 << num_parts, c)
    seen = torch.zeros(n, 1 << num_parts, dtype=torch.long)
    part_rows = rem_t < 0
    subsets[base_t[part_rows], keep_t[part_rows]] = logits[part_rows]
    seen.index_put_((base_t[part_rows], keep_t[part_rows]), torch.ones(int(part_rows.sum()), dtype=torch.long),
                    accumulate=True)
    if not bool((seen == 1).all()):
        raise DataError(f"{where}: every test image needs each of the {1 << num_parts} part subsets exactly once; "
                        f"re-extract the intervention view (xbench cache clear)")
    obj_rows = ~part_rows
    if bool((keep_t[obj_rows] != full).any()):
        raise DataError(f"{where}: background-object removals must keep every part; re-extract the view")
    n_obj = int(rem_t.max().item()) + 1 if obj_rows.any() else 0
    objects = torch.zeros(n, n_obj, c)
    valid = torch.zeros(n, n_obj, dtype=torch.bool)
    objects[base_t[obj_rows], rem_t[obj_rows]] = logits[obj_rows]
    valid[base_t[obj_rows], rem_t[obj_rows]] = True
    return InterventionLogits(original=original.float(), subsets=subsets, objects=objects, object_valid=valid,
                              labels=labels.long(), num_parts=num_parts)


def intervention_logits(ctx: EvalContext) -> InterventionLogits:
    """The job's `InterventionLogits` on the test split (memoised: computed once per job)."""

    def run() -> InterventionLogits:
        view = InterventionView()
        items = ctx.items("test", view)
        meta = items.meta
        return scatter_intervention_logits(
            ctx.logits("test", view), items.base, meta["keep"], meta["removed_object"], ctx.logits("test"),
            ctx.labels("test"), len(ctx.dataset.part_names), where=f"{ctx.dataset.spec.name} test interventions",
        )

    return ctx.memo("funnybirds:interventions", run)


__all__ = ["RELEVANCE", "InterventionLogits", "lowers_target", "scatter_intervention_logits", "intervention_logits"]
