"""A hand-made FunnyBirds folder in the official layout (SPEC 1.2): 3 classes, known part maps and interventions."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
from PIL import Image

PARTS = ["beak", "eye", "foot", "tail", "wing"]
PARTS_JSON = {
    "beak": [{"model": "beak01.glb", "color": "yellow"}, {"model": "beak02.glb", "color": "yellow"}],
    "eye": [{"model": "eye01.glb"}, {"model": "eye02.glb"}],
    "foot": [{"model": "foot01.glb"}],
    "tail": [{"model": "tail01.glb", "color": "red"}],
    "wing": [{"model": "wing01.glb", "color": "red"}, {"model": "wing01.glb", "color": "blue"}],
}
CLASSES = [  # variant per slot
    {"beak": 0, "eye": 0, "foot": 0, "tail": 0, "wing": 0},
    {"beak": 1, "eye": 0, "foot": 0, "tail": 0, "wing": 0},
    {"beak": 1, "eye": 1, "foot": 0, "tail": 0, "wing": 1},
]
SIZE = 12

# (row, col) -> colour of the hand-made part map, and the id xbench must decode it to
PART_MAP_PIXELS = {
    (0, 0): ((255, 255, 0), 1),     # beak
    (0, 1): ((255, 255, 253), 2),   # eye 1
    (0, 2): ((255, 255, 254), 2),   # eye 2
    (1, 0): ((255, 0, 1), 3),       # foot 1
    (1, 1): ((255, 0, 2), 3),       # foot 2
    (2, 0): ((0, 0, 255), 4),       # tail
    (1, 2): ((0, 255, 1), 5),       # wing 1
    (1, 3): ((0, 255, 2), 5),       # wing 2
    (2, 1): ((170, 170, 170), 0),   # body: not a part slot, but the bird
    (3, 0): ((204, 204, 204), 6),   # background object 0
    (3, 1): ((204, 204, 205), 7),   # background object 1
    (3, 2): ((12, 34, 56), 0),      # a colour outside the code
}


def record(c: int, removed: tuple[str, ...] = (), objects: tuple[int, ...] = ()) -> dict:
    rec: dict = {"camera_distance": 210, "camera_pitch": 0.3, "light_angle": 45}
    for slot in PARTS:
        for key, value in PARTS_JSON[slot][CLASSES[c][slot]].items():
            rec[f"{slot}_{key}"] = "placeholder" if slot in removed else value
    rec["bg_objects"] = "".join(f"{o}," for o in objects)
    rec["bg_radius"] = "".join("0.5," for _ in objects)
    rec["class_idx"] = c
    return rec


TRAIN = [record(0, (), (0, 3)), record(1, ("wing",)), record(2, ("eye", "wing"), (4,))]
TEST = [record(0, (), (1,)), record(2)]


def rgba(path: Path, colour: tuple[int, int, int], alpha: int = 255) -> None:
    arr = np.zeros((SIZE, SIZE, 4), dtype=np.uint8)
    arr[..., :3] = colour
    arr[..., 3] = alpha
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "RGBA").save(path)


def image_colour(split: str, i: int) -> tuple[int, int, int]:
    return (20 + 30 * i, 90 if split == "train" else 160, 40)


def intervention_colour(i: int, keep_mask: int) -> tuple[int, int, int]:
    return (8 * keep_mask, 50 + i, 7)


def make_funnybirds(root: Path) -> Path:
    base = root / "FunnyBirds"
    base.mkdir(parents=True)
    (base / "classes.json").write_text(json.dumps([{"class_idx": c, "parts": p} for c, p in enumerate(CLASSES)]))
    (base / "parts.json").write_text(json.dumps(PARTS_JSON))
    part_map = np.zeros((SIZE, SIZE, 4), dtype=np.uint8)
    part_map[..., 3] = 255
    for (r, c), (colour, _) in PART_MAP_PIXELS.items():
        part_map[r, c, :3] = colour
    for split, recs in (("train", TRAIN), ("test", TEST)):
        (base / f"dataset_{split}.json").write_text(json.dumps(recs))
        for i, rec in enumerate(recs):
            rel = f"{rec['class_idx']}/{i:06d}.png"
            rgba(base / split / rel, image_colour(split, i), alpha=128 if i == 0 else 255)
            (base / f"{split}_part_map" / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(part_map, "RGBA").save(base / f"{split}_part_map" / rel)
            if split != "test":
                continue
            d = base / "test_interventions" / str(rec["class_idx"]) / f"{i:06d}"
            for m in range(32):
                keep = [p for b, p in enumerate(PARTS) if m >> b & 1]
                rgba(d / ("body_" + "_".join(keep) + ".png"), intervention_colour(i, m))
            n_obj = len([t for t in rec["bg_objects"].split(",") if t])
            for n in range(n_obj):
                rgba(d / "background_interventions" / f"{n}.png", (0, 200, 10 + n))
    return base


def all_subsets() -> list[tuple[str, ...]]:
    return [c for r in range(6) for c in itertools.combinations(PARTS, r)]
