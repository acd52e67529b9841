"""Tiny Oxford-IIIT Pet and Stanford Cars folders in their official formats, with the truth they wrote."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

BREEDS = [("Abyssinian", 1), ("american_bulldog", 2), ("Bengal", 1)]  # (breed, species: 1 cat, 2 dog)


@dataclass
class PetsTruth:
    base: Path
    splits: dict[str, list[str]] = field(default_factory=dict)
    label: dict[str, int] = field(default_factory=dict)
    mask: dict[str, np.ndarray] = field(default_factory=dict)
    boxes: dict[str, np.ndarray] = field(default_factory=dict)   # expected, 0-based half-open


def _jpeg(path: Path, w: int, h: int, value: int) -> None:
    arr = np.full((h, w, 3), value, dtype=np.uint8)
    arr[::3, ::2] = 255 - value
    Image.fromarray(arr).save(path, quality=90)


def _voc(path: Path, boxes_1based: list[tuple[int, int, int, int]], w: int, h: int) -> None:
    objs = "".join(
        f"<object><name>cat</name><pose>Frontal</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for a, b, c, d in boxes_1based)
    path.write_text(f"<annotation><folder>OXIIIT</folder><filename>{path.stem}.jpg</filename><size><width>{w}</width>"
                    f"<height>{h}</height><depth>3</depth></size><segmented>0</segmented>{objs}</annotation>")


def make_pets(root: Path, per_split: int = 2) -> PetsTruth:
    base = root / "oxford-iiit-pet"
    for d in ("images", "annotations/trimaps", "annotations/xmls"):
        (base / d).mkdir(parents=True)
    t = PetsTruth(base, {"train": [], "test": []})
    lines: dict[str, list[str]] = {"train": [], "test": []}
    n = 0
    for c, (breed, species) in enumerate(BREEDS):
        for k in range(2 * per_split):
            n += 1
            split = "train" if k < per_split else "test"
            name = f"{breed}_{k + 1}"
            w, h = 30 + 3 * k + c, 26 + k
            _jpeg(base / "images" / f"{name}.jpg", w, h, 40 + 50 * c)
            tri = np.full((h, w), 2, dtype=np.uint8)        # background
            tri[4:14 + k, 5:18] = 3                          # border ring
            tri[5:13 + k, 6:17] = 1                          # pet
            Image.fromarray(tri, "L").save(base / "annotations" / "trimaps" / f"{name}.png")
            t.mask[name] = (tri == 1) | (tri == 3)
            if split == "train":
                boxes = [(6, 5, 17, 12)] + ([(2, 2, 4, 5)] if k == 1 else [])
                _voc(base / "annotations" / "xmls" / f"{name}.xml", boxes, w, h)
                t.boxes[name] = np.array([(a - 1, b - 1, cc, d) for a, b, cc, d in boxes], dtype=np.float32)
            else:
                t.boxes[name] = np.zeros((0, 4), dtype=np.float32)
            t.splits[split].append(name)
            t.label[name] = c
            lines[split].append(f"{name} {c + 1} {species} {k + 1}")
    (base / "annotations" / "trainval.txt").write_text("\n".join(lines["train"]) + "\n")
    (base / "annotations" / "test.txt").write_text("\n".join(lines["test"]) + "\n")
    (base / "annotations" / "list.txt").write_text("#Image CLASS-ID SPECIES BREED ID\n")
    return t


CAR_NAMES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi TTS Coupe 2012"]
MAT_FIELDS = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]


@dataclass
class CarsTruth:
    base: Path
    fnames: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, list[int]] = field(default_factory=dict)            # 0-based
    boxes: dict[str, np.ndarray] = field(default_factory=dict)            # expected, 0-based half-open


def write_annos(path: Path, recs: list[tuple[int, int, int, int, int, str]]) -> None:
    import scipy.io

    arr = np.zeros(len(recs), dtype=[(f, "O") for f in MAT_FIELDS])
    for k, (x1, y1, x2, y2, cls, fname) in enumerate(recs):
        arr[k] = (np.uint16(x1), np.uint16(y1), np.uint16(x2), np.uint16(y2), np.uint8(cls), fname)
    scipy.io.savemat(str(path), {"annotations": arr.reshape(1, -1)})


def make_cars(root: Path, per_class: int = 2, nested: bool = False, test_in_devkit: bool = False) -> CarsTruth:
    import scipy.io

    base = root / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    scipy.io.savemat(str(base / "devkit" / "cars_meta.mat"),
                     {"class_names": np.array(CAR_NAMES, dtype=object).reshape(1, -1)})
    t = CarsTruth(base)
    for split in ("train", "test"):
        d = base / f"cars_{split}" / (f"cars_{split}" if nested else "")
        d.mkdir(parents=True)
        recs = []
        for c in range(len(CAR_NAMES)):
            for k in range(per_class):
                fname = f"{len(recs) + 1:05d}.jpg"
                w, h = 40 + c, 30 + k
                _jpeg(d / fname, w, h, 30 + 60 * c)
                recs.append((3 + k, 2 + c, 30 + c, 25, c + 1, fname))
        if split == "train":
            write_annos(base / "devkit" / "cars_train_annos.mat", recs)
        else:
            write_annos((base / "devkit" if test_in_devkit else base) / "cars_test_annos_withlabels.mat", recs)
        t.fnames[split] = [r[5] for r in recs]
        t.labels[split] = [r[4] - 1 for r in recs]
        t.boxes[split] = np.array([(r[0] - 1, r[1] - 1, r[2], r[3]) for r in recs], dtype=np.float32)
    return t
