"""Part slots, their variants and their shapes (polygons in bird-local coordinates).

The bird is drawn in a local frame where one unit is roughly the body's
half-width: x points towards the beak, y points *down* (image convention). The
body is an ellipse centred at the origin with a round head at the upper front.
Every part variant is a handful of filled polygons with a one-pixel darker
outline; variants of a slot differ in silhouette (and, for tail and wing, in
colour), by several patches' worth of pixels at 224 px input.

Variant numbering follows the order of the official FunnyBirds ``parts.json``
(colour-major for tail and wing: variant = colour * n_shapes + shape), so
``class_parts`` indices are directly the indices FunnyBirds' ``classes.json``
uses.

Z-order (back to front), fixed so occlusion is well defined:
background, distractors (in index order), tail, foot, body, wing, eye, beak.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: part slots, sorted; part-map ids are 1 + position in this tuple
PART_NAMES: tuple[str, ...] = ("beak", "eye", "foot", "tail", "wing")
P = len(PART_NAMES)
PART_ID: dict[str, int] = {name: i + 1 for i, name in enumerate(PART_NAMES)}

#: drawing order of the part slots relative to the body ("body" is not a slot)
Z_ORDER: tuple[str, ...] = ("tail", "foot", "body", "wing", "eye", "beak")

RGB = tuple[int, int, int]

#: named colours (FunnyBirds uses red/green/blue for tails and wings, and
#: red/green/blue/yellow for background objects)
COLOURS: dict[str, RGB] = {
    "red": (222, 48, 44),
    "green": (38, 168, 74),
    "blue": (44, 92, 222),
    "yellow": (250, 204, 38),
}
BODY_COLOUR: RGB = (176, 176, 184)
BEAK_COLOUR: RGB = COLOURS["yellow"]
FOOT_COLOUR: RGB = (240, 132, 30)
EYE_WHITE: RGB = (250, 250, 250)
EYE_BLACK: RGB = (18, 18, 22)


def darker(c: RGB, f: float = 0.5) -> RGB:
    return (int(c[0] * f), int(c[1] * f), int(c[2] * f))


@dataclass(frozen=True)
class Variant:
    """One variant of a slot, described as FunnyBirds' ``parts.json`` does."""

    model: str            # FunnyBirds model name (e.g. "tail02.glb")
    colour: str | None    # colour name where the slot has one (beak, tail, wing)
    shape: int            # shape index within the slot


def _variants() -> dict[str, tuple[Variant, ...]]:
    out: dict[str, tuple[Variant, ...]] = {
        "beak": tuple(Variant(f"beak{s + 1:02d}.glb", "yellow", s) for s in range(4)),
        "eye": tuple(Variant(f"eye{s + 1:02d}.glb", None, s) for s in range(3)),
        "foot": tuple(Variant(f"foot{s + 1:02d}.glb", None, s) for s in range(4)),
    }
    rgb = ("red", "green", "blue")
    out["tail"] = tuple(Variant(f"tail{s + 1:02d}.glb", c, s) for c in rgb for s in range(3))
    out["wing"] = tuple(Variant(f"wing{s + 1:02d}.glb", c, s) for c in rgb for s in range(2))
    return out


VARIANTS: dict[str, tuple[Variant, ...]] = _variants()
NUM_VARIANTS: tuple[int, ...] = tuple(len(VARIANTS[p]) for p in PART_NAMES)  # (4, 3, 4, 9, 6)


@dataclass(frozen=True)
class Shape:
    """A filled polygon of one part instance."""

    points: np.ndarray   # float64 [N, 2], bird-local coordinates
    colour: RGB
    outline: RGB | None
    instance: int = 1    # FunnyBirds part-map instance (two feet: 1 and 2)


@dataclass(frozen=True)
class PartGeometry:
    """The shapes of one slot variant (or of the body), in drawing order."""

    shapes: tuple[Shape, ...]
    anchors: np.ndarray  # float64 [n_instances, 2]; the keypoint is their mean


# primitives -----------------------------------------------------------------------------
def ellipse(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 28) -> np.ndarray:
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    ca, sa = np.cos(angle), np.sin(angle)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], axis=1)


def bar(x0: float, y0: float, x1: float, y1: float, width: float) -> np.ndarray:
    """A thick segment as a quadrilateral."""
    d = np.array([x1 - x0, y1 - y0], dtype=float)
    n = np.array([-d[1], d[0]]) / np.hypot(*d) * (width / 2)
    return np.array([[x0, y0] + n, [x1, y1] + n, [x1, y1] - n, [x0, y0] - n])


