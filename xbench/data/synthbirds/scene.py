"""Per-image random parameters, drawn up front from a generator seeded by (seed, split, index).

Everything random about an image is drawn here, in a fixed order and a fixed
number of draws, *before* anything is rendered, so an intervention (a part or a
distractor left out) reuses exactly the same parameters. Coordinates are
fractions of the image side, so the same scene renders at any resolution.

Choices where the spec was silent:

* pose: rotation uniform in +-25 degrees, mirror with probability 1/2, bird
  size such that its bounding box over *all* variants covers 62-90 % of the
  image side, translation uniform over the positions that keep that box inside
  the image (so no part is ever cut off);
* backdrop: a linear gradient between two random colours in a random
  direction;
* distractors: 0..max_distractors (uniform) objects of shapes 0 rectangle,
  1 triangle, 2 disc, 3 ellipse, 4 star (FunnyBirds has five background object
  kinds too), red/green/blue/yellow (FunnyBirds' background colours) with a
  random shade, radius 4-11 % of the side, drawn behind the bird;
* train removal: with probability `removal_fraction` an image loses k parts,
  k uniform in 1..P-1, the k slots uniform (a random non-empty strict subset).
  The decision and the subset are drawn for every image of every split so
  that changing the fraction changes nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .parts import P, hull_points

SPLIT_IDS: dict[str, int] = {"train": 0, "test": 1}
MAX_ROTATION = np.deg2rad(25.0)
FILL_RANGE = (0.62, 0.90)
DISTRACTOR_KINDS = ("rectangle", "triangle", "disc", "ellipse", "star")
DISTRACTOR_COLOURS = ("red", "green", "blue", "yellow")
_MARGIN = 0.02  # fraction of the side kept free around the bird's box


@dataclass(frozen=True)
class Distractor:
    kind: int          # index into DISTRACTOR_KINDS
    x: float           # centre, fraction of the side
    y: float
    size: float        # outer radius, fraction of the side
    aspect: float      # minor / major radius
    rotation: float    # radians
    colour: int        # index into DISTRACTOR_COLOURS
    shade: float       # brightness factor


@dataclass(frozen=True)
class Scene:
    """All random parameters of one image (resolution independent)."""

    class_idx: int
    removed_mask: int            # bit p set: slot p absent from this image
    angle: float                 # bird rotation, radians
    mirror: bool                 # bird faces left
    unit: float                  # one local unit, as a fraction of the side
    cx: float                    # local origin, fraction of the side
    cy: float
    backdrop: tuple[tuple[float, float, float], tuple[float, float, float]]
    backdrop_angle: float
    distractors: tuple[Distractor, ...]

    def affine(self, res: int) -> np.ndarray:
        """float64 [2, 3]: local bird coordinates -> pixel coordinates at side `res`."""
        m = -1.0 if self.mirror else 1.0
        ca, sa = np.cos(self.angle), np.sin(self.angle)
        s = self.unit * res
        return np.array([[ca * m * s, -sa * s, self.cx * res], [sa * m * s, ca * s, self.cy * res]])


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of image `index` of `split` (no global state, no Python hash())."""
    return np.random.default_rng([int(seed), SPLIT_IDS[split], int(index)])


def draw_scene(
    seed: int, split: str, index: int, class_idx: int, *, max_distractors: int, removal_fraction: float
) -> Scene:
    """Draw every random parameter of one image, always in the same order and number."""
    rng = scene_rng(seed, split, index)
    # 1. part removal (used on the train split only)
    u_remove = rng.random()
    k = int(rng.integers(1, P))          # 1..P-1 parts removed
    order = rng.permutation(P)
    removed = 0
    if split == "train" and u_remove < removal_fraction:
        for p in order[:k]:
            removed |= 1 << int(p)
    # 2. pose
    angle = float(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
    mirror = bool(rng.random() < 0.5)
    fill = float(rng.uniform(*FILL_RANGE))
    tx, ty = rng.random(2)
    # 3. backdrop
    cols = rng.uniform(35.0, 225.0, size=(2, 3))
    bangle = float(rng.uniform(0.0, 2 * np.pi))
    # 4. distractors (a fixed-size block of draws, the first n used)
    n = int(rng.integers(0, max_distractors + 1))
    block = rng.random((max(max_distractors, 1), 8))

    # bird placement from the pose draws: the box over every variant stays inside the image
    m = -1.0 if mirror else 1.0
    ca, sa = np.cos(angle), np.sin(angle)
    pts = hull_points() * [m, 1.0]
    rot = pts @ np.array([[ca, sa], [-sa, ca]])      # rows: rotated local points
    lo, hi = rot.min(axis=0), rot.max(axis=0)
    unit = fill / float((hi - lo).max())
    free = 1.0 - 2 * _MARGIN - (hi - lo) * unit       # room left for the box, per axis
    cx = _MARGIN + max(free[0], 0.0) * tx - lo[0] * unit
    cy = _MARGIN + max(free[1], 0.0) * ty - lo[1] * unit

    distractors = tuple(
        Distractor(
            kind=int(b[0] * len(DISTRACTOR_KINDS)),
            x=float(b[1]),
            y=float(b[2]),
            size=float(0.04 + 0.07 * b[3]),
            aspect=float(0.45 + 0.55 * b[4]),
            rotation=float(2 * np.pi * b[5]),
            colour=int(b[6] * len(DISTRACTOR_COLOURS)),
            shade=float(0.65 + 0.35 * b[7]),
        )
        for b in block[:n]
    )
    return Scene(
        class_idx=int(class_idx),
        removed_mask=removed,
        angle=angle,
        mirror=mirror,
        unit=unit,
        cx=float(cx),
        cy=float(cy),
        backdrop=(tuple(map(float, cols[0])), tuple(map(float, cols[1]))),  # type: ignore[arg-type]
        backdrop_angle=bangle,
        distractors=distractors,
    )


__all__ = ["Scene", "Distractor", "draw_scene", "scene_rng", "SPLIT_IDS", "DISTRACTOR_KINDS", "DISTRACTOR_COLOURS"]
