"""Export synthbirds to the official FunnyBirds on-disk layout.

Written so that FunnyBirds' own loader and evaluation protocols read it
unchanged. Matched against (read, not copied):

* ``visinf/funnybirds`` ``render/create_dataset.py``: ``classes.json`` is a
  list of ``{"class_idx": c, "parts": {slot: index into parts.json[slot]}}``;
  ``dataset_<split>.json`` is a list (global image index = position) of flat
  records with ``class_idx``, ``<slot>_<key>`` for every key of the slot's
  ``parts.json`` entry (``model``, and ``color`` for beak, tail, wing), the
  value ``"placeholder"`` for every key of a removed slot, and per-object
  ``bg_*`` fields as comma-joined strings with a trailing comma, ``bg_objects``
  (object kind ids 0-4) first; images at ``<split>/<class_idx>/<idx:06d>.png``.
* ``render/parts.json``: slot -> list of variant objects, tail and wing
  colour-major (variant = colour * shapes + shape); we reuse its model names.
* ``render/render_interventions.py``: ``test_interventions/<class>/<idx:06d>/
  body_<kept slots sorted, '_'-joined>.png`` for all 32 subsets and
  ``background_interventions/<n>.png`` = the image without the n-th object.
* ``render/page.html``: part-map colours (beak ffff00, eyes fffffd/fffffe, feet
  ff0001/ff0002, tail 0000ff, wings 00ff01/00ff02, object i cccccc+i, body
  aaaaaa, background black); 256x256 RGBA PNGs (alpha 255).
* ``visinf/funnybirds-framework`` ``datasets/funny_birds.py`` and
  ``evaluation_protocols.py``: the loader drops the alpha channel, decodes part
  maps by exact colour, compares ``<slot>_model``/``<slot>_color`` dicts with
  ``parts.json`` entries, splits *every* record key at ``_`` (so every key we
  add contains one and none starts with a slot name), and counts background
  objects with a regex over the first ``bg_`` field.

Our extra record fields (``pose_*``, ``backdrop_*``, ``xbench_*``) document the
scene; ``synthbirds.json`` at the root holds the generator's fingerprint.
Images are always exported at 256 px (FunnyBirds' size): scenes are
resolution independent, so they are the dataset's images at that size.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import ConfigError
from .dataset import ALL_PARTS, SynthBirds, SynthBirdsSplit
from .parts import PART_NAMES, VARIANTS
from .render import render
from .scene import DISTRACTOR_COLOURS, Scene

FUNNYBIRDS_RESOLUTION = 256
PLACEHOLDER = "placeholder"


def parts_json() -> dict[str, list[dict[str, str]]]:
    """FunnyBirds' ``parts.json``: each slot's variants as {model[, color]} objects."""
    out: dict[str, list[dict[str, str]]] = {}
    for slot in PART_NAMES:
        out[slot] = [{"model": v.model, **({"color": v.colour} if v.colour else {})} for v in VARIANTS[slot]]
    return out


def classes_json(dataset: SynthBirds) -> list[dict[str, Any]]:
    return [
        {"class_idx": c, "parts": {slot: int(row[p]) for p, slot in enumerate(PART_NAMES)}}
        for c, row in enumerate(dataset.class_parts)
    ]


def _csv(values: list[Any]) -> str:
    return "".join(f"{v}," for v in values)


def scene_record(dataset: SynthBirds, split: str, index: int, scene: Scene) -> dict[str, Any]:
    """One ``dataset_<split>.json`` record, in FunnyBirds' format plus our scene fields."""
    parts = parts_json()
    rec: dict[str, Any] = {"class_idx": scene.class_idx}
    for p, slot in enumerate(PART_NAMES):
        entry = parts[slot][int(dataset.class_parts[scene.class_idx, p])]
        removed = bool(scene.removed_mask >> p & 1)
        for key, value in entry.items():
            rec[f"{slot}_{key}"] = PLACEHOLDER if removed else value
    ds = scene.distractors
    rec["bg_objects"] = _csv([d.kind for d in ds])            # must stay the first bg_ field
    rec["bg_x"] = _csv([round(d.x, 6) for d in ds])
    rec["bg_y"] = _csv([round(d.y, 6) for d in ds])
    rec["bg_size"] = _csv([round(d.size, 6) for d in ds])
    rec["bg_aspect"] = _csv([round(d.aspect, 6) for d in ds])
    rec["bg_rot"] = _csv([round(d.rotation, 6) for d in ds])
    rec["bg_shade"] = _csv([round(d.shade, 6) for d in ds])
    rec["bg_color"] = _csv([DISTRACTOR_COLOURS[d.colour] for d in ds])
    rec["pose_angle"] = round(scene.angle, 6)
    rec["pose_mirror"] = int(scene.mirror)
    rec["pose_scale"] = round(scene.unit, 6)
    rec["pose_x"] = round(scene.cx, 6)
    rec["pose_y"] = round(scene.cy, 6)
    rec["backdrop_color0"] = ",".join(str(round(v, 3)) for v in scene.backdrop[0])
    rec["backdrop_color1"] = ",".join(str(round(v, 3)) for v in scene.backdrop[1])
    rec["backdrop_angle"] = round(scene.backdrop_angle, 6)
    rec["xbench_seed"] = int(dataset.options["seed"])
    rec["xbench_split"] = split
    rec["xbench_index"] = int(index)
    return rec


