"""Rasterisation: RGB image, part label map, keypoints and foreground mask in one pass.

Every shape is drawn once, without antialiasing, into a single 8-bit *paint*
map (PIL ``ImageDraw.polygon``); a paint is a (colour, part-map label,
FunnyBirds part-map colour, foreground flag) tuple, so the RGB image, the label
map, the fg mask and the FunnyBirds colour-coded map are table look-ups of the
same rasterisation and agree pixel for pixel. Paint 0 is the backdrop, a
gradient filled in afterwards.

Interventions leave layers out of the same drawing sequence. Each pixel shows
the topmost layer covering it, and nothing blends, so a pixel changes only if
its topmost layer was removed (then the original label map shows a removed
id there): everything else is byte-identical.

Labels: 0 backdrop and the bird's body, 1..P part slots (`PART_NAMES` order),
P+1+j distractor j. Keypoints are in pixel-index coordinates (x = column,
y = row, pixel centres at integers), one per slot: the mean of the slot's
instance anchors (two feet: their midpoint); visible = 1 when the slot is drawn
and at least one of its pixels shows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from .parts import COLOURS, P, PART_ID, PART_NAMES, RGB, Z_ORDER, body_geometry, part_geometry
from .scene import DISTRACTOR_COLOURS, Scene

#: FunnyBirds part-map colours (framework `datasets/funny_birds.py`, renderer `page.html`)
FB_BACKGROUND: RGB = (0, 0, 0)
FB_BODY: RGB = (170, 170, 170)
FB_PART_COLOURS: dict[str, tuple[RGB, ...]] = {
    "beak": ((255, 255, 0),),
    "eye": ((255, 255, 253), (255, 255, 254)),
    "foot": ((255, 0, 1), (255, 0, 2)),
    "tail": ((0, 0, 255),),
    "wing": ((0, 255, 1), (0, 255, 2)),
}
FB_MAX_OBJECTS = 50  # the framework scans background colours (204, 204, 204 + i) for i < 50
#: the slot (index into `PART_NAMES`) of each part colour of the code, one entry per colour: colour unit k + 1
#: of `fb_colour_units` is colour `FB_COLOUR_SLOTS`' k-th (two-colour slots: eyes, feet, wings have two)
FB_COLOUR_SLOTS: tuple[int, ...] = tuple(p for p, name in enumerate(PART_NAMES) for _ in FB_PART_COLOURS[name])


def fb_object_colour(j: int) -> RGB:
    return (204, 204, 204 + j)


def _fb_colour_lookup() -> tuple[np.ndarray, np.ndarray]:
    codes, ids = [], []
    k = 0
    for name in PART_NAMES:
        for c in FB_PART_COLOURS[name]:
            k += 1
            codes.append((c[0] << 16) | (c[1] << 8) | c[2]), ids.append(k)
    for j in range(FB_MAX_OBJECTS):
        c = fb_object_colour(j)
        codes.append((c[0] << 16) | (c[1] << 8) | c[2]), ids.append(k + 1 + j)
    order = np.argsort(codes)
    return np.asarray(codes, dtype=np.int64)[order], np.asarray(ids, dtype=np.int32)[order]


_FB_CODES, _FB_IDS = _fb_colour_lookup()


def fb_colour_units(rgb: np.ndarray) -> np.ndarray:
    """int32 [...]: the *colour unit* of each FunnyBirds code colour in `rgb` [..., 3]: 1..K for the K part
    colours (in `FB_COLOUR_SLOTS` order: beak, eye 1, eye 2, foot 1, foot 2, tail, wing 1, wing 2),
    K + 1 + j for background object j, 0 for anything else (backdrop, body, colours not in the code).

    The FunnyBirds framework dilates every part colour on its own and adds the sums of a slot's colours, so
    its part importance needs the colours apart; `part_map` merges them into slots."""
    a = np.asarray(rgb).astype(np.int64)
    packed = (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]
    pos = np.clip(np.searchsorted(_FB_CODES, packed), 0, len(_FB_CODES) - 1)
    return np.where(_FB_CODES[pos] == packed, _FB_IDS[pos], 0).astype(np.int32)


@dataclass
class Rendered:
    """One render of one image (or intervention)."""

    image: np.ndarray | None                   # uint8 [H, W, 3] (None when only maps were asked for)
    part_map: np.ndarray | None = None         # int32 [H, W]
    keypoints: np.ndarray | None = None        # float32 [P, 3] (x, y, visible)
    fg_mask: np.ndarray | None = None          # bool [H, W]: body and visible parts
    funnybirds_part_map: np.ndarray | None = None  # uint8 [H, W, 3], FunnyBirds colour code


@dataclass
class _Layer:
    slot: int                 # bit index of the part slot, -1 for body and distractors
    obj: int                  # distractor index, -1 otherwise
    polys: list[tuple[list[float], int, int | None]]  # (flat pixel coords, fill paint, outline paint)


@dataclass
class SceneLayers:
    """A scene laid out at one resolution: paints, layers in z-order, anchors; reusable for interventions."""

    scene: Scene
    res: int
    layers: list[_Layer]
    rgb: np.ndarray          # uint8 [K, 3]
    label: np.ndarray        # int32 [K]
    fg: np.ndarray           # bool [K]
    fb: np.ndarray           # uint8 [K, 3]
    keypoints_xy: np.ndarray  # float32 [P, 2]
    colour_lut: np.ndarray   # uint32 [512]: packed RGBA; 0..255 backdrop ramp, 256 + k paint k
    _backdrop: np.ndarray | None = field(default=None, repr=False)

    @property
    def backdrop_index(self) -> np.ndarray:
        """uint8 [res, res]: backdrop ramp position per pixel (computed once, shared by interventions)."""
        if self._backdrop is None:
            self._backdrop = _backdrop_index(self.scene, self.res)
        return self._backdrop


class _Palette:
    def __init__(self) -> None:
        self.index: dict[tuple, int] = {}
        self.entries: list[tuple] = [((0, 0, 0), 0, False, FB_BACKGROUND)]

    def get(self, rgb: RGB, label: int, fg: bool, fb: RGB) -> int:
        key = (tuple(int(v) for v in rgb), label, fg, fb)
        k = self.index.get(key)
        if k is None:
            k = len(self.entries)
            if k > 255:  # pragma: no cover - bounded by the number of distractors
                raise ValueError("synthbirds: more than 255 paints in one image")
            self.entries.append(key)
            self.index[key] = k
        return k


@lru_cache(maxsize=8)
def _grid(res: int) -> np.ndarray:
    return ((np.arange(res, dtype=np.float32) + 0.5) / res - 0.5).astype(np.float32)


def _backdrop_index(scene: Scene, res: int) -> np.ndarray:
    """uint8 [res, res]: position 0..255 along the scene's backdrop gradient at every pixel."""
    g = _grid(res)
    c, s = np.float32(np.cos(scene.backdrop_angle)), np.float32(np.sin(scene.backdrop_angle))
    k = np.float32(255.0 / (abs(c) + abs(s)))           # maps the projection onto [-127.5, 127.5]
    row = np.rint(g * (c * k) + np.float32(127.5)).astype(np.int16)   # depends on x
    col = np.rint(g * (s * k)).astype(np.int16)                        # depends on y
    t = row[None, :] + col[:, None]
    return np.clip(t, 0, 255).astype(np.uint8)


