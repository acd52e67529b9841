"""The dataset interface every loader implements.

A `Dataset` has named splits (`train`, `test`); a `Split` yields images and
labels plus whichever annotations the dataset declares in its spec
(`xbench.specs.ANNOTATIONS`). All annotation coordinates are in the pixel frame
of the image `Split.image(i)` returns (its native resolution); the feature
extractor resizes images and the metrics resize annotations the same way.

Part-annotated datasets (synthbirds, funnybirds) also expose:

* `Dataset.part_names`: the part slots, in a fixed order (ids 1..P in part maps);
* `Dataset.class_parts`: int array [C, P], the variant of each slot per class;
* `Dataset.minimal_sufficient_sets(c)`: the smallest subsets of class c's parts
  that no other class also has (FunnyBirds' completeness needs them);
* `Split.part_map(i)`: 0 background, 1..P part slots, P+1+j background object j;
* `Split.part_colour_map_indexed(i)` and `Dataset.part_colour_slots`: the same with every colour of a
  slot apart (FunnyBirds' two-colour eyes, feet and wings), for the reference FunnyBirds protocol;
* interventions: `Split.intervention(i, keep_parts, removed_objects)`.
"""
from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import DataError
from ..specs import DatasetSpec


class Split(abc.ABC):
    """One split of a dataset: N images with labels and annotations."""

    def __init__(self, dataset: "Dataset", name: str):
        self.dataset = dataset
        self.name = name

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @property
    @abc.abstractmethod
    def labels(self) -> np.ndarray:
        """int64 [N]: the class of each image (for multi-target images, the generating class)."""

    @abc.abstractmethod
    def image(self, i: int) -> Image.Image:
        """RGB PIL image at native resolution. Raises DataError naming the file when unreadable."""

    def item_id(self, i: int) -> str:
        """A stable name for item i (relative path or id), used in messages and predictions."""
        return f"{self.dataset.spec.name}/{self.name}/{i}"

    # annotations (only those the dataset declares) --------------------------------------
    def object_mask(self, i: int) -> np.ndarray:
        """bool [H, W]: the object (bird, pet, lesion boxes...) in image pixels."""
        raise self._no("object_mask")

    def part_map(self, i: int) -> np.ndarray:
        """int [H, W]: 0 background, 1..P part slots, P+1+j background object j."""
        raise self._no("part_map")

    def part_map_indexed(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``(index, table)`` with ``table[index] == part_map(i)``, or ``(part_map(i), None)``. Datasets
        whose maps come from a palette (synthbirds' rasteriser) return the palette index and its label
        table, so a consumer that maps labels through a table of its own (the FunnyBirds unit masks) skips
        one full-resolution gather."""
        return self.part_map(i), None

    def part_colour_map_indexed(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Like `part_map_indexed`, but every *colour* of a part slot is a unit of its own: 0 background,
        1..K the part colours (colour k + 1 belongs to slot ``dataset.part_colour_slots[k]``), K+1+j background
        object j. FunnyBirds codes two-colour slots (eyes, feet, wings: one colour per instance) and its
        framework dilates each colour on its own; datasets with one colour per slot keep this default (the
        part map itself, K = P)."""
        return self.part_map_indexed(i)

    def keypoints(self, i: int) -> np.ndarray:
        """float32 [K, 3]: (x, y, visible) per part keypoint, pixels; K = len(dataset.keypoint_names)."""
        raise self._no("keypoints")

    def boxes(self, i: int) -> np.ndarray:
        """float32 [n, 4]: boxes (x1, y1, x2, y2) in pixels; may be empty."""
        raise self._no("boxes")

    def targets(self, i: int) -> np.ndarray:
        """bool [C]: every class consistent with the image (multi-target training images)."""
        t = np.zeros(self.dataset.num_classes, dtype=bool)
        t[int(self.labels[i])] = True
        return t

    # interventions (part-annotated datasets) ---------------------------------------------
    def num_objects(self, i: int) -> int:
        """Number of removable background objects in image i."""
        raise self._no("interventions")

    def present_parts(self, i: int) -> frozenset[str]:
        """Part slots visible in image i (all of them on test images)."""
        raise self._no("interventions")

    def has_intervention(self, keep_parts: frozenset[str], removed_objects: frozenset[int]) -> bool:
        """Whether `intervention` can produce this combination (pre-rendered sets are limited)."""
        return "interventions" in self.dataset.spec.annotations

    def intervention(self, i: int, keep_parts: Iterable[str], removed_objects: Iterable[int] = ()) -> Image.Image:
        """Image i re-rendered keeping only `keep_parts` and without `removed_objects`."""
        raise self._no("interventions")

    def interventions(self, i: int, requests: Sequence[tuple[frozenset[str], frozenset[int]]]) -> list[Image.Image]:
        """Several interventions of image i; loaders may override to share work."""
        return [self.intervention(i, k, r) for k, r in requests]

    def _no(self, what: str) -> DataError:
        return DataError(f"dataset {self.dataset.spec.name!r} ({self.name} split) has no {what} annotations")


class Dataset(abc.ABC):
    """A registered dataset. Subclasses are decorated with `@register_dataset(name, ...)`."""

    spec: DatasetSpec  # set by the decorator
    splits: tuple[str, ...] = ("train", "test")
    part_names: tuple[str, ...] = ()
    #: slot index (into `part_names`) of each part colour of `Split.part_colour_map_indexed`; None: one
    #: colour per slot (the part map's own ids)
    part_colour_slots: tuple[int, ...] | None = None
    keypoint_names: tuple[str, ...] = ()

    def __init__(self, root: Path | None = None, **options: Any):
        self.root = Path(root) if root is not None else None
        self.options = options

    @property
    @abc.abstractmethod
    def num_classes(self) -> int: ...

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in range(self.num_classes)]

    @abc.abstractmethod
    def split(self, name: str) -> Split:
        """The split called `name` (one of `self.splits`)."""

    def fingerprint(self) -> dict[str, Any]:
        """Everything that identifies this dataset's content (name, version, options).

        It enters the feature-cache key and the job record, so two copies of the
        same data on different machines give the same fingerprint.
        """
        return {"name": self.spec.name, "version": getattr(self, "version", "1"), "options": dict(sorted(self.options.items()))}

    def check(self) -> list[str]:
        """Problems with the on-disk layout, one line each (empty when usable)."""
        return []

    # part-annotated datasets -----------------------------------------------------------
    @property
    def class_parts(self) -> np.ndarray:
        raise DataError(f"dataset {self.spec.name!r} has no class part definitions")

    def minimal_sufficient_sets(self, c: int) -> list[frozenset[str]]:
        raise DataError(f"dataset {self.spec.name!r} has no class part definitions")


__all__ = ["Dataset", "Split"]
