"""RSNA Pneumonia Detection (SPEC 1.6): chest X-rays, pneumonia or not, lesion boxes.

Layout under the data root (the Kaggle competition zip unpacked there)::

    rsna-pneumonia-detection-challenge/stage_2_train_labels.csv     patientId,x,y,width,height,Target
    rsna-pneumonia-detection-challenge/stage_2_train_images/<patientId>.dcm

One image per patient; a positive patient (Target 1) has one row per lesion
box, a negative one a single row with empty box fields. The competition's test
images have no published labels, so xbench splits the labelled patients itself.

**The split (fixed, stratified, needs no shipped list).** Patients are grouped
by label (the strata: Target 0 and Target 1). Within each stratum they are
ordered by the sha256 of their patientId (the UTF-8 bytes, hex digest compared
as a string, ties impossible), and the first `round(test_fraction * n)` of the
stratum's n patients form the test split (`test_fraction` = 0.2 by default),
the rest the training split. Inside each split, patients are listed in
increasing patientId order. The rule depends only on the patient ids and
labels, so every copy of the data gives the same split, and each stratum
contributes exactly its share.

What the loader yields (choices the SPEC leaves open are marked *):

* `image(i)`: the DICOM converted to 8-bit RGB (`xbench.data.dicom`);
* label = Target (0 no pneumonia, 1 pneumonia); task "binary" (AUROC);
* `boxes(i)`: float32 [n, 4] (x, y, x + width, y + height), empty for negatives;
* `object_mask(i)`: the union of the boxes (empty for negatives, SPEC 5.3);
  *a pixel belongs to the mask when its square overlaps a box, i.e. columns
  floor(x1) .. ceil(x2) - 1 and rows floor(y1) .. ceil(y2) - 1, clipped to the
  image (its size comes from the DICOM header, Rows x Columns).
"""
from __future__ import annotations

import csv
import io
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError, DataError
from ..registry import register_dataset
from .dicom import dicom_problem, read_dicom
from .folder import FileSplit, FolderDataset, Verifier, files_under

FOLDER = "rsna-pneumonia-detection-challenge"
LABELS = "stage_2_train_labels.csv"
IMAGES = "stage_2_train_images"
COLUMNS = ("patientId", "x", "y", "width", "height", "Target")


@dataclass
class Patient:
    pid: str
    target: int
    boxes: list[tuple[float, float, float, float]]  # x1, y1, x2, y2
    line: int


def parse_labels(path: Path) -> tuple[dict[str, Patient], list[str]]:
    """Patients of stage_2_train_labels.csv and the problems met (one line each)."""
    problems: list[str] = []
    patients: dict[str, Patient] = {}
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return {}, [f"{path}: file is missing"]
    except OSError as err:
        return {}, [f"{path}: cannot read ({err.strerror})"]
    except UnicodeDecodeError as err:
        return {}, [f"{path}: not UTF-8 text (byte {err.start}); restore the file from the competition download"]
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != list(COLUMNS):
            return {}, [f"{path}:1: header must be {','.join(COLUMNS)}"]
        for line, row in enumerate(reader, 2):
            if not row or not any(v.strip() for v in row):
                continue
            if len(row) != len(COLUMNS):
                problems.append(f"{path}:{line}: malformed row {','.join(row)[:60]!r} ({len(row)} fields, expected 6)")
                continue
            pid, x, y, w, h, t = (v.strip() for v in row)
            if t not in ("0", "1") or not pid:
                problems.append(f"{path}:{line}: Target {t!r} must be 0 or 1 (patient {pid!r})")
                continue
            target = int(t)
            p = patients.setdefault(pid, Patient(pid, target, [], line))
            if p.target != target:
                problems.append(f"{path}:{line}: patient {pid} has Target {target} here and {p.target} on line {p.line}")
                continue
            if target == 0:
                if any((x, y, w, h)):
                    problems.append(f"{path}:{line}: negative patient {pid} has box fields")
                continue
            try:
                bx, by, bw, bh = float(x), float(y), float(w), float(h)
            except ValueError:
                problems.append(f"{path}:{line}: positive patient {pid} needs numeric x, y, width, height")
                continue
            if not all(math.isfinite(v) for v in (bx, by, bw, bh)) or bw <= 0 or bh <= 0:
                problems.append(f"{path}:{line}: box of patient {pid} has non-positive or non-finite size")
                continue
            p.boxes.append((bx, by, bx + bw, by + bh))
    except csv.Error as err:  # e.g. a field beyond csv's size limit
        problems.append(f"{path}:{reader.line_num}: not a valid CSV row ({err})")
    return patients, problems


def split_patients(patients: dict[str, int], test_fraction: float) -> dict[str, list[str]]:
    """The documented split: {"train": [...], "test": [...]} of patient ids (see the module docstring)."""
    test: list[str] = []
    train: list[str] = []
    for label in sorted(set(patients.values())):
        stratum = sorted((p for p, t in patients.items() if t == label),
                         key=lambda p: hashlib.sha256(p.encode("utf-8")).hexdigest())
        k = int(round(test_fraction * len(stratum)))
        test += stratum[:k]
        train += stratum[k:]
    return {"train": sorted(train), "test": sorted(test)}


