"""Shared plumbing of the loaders that read an official dataset folder (cub, cars, pets, funnybirds, rsna).

* `FolderDataset`: locates `<data root>/<spec.folder>`; constructing it with no
  folder in place raises a one-line `DataError` naming the folder it looked in
  and how to get the data (`xbench data fetch NAME --data-root ROOT`, or, for
  the account-gated sets, where to download them). Its `fingerprint()` adds a
  digest of the dataset's *index files* (annotation lists, .json, .mat, .csv:
  their names relative to the dataset folder and their bytes, never paths,
  sizes of images or timestamps), so every copy of the same release gives the
  same fingerprint and an edited annotation file gives a new one.
* `FileSplit`: a split whose items are image files with labels; `image(i)`
  raises `DataError` naming the file when it cannot be read.
* `check(deep=False)`: subclasses list layout problems in `layout_problems()`
  (missing or malformed index files, ids without images, labels out of range,
  missing masks...), one line each. `deep=True` (what `xbench data check` does
  unless `--quick`) also decodes every image and mask file and reports the
  unreadable ones; the runner calls the quick form before any work.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..errors import DataError
from .base import Dataset, Split
from .imageio import read_rgb, verify_image
from .roots import data_root
from .sources import how_to_get

#: checks one file; returns None when it is fine, else the one-line problem
Verifier = Callable[[Path], "str | None"]


class FolderDataset(Dataset):
    """Base of the loaders that read `<data root>/<spec.folder>`."""

    title: str = ""          # human name used in messages
    version: str = "1"       # loader version (bump when what a loader yields changes)

    def __init__(self, root: Path | str | None = None, **options: Any):
        super().__init__(data_root(None) if root is None else Path(root), **options)
        self.base = self.locate()
        self._content_digest: str | None = None

    # where the data is -------------------------------------------------------------------
    def locate(self) -> Path:
        """The dataset folder; raises the missing-data `DataError` when it is not there."""
        base = self.root / self.spec.folder  # type: ignore[operator]
        if not base.is_dir():
            raise self.missing_error(base)
        return base

    def missing_error(self, looked_in: Path, what: str = "folder not found") -> DataError:
        root_opt = f" --data-root {self.root}"
        return DataError(f"no {self.title or self.spec.name} data in {looked_in} ({what}); "
                         f"{how_to_get(self.spec.name, root_opt)}")

    # identity ----------------------------------------------------------------------------
    def index_files(self) -> list[Path]:
        """Annotation files whose bytes identify this copy's content (existing ones only)."""
        return []

    def content_digest(self) -> str:
        if self._content_digest is None:
            h = hashlib.sha256()
            for p in sorted(self.index_files(), key=lambda q: q.relative_to(self.root).as_posix()):
                h.update(p.relative_to(self.root).as_posix().encode() + b"\0")
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                h.update(b"\0")
            self._content_digest = h.hexdigest()[:16]
        return self._content_digest

    def fingerprint(self) -> dict[str, Any]:
        fp = super().fingerprint()
        fp["content"] = self.content_digest()
        return fp

    # checking ----------------------------------------------------------------------------
    def layout_problems(self) -> list[str]:
        """Missing, malformed or inconsistent files, one line each (no image decoding)."""
        return []

    def files_to_decode(self) -> list[tuple[Path, Verifier]]:
        """(file, verifier) pairs `check(deep=True)` decodes; a verifier returns None or the problem."""
        return []

    def check(self, deep: bool = False, show: bool = True) -> list[str]:
        problems = self.layout_problems()
        if deep:
            from ..progress import progress

            todo = [(p, fn) for p, fn in self.files_to_decode() if p.exists()]
            with progress(total=len(todo), desc=f"check {self.spec.name}: decode files", enabled=show,
                          unit="file") as bar:
                for p, fn in todo:
                    why = fn(p)
                    if why:
                        problems.append(why)
                    bar.update(1)
        return problems


class FileSplit(Split):
    """A split whose items are image files (`files[i]`) with integer labels."""

    def __init__(self, dataset: Dataset, name: str, files: Sequence[Path], labels: np.ndarray, ids: Sequence[str]):
        super().__init__(dataset, name)
        self.files = list(files)
        self._labels = np.asarray(labels, dtype=np.int64)
        self.ids = list(ids)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def image(self, i: int) -> Image.Image:
        return read_rgb(self.files[int(i)])

    def item_id(self, i: int) -> str:
        return f"{self.dataset.spec.name}/{self.name}/{self.ids[int(i)]}"


# small helpers the loaders share ------------------------------------------------------------
def files_under(folder: Path) -> set[str]:
    """Relative POSIX paths of every file below `folder` (empty if it does not exist)."""
    out: set[str] = set()
    if not folder.is_dir():
        return out
    base = len(str(folder)) + 1
    for dirpath, _dirs, names in os.walk(folder):
        rel = dirpath[base:].replace(os.sep, "/")
        for n in names:
            out.add(f"{rel}/{n}" if rel else n)
    return out


def image_verifier(path: Path) -> str | None:
    return verify_image(path)


__all__ = ["FolderDataset", "FileSplit", "Verifier", "files_under", "image_verifier"]
