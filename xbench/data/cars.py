"""Stanford Cars (SPEC 1.4): 196 car models, bounding boxes, devkit .mat annotations.

Layout under the data root (the one torchvision's `StanfordCars` reads)::

    stanford_cars/devkit/cars_meta.mat              class_names (196)
    stanford_cars/devkit/cars_train_annos.mat       annotations: bbox_x1 bbox_y1 bbox_x2 bbox_y2 class fname
    stanford_cars/cars_test_annos_withlabels.mat    same fields for the test images (also accepted in devkit/)
    stanford_cars/cars_train/<fname>                (a Kaggle-style cars_train/cars_train/ is accepted too)
    stanford_cars/cars_test/<fname>

The original download address is gone; `xbench data fetch cars` prints where
to get the files (docs/datasets.md).

What the loader yields (choices the SPEC leaves open are marked *):

* splits `train` / `test` from the two annotation files, in file order;
  label = class - 1 (`class` is 1-based);
* `boxes(i)`: float32 [1, 4]. *The devkit's boxes are MATLAB 1-based
  inclusive pixel indices; they are converted to the half-open 0-based frame
  of the other loaders: (x1 - 1, y1 - 1, x2, y2).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..registry import register_dataset
from .folder import FileSplit, FolderDataset, Verifier, files_under, image_verifier

FOLDER = "stanford_cars"
FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")


def load_mat(path: Path) -> dict[str, Any]:
    import scipy.io
    from scipy.io.matlab import MatReadError

    try:
        return scipy.io.loadmat(str(path), squeeze_me=True)
    except FileNotFoundError:
        raise DataError(f"{path}: file is missing; see `xbench data fetch cars` for where to get it") from None
    except (MatReadError, OSError, ValueError, TypeError, NotImplementedError) as err:
        raise DataError(f"{path}: cannot read .mat file ({str(err).splitlines()[0] if str(err) else type(err).__name__});"
                        f" replace it") from None


def read_annotations(path: Path) -> list[tuple[str, int, tuple[float, float, float, float]]]:
    """(fname, class (1-based), (x1, y1, x2, y2) as in the file) per record of a devkit annotation .mat."""
    mat = load_mat(path)
    if "annotations" not in mat:
        raise DataError(f"{path}: no 'annotations' variable; this is not a Stanford Cars annotation file")
    ann = np.atleast_1d(mat["annotations"])
    names = ann.dtype.names or ()
    missing = [f for f in FIELDS if f not in names]
    if missing:
        raise DataError(f"{path}: annotations lack field(s) {', '.join(missing)} (test annotations must be "
                        f"cars_test_annos_withlabels.mat, which has 'class')")
    out = []
    for k, rec in enumerate(ann):
        try:
            box = tuple(float(rec[f]) for f in FIELDS[:4])
            out.append((str(rec["fname"]), int(rec["class"]), box))
        except (TypeError, ValueError):
            raise DataError(f"{path}: record {k + 1} is malformed (fields must be numbers and a file name)") from None
    return out  # type: ignore[return-value]


class CarsSplit(FileSplit):
    dataset: "Cars"

    def __init__(self, dataset: "Cars", name: str, files: list[Path], labels: list[int], boxes: np.ndarray,
                 fnames: list[str]):
        super().__init__(dataset, name, files, np.asarray(labels, dtype=np.int64), fnames)
        self._boxes = boxes

    def boxes(self, i: int) -> np.ndarray:
        return self._boxes[int(i)][None].copy()


@register_dataset(
    "cars",
    annotations={"boxes"},
    folder=FOLDER,
    licence="research use (ImageNet-style terms); images keep their owners' copyright",
    paper="krause2013cars",
    homepage="https://ai.stanford.edu/~jkrause/cars/car_dataset.html",
    description="Stanford Cars (196 models) from the devkit .mat files, with bounding boxes",
)
class Cars(FolderDataset):
    """Stanford Cars (196 models) from the devkit .mat files, with bounding boxes."""

    title = "Stanford Cars"
    version = "1"

    def __init__(self, root: Path | str | None = None):
        super().__init__(root)
        self._names: list[str] | None = None
        self._splits: dict[str, CarsSplit] = {}

    # files ---------------------------------------------------------------------------------
    def annotation_file(self, split: str) -> Path:
        if split == "train":
            return self.base / "devkit" / "cars_train_annos.mat"
        top = self.base / "cars_test_annos_withlabels.mat"
        alt = self.base / "devkit" / "cars_test_annos_withlabels.mat"
        return top if top.exists() or not alt.exists() else alt

    def image_dir(self, split: str) -> Path:
        d = self.base / f"cars_{split}"
        nested = d / f"cars_{split}"
        return nested if nested.is_dir() else d

    def index_files(self) -> list[Path]:
        files = [self.base / "devkit" / "cars_meta.mat", self.annotation_file("train"), self.annotation_file("test")]
        return [p for p in files if p.is_file()]

    # Dataset API ------------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        if self._names is None:
            path = self.base / "devkit" / "cars_meta.mat"
            mat = load_mat(path)
            if "class_names" not in mat:
                raise DataError(f"{path}: no 'class_names' variable; this is not the devkit's cars_meta.mat")
            self._names = [str(n) for n in np.atleast_1d(mat["class_names"])]
        return list(self._names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> CarsSplit:
        if name not in self.splits:
            raise ConfigError(f"cars has no split {name!r}; valid splits: {', '.join(self.splits)}")
        if name not in self._splits:
            path = self.annotation_file(name)
            recs = read_annotations(path)
            c = self.num_classes
            for k, (fname, cls, _) in enumerate(recs):
                if not 1 <= cls <= c:
                    raise DataError(f"{path}: record {k + 1} ({fname}) has class {cls}, out of range 1..{c}")
            d = self.image_dir(name)
            boxes = np.array([(x1 - 1.0, y1 - 1.0, x2, y2) for _, _, (x1, y1, x2, y2) in recs],
                             dtype=np.float32).reshape(-1, 4)
            self._splits[name] = CarsSplit(self, name, [d / r[0] for r in recs], [r[1] - 1 for r in recs], boxes,
                                           [r[0] for r in recs])
        return self._splits[name]

    # checking ----------------------------------------------------------------------------------
    def layout_problems(self) -> list[str]:
        problems: list[str] = []
        try:
            c = self.num_classes
        except DataError as err:
            problems.append(str(err))
            c = None
        for split in self.splits:
            path = self.annotation_file(split)
            try:
                recs = read_annotations(path)
            except DataError as err:
                problems.append(str(err))
                continue
            d = self.image_dir(split)
            present = files_under(d)
            if not d.is_dir():
                problems.append(f"{d}: image folder is missing")
                continue
            for k, (fname, cls, (x1, y1, x2, y2)) in enumerate(recs):
                if c is not None and not 1 <= cls <= c:
                    problems.append(f"{path}: record {k + 1} ({fname}) has class {cls}, out of range 1..{c}")
                if x2 < x1 or y2 < y1:
                    problems.append(f"{path}: record {k + 1} ({fname}) has an empty box ({x1}, {y1}, {x2}, {y2})")
                if fname not in present:
                    problems.append(f"{d / fname}: image listed in {path.name} (record {k + 1}) is missing")
        return problems

    def files_to_decode(self) -> list[tuple[Path, Verifier]]:
        out: list[tuple[Path, Verifier]] = []
        for split in self.splits:
            try:
                recs = read_annotations(self.annotation_file(split))
            except DataError:
                continue
            out += [(self.image_dir(split) / r[0], image_verifier) for r in recs]
        return out


__all__ = ["Cars", "CarsSplit", "read_annotations"]