def _save_png(rgb: np.ndarray, path: Path) -> None:
    rgba = np.empty(rgb.shape[:2] + (4,), dtype=np.uint8)
    rgba[..., :3] = rgb
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(path, compress_level=1)


def _intervention_name(keep: tuple[str, ...]) -> str:
    return "body_" + "_".join(sorted(keep)) + ".png"


def _export_split(ds: SynthBirds, split: SynthBirdsSplit, root: Path, bar: Any) -> list[dict[str, Any]]:
    records = []
    subsets = [c for r in range(len(PART_NAMES) + 1) for c in itertools.combinations(PART_NAMES, r)]
    for i in range(len(split)):
        scene = split.scene(i)
        records.append(scene_record(ds, split.name, i, scene))
        cls, name = str(scene.class_idx), f"{i:06d}"
        lay = split.layout(i)
        full = render(lay, ALL_PARTS, maps=False, funnybirds=True)
        for folder, arr in ((split.name, full.image), (f"{split.name}_part_map", full.funnybirds_part_map)):
            (root / folder / cls).mkdir(parents=True, exist_ok=True)
            _save_png(arr, root / folder / cls / f"{name}.png")  # type: ignore[arg-type]
        if split.name == "test":
            idir = root / "test_interventions" / cls / name
            (idir / "background_interventions").mkdir(parents=True, exist_ok=True)
            for keep in subsets:
                mask = sum(1 << PART_NAMES.index(s) for s in keep)
                img = full.image if mask == ALL_PARTS else render(lay, mask, maps=False).image
                _save_png(img, idir / _intervention_name(keep))
            for n in range(len(scene.distractors)):
                img = render(lay, ALL_PARTS, frozenset({n}), maps=False).image
                _save_png(img, idir / "background_interventions" / f"{n}.png")
        bar.update(1)
    return records


def export_funnybirds(
    dataset: SynthBirds,
    out_dir: str | os.PathLike[str],
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    progress: bool = True,
) -> Path:
    """Write `dataset` (at 256 px) to `out_dir` in the FunnyBirds layout; returns `out_dir`.

    `train_per_class` / `test_per_class` override the dataset's images per
    class (None keeps them). The folder must not exist or be empty; files are
    written to a sibling temporary folder and moved into place at the end, so
    an interrupted export leaves nothing half-written at `out_dir`.
    """
    from tqdm.auto import tqdm

    if not isinstance(dataset, SynthBirds):
        raise ConfigError(f"export to the FunnyBirds layout needs a synthbirds dataset, got {type(dataset).__name__}")
    changes: dict[str, int] = {"resolution": FUNNYBIRDS_RESOLUTION}
    if train_per_class is not None:
        changes["train_per_class"] = train_per_class
    if test_per_class is not None:
        changes["test_per_class"] = test_per_class
    ds = dataset.with_options(**changes)

    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"export folder {out} already exists and is not empty; choose a new folder or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        (tmp / "parts.json").write_text(json.dumps(parts_json(), indent=1))
        (tmp / "classes.json").write_text(json.dumps(classes_json(ds)))
        (tmp / "synthbirds.json").write_text(json.dumps(ds.fingerprint(), indent=1))
        splits = [ds.split(s) for s in ("train", "test")]
        with tqdm(total=sum(len(s) for s in splits), desc="export synthbirds", unit="img",
                  disable=not progress) as bar:
            for split in splits:
                (tmp / split.name).mkdir(exist_ok=True)
                (tmp / f"{split.name}_part_map").mkdir(exist_ok=True)
                records = _export_split(ds, split, tmp, bar)
                (tmp / f"dataset_{split.name}.json").write_text(json.dumps(records))
        (tmp / "test_interventions").mkdir(exist_ok=True)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


__all__ = ["export_funnybirds", "parts_json", "classes_json", "scene_record"]
