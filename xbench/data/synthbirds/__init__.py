"""synthbirds: the built-in procedural FunnyBirds-style dataset (SPEC 1.1).

Modules: `parts` (slots, variants, shapes), `classes` (class draw, minimal
sufficient part sets), `scene` (per-image random parameters), `render`
(rasterisation), `dataset` (the registered `SynthBirds`), `export` (the
FunnyBirds on-disk layout).
"""
from __future__ import annotations

from .dataset import SynthBirds, SynthBirdsSplit
from .export import export_funnybirds
from .parts import PART_NAMES
from .render import Rendered

__all__ = ["SynthBirds", "SynthBirdsSplit", "Rendered", "export_funnybirds", "PART_NAMES"]
