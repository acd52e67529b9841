"""FunnyBirds (SPEC 1.2): the official rendered dataset, or synthbirds' export of the same layout.

Layout under the data root (the official `FunnyBirds.zip` unpacked there, or
`xbench data export synthbirds --format funnybirds --out <root>/FunnyBirds`)::

    FunnyBirds/classes.json          [{class_idx, parts: {beak, eye, foot, tail, wing: variant index}}]
    FunnyBirds/parts.json            {slot: [{model[, color]}, ...]}
    FunnyBirds/dataset_train.json    one record per image (global index = position); "<slot>_<key>"
    FunnyBirds/dataset_test.json     fields, "placeholder" for a removed slot; bg_objects "k,k,...,"
    FunnyBirds/{train,test}/<class_idx>/<idx:06d>.png              256 x 256 RGBA
    FunnyBirds/{train,test}_part_map/<class_idx>/<idx:06d>.png     colour-coded part maps
    FunnyBirds/test_interventions/<class_idx>/<idx:06d>/body_<kept slots, sorted, '_'-joined>.png
    FunnyBirds/test_interventions/<class_idx>/<idx:06d>/background_interventions/<n>.png

What the loader yields (choices the SPEC leaves open are marked *):

* images with alpha dropped; label = `class_idx`;
* `part_map(i)`: the colour code decoded to `xbench.data.base`'s ids: the part
  slots sorted (beak 1, eye 2, foot 3, tail 4, wing 5; two-colour parts are one
  slot), background object j (colour (204, 204, 204 + j)) -> 6 + j, everything
  else (black background, the grey body (170, 170, 170), *any colour not in
  the code) -> 0;
* `part_colour_map_indexed(i)`: the same code with every colour its own unit (eye (255, 255, 253) and
  (255, 255, 254) apart, ...; `synthbirds.render.fb_colour_units`), for the reference FunnyBirds protocol;
* `object_mask(i)`: the bird: body colour or a part colour;
* `present_parts(i)`: slots whose record fields are not "placeholder"
  (training images may lack parts; test images have all five);
  `targets(i)`: every class with the image's variant on each present slot
  (multi-target, as synthbirds);
* `num_objects(i)`: the number of entries of the record's `bg_objects` field
  (the first `bg_` field when it has another name, like FunnyBirds' framework);
* interventions (test split): `intervention(i, keep, ())` reads
  `body_<keep>.png` for any of the 32 subsets; `intervention(i, all parts, {n})`
  reads `background_interventions/<n>.png`; other combinations are not
  pre-rendered (`has_intervention` says False) and raise `DataError`;
* `class_parts`, `minimal_sufficient_sets(c)`: from classes.json, with the
  algorithm of `xbench.data.synthbirds.classes`.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import ConfigError, DataError
from ..registry import register_dataset
from .base import Split
from .folder import FolderDataset, Verifier, files_under, image_verifier
from .imageio import read_rgb, read_rgb_array
from .synthbirds.classes import agreement_masks, consistent_classes, minimal_sufficient_sets
from .synthbirds.render import FB_BODY, FB_COLOUR_SLOTS, FB_MAX_OBJECTS, FB_PART_COLOURS, fb_colour_units, fb_object_colour

FOLDER = "FunnyBirds"
PART_NAMES: tuple[str, ...] = ("beak", "eye", "foot", "tail", "wing")
P = len(PART_NAMES)
ALL = (1 << P) - 1
PLACEHOLDER = "placeholder"


def _pack(rgb: tuple[int, int, int]) -> int:
    return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]


def _colour_table() -> tuple[np.ndarray, np.ndarray]:
    codes, ids = [], []
    for p, name in enumerate(PART_NAMES):
        for c in FB_PART_COLOURS[name]:
            codes.append(_pack(c)), ids.append(p + 1)
    for j in range(FB_MAX_OBJECTS):
        codes.append(_pack(fb_object_colour(j))), ids.append(P + 1 + j)
    order = np.argsort(codes)
    return np.asarray(codes, dtype=np.int64)[order], np.asarray(ids, dtype=np.int32)[order]


_CODES, _IDS = _colour_table()
_BODY = _pack(FB_BODY)


def decode_part_map(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int32 part ids [H, W], bool bird mask [H, W]) of a colour-coded FunnyBirds part map."""
    a = rgb.astype(np.int64)
    packed = (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]
    pos = np.clip(np.searchsorted(_CODES, packed), 0, len(_CODES) - 1)
    hit = _CODES[pos] == packed
    ids = np.where(hit, _IDS[pos], 0).astype(np.int32)
    bird = (packed == _BODY) | ((ids >= 1) & (ids <= P))
    return ids, bird


