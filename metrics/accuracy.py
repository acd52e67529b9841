"""Accuracy and AUROC (SPEC 5.1), on the test split."""
from __future__ import annotations

import numpy as np
import torch

from xbench.errors import DataError
from xbench.evaluation import EvalContext
from xbench.registry import register_metric


@register_metric("accuracy", direction="higher", category="accuracy", percent=True,
                 description="top-1 accuracy on the test split")
def accuracy(ctx: EvalContext) -> float:
    """Top-1 accuracy on the test split."""
    logits = ctx.logits("test")
    labels = ctx.labels("test")
    return float((logits.argmax(dim=1) == labels).float().mean().item())


@register_metric("auroc", direction="higher", category="accuracy", percent=True, task="binary",
                 description="area under the ROC curve (binary datasets), on the test split")
def auroc(ctx: EvalContext) -> float:
    """Area under the ROC curve of the positive-class probability (binary datasets)."""
    from sklearn.metrics import roc_auc_score

    logits = ctx.logits("test")
    labels = ctx.labels("test").numpy()
    if len(np.unique(labels)) < 2:
        raise DataError("AUROC needs both classes in the test split")
    p = torch.softmax(logits, dim=1)[:, 1].numpy()
    return float(roc_auc_score(labels, p))
