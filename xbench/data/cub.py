"""CUB-200-2011 (SPEC 1.3): 200 bird species, segmentation masks, 15 part keypoints, boxes.

Layout under the data root (the official archives unpacked there)::

    CUB_200_2011/images.txt                 <image_id> <class_dir>/<name>.jpg
    CUB_200_2011/image_class_labels.txt     <image_id> <class_id>        (1-based)
    CUB_200_2011/train_test_split.txt       <image_id> <is_train>        (1 train, 0 test)
    CUB_200_2011/bounding_boxes.txt         <image_id> <x> <y> <w> <h>
    CUB_200_2011/classes.txt                <class_id> <class_dir>
    CUB_200_2011/parts/parts.txt            <part_id> <name>             (15 parts)
    CUB_200_2011/parts/part_locs.txt        <image_id> <part_id> <x> <y> <visible>
    CUB_200_2011/images/<class_dir>/<name>.jpg
    CUB_200_2011/segmentations/<class_dir>/<name>.png   or   segmentations/... beside CUB_200_2011/

What the loader yields (choices the SPEC leaves open are marked *):

* splits from `train_test_split.txt`; within a split, images in increasing id
  order; label = class id - 1;
* `object_mask(i)`: the segmentation PNG (greyscale soft masks, 0..255, the
  average of several annotators) binarised as `> 0` (SPEC 5.3 binarises > 0);
* `keypoints(i)`: float32 [15, 3] (x, y, visible) from `part_locs.txt` in
  `parts/parts.txt` order (`keypoint_names`); coordinates as in the file
  (pixels, origin at the top-left corner); invisible parts keep the file's
  coordinates (0, 0) with visible 0;
* `boxes(i)`: float32 [1, 4] (x1, y1, x2, y2) = (x, y, x + w, y + h);
* option `crop="box"`: images cropped to their box; *the crop is the integer
  rectangle `x1 = round(x)`, `x2 = max(round(x + w), x1 + 1)` (same rule as
  `xbench.views.BoxCropView`), clipped to the image; masks are cropped the same
  way, keypoints shifted by (-x1, -y1); a keypoint that is invisible or falls
  outside the crop becomes (0, 0, 0) like CUB's invisible parts; the box
  becomes the whole crop. Default `crop="none"`
  (full images, SPEC 1.3).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError, DataError
from ..registry import register_dataset
from .folder import FileSplit, FolderDataset, Verifier, files_under, image_verifier
from .imageio import image_size, read_gray, read_rgb
from .tables import flag, parse_table

FOLDER = "CUB_200_2011"


@dataclass
class CubIndex:
    """Everything parsed from the annotation lists, plus the problems met."""

    ids: list[int]                    # image ids of images.txt, increasing
    paths: dict[int, str]             # id -> images/<path>
    labels: dict[int, int]            # id -> 0-based class
    is_train: dict[int, int]
    boxes: dict[int, tuple[float, float, float, float]]  # x, y, w, h
    class_names: list[str]
    part_names: list[str]
    problems: list[str]


def _name_of_class_dir(d: str) -> str:
    return d.split(".", 1)[1].replace("_", " ") if "." in d else d


class CubSplit(FileSplit):
    dataset: "CUB"

    def __init__(self, dataset: "CUB", name: str, ids: list[int]):
        idx = dataset.index
        base = dataset.base / "images"
        super().__init__(dataset, name, [base / idx.paths[i] for i in ids],
                         np.array([idx.labels[i] for i in ids], dtype=np.int64), [idx.paths[i] for i in ids])
        self.image_ids = np.asarray(ids, dtype=np.int64)

    # crop --------------------------------------------------------------------------------
    def crop_box(self, i: int, size: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
        """The integer crop (x1, y1, x2, y2) of image i (clipped to the image when its size is given)."""
        x, y, w, h = self.dataset.index.boxes[int(self.image_ids[int(i)])]
        x1, y1 = int(round(x)), int(round(y))
        x2, y2 = max(int(round(x + w)), x1 + 1), max(int(round(y + h)), y1 + 1)
        if size is not None:
            W, H = size
            x1, y1 = min(max(x1, 0), W - 1), min(max(y1, 0), H - 1)
            x2, y2 = min(max(x2, x1 + 1), W), min(max(y2, y1 + 1), H)
        return x1, y1, x2, y2

    def _cropped(self) -> bool:
        return self.dataset.options["crop"] == "box"

    def image(self, i: int) -> Image.Image:
        img = read_rgb(self.files[int(i)])
        if self._cropped():
            img = img.crop(self.crop_box(i, img.size))
        return img

    # annotations ---------------------------------------------------------------------------
    def mask_path(self, i: int) -> Path:
        return self.dataset.segmentation_dir() / (str(Path(self.ids[int(i)]).with_suffix(".png")))

    def object_mask(self, i: int) -> np.ndarray:
        m = read_gray(self.mask_path(i)) > 0
        if self._cropped():
            x1, y1, x2, y2 = self.crop_box(i, (m.shape[1], m.shape[0]))
            m = m[y1:y2, x1:x2]
        return m

    def keypoints(self, i: int) -> np.ndarray:
        kp = self.dataset.part_locations()[int(self.image_ids[int(i)])].copy()
        if self._cropped():
            x1, y1, x2, y2 = self.crop_box(i, image_size(self.files[int(i)]))
            kp[:, 0] -= x1
            kp[:, 1] -= y1
            outside = (kp[:, 0] < 0) | (kp[:, 1] < 0) | (kp[:, 0] >= x2 - x1) | (kp[:, 1] >= y2 - y1)
            kp[outside | (kp[:, 2] == 0)] = 0.0
        return kp

    def boxes(self, i: int) -> np.ndarray:
        if self._cropped():
            x1, y1, x2, y2 = self.crop_box(i, image_size(self.files[int(i)]))
            return np.array([[0.0, 0.0, x2 - x1, y2 - y1]], dtype=np.float32)
        x, y, w, h = self.dataset.index.boxes[int(self.image_ids[int(i)])]
        return np.array([[x, y, x + w, y + h]], dtype=np.float32)


@register_dataset(
    "cub",
    annotations={"object_mask", "keypoints", "boxes"},
    folder=FOLDER,
    licence="research and non-commercial use (Caltech); images from Flickr, owners keep copyright",
    paper="wah2011cub",
    homepage="https://www.vision.caltech.edu/datasets/cub_200_2011/",
    description="CUB-200-2011 birds (200 species) with segmentation masks, 15 part keypoints and boxes",
)
class CUB(FolderDataset):
    """CUB-200-2011 birds (200 species) with segmentation masks, 15 part keypoints and boxes."""

    title = "CUB-200-2011"
    version = "1"

    def __init__(self, root: Path | str | None = None, *, crop: str = "none"):
        if crop not in ("none", "box"):
            raise ConfigError(f"cub option crop={crop!r} is invalid: use 'none' (full images) or 'box'")
        super().__init__(root, crop=crop)
        self._index: CubIndex | None = None
        self._kp: np.ndarray | None = None
        self._kp_problems: list[str] | None = None
        self._splits: dict[str, CubSplit] = {}

    # files ---------------------------------------------------------------------------------
    def index_files(self) -> list[Path]:
        names = ["images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt",
                 "classes.txt", "parts/parts.txt", "parts/part_locs.txt"]
        return [self.base / n for n in names if (self.base / n).is_file()]

    def segmentation_dir(self) -> Path:
        inside = self.base / "segmentations"
        beside = self.base.parent / "segmentations"
        return inside if inside.is_dir() or not beside.is_dir() else beside

    # parsing ---------------------------------------------------------------------------------
    @property
    def index(self) -> CubIndex:
        if self._index is None:
            self._index = self._parse()
        return self._index

    def _parse(self) -> CubIndex:
        b = self.base
        problems: list[str] = []
        t_img = parse_table(b / "images.txt", [("image_id", int), ("path", str)], rest=True)
        t_lab = parse_table(b / "image_class_labels.txt", [("image_id", int), ("class_id", int)])
        t_split = parse_table(b / "train_test_split.txt", [("image_id", int), ("is_train", flag)])
        t_box = parse_table(b / "bounding_boxes.txt", [("image_id", int), ("x", float), ("y", float),
                                                         ("w", float), ("h", float)])
        t_cls = parse_table(b / "classes.txt", [("class_id", int), ("class_dir", str)], rest=True)
        t_parts = parse_table(b / "parts" / "parts.txt", [("part_id", int), ("name", str)], rest=True)
        images = t_img.by_key("image id")
        labels = t_lab.by_key("image id")
        split = t_split.by_key("image id")
        boxes = t_box.by_key("image id")
        classes = t_cls.by_key("class id")
        parts = t_parts.by_key("part id")
        for t in (t_img, t_lab, t_split, t_box, t_cls, t_parts):
            problems.extend(t.problems)
        n_cls = len(classes)
        if classes and sorted(classes) != list(range(1, n_cls + 1)):
            problems.append(f"{t_cls.path}: class ids must be 1..{n_cls} without gaps")
        if parts and sorted(parts) != list(range(1, len(parts) + 1)):
            problems.append(f"{t_parts.path}: part ids must be 1..{len(parts)} without gaps")
        ids = sorted(images)
        out_labels: dict[int, int] = {}
        for i in ids:
            for table, d, what in ((t_lab, labels, "class label"), (t_split, split, "train/test flag"),
                                   (t_box, boxes, "bounding box")):
                if i not in d and not table.missing:
                    problems.append(f"{table.path}: image id {i} ({images[i][1][0]}) has no {what}")
            if i in labels:
                line, (c,) = labels[i]
                if not 1 <= c <= n_cls:
                    problems.append(f"{t_lab.path}:{line}: class id {c} out of range 1..{n_cls}")
                else:
                    out_labels[i] = c - 1
            if i in boxes:
                line, (x, y, w, h) = boxes[i]
                if w <= 0 or h <= 0:
                    problems.append(f"{t_box.path}:{line}: box of image id {i} has non-positive size {w} x {h}")
        for table, d in ((t_lab, labels), (t_split, split), (t_box, boxes)):
            for i, (line, _) in sorted(d.items()):
                if i not in images and not t_img.missing:
                    problems.append(f"{table.path}:{line}: image id {i} is not in images.txt")
        return CubIndex(
            ids=ids,
            paths={i: images[i][1][0] for i in ids},
            labels=out_labels,
            is_train={i: split[i][1][0] for i in ids if i in split},
            boxes={i: tuple(float(v) for v in boxes[i][1]) for i in ids if i in boxes},  # type: ignore[misc]
            class_names=[_name_of_class_dir(classes[c][1][0]) for c in sorted(classes)],
            part_names=[parts[p][1][0] for p in sorted(parts)],
            problems=problems,
        )

    def part_locations(self) -> dict[int, np.ndarray]:
        """image id -> float32 [K, 3] (x, y, visible); parsed once from part_locs.txt."""
        if self._kp is None:
            path = self.base / "parts" / "part_locs.txt"
            if not path.is_file():
                raise DataError(f"{path}: file is missing; restore it (see `xbench data check cub`)")
            self._kp, self._kp_problems = self._parse_part_locs()
        return self._kp  # type: ignore[return-value]

    def _parse_part_locs(self) -> tuple[dict[int, np.ndarray], list[str]]:
        path = self.base / "parts" / "part_locs.txt"
        k = len(self.index.part_names)
        t = parse_table(path, [("image_id", int), ("part_id", int), ("x", float), ("y", float), ("visible", flag)])
        problems = list(t.problems)
        known = set(self.index.paths)
        kp: dict[int, np.ndarray] = {i: np.zeros((k, 3), dtype=np.float32) for i in self.index.ids}
        seen: dict[int, set[int]] = {i: set() for i in self.index.ids}
        for line, (i, p, x, y, v) in t.rows:
            if i not in known:
                problems.append(f"{path}:{line}: image id {i} is not in images.txt")
            elif not 1 <= p <= k:
                problems.append(f"{path}:{line}: part id {p} out of range 1..{k}")
            else:
                kp[i][p - 1] = (x, y, v)
                seen[i].add(p)
        if not t.missing:
            for i in self.index.ids:
                if len(seen[i]) != k:
                    problems.append(f"{path}: image id {i} ({self.index.paths[i]}) has {len(seen[i])} of {k} "
                                    f"part locations")
        return kp, problems

    # Dataset API ------------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.index.class_names)

    @property
    def class_names(self) -> list[str]:
        return list(self.index.class_names)

    @property
    def keypoint_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self.index.part_names)

    def split(self, name: str) -> CubSplit:
        if name not in self.splits:
            raise ConfigError(f"cub has no split {name!r}; valid splits: {', '.join(self.splits)}")
        if name not in self._splits:
            idx = self.index
            if idx.problems:
                raise DataError(f"{idx.problems[0]}" + (f" (and {len(idx.problems) - 1} more; run `xbench data "
                                                        f"check cub`)" if len(idx.problems) > 1 else ""))
            want = 1 if name == "train" else 0
            self._splits[name] = CubSplit(self, name, [i for i in idx.ids if idx.is_train[i] == want])
        return self._splits[name]

    # checking ----------------------------------------------------------------------------------
    def layout_problems(self) -> list[str]:
        idx = self.index
        problems = list(idx.problems)
        if idx.part_names:
            if self._kp_problems is None:
                self._kp, self._kp_problems = self._parse_part_locs()
            problems.extend(self._kp_problems)
        present = files_under(self.base / "images")
        for i in idx.ids:
            if idx.paths[i] not in present:
                problems.append(f"{self.base / 'images' / idx.paths[i]}: image listed in images.txt (id {i}) "
                                f"is missing")
        seg = self.segmentation_dir()
        if not seg.is_dir():
            problems.append(f"{self.base / 'segmentations'}: segmentation masks are missing (looked there and in "
                            f"{self.base.parent / 'segmentations'}); run `xbench data fetch cub --data-root "
                            f"{self.root}`")
        else:
            masks = files_under(seg)
            for i in idx.ids:
                rel = Path(idx.paths[i]).with_suffix(".png").as_posix()
                if rel not in masks:
                    problems.append(f"{seg / rel}: segmentation mask of image id {i} is missing")
        return problems

    def files_to_decode(self) -> list[tuple[Path, Verifier]]:
        idx = self.index
        seg = self.segmentation_dir()
        out = [(self.base / "images" / idx.paths[i], image_verifier) for i in idx.ids]
        out += [(seg / Path(idx.paths[i]).with_suffix(".png"), image_verifier) for i in idx.ids]
        return out


__all__ = ["CUB", "CubSplit"]
