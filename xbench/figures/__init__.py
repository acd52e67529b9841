"""Figures drawn from trained models: the explanation score sheet and its training patches."""
from __future__ import annotations

from .explanation import draw_explanation, explanation_figure, top_concepts_for  # noqa: F401
from .patches import TrainingPatch, top_training_patches  # noqa: F401

__all__ = ["explanation_figure", "draw_explanation", "top_concepts_for", "top_training_patches", "TrainingPatch"]