def _backdrop_ramp(scene: Scene) -> np.ndarray:
    """uint8 [256, 3]: the colours along the backdrop gradient."""
    c0, c1 = np.asarray(scene.backdrop[0]), np.asarray(scene.backdrop[1])
    return (c0[None, :] + np.linspace(0.0, 1.0, 256)[:, None] * (c1 - c0)[None, :]).round().astype(np.uint8)


def _distractor_points(kind: int, x: float, y: float, r: float, aspect: float, rot: float) -> np.ndarray:
    if kind == 0:    # rectangle
        pts = np.array([[-r, -r * aspect], [r, -r * aspect], [r, r * aspect], [-r, r * aspect]])
    elif kind == 1:  # triangle
        a = np.deg2rad([90.0, 210.0, 330.0])
        pts = np.stack([r * np.cos(a), r * np.sin(a)], axis=1)
    elif kind == 2:  # disc
        a = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        pts = np.stack([r * np.cos(a), r * np.sin(a)], axis=1)
    elif kind == 3:  # ellipse
        a = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        pts = np.stack([r * np.cos(a), r * aspect * np.sin(a)], axis=1)
    else:            # five-pointed star
        a = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        rr = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        pts = np.stack([rr * np.cos(a), rr * np.sin(a)], axis=1)
    ca, sa = np.cos(rot), np.sin(rot)
    return pts @ np.array([[ca, sa], [-sa, ca]]) + [x, y]


def _flat(pts: np.ndarray) -> list[float]:
    return pts.ravel().tolist()


