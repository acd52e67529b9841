"""Oxford-IIIT Pet (SPEC 1.5): 37 cat and dog breeds, trimaps, head boxes.

Layout under the data root (torchvision's `oxford-iiit-pet/`, the two official
archives unpacked into it)::

    oxford-iiit-pet/images/<name>.jpg
    oxford-iiit-pet/annotations/trainval.txt    <name> <class_id> <species> <breed_id>   (class_id 1..37)
    oxford-iiit-pet/annotations/test.txt
    oxford-iiit-pet/annotations/trimaps/<name>.png   1 foreground, 2 background, 3 border
    oxford-iiit-pet/annotations/xmls/<name>.xml      head box (PASCAL VOC), trainval images only

What the loader yields (choices the SPEC leaves open are marked *):

* splits `train` = trainval.txt and `test` = test.txt, in file order; label =
  class_id - 1; class names = the breed part of the image names
  (`american_bulldog_12` -> `american bulldog`);
* `object_mask(i)`: trimap classes 1 and 3 (the pet and its border; SPEC 5.3);
* `boxes(i)`: float32 [n, 4] head boxes from `xmls/<name>.xml` when that file
  exists, else an empty [0, 4] array (the official release annotates heads of
  trainval images only). *VOC coordinates are 1-based and inclusive; they are
  converted to the half-open 0-based frame of the other loaders:
  (xmin - 1, ymin - 1, xmax, ymax).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..registry import register_dataset
from .folder import FileSplit, FolderDataset, Verifier, files_under, image_verifier
from .imageio import read_gray
from .tables import parse_table

FOLDER = "oxford-iiit-pet"
LIST_FILES = {"train": "trainval.txt", "test": "test.txt"}


def breed_of(name: str) -> str:
    return name.rsplit("_", 1)[0].replace("_", " ")


def read_voc_boxes(path: Path) -> np.ndarray:
    """float32 [n, 4] boxes of a PASCAL VOC xml, converted to 0-based half-open pixels."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise DataError(f"{path}: file is missing") from None
    except (ET.ParseError, OSError) as err:
        raise DataError(f"{path}: cannot read head box annotation ({err}); replace the file") from None
    out = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            continue
        try:
            x1, y1, x2, y2 = (float(bb.findtext(k, "")) for k in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError:
            raise DataError(f"{path}: malformed <bndbox> (xmin/ymin/xmax/ymax must be numbers)") from None
        out.append((x1 - 1.0, y1 - 1.0, x2, y2))
    return np.asarray(out, dtype=np.float32).reshape(-1, 4)


class PetsSplit(FileSplit):
    dataset: "Pets"

    def __init__(self, dataset: "Pets", name: str, names: list[str], labels: list[int]):
        super().__init__(dataset, name, [dataset.base / "images" / f"{n}.jpg" for n in names],
                         np.asarray(labels, dtype=np.int64), names)
        self.names = names

    def trimap_path(self, i: int) -> Path:
        return self.dataset.base / "annotations" / "trimaps" / f"{self.names[int(i)]}.png"

    def object_mask(self, i: int) -> np.ndarray:
        t = read_gray(self.trimap_path(i))
        return (t == 1) | (t == 3)

    def boxes(self, i: int) -> np.ndarray:
        p = self.dataset.base / "annotations" / "xmls" / f"{self.names[int(i)]}.xml"
        if not p.is_file():
            return np.zeros((0, 4), dtype=np.float32)
        return read_voc_boxes(p)


@register_dataset(
    "pets",
    annotations={"object_mask", "boxes"},
    folder=FOLDER,
    licence="CC BY-SA 4.0 (annotations); images keep their owners' copyright",
    paper="parkhi2012pets",
    homepage="https://www.robots.ox.ac.uk/~vgg/data/pets/",
    description="Oxford-IIIT Pet (37 breeds) with trimap masks and head boxes",
)
class Pets(FolderDataset):
    """Oxford-IIIT Pet (37 breeds) with trimap masks and head boxes."""

    title = "Oxford-IIIT Pet"
    version = "1"

    def __init__(self, root: Path | str | None = None):
        super().__init__(root)
        self._lists: dict[str, list[tuple[int, str, int]]] | None = None  # split -> (line, name, class_id)
        self._problems: list[str] = []
        self._class_names: list[str] = []
        self._splits: dict[str, PetsSplit] = {}

    def index_files(self) -> list[Path]:
        return [p for p in (self.base / "annotations" / f for f in LIST_FILES.values()) if p.is_file()]

    def _parse(self) -> None:
        if self._lists is not None:
            return
        lists: dict[str, list[tuple[int, str, int]]] = {}
        problems: list[str] = []
        breed_of_class: dict[int, tuple[str, str]] = {}   # class_id -> (breed, where first seen)
        class_of_breed: dict[str, tuple[int, str]] = {}   # breed -> (class_id, where first seen)
        seen: dict[str, str] = {}
        for split, fname in LIST_FILES.items():
            path = self.base / "annotations" / fname
            t = parse_table(path, [("name", str), ("class_id", int), ("species", int), ("breed_id", int)],
                            comment="#")
            problems.extend(t.problems)
            rows = []
            for line, (name, cid, species, _breed) in t.rows:
                where = f"{path}:{line}"
                if species not in (1, 2):
                    problems.append(f"{where}: species {species} must be 1 (cat) or 2 (dog)")
                if name in seen:
                    problems.append(f"{where}: image {name!r} is listed twice (first at {seen[name]})")
                    continue
                seen[name] = where
                b = breed_of(name)
                if cid in breed_of_class and breed_of_class[cid][0] != b:
                    problems.append(f"{where}: class id {cid} is given to breed {b!r} but to "
                                    f"{breed_of_class[cid][0]!r} at {breed_of_class[cid][1]}")
                if b in class_of_breed and class_of_breed[b][0] != cid:
                    problems.append(f"{where}: breed {b!r} has class id {cid} here but {class_of_breed[b][0]} at "
                                    f"{class_of_breed[b][1]}")
                breed_of_class.setdefault(cid, (b, where))
                class_of_breed.setdefault(b, (cid, where))
                rows.append((line, name, cid))
            lists[split] = rows
        ids = sorted(breed_of_class)
        if ids and ids != list(range(1, len(ids) + 1)):
            bad = [c for c in ids if not 1 <= c <= len(ids)] or ids
            problems.append(f"{self.base / 'annotations'}: class ids must be 1..K without gaps; "
                            f"class id {bad[-1]} out of range 1..{len(ids)}")
        self._class_names = [breed_of_class[c][0] for c in ids]
        self._lists, self._problems = lists, problems

    @property
    def num_classes(self) -> int:
        self._parse()
        return len(self._class_names)

    @property
    def class_names(self) -> list[str]:
        self._parse()
        return list(self._class_names)

    def split(self, name: str) -> PetsSplit:
        if name not in self.splits:
            raise ConfigError(f"pets has no split {name!r}; valid splits: {', '.join(self.splits)}")
        self._parse()
        if self._problems:
            more = f" (and {len(self._problems) - 1} more; run `xbench data check pets`)" if len(self._problems) > 1 else ""
            raise DataError(self._problems[0] + more)
        if name not in self._splits:
            rows = self._lists[name]  # type: ignore[index]
            self._splits[name] = PetsSplit(self, name, [r[1] for r in rows], [r[2] - 1 for r in rows])
        return self._splits[name]

    def layout_problems(self) -> list[str]:
        self._parse()
        problems = list(self._problems)
        images = files_under(self.base / "images")
        trimaps = files_under(self.base / "annotations" / "trimaps")
        for split, rows in (self._lists or {}).items():
            for line, name, _ in rows:
                if f"{name}.jpg" not in images:
                    problems.append(f"{self.base / 'images' / (name + '.jpg')}: image listed in "
                                    f"{LIST_FILES[split]} (line {line}) is missing")
                if f"{name}.png" not in trimaps:
                    problems.append(f"{self.base / 'annotations' / 'trimaps' / (name + '.png')}: trimap of "
                                    f"{name} is missing")
        return problems

    def files_to_decode(self) -> list[tuple[Path, Verifier]]:
        self._parse()
        out: list[tuple[Path, Verifier]] = []
        xml_dir = self.base / "annotations" / "xmls"
        for rows in (self._lists or {}).values():
            for _line, name, _ in rows:
                out.append((self.base / "images" / f"{name}.jpg", image_verifier))
                out.append((self.base / "annotations" / "trimaps" / f"{name}.png", image_verifier))
                out.append((xml_dir / f"{name}.xml", _xml_verifier))
        return out


def _xml_verifier(path: Path) -> str | None:
    try:
        read_voc_boxes(path)
    except DataError as err:
        return str(err).split("; replace the file")[0]
    return None


__all__ = ["Pets", "PetsSplit", "read_voc_boxes", "breed_of"]
