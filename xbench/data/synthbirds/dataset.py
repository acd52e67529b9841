"""The registered `synthbirds` dataset: splits, labels, annotations, interventions.

Image i of a split belongs to class ``i // per_class`` (labels are known
without rendering). Everything random about image i is drawn up front from
``np.random.default_rng([seed, split_id, i])`` (`scene.draw_scene`), so the
image, its maps and every intervention of it are byte-identical on every run.

Multi-target definition: a training image whose parts were partly removed is
consistent with every class that has the generating class's variant on each
*visible* slot; `targets(i)` is that set (on test images, and on training
images with all parts, just the class, since classes are distinct).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import ConfigError, DataError
from ...registry import register_dataset
from ..base import Dataset, Split
from .classes import agreement_masks, consistent_classes, draw_classes, minimal_sufficient_sets, names_to_mask
from .parts import P, PART_NAMES
from .render import FB_COLOUR_SLOTS, FB_MAX_OBJECTS, Rendered, SceneLayers, fb_colour_units, layout, rasterise, render
from .scene import Scene, draw_scene

ALL_PARTS = (1 << P) - 1
_SCENE_MEMO = 1 << 16   # scenes kept per split (a scene is immutable and a pure function of seed, split, index)


class SynthBirdsSplit(Split):
    """One generated split; every accessor renders on demand (a few milliseconds)."""

    dataset: "SynthBirds"

    def __init__(self, dataset: "SynthBirds", name: str, per_class: int):
        super().__init__(dataset, name)
        self.per_class = per_class
        self._n = per_class * dataset.num_classes
        self._labels = np.arange(self._n, dtype=np.int64) // max(per_class, 1)
        self._last: tuple[int, Rendered] | None = None  # the last full render, for image/map/keypoint sequences
        self._scenes: dict[int, Scene] = {}  # memo of `scene` (a few hundred bytes each, drawn in ~0.1 ms)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_last"] = None
        state["_scenes"] = {}
        return state

    def __len__(self) -> int:
        return self._n

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    # scene and rendering ----------------------------------------------------------------
    def _check(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < self._n:
            raise IndexError(f"synthbirds {self.name} split has {self._n} images; index {i} is out of range")
        return i

    def scene(self, i: int) -> Scene:
        """Every random parameter of image i (drawn up front; shared by all its interventions)."""
        i = self._check(i)
        hit = self._scenes.get(i)
        if hit is not None:
            return hit
        o = self.dataset.options
        sc = draw_scene(
            o["seed"], self.name, i, int(self._labels[i]),
            max_distractors=o["max_distractors"], removal_fraction=o["train_removal_fraction"],
        )
        if len(self._scenes) < _SCENE_MEMO:
            self._scenes[i] = sc
        return sc

    def layout(self, i: int, resolution: int | None = None) -> SceneLayers:
        """Image i's shapes placed at `resolution` (default: the dataset's); reuse it for many renders."""
        sc = self.scene(i)
        res = self.dataset.options["resolution"] if resolution is None else int(resolution)
        return layout(sc, self.dataset.class_parts[sc.class_idx], res)

    def render(
        self, i: int, keep_parts: Iterable[str] | None = None, removed_objects: Iterable[int] = (), *,
        maps: bool = True,
    ) -> Rendered:
        """Image i (optionally intervened) with its part map, keypoints and fg mask from one rasterisation.

        `keep_parts` None keeps every part present in the image; parts the
        image lacks (training images) stay absent whatever is asked.
        """
        i = self._check(i)
        keep, removed = self._request(i, keep_parts, removed_objects)
        plain = keep == ALL_PARTS and not removed
        if plain and maps and self._last is not None and self._last[0] == i:
            return _copy(self._last[1])
        out = render(self.layout(i), keep, removed, maps=maps)
        if plain and maps:
            self._last = (i, _copy(out))
        return out

    def _request(self, i: int, keep_parts: Iterable[str] | None, removed_objects: Iterable[int]) -> tuple[int, frozenset[int]]:
        if keep_parts is None:
            keep = ALL_PARTS
        else:
            keep_parts = list(keep_parts) if not isinstance(keep_parts, str) else [keep_parts]
            bad = [p for p in keep_parts if p not in PART_NAMES]
            if bad:
                raise ConfigError(f"unknown synthbirds part(s) {bad}; valid parts: {', '.join(PART_NAMES)}")
            keep = names_to_mask(keep_parts)
        removed = frozenset(int(j) for j in removed_objects)
        if removed:
            n = self.num_objects(i)
            bad_obj = sorted(j for j in removed if not 0 <= j < n)
            if bad_obj:
                raise DataError(
                    f"synthbirds {self.name} image {i} has {n} background objects (0..{n - 1}); "
                    f"cannot remove {bad_obj}"
                )
        return keep, removed

    def image(self, i: int) -> Image.Image:
        i = self._check(i)
        if self._last is not None and self._last[0] == i:
            return Image.fromarray(self._last[1].image.copy())
        return Image.fromarray(self.render(i, maps=False).image)

    # annotations --------------------------------------------------------------------------
    def part_map(self, i: int) -> np.ndarray:
        """The label map alone (no colour gather; about 1.6x faster than a full render), unless the last full
        render is this image's. Safe to call from several threads (nothing is written)."""
        i = self._check(i)
        last = self._last
        if last is not None and last[0] == i:
            return last[1].part_map.copy()  # type: ignore[union-attr]
        return render(self.layout(i), ALL_PARTS, maps=True, image=False).part_map  # type: ignore[return-value]

    def part_map_indexed(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(uint8 palette index map, its label table): the rasterisation alone, no gather, no fg mask or
        keypoints (``table[index] == part_map(i)``). Thread-safe like `part_map`."""
        i = self._check(i)
        last = self._last
        if last is not None and last[0] == i:
            return last[1].part_map.copy(), None  # type: ignore[union-attr]
        lay = self.layout(i)
        return rasterise(lay, ALL_PARTS), lay.label

    def part_colour_map_indexed(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(uint8 palette index map, its colour-unit table): the FunnyBirds colour code of every paint as
        colour units (`render.fb_colour_units`; each instance of a two-colour slot has its own colour)."""
        lay = self.layout(self._check(i))
        return rasterise(lay, ALL_PARTS), fb_colour_units(lay.fb)

    def object_mask(self, i: int) -> np.ndarray:
        return self.render(i).fg_mask  # type: ignore[return-value]

    def keypoints(self, i: int) -> np.ndarray:
        return self.render(i).keypoints  # type: ignore[return-value]

    def present_parts(self, i: int) -> frozenset[str]:
        removed = self.scene(i).removed_mask
        return frozenset(n for p, n in enumerate(PART_NAMES) if not removed >> p & 1)

    def num_objects(self, i: int) -> int:
        return len(self.scene(i).distractors)

    def targets(self, i: int) -> np.ndarray:
        i = self._check(i)
        c = int(self._labels[i])
        visible = ALL_PARTS & ~self.scene(i).removed_mask
        return consistent_classes(self.dataset.agreement[c], visible)

    # interventions --------------------------------------------------------------------------
    def has_intervention(self, keep_parts: frozenset[str], removed_objects: frozenset[int]) -> bool:
        return True

    def intervention(self, i: int, keep_parts: Iterable[str], removed_objects: Iterable[int] = ()) -> Image.Image:
        return Image.fromarray(self.render(i, keep_parts, removed_objects, maps=False).image)

    def interventions(self, i: int, requests: Sequence[tuple[frozenset[str], frozenset[int]]]) -> list[Image.Image]:
        """Several interventions of image i from one scene layout."""
        i = self._check(i)
        lay = self.layout(i)
        out = []
        for keep_parts, removed_objects in requests:
            keep, removed = self._request(i, keep_parts, removed_objects)
            out.append(Image.fromarray(render(lay, keep, removed, maps=False).image))
        return out

    def item_id(self, i: int) -> str:
        return f"synthbirds/{self.name}/{int(self._labels[i])}/{i:06d}"


def _copy(r: Rendered) -> Rendered:
    return Rendered(*(None if v is None else v.copy() for v in
                      (r.image, r.part_map, r.keypoints, r.fg_mask, r.funnybirds_part_map)))


@register_dataset(
    "synthbirds",
    annotations={"object_mask", "part_map", "keypoints", "interventions", "class_parts", "multi_target"},
    builtin=True,
    licence="MIT (generated)",
    paper="funnybirds",
    description="Built-in procedural FunnyBirds-style birds with exact part and background interventions",
)
class SynthBirds(Dataset):
    """Built-in procedural FunnyBirds-style birds with exact part and background interventions.

    Options (all enter `fingerprint()`): `num_classes` (<= 2592), images per
    class in each split, `resolution` (side in pixels, >= 32), `seed` (image
    stream), `max_distractors` (0..50 background objects per image),
    `train_removal_fraction` (share of training images with a random non-empty
    strict subset of parts removed), `class_seed` (the class draw).
    """

    part_names = PART_NAMES
    part_colour_slots = FB_COLOUR_SLOTS
    keypoint_names = PART_NAMES
    version = "1"
    #: the CPU quickstart profile's overrides: a 300-image test split (about 10 000
    #: intervention images for the FunnyBirds suite instead of 17 000)
    quickstart = {"test_per_class": 6}

    def __init__(
        self,
        root: Path | None = None,
        *,
        num_classes: int = 50,
        train_per_class: int = 100,
        test_per_class: int = 10,
        resolution: int = 256,
        seed: int = 0,
        max_distractors: int = 4,
        train_removal_fraction: float = 0.5,
        class_seed: int = 0,
    ):
        opts = dict(
            num_classes=num_classes, train_per_class=train_per_class, test_per_class=test_per_class,
            resolution=resolution, seed=seed, max_distractors=max_distractors,
            train_removal_fraction=train_removal_fraction, class_seed=class_seed,
        )
        _validate(opts)
        opts["train_removal_fraction"] = float(train_removal_fraction)
        for k in opts:
            if k != "train_removal_fraction":
                opts[k] = int(opts[k])
        super().__init__(root, **opts)
        self._class_parts = draw_classes(opts["num_classes"], opts["class_seed"])
        self._class_parts.flags.writeable = False
        self._agreement: np.ndarray | None = None
        self._splits: dict[str, SynthBirdsSplit] = {}

    @property
    def num_classes(self) -> int:
        return self.options["num_classes"]

    @property
    def class_parts(self) -> np.ndarray:
        """int64 [C, P]: variant index of each slot per class (FunnyBirds parts.json order)."""
        return self._class_parts

    @property
    def agreement(self) -> np.ndarray:
        """int64 [C, C]: bitmask of the slots on which two classes agree."""
        if self._agreement is None:
            self._agreement = agreement_masks(self._class_parts)
        return self._agreement

    def minimal_sufficient_sets(self, c: int) -> list[frozenset[str]]:
        if not 0 <= int(c) < self.num_classes:
            raise ConfigError(f"synthbirds has {self.num_classes} classes; class {c} is out of range")
        return minimal_sufficient_sets(self.agreement[int(c)], int(c))

    def split(self, name: str) -> SynthBirdsSplit:
        if name not in self.splits:
            raise ConfigError(f"synthbirds has no split {name!r}; valid splits: {', '.join(self.splits)}")
        if name not in self._splits:
            self._splits[name] = SynthBirdsSplit(self, name, self.options[f"{name}_per_class"])
        return self._splits[name]

    def with_options(self, **changes: Any) -> "SynthBirds":
        """A copy with some options changed (same classes and image stream unless those change)."""
        unknown = set(changes) - set(self.options)
        if unknown:
            raise ConfigError(f"unknown synthbirds option(s) {sorted(unknown)}; valid: {', '.join(sorted(self.options))}")
        return SynthBirds(self.root, **{**self.options, **changes})


def _validate(o: dict[str, Any]) -> None:
    def is_int(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    from .classes import MAX_CLASSES

    checks = [
        ("num_classes", 1, MAX_CLASSES, f"the five part slots admit at most {MAX_CLASSES} distinguishable classes"),
        ("train_per_class", 0, None, "use 0 or more images per class"),
        ("test_per_class", 0, None, "use 0 or more images per class"),
        ("resolution", 32, None, "use a side of at least 32 pixels"),
        ("seed", 0, None, "use a non-negative integer seed"),
        ("max_distractors", 0, FB_MAX_OBJECTS, f"FunnyBirds part maps code at most {FB_MAX_OBJECTS} background objects"),
        ("class_seed", 0, None, "use a non-negative integer seed"),
    ]
    for key, lo, hi, fix in checks:
        v = o[key]
        if not is_int(v) or v < lo or (hi is not None and v > hi):
            rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise ConfigError(f"synthbirds {key}={v!r} is invalid (must be an integer {rng}): {fix}")
    f = o["train_removal_fraction"]
    if isinstance(f, bool) or not isinstance(f, (int, float, np.floating)) or not 0.0 <= float(f) <= 1.0:
        raise ConfigError(f"synthbirds train_removal_fraction={f!r} is invalid: use a number between 0 and 1")


__all__ = ["SynthBirds", "SynthBirdsSplit"]