def keep_name(keep: Iterable[str]) -> str:
    return "body_" + "_".join(sorted(keep)) + ".png"


@dataclass
class Record:
    label: int
    present: int      # bitmask over PART_NAMES
    objects: int      # number of background objects


def _count_objects(rec: dict[str, Any]) -> int:
    key = "bg_objects" if "bg_objects" in rec else next((k for k in rec if k.startswith("bg_")), None)
    if key is None:
        return 0
    return len([t for t in str(rec[key]).split(",") if t.strip()])


class FunnyBirdsSplit(Split):
    dataset: "FunnyBirds"

    def __init__(self, dataset: "FunnyBirds", name: str, records: list[Record]):
        super().__init__(dataset, name)
        self.records = records
        self._labels = np.array([r.label for r in records], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def _rel(self, i: int) -> str:
        return f"{self.records[int(i)].label}/{int(i):06d}"

    def image_path(self, i: int) -> Path:
        return self.dataset.base / self.name / f"{self._rel(i)}.png"

    def part_map_path(self, i: int) -> Path:
        return self.dataset.base / f"{self.name}_part_map" / f"{self._rel(i)}.png"

    def intervention_dir(self, i: int) -> Path:
        return self.dataset.base / f"{self.name}_interventions" / self._rel(i)

    def item_id(self, i: int) -> str:
        return f"funnybirds/{self.name}/{self._rel(i)}"

    def image(self, i: int) -> Image.Image:
        return read_rgb(self.image_path(i))

    def part_map(self, i: int) -> np.ndarray:
        return decode_part_map(read_rgb_array(self.part_map_path(i)))[0]

    def part_colour_map_indexed(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        return fb_colour_units(read_rgb_array(self.part_map_path(i))), None

    def object_mask(self, i: int) -> np.ndarray:
        return decode_part_map(read_rgb_array(self.part_map_path(i)))[1]

    def present_parts(self, i: int) -> frozenset[str]:
        m = self.records[int(i)].present
        return frozenset(n for p, n in enumerate(PART_NAMES) if m >> p & 1)

    def num_objects(self, i: int) -> int:
        return self.records[int(i)].objects

    def targets(self, i: int) -> np.ndarray:
        r = self.records[int(i)]
        return consistent_classes(self.dataset.agreement[r.label], r.present)

    # interventions -------------------------------------------------------------------------
    def has_intervention(self, keep_parts: frozenset[str], removed_objects: frozenset[int]) -> bool:
        if self.name != "test":
            return False
        return not removed_objects or (len(removed_objects) == 1 and set(PART_NAMES) <= set(keep_parts))

    def intervention(self, i: int, keep_parts: Iterable[str], removed_objects: Iterable[int] = ()) -> Image.Image:
        keep = frozenset([keep_parts] if isinstance(keep_parts, str) else keep_parts)
        bad = sorted(keep - set(PART_NAMES))
        if bad:
            raise ConfigError(f"unknown funnybirds part(s) {bad}; valid parts: {', '.join(PART_NAMES)}")
        removed = frozenset(int(j) for j in removed_objects)
        if not self.has_intervention(keep, removed):
            raise DataError(f"funnybirds {self.name} image {i}: no pre-rendered intervention keeping "
                            f"{sorted(keep)} and removing objects {sorted(removed)} (only the test split has "
                            f"them: any part subset, or one background object with all parts)")
        d = self.intervention_dir(i)
        if not removed:
            return read_rgb(d / keep_name(keep))
        (n,) = removed
        if not 0 <= n < self.num_objects(i):
            raise DataError(f"funnybirds {self.name} image {i} has {self.num_objects(i)} background objects; "
                            f"cannot remove object {n}")
        return read_rgb(d / "background_interventions" / f"{n}.png")


@register_dataset(
    "funnybirds",
    annotations={"object_mask", "part_map", "interventions", "class_parts", "multi_target"},
    folder=FOLDER,
    licence="see the FunnyBirds repository (visinf/funnybirds)",
    paper="funnybirds",
    homepage="https://github.com/visinf/funnybirds-framework",
    description="FunnyBirds (official renders or synthbirds' export): part maps and pre-rendered interventions",
)
class FunnyBirds(FolderDataset):
    """FunnyBirds (official renders or synthbirds' export): part maps and pre-rendered interventions."""

    title = "FunnyBirds"
    version = "1"
    part_names = PART_NAMES
    part_colour_slots = FB_COLOUR_SLOTS

    def __init__(self, root: Path | str | None = None):
        super().__init__(root)
        self._class_parts: np.ndarray | None = None
        self._class_order: tuple[int, ...] = ()
        self._parts: dict[str, list[dict[str, Any]]] | None = None
        self._agreement: np.ndarray | None = None
        self._records: dict[str, tuple[list[Record], list[str]]] = {}
        self._splits: dict[str, FunnyBirdsSplit] = {}

    def index_files(self) -> list[Path]:
        names = ["classes.json", "parts.json", "dataset_train.json", "dataset_test.json"]
        return [self.base / n for n in names if (self.base / n).is_file()]

    def _json(self, name: str) -> Any:
        path = self.base / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path}: file is missing; {self._how()}") from None
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: not valid JSON ({str(err).splitlines()[0]}); restore the file") from None

    def _how(self) -> str:
        return f"run `xbench data fetch funnybirds --data-root {self.root}` or export synthbirds there"

    # classes and parts ------------------------------------------------------------------------
    @property
    def parts(self) -> dict[str, list[dict[str, Any]]]:
        if self._parts is None:
            parts = self._json("parts.json")
            path = self.base / "parts.json"
            if not isinstance(parts, dict) or sorted(parts) != list(PART_NAMES) or \
                    not all(isinstance(v, list) and v for v in parts.values()):
                raise DataError(f"{path}: must map exactly the slots {', '.join(PART_NAMES)} to non-empty lists "
                                f"of variants")
            self._parts = parts
        return self._parts

    @property
    def class_parts(self) -> np.ndarray:
        if self._class_parts is None:
            path = self.base / "classes.json"
            classes = self._json("classes.json")
            parts = self.parts
            if not isinstance(classes, list) or not classes:
                raise DataError(f"{path}: must be a non-empty list of {{class_idx, parts}} objects")
            out = np.full((len(classes), P), -1, dtype=np.int64)
            order: list[int] = []
            for k, c in enumerate(classes):
                try:
                    idx = int(c["class_idx"])
                    row = [int(c["parts"][s]) for s in PART_NAMES]
                except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
                    raise DataError(f"{path}: entry {k} needs class_idx and parts.{{{','.join(PART_NAMES)}}}") from None
                if not 0 <= idx < len(classes) or out[idx, 0] >= 0:
                    raise DataError(f"{path}: entry {k}: class_idx {idx} is out of range 0..{len(classes) - 1} "
                                    f"or repeated")
                for p, s in enumerate(PART_NAMES):
                    if not 0 <= row[p] < len(parts[s]):
                        raise DataError(f"{path}: class {idx}: {s} variant {row[p]} is out of range "
                                        f"0..{len(parts[s]) - 1} of parts.json")
                out[idx] = row
                order.append(idx)
            out.flags.writeable = False
            self._class_order = tuple(order)
            self._class_parts = out
        return self._class_parts

    @property
    def class_file_order(self) -> tuple[int, ...]:
        """The class_idx of every entry of classes.json, in file order (the FunnyBirds framework indexes the
        file by position; the reference protocol checks that the order is class_idx order)."""
        self.class_parts
        return self._class_order

    @property
    def agreement(self) -> np.ndarray:
        if self._agreement is None:
            self._agreement = agreement_masks(self.class_parts)
        return self._agreement

    @property
    def num_classes(self) -> int:
        return int(self.class_parts.shape[0])

    def minimal_sufficient_sets(self, c: int) -> list[frozenset[str]]:
        if not 0 <= int(c) < self.num_classes:
            raise ConfigError(f"funnybirds has {self.num_classes} classes; class {c} is out of range")
        return minimal_sufficient_sets(self.agreement[int(c)], int(c))

    # records ----------------------------------------------------------------------------------
    def records(self, split: str) -> tuple[list[Record], list[str]]:
        """The split's records and the problems found in its json (one line each)."""
        if split not in self._records:
            name = f"dataset_{split}.json"
            path = self.base / name
            data = self._json(name)
            if not isinstance(data, list):
                raise DataError(f"{path}: must be a list of per-image records")
            cp, parts = self.class_parts, self.parts
            recs: list[Record] = []
            problems: list[str] = []
            for k, rec in enumerate(data):
                try:
                    label = int(rec["class_idx"])
                except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
                    problems.append(f"{path}: record {k} has no integer class_idx")
                    recs.append(Record(0, ALL, 0))
                    continue
                if not 0 <= label < len(cp):
                    problems.append(f"{path}: record {k}: class id {label} out of range 0..{len(cp) - 1}")
                    recs.append(Record(0, ALL, 0))
                    continue
                fields: dict[str, dict[str, Any]] = {}
                for key, value in rec.items():
                    slot, _, attr = key.partition("_")
                    if slot in parts and attr:
                        fields.setdefault(slot, {})[attr] = value
                present = 0
                for p, s in enumerate(PART_NAMES):
                    f = fields.get(s)
                    if f is None:
                        problems.append(f"{path}: record {k} has no {s}_* fields")
                        continue
                    if all(v == PLACEHOLDER for v in f.values()):
                        continue
                    present |= 1 << p
                    if f != parts[s][int(cp[label, p])]:
                        problems.append(f"{path}: record {k}: {s} fields {f} are not class {label}'s {s} variant "
                                        f"{parts[s][int(cp[label, p])]}")
                recs.append(Record(label, present, _count_objects(rec)))
            self._records[split] = (recs, problems)
        return self._records[split]

    def split(self, name: str) -> FunnyBirdsSplit:
        if name not in self.splits:
            raise ConfigError(f"funnybirds has no split {name!r}; valid splits: {', '.join(self.splits)}")
        if name not in self._splits:
            recs, problems = self.records(name)
            if problems:
                more = f" (and {len(problems) - 1} more; run `xbench data check funnybirds`)" if len(problems) > 1 else ""
                raise DataError(problems[0] + more)
            self._splits[name] = FunnyBirdsSplit(self, name, recs)
        return self._splits[name]

    # checking ----------------------------------------------------------------------------------
    def layout_problems(self) -> list[str]:
        problems: list[str] = []
        try:
            self.class_parts
        except DataError as err:
            return [str(err)]
        for split in self.splits:
            try:
                recs, probs = self.records(split)
            except DataError as err:
                problems.append(str(err))
                continue
            problems += probs
            sp = FunnyBirdsSplit(self, split, recs)
            images, maps = files_under(self.base / split), files_under(self.base / f"{split}_part_map")
            inter = files_under(self.base / f"{split}_interventions") if split == "test" else set()
            for i, r in enumerate(recs):
                rel = sp._rel(i)
                if f"{rel}.png" not in images:
                    problems.append(f"{sp.image_path(i)}: image of record {i} is missing")
                if f"{rel}.png" not in maps:
                    problems.append(f"{sp.part_map_path(i)}: part map of record {i} is missing")
                if split != "test":
                    continue
                need = [keep_name(n for p, n in enumerate(PART_NAMES) if m >> p & 1) for m in range(ALL + 1)]
                need += [f"background_interventions/{n}.png" for n in range(r.objects)]
                for f in need:
                    if f"{rel}/{f}" not in inter:
                        problems.append(f"{sp.intervention_dir(i) / f}: intervention of test record {i} is missing")
        return problems

    def files_to_decode(self) -> list[tuple[Path, Verifier]]:
        out: list[tuple[Path, Verifier]] = []
        for split in self.splits:
            try:
                recs, _ = self.records(split)
            except DataError:
                continue
            sp = FunnyBirdsSplit(self, split, recs)
            for i, r in enumerate(recs):
                out += [(sp.image_path(i), image_verifier), (sp.part_map_path(i), image_verifier)]
                if split == "test":
                    d = sp.intervention_dir(i)
                    out += [(d / keep_name(n for p, n in enumerate(PART_NAMES) if m >> p & 1), image_verifier)
                            for m in range(ALL + 1)]
                    out += [(d / "background_interventions" / f"{n}.png", image_verifier) for n in range(r.objects)]
        return out


__all__ = ["FunnyBirds", "FunnyBirdsSplit", "decode_part_map", "PART_NAMES"]