def poly(*pts: tuple[float, float]) -> np.ndarray:
    return np.asarray(pts, dtype=float)


def lens(cx: float, cy: float, w: float, h: float, angle: float = 0.0, n: int = 12) -> np.ndarray:
    """An almond: two circular arcs meeting at (cx -+ w/2, cy)."""
    t = np.linspace(-1.0, 1.0, n)
    top = np.stack([t * w / 2, -(1 - t**2) * h / 2], axis=1)
    bottom = np.stack([t[::-1] * w / 2, (1 - t[::-1] ** 2) * h / 2], axis=1)
    pts = np.concatenate([top, bottom[1:-1]])
    ca, sa = np.cos(angle), np.sin(angle)
    rot = np.array([[ca, -sa], [sa, ca]])
    return pts @ rot.T + [cx, cy]


def fan(px: float, py: float, a0: float, a1: float, r_out: float, r_in: float, lobes: int) -> np.ndarray:
    """A fan from pivot (px, py) between angles a0..a1 with a scalloped edge."""
    n = lobes * 6 + 1
    a = np.linspace(a0, a1, n)
    r = r_in + (r_out - r_in) * np.abs(np.sin(np.linspace(0, lobes * np.pi, n)))
    edge = np.stack([px + r * np.cos(a), py + r * np.sin(a)], axis=1)
    return np.concatenate([[[px, py]], edge])


# the body -------------------------------------------------------------------------------
HEAD = (0.95, -0.60, 0.50)   # centre x, y, radius
EYE_CENTRE = (1.02, -0.74)
LEG_X = (-0.32, 0.28)        # instance 1 (rear), instance 2 (front)
LEG_TOP, ANKLE = 0.45, 1.20


@lru_cache(maxsize=None)
def body_geometry() -> PartGeometry:
    hx, hy, hr = HEAD
    dark = darker(BODY_COLOUR, 0.55)
    o = 0.05  # outline ring drawn as a slightly larger dark silhouette
    shapes = (
        Shape(ellipse(0, 0, 1.0 + o, 0.75 + o, n=40), dark, None),
        Shape(ellipse(hx, hy, hr + o, hr + o, n=32), dark, None),
        Shape(ellipse(0, 0, 1.0, 0.75, n=40), BODY_COLOUR, None),
        Shape(ellipse(hx, hy, hr, hr, n=32), BODY_COLOUR, None),
    )
    return PartGeometry(shapes, np.array([[0.0, 0.0]]))


# part variants ----------------------------------------------------------------------------
def _beak(shape: int) -> PartGeometry:
    c, o = BEAK_COLOUR, darker(BEAK_COLOUR, 0.55)
    if shape == 0:    # long and sharp
        pts = [poly((1.30, -0.70), (2.10, -0.53), (1.30, -0.38))]
        anchor = (1.56, -0.54)
    elif shape == 1:  # short and thick
        pts = [poly((1.26, -0.88), (1.80, -0.55), (1.26, -0.22))]
        anchor = (1.45, -0.55)
    elif shape == 2:  # hooked
        pts = [poly((1.30, -0.80), (1.72, -0.78), (1.98, -0.60), (2.02, -0.30), (1.90, -0.20),
                    (1.86, -0.42), (1.66, -0.48), (1.30, -0.40))]
        anchor = (1.55, -0.62)
    else:             # open (two mandibles)
        upper = poly((1.30, -0.74), (1.98, -0.96), (1.36, -0.56))
        lower = poly((1.36, -0.48), (1.95, -0.24), (1.30, -0.32))
        pts = [upper, lower]
        anchor = tuple(upper.mean(axis=0))
    return PartGeometry(tuple(Shape(p, c, o) for p in pts), np.array([anchor]))


def _eye(shape: int) -> PartGeometry:
    ex, ey = EYE_CENTRE
    if shape == 0:    # white with a black pupil
        shapes = (Shape(ellipse(ex, ey, 0.20, 0.20, n=20), EYE_WHITE, EYE_BLACK),
                  Shape(ellipse(ex + 0.04, ey, 0.095, 0.095, n=14), EYE_BLACK, None))
    elif shape == 1:  # small black dot with a highlight
        shapes = (Shape(ellipse(ex, ey, 0.16, 0.16, n=18), EYE_BLACK, None),
                  Shape(ellipse(ex + 0.06, ey - 0.06, 0.05, 0.05, n=10), EYE_WHITE, None))
    else:             # narrow slanted slit
        shapes = (Shape(lens(ex, ey, 0.44, 0.15, angle=-0.25), EYE_BLACK, None),)
    return PartGeometry(shapes, np.array([[ex, ey]]))


