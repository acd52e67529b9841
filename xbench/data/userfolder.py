"""A dataset given by a folder of your own images: `--datasets folder:PATH`.

Layout (paths relative to PATH; every choice below is xbench's, documented in docs/api.md)::

    train/<class>/<image>       training images, one sub-folder per class (sub-folders below it are read too)
    test/<class>/<image>        test images
    index.csv                   alternative to the folders: header `path,label,split`, one image per line
                                (path relative to PATH, label = class name, split = train | test; extra
                                columns are ignored); when index.csv exists it alone defines the items
    classes.txt                 optional: the class names, one per line, in label order
    masks/<image path>.<ext>    optional: a binary object mask per image
    parts.json                  optional: keypoints (and boxes) per image

* Images: files with an image extension (`IMAGE_EXTENSIONS`, case-insensitive);
  hidden files (name starting with '.') and other files are ignored. Within a
  split, the folder layout orders items by relative path (byte order); index.csv
  keeps its line order.
* Classes: classes.txt when present (order = label index), else the sorted names
  of the training classes (`train/` sub-folders that hold an image, or the
  distinct training labels of index.csv). A test label that is not a class is a
  problem, as is a class without training images.
* Masks: `masks/<relative image path with its extension replaced by any image
  extension>`, e.g. `train/wren/01.jpg` -> `masks/train/wren/01.png`. A pixel
  is object when its grey value is > 0 (SPEC 5.3 binarises > 0; save masks as
  PNG: JPEG noise would turn background pixels into object). A mask must have
  its image's size. When `masks/` exists every test image needs a mask (the
  metrics score the test split); training images may have one.
* parts.json::

      {"keypoint_names": ["beak", "eye", "tail"],
       "images": {"test/wren/01.jpg": {"keypoints": {"beak": [120.0, 41.5], "eye": [101, 35, 1]},
                                       "box": [12, 20, 210, 188]}}}

  keypoint coordinates are pixels of the image (x right, y down, origin at the
  top-left corner) given as [x, y] or [x, y, visible] (visible 0 or 1, default
  1); a keypoint that is not listed is invisible; an image that is not listed
  has no visible keypoint. `box` (x1, y1, x2, y2 pixels, optional) is the
  object's box; an image without one uses the whole image (what
  `BoxCropView` does with an empty box list).
* Declared annotations (the instance's `spec`, which the runner matches
  against each metric's needs): `object_mask` when `masks/` exists (so
  plausibility is computed), `keypoints` and `boxes` when `parts.json` exists
  (so concept consistency and stability use SPEC 5.4's keypoint protocol (a));
  otherwise those metrics are reported n/a.
* Name: the instance's name is `folder-<folder name>` (characters other than
  letters, digits, '.', '_' and '-' replaced by '_'), or `folder-<name>` with
  the option `name`; it names the jobs in the results store and the leaderboard.
* Identity (`fingerprint()`, which enters the feature-cache key and every job
  record): the resolved folder path, the class names and a digest of the
  content: every item's split, relative path, label and file size, every mask's
  relative path and size, and the bytes of index.csv, classes.txt and
  parts.json (image bytes are not read: a file replaced by another of the same
  size goes unnoticed; timestamps never count).

`parse_dataset_arg("folder:PATH")` turns the command-line form into the
registered name `folder` and its `path` option.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import DataError
from ..registry import register_dataset
from .folder import FileSplit, FolderDataset, Verifier, files_under, image_verifier
from .imageio import image_size, read_gray
from .userparts import Parts, parse_parts

PREFIX = "folder:"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SPLITS = ("train", "test")
CSV_COLUMNS = ("path", "label", "split")


def parse_dataset_arg(name: str) -> tuple[str, dict[str, Any]]:
    """`folder:PATH` -> ("folder", {"path": PATH}); any other name -> (name, {})."""
    if name.startswith(PREFIX):
        path = name[len(PREFIX):]
        if not path:
            raise DataError("--datasets folder: needs a path, e.g. --datasets folder:/data/my_birds")
        return "folder", {"path": path}
    return name, {}


def is_image(rel: str) -> bool:
    return PurePosixPath(rel).suffix.lower() in IMAGE_EXTENSIONS and not PurePosixPath(rel).name.startswith(".")


def _stem(rel: str) -> str:
    p = PurePosixPath(rel)
    return str(p.with_suffix("")) if p.suffix else str(p)


@dataclass
class FolderIndex:
    classes: list[str]
    items: dict[str, list[tuple[str, int]]]   # split -> [(relative path, label)]
    masks: dict[str, str]                     # relative image path -> relative mask path (under masks/)
    parts: Parts | None
    problems: list[str]


class UserFolderSplit(FileSplit):
    dataset: "UserFolder"

    def _rel(self, i: int) -> str:
        return self.ids[int(i)]

    def item_id(self, i: int) -> str:
        return f"{self.dataset.spec.name}/{self._rel(i)}"

    def object_mask(self, i: int) -> np.ndarray:
        if "object_mask" not in self.dataset.spec.annotations:
            raise self._no("object_mask")
        rel = self._rel(i)
        m = self.dataset.index.masks.get(rel)
        if m is None:
            raise DataError(f"{self.dataset.base / 'masks' / _stem(rel)}.png: mask of image {rel} is missing; "
                            f"add it (any image extension) or remove {self.dataset.base / 'masks'}")
        path = self.dataset.base / "masks" / m
        mask = read_gray(path) > 0
        w, h = image_size(self.files[int(i)])
        if mask.shape != (h, w):
            raise DataError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but image {rel} is {w}x{h}; "
                            f"save the mask at its image's size")
        return mask

    def keypoints(self, i: int) -> np.ndarray:
        parts = self.dataset.index.parts
        if parts is None:
            raise self._no("keypoints")
        kp = parts.keypoints.get(self._rel(i))
        return kp.copy() if kp is not None else np.zeros((len(parts.names), 3), dtype=np.float32)

    def boxes(self, i: int) -> np.ndarray:
        parts = self.dataset.index.parts
        if parts is None:
            raise self._no("boxes")
        b = parts.boxes.get(self._rel(i))
        return b.copy() if b is not None else np.zeros((0, 4), dtype=np.float32)


@register_dataset(
    "folder",
    annotations=set(),             # per folder: the instance's spec says what it has
    folder="PATH",                 # shown by `xbench ls`; the instance's spec holds the real path
    licence="yours",
    description="your own images: --datasets folder:PATH (train/<class>/, test/<class>/ or index.csv; "
                "optional masks/ and parts.json)",
)
class UserFolder(FolderDataset):
    """Your own images: --datasets folder:PATH (train/<class>/, test/<class>/ or index.csv; optional masks/, parts.json)."""

    title = "folder"
    version = "1"

    def __init__(self, root: Path | str | None = None, *, path: str | os.PathLike, name: str | None = None):
        base = Path(path).expanduser().resolve()
        opts: dict[str, Any] = {"path": str(base)}
        if name:
            opts["name"] = str(name)
        super().__init__(base, **opts)  # the data root does not apply: the folder is given
        self._index: FolderIndex | None = None
        self._splits: dict[str, UserFolderSplit] = {}
        ann = set()
        if (self.base / "masks").is_dir():
            ann.add("object_mask")
        if (self.base / "parts.json").is_file():
            ann |= {"keypoints", "boxes"}
        label = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name) if name else base.name) or "root"
        self.spec = dataclasses.replace(type(self).spec, name=f"folder-{label}", annotations=frozenset(ann),
                                        folder=str(base))
        self.cli_name = f"{PREFIX}{base}"

    # where the data is -------------------------------------------------------------------
    def locate(self) -> Path:
        base = self.root
        if not base.is_dir():  # type: ignore[union-attr]
            raise DataError(f"dataset folder {base} does not exist; pass --datasets folder:PATH with a folder holding "
                            f"train/<class>/ and test/<class>/ (or index.csv), see docs/api.md")
        if not (base / "index.csv").is_file() and not any((base / s).is_dir() for s in SPLITS):  # type: ignore[operator]
            raise DataError(f"dataset folder {base} has neither train/ and test/ class folders nor an index.csv; "
                            f"lay it out as PATH/train/<class>/*, PATH/test/<class>/* (see docs/api.md)")
        return base  # type: ignore[return-value]

    # parsing -------------------------------------------------------------------------------
    @property
    def index(self) -> FolderIndex:
        if self._index is None:
            self._index = self._parse()
        return self._index

    def _parse(self) -> FolderIndex:
        problems: list[str] = []
        listed = self._classes_txt(problems)
        csv_layout = (self.base / "index.csv").is_file()
        if csv_layout:
            raw = self._read_csv(problems)
        else:
            raw = self._read_folders(problems)
        classes = listed if listed is not None else sorted({lab for _, lab, _ in raw["train"]})
        pos = {c: k for k, c in enumerate(classes)}
        items: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
        what = "in classes.txt" if listed is not None else "a training class"
        for s in SPLITS:
            unknown: dict[str, int] = {}  # class folder -> images (the folder layout: one line per folder)
            for rel, lab, where in raw[s]:
                if lab in pos:
                    items[s].append((rel, pos[lab]))
                elif csv_layout:
                    problems.append(f"{where}: label {lab!r} of {s} image {rel} is not {what}")
                else:
                    unknown[where] = unknown.get(where, 0) + 1
            for where, n in unknown.items():
                problems.append(f"{where}: class {Path(where).name!r} ({n} {s} image{'s' * (n != 1)}) is not {what}")
        trained = {lab for _, lab in items["train"]}
        for k, c in enumerate(classes):
            if k not in trained:
                problems.append(f"{self.base / 'train'}: class {c!r} has no training image")
        for s in SPLITS:
            if not raw[s] and not any(p.startswith(str(self.base / s)) for p in problems):
                problems.append(f"{self.base}: the {s} split has no images")
        masks = self._masks(items, problems)
        parts = self._parts(items, problems) if (self.base / "parts.json").is_file() else None
        return FolderIndex(classes=classes, items=items, masks=masks, parts=parts, problems=problems)

    def _classes_txt(self, problems: list[str]) -> list[str] | None:
        p = self.base / "classes.txt"
        if not p.is_file():
            return None
        out: list[str] = []
        seen: dict[str, int] = {}
        for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            c = line.strip()
            if not c:
                continue
            if c in seen:
                problems.append(f"{p}:{n}: class {c!r} listed twice (first on line {seen[c]})")
                continue
            seen[c] = n
            out.append(c)
        if not out:
            problems.append(f"{p}: lists no class; write one class name per line or delete the file")
        return out

    def _read_folders(self, problems: list[str]) -> dict[str, list[tuple[str, str, str]]]:
        raw: dict[str, list[tuple[str, str, str]]] = {s: [] for s in SPLITS}
        for s in SPLITS:
            d = self.base / s
            if not d.is_dir():
                problems.append(f"{d}: folder is missing; put the {s} images in {d}/<class>/")
                continue
            for entry in sorted(d.iterdir(), key=lambda e: e.name):
                if entry.name.startswith("."):
                    continue
                if entry.is_file():
                    if is_image(entry.name):
                        problems.append(f"{entry}: image outside a class folder; move it into {d}/<class>/")
                    continue
                files = sorted(f for f in files_under(entry) if is_image(f))
                if not files:
                    problems.append(f"{entry}: class folder has no images")
                for f in files:
                    raw[s].append((f"{s}/{entry.name}/{f}", entry.name, str(entry)))
        return raw

    def _read_csv(self, problems: list[str]) -> dict[str, list[tuple[str, str, str]]]:
        p = self.base / "index.csv"
        raw: dict[str, list[tuple[str, str, str]]] = {s: [] for s in SPLITS}
        rows = list(csv.reader(io.StringIO(p.read_text(encoding="utf-8-sig", errors="replace"))))
        if not rows:
            problems.append(f"{p}:1: file is empty; write the header path,label,split and one line per image")
            return raw
        header = [h.strip() for h in rows[0]]
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            problems.append(f"{p}:1: header {','.join(header)!r} lacks the column(s) {', '.join(missing)}; "
                            f"the first line must name the columns path,label,split")
            return raw
        col = {c: header.index(c) for c in CSV_COLUMNS}
        present = files_under(self.base)
        seen: dict[str, int] = {}
        for n, row in enumerate(rows[1:], 2):
            if not row or all(not v.strip() for v in row):
                continue
            where = f"{p}:{n}"
            if len(row) != len(header):
                problems.append(f"{where}: expected {len(header)} fields, found {len(row)}")
                continue
            rel, lab, s = (row[col[c]].strip() for c in CSV_COLUMNS)
            if not rel or not lab:
                problems.append(f"{where}: empty {'path' if not rel else 'label'}")
                continue
            if s not in SPLITS:
                problems.append(f"{where}: split {s!r} is not train or test")
                continue
            pp = PurePosixPath(rel.replace("\\", "/"))
            if pp.is_absolute() or ".." in pp.parts:
                problems.append(f"{where}: path {rel!r} must be relative to {self.base} and stay inside it")
                continue
            rel = str(pp)
            if not is_image(rel):
                problems.append(f"{where}: {rel} is not an image file (extensions: {' '.join(IMAGE_EXTENSIONS)})")
                continue
            if rel in seen:
                problems.append(f"{where}: {rel} is listed twice (first on line {seen[rel]})")
                continue
            seen[rel] = n
            if rel not in present:
                problems.append(f"{self.base / rel}: image listed on {where} is missing")
                continue
            raw[s].append((rel, lab, where))
        return raw

    def _masks(self, items: dict[str, list[tuple[str, int]]], problems: list[str]) -> dict[str, str]:
        mdir = self.base / "masks"
        if not mdir.is_dir():
            return {}
        by_stem: dict[str, list[str]] = {}
        for f in sorted(files_under(mdir)):
            if is_image(f):
                by_stem.setdefault(_stem(f), []).append(f)
        stems: dict[str, str] = {}
        out: dict[str, str] = {}
        for s in SPLITS:
            for rel, _ in items[s]:
                st = _stem(rel)
                if st in stems:
                    problems.append(f"{self.base / rel}: shares its name with {stems[st]} apart from the extension, "
                                    f"so masks/{st}.* cannot tell them apart; rename one")
                    continue
                stems[st] = rel
                found = by_stem.get(st, [])
                if len(found) > 1:
                    problems.append(f"{mdir / st}.*: several masks for image {rel} ({', '.join(found)}); keep one")
                elif found:
                    out[rel] = found[0]
                elif s == "test":
                    problems.append(f"{mdir / st}.png: mask of test image {rel} is missing (any image extension)")
        for st, found in sorted(by_stem.items()):
            if st not in stems:
                problems.append(f"{mdir / found[0]}: mask of no image (expected an image {st}.* in the dataset)")
        return out

    def _parts(self, items: dict[str, list[tuple[str, int]]], problems: list[str]) -> Parts | None:
        known = {rel for sp in SPLITS for rel, _ in items[sp]}
        return parse_parts(self.base / "parts.json", known, self.base, problems)

    # identity ------------------------------------------------------------------------------
    def index_files(self) -> list[Path]:
        return [self.base / n for n in ("index.csv", "classes.txt", "parts.json") if (self.base / n).is_file()]

    def content_digest(self) -> str:
        if self._content_digest is None:
            idx = self.index
            h = hashlib.sha256()
            h.update(json.dumps(idx.classes).encode() + b"\0")
            for s in SPLITS:
                for rel, lab in idx.items[s]:
                    h.update(f"{s}\t{rel}\t{lab}\t{_size(self.base / rel)}\n".encode())
            for rel in sorted(idx.masks):
                h.update(f"mask\t{idx.masks[rel]}\t{_size(self.base / 'masks' / idx.masks[rel])}\n".encode())
            for f in self.index_files():
                h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
            self._content_digest = h.hexdigest()[:16]
        return self._content_digest

    def fingerprint(self) -> dict[str, Any]:
        return {"name": "folder", "version": self.version, "options": dict(sorted(self.options.items())),
                "content": self.content_digest(), "classes": list(self.index.classes)}

    # Dataset API ---------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.index.classes)

    @property
    def class_names(self) -> list[str]:
        return list(self.index.classes)

    @property
    def keypoint_names(self) -> tuple[str, ...]:  # type: ignore[override]
        parts = self.index.parts
        return tuple(parts.names) if parts is not None else ()

    def split(self, name: str) -> UserFolderSplit:
        if name not in self.splits:
            raise DataError(f"{self.cli_name} has no split {name!r}; valid splits: {', '.join(self.splits)}")
        if name not in self._splits:
            idx = self.index
            if idx.problems:
                more = (f" (and {len(idx.problems) - 1} more; run `xbench data check {self.cli_name}`)"
                        if len(idx.problems) > 1 else "")
                raise DataError(idx.problems[0] + more)
            rel = [r for r, _ in idx.items[name]]
            self._splits[name] = UserFolderSplit(self, name, [self.base / r for r in rel],
                                                 np.array([lab for _, lab in idx.items[name]], dtype=np.int64), rel)
        return self._splits[name]

    # checking ------------------------------------------------------------------------------
    def layout_problems(self) -> list[str]:
        return list(self.index.problems)

    def files_to_decode(self) -> list[tuple[Path, Verifier]]:
        idx = self.index
        out: list[tuple[Path, Verifier]] = []
        for s in SPLITS:
            for rel, _ in idx.items[s]:
                out.append((self.base / rel, image_verifier))
                if rel in idx.masks:
                    out.append((self.base / "masks" / idx.masks[rel], _mask_verifier(self.base / rel)))
        return out


def _mask_verifier(image: Path) -> Verifier:
    def verify(mask: Path) -> str | None:
        why = image_verifier(mask)
        if why:
            return why
        try:
            w, h = image_size(mask)
            iw, ih = image_size(image)
        except DataError:
            return None  # the image's own problem is reported by its verifier
        if (w, h) != (iw, ih):
            return f"{mask}: mask is {w}x{h} but its image {image.name} is {iw}x{ih}; save it at the image's size"
        return None

    return verify


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return -1


__all__ = ["UserFolder", "UserFolderSplit", "parse_dataset_arg", "IMAGE_EXTENSIONS", "PREFIX", "is_image"]
