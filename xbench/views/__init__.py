"""Views: deterministic lists of backbone inputs derived from a dataset split.

The feature cache stores tokens per (backbone, weights, dataset, split, view).
`plain` is the split itself; the others derive images from it (interventions,
noisy copies, box crops, augmented teacher views). Every view is a pure
function of its parameters and the split, so its tokens can be cached and
shared by every method and seed.
"""
from __future__ import annotations

from .augment import AugmentView
from .base import View, ViewIndex, preprocess
from .boxcrop import BoxCropView
from .interventions import InterventionView
from .noise import NoiseView
from .plain import PlainView

__all__ = ["View", "ViewIndex", "preprocess", "PlainView", "InterventionView", "NoiseView", "BoxCropView", "AugmentView"]