def _foot_one(x: float, shape: int, inst: int) -> tuple[list[Shape], tuple[float, float]]:
    c, o = FOOT_COLOUR, darker(FOOT_COLOUR, 0.55)
    out = [Shape(bar(x, LEG_TOP, x, ANKLE, 0.12), c, o, inst)]
    if shape == 0:    # three thin claws
        for tx, ty in ((x + 0.46, ANKLE + 0.12), (x + 0.34, ANKLE + 0.26), (x - 0.26, ANKLE + 0.14)):
            out.append(Shape(bar(x, ANKLE, tx, ty, 0.09), c, o, inst))
        anchor = (x, ANKLE - 0.02)
    elif shape == 1:  # webbed wedge pointing forward
        out.append(Shape(poly((x - 0.10, ANKLE - 0.04), (x + 0.60, ANKLE + 0.18), (x - 0.10, ANKLE + 0.24)), c, o, inst))
        anchor = (x + 0.08, ANKLE + 0.12)
    elif shape == 2:  # ball
        out.append(Shape(ellipse(x, ANKLE + 0.10, 0.19, 0.19, n=20), c, o, inst))
        anchor = (x, ANKLE + 0.10)
    else:             # square block
        out.append(Shape(poly((x - 0.18, ANKLE - 0.06), (x + 0.18, ANKLE - 0.06), (x + 0.18, ANKLE + 0.26),
                              (x - 0.18, ANKLE + 0.26)), c, o, inst))
        anchor = (x, ANKLE + 0.10)
    return out, anchor


def _foot(shape: int) -> PartGeometry:
    shapes: list[Shape] = []
    anchors = []
    for inst, x in enumerate(LEG_X, start=1):
        s, a = _foot_one(x, shape, inst)
        shapes += s
        anchors.append(a)
    return PartGeometry(tuple(shapes), np.array(anchors))


def _tail(shape: int, colour: RGB) -> PartGeometry:
    o = darker(colour, 0.5)
    if shape == 0:    # scalloped fan
        pts = [fan(-0.78, -0.05, np.deg2rad(142), np.deg2rad(228), 1.02, 0.80, 3)]
        anchor = (-1.50, -0.11)
    elif shape == 1:  # two long streamers
        pts = [bar(-0.80, -0.12, -1.85, -0.88, 0.17), bar(-0.80, 0.02, -1.92, -0.40, 0.17)]
        anchor = (-1.45, -0.58)
    else:             # square block
        pts = [poly((-0.80, -0.42), (-1.62, -0.52), (-1.62, 0.46), (-0.80, 0.36))]
        anchor = (-1.32, -0.02)
    return PartGeometry(tuple(Shape(p, colour, o) for p in pts), np.array([anchor]))


def _wing(shape: int, colour: RGB) -> PartGeometry:
    o = darker(colour, 0.5)
    if shape == 0:    # long, pointed, swept back
        pts = poly((0.50, -0.22), (0.15, -0.46), (-0.50, -0.46), (-1.34, -0.80), (-0.62, -0.04), (0.30, 0.16))
        anchor = (-0.15, -0.18)
    else:             # round
        pts = ellipse(-0.12, 0.02, 0.58, 0.38, angle=-0.2, n=28)
        anchor = (-0.12, 0.02)
    return PartGeometry((Shape(pts, colour, o),), np.array([anchor]))


@lru_cache(maxsize=None)
def part_geometry(slot: str, variant: int) -> PartGeometry:
    """Shapes and keypoint anchors of variant `variant` of `slot`."""
    v = VARIANTS[slot][variant]
    if slot == "beak":
        return _beak(v.shape)
    if slot == "eye":
        return _eye(v.shape)
    if slot == "foot":
        return _foot(v.shape)
    if slot == "tail":
        return _tail(v.shape, COLOURS[v.colour or "red"])
    return _wing(v.shape, COLOURS[v.colour or "red"])


@lru_cache(maxsize=None)
def hull_points() -> np.ndarray:
    """Every vertex of the body and of every variant: bounds the bird in any class."""
    pts = [s.points for s in body_geometry().shapes]
    for slot in PART_NAMES:
        for v in range(len(VARIANTS[slot])):
            pts += [s.points for s in part_geometry(slot, v).shapes]
    return np.concatenate(pts)


__all__ = [
    "PART_NAMES", "PART_ID", "P", "Z_ORDER", "VARIANTS", "NUM_VARIANTS", "Variant", "Shape", "PartGeometry",
    "COLOURS", "body_geometry", "part_geometry", "hull_points",
]