def boxes_mask(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """bool [H, W]: pixels whose square overlaps one of the boxes (x1, y1, x2, y2)."""
    m = np.zeros((height, width), dtype=bool)
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        c0, c1 = max(int(math.floor(x1)), 0), min(int(math.ceil(x2)), width)
        r0, r1 = max(int(math.floor(y1)), 0), min(int(math.ceil(y2)), height)
        if c1 > c0 and r1 > r0:
            m[r0:r1, c0:c1] = True
    return m


def dicom_size(path: Path) -> tuple[int, int]:
    """(height, width) from the DICOM header, without reading the pixel data."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return int(ds.Rows), int(ds.Columns)
    except FileNotFoundError:
        raise DataError(f"{path}: file is missing; restore it (see `xbench data check rsna`)") from None
    except (InvalidDicomError, OSError, ValueError, AttributeError, EOFError) as err:
        raise DataError(f"{path}: cannot read DICOM header ({type(err).__name__}); replace the file or rerun "
                        f"with --skip-bad") from None


class RSNASplit(FileSplit):
    dataset: "RSNA"

    def __init__(self, dataset: "RSNA", name: str, pids: list[str], patients: dict[str, Patient]):
        super().__init__(dataset, name, [dataset.base / IMAGES / f"{p}.dcm" for p in pids],
                         np.array([patients[p].target for p in pids], dtype=np.int64), pids)
        self._boxes = [np.asarray(patients[p].boxes, dtype=np.float32).reshape(-1, 4) for p in pids]

    def image(self, i: int) -> Image.Image:
        return read_dicom(self.files[int(i)])

    def boxes(self, i: int) -> np.ndarray:
        return self._boxes[int(i)].copy()

    def object_mask(self, i: int) -> np.ndarray:
        h, w = dicom_size(self.files[int(i)])
        return boxes_mask(self._boxes[int(i)], h, w)


@register_dataset(
    "rsna",
    annotations={"object_mask", "boxes"},
    task="binary",
    folder=FOLDER,
    licence="Kaggle competition data: non-commercial research use under the competition rules",
    paper="shih2019rsna",
    homepage="https://www.kaggle.com/competitions/rsna-pneumonia-detection-challenge",
    description="RSNA Pneumonia Detection chest X-rays (binary) with lesion boxes; fixed stratified patient split",
)
class RSNA(FolderDataset):
    """RSNA Pneumonia Detection chest X-rays (binary) with lesion boxes; fixed stratified patient split."""

    title = "RSNA Pneumonia Detection"
    version = "1"

    def __init__(self, root: Path | str | None = None, *, test_fraction: float = 0.2):
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
            raise ConfigError(f"rsna option test_fraction={test_fraction!r} is invalid: use a number between 0 and 1")
        super().__init__(root, test_fraction=float(test_fraction))
        self._patients: dict[str, Patient] | None = None
        self._problems: list[str] = []
        self._splits: dict[str, RSNASplit] = {}

    def index_files(self) -> list[Path]:
        p = self.base / LABELS
        return [p] if p.is_file() else []

    @property
    def num_classes(self) -> int:
        return 2

    @property
    def class_names(self) -> list[str]:
        return ["no pneumonia", "pneumonia"]

    @property
    def patients(self) -> dict[str, Patient]:
        if self._patients is None:
            self._patients, self._problems = parse_labels(self.base / LABELS)
        return self._patients

    def split_ids(self) -> dict[str, list[str]]:
        return split_patients({p: v.target for p, v in self.patients.items()}, self.options["test_fraction"])

    def split(self, name: str) -> RSNASplit:
        if name not in self.splits:
            raise ConfigError(f"rsna has no split {name!r}; valid splits: {', '.join(self.splits)}")
        if name not in self._splits:
            patients = self.patients
            if self._problems:
                more = f" (and {len(self._problems) - 1} more; run `xbench data check rsna`)" if len(self._problems) > 1 else ""
                raise DataError(self._problems[0] + more)
            self._splits[name] = RSNASplit(self, name, self.split_ids()[name], patients)
        return self._splits[name]

    def layout_problems(self) -> list[str]:
        patients = self.patients
        problems = list(self._problems)
        present = files_under(self.base / IMAGES)
        if not (self.base / IMAGES).is_dir():
            return problems + [f"{self.base / IMAGES}: image folder is missing"]
        for pid in sorted(patients):
            if f"{pid}.dcm" not in present:
                problems.append(f"{self.base / IMAGES / (pid + '.dcm')}: DICOM of patient {pid} (labels line "
                                f"{patients[pid].line}) is missing")
        return problems

    def files_to_decode(self) -> list[tuple[Path, Verifier]]:
        return [(self.base / IMAGES / f"{pid}.dcm", dicom_problem) for pid in sorted(self.patients)]


__all__ = ["RSNA", "RSNASplit", "split_patients", "boxes_mask", "parse_labels"]