def layout(scene: Scene, class_variants: np.ndarray, res: int) -> SceneLayers:
    """Place every shape of `scene` (class variants `class_variants`, [P]) at side `res` pixels."""
    A = scene.affine(res)
    lin, off = A[:, :2].T, A[:, 2]
    pal = _Palette()
    layers: list[_Layer] = []

    for j, d in enumerate(scene.distractors):
        base = COLOURS[DISTRACTOR_COLOURS[d.colour]]
        rgb = tuple(int(v * d.shade) for v in base)
        k = pal.get(rgb, P + 1 + j, False, fb_object_colour(j))  # type: ignore[arg-type]
        pts = _distractor_points(d.kind, d.x * res, d.y * res, d.size * res, d.aspect, d.rotation)
        layers.append(_Layer(-1, j, [(_flat(pts), k, None)]))

    kp = np.zeros((P, 2), dtype=np.float32)
    for name in Z_ORDER:
        if name == "body":
            geom, slot, label = body_geometry(), -1, 0
        else:
            slot = PART_NAMES.index(name)
            geom, label = part_geometry(name, int(class_variants[slot])), PART_ID[name]
            kp[slot] = geom.anchors.mean(axis=0) @ lin + off
        polys = []
        for s in geom.shapes:
            fb = FB_BODY if slot < 0 else FB_PART_COLOURS[name][min(s.instance, len(FB_PART_COLOURS[name])) - 1]
            fill = pal.get(s.colour, label, True, fb)
            outline = pal.get(s.outline, label, True, fb) if s.outline is not None else None
            polys.append((_flat(s.points @ lin + off), fill, outline))
        layers.append(_Layer(slot, -1, polys))

    rgb, label, fg, fb = zip(*pal.entries)
    lut = np.zeros((512, 4), dtype=np.uint8)
    lut[:, 3] = 255
    lut[:256, :3] = _backdrop_ramp(scene)
    lut[256 : 256 + len(rgb), :3] = np.array(rgb, dtype=np.uint8)
    return SceneLayers(
        scene=scene,
        res=res,
        layers=layers,
        rgb=np.array(rgb, dtype=np.uint8),
        label=np.array(label, dtype=np.int32),
        fg=np.array(fg, dtype=bool),
        fb=np.array(fb, dtype=np.uint8),
        keypoints_xy=kp,
        colour_lut=lut.view(np.uint32).ravel(),
    )


def rasterise(lay: SceneLayers, keep_mask: int, removed_objects: frozenset[int] = frozenset()) -> np.ndarray:
    """uint8 [res, res] palette index of every pixel (0: nothing drawn): the one rasterisation every output
    of `render` is a lookup into (``lay.label[paint]`` is the part map, ``lay.fg[paint]`` the fg mask)."""
    keep = keep_mask & ~lay.scene.removed_mask
    canvas = Image.new("L", (lay.res, lay.res), 0)
    polygon = ImageDraw.Draw(canvas).polygon
    for layer in lay.layers:
        if (layer.slot >= 0 and not keep >> layer.slot & 1) or (layer.obj >= 0 and layer.obj in removed_objects):
            continue
        for coords, fill, outline in layer.polys:
            polygon(coords, fill=fill, outline=outline)
    return np.asarray(canvas)


def render(
    lay: SceneLayers,
    keep_mask: int,
    removed_objects: frozenset[int] = frozenset(),
    *,
    maps: bool = True,
    funnybirds: bool = False,
    image: bool = True,
) -> Rendered:
    """Rasterise `lay` drawing only the slots in `keep_mask` and the distractors not in `removed_objects`.

    `keep_mask` is intersected with the slots present in the scene. With
    ``maps=False`` only the RGB image is produced (fastest); with
    ``image=False`` only the maps (the colour gather is skipped).
    """
    keep = keep_mask & ~lay.scene.removed_mask
    res = lay.res
    paint = rasterise(lay, keep_mask, removed_objects)
    rgb = None
    if image:
        # one gather of packed RGBA: backdrop ramp where nothing was drawn, the paint's colour elsewhere
        idx = paint.astype(np.uint16)
        idx += 256
        np.copyto(idx, lay.backdrop_index, where=paint == 0)
        rgb = np.ascontiguousarray(lay.colour_lut[idx].view(np.uint8).reshape(res, res, 4)[..., :3])
    out = Rendered(image=rgb)
    if maps:
        part_map = lay.label[paint]
        out.part_map = part_map
        out.fg_mask = lay.fg[paint]
        kps = np.zeros((P, 3), dtype=np.float32)
        kps[:, :2] = lay.keypoints_xy
        if keep:
            present = np.bincount(part_map.ravel(), minlength=P + 1)[1 : P + 1] > 0
            kps[:, 2] = present & np.array([bool(keep >> p & 1) for p in range(P)])
        out.keypoints = kps
    if funnybirds:
        out.funnybirds_part_map = lay.fb[paint]
    return out


__all__ = ["Rendered", "SceneLayers", "layout", "rasterise", "render", "FB_PART_COLOURS", "FB_BODY", "FB_BACKGROUND",
           "FB_MAX_OBJECTS", "FB_COLOUR_SLOTS", "fb_object_colour", "fb_colour_units"]
