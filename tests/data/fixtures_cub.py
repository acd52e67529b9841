"""A tiny CUB-200-2011 in the official layout (real JPEG and PNG files), with the truth it wrote."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

PART_NAMES = ["back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg", "left wing",
              "nape", "right eye", "right leg", "right wing", "tail", "throat"]


@dataclass
class CubTruth:
    base: Path
    class_dirs: list[str]
    ids: list[int] = field(default_factory=list)
    path: dict[int, str] = field(default_factory=dict)
    label: dict[int, int] = field(default_factory=dict)        # 0-based
    is_train: dict[int, int] = field(default_factory=dict)
    box: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)  # x y w h
    size: dict[int, tuple[int, int]] = field(default_factory=dict)  # (W, H)
    kp: dict[int, np.ndarray] = field(default_factory=dict)    # [15, 3]
    mask: dict[int, np.ndarray] = field(default_factory=dict)  # bool [H, W]

    def split_ids(self, name: str) -> list[int]:
        want = 1 if name == "train" else 0
        return [i for i in self.ids if self.is_train[i] == want]


def class_colour(c: int) -> tuple[int, int, int]:
    return ((60 * c + 40) % 256, (110 * c + 200) % 256, (170 * c + 90) % 256)


def make_cub(root: Path, n_classes: int = 3, per_class: int = 4, seg: str = "inside", seed: int = 0) -> CubTruth:
    """Write CUB_200_2011/ under `root`; `seg` = "inside", "beside" or "none" (where the masks go)."""
    rng = np.random.default_rng(seed)
    base = root / "CUB_200_2011"
    (base / "images").mkdir(parents=True)
    (base / "parts").mkdir()
    dirs = [f"{c + 1:03d}.Fixture_Bird_{c}" for c in range(n_classes)]
    t = CubTruth(base, dirs)
    seg_root = {"inside": base / "segmentations", "beside": root / "segmentations", "none": None}[seg]
    img_lines, lab_lines, split_lines, box_lines, loc_lines = [], [], [], [], []
    image_id = 0
    for c in range(n_classes):
        (base / "images" / dirs[c]).mkdir()
        if seg_root is not None:
            (seg_root / dirs[c]).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            image_id += 1
            i = image_id
            W, H = 48 + 4 * k + c, 40 + 2 * k
            rel = f"{dirs[c]}/Fixture_Bird_{c}_{k:04d}_{100 + i}.jpg"
            arr = np.clip(rng.normal(0, 20, (H, W, 3)) + np.array(class_colour(c)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(base / "images" / rel, quality=92)
            x, y, w, h = 2.5 + k % 3, 3.0, W - 10.0, H - 9.5
            kp = np.zeros((15, 3), dtype=np.float32)
            for p in range(15):
                vis = int((p + i) % 3 != 0)
                kp[p] = (6.0 + p + 0.5 * k, 5.0 + (p % 7), 1.0) if vis else (0.0, 0.0, 0.0)
                loc_lines.append(f"{i} {p + 1} {kp[p, 0]:.1f} {kp[p, 1]:.1f} {vis}")
            mask = np.zeros((H, W), dtype=np.uint8)
            mask[5:5 + 10 + k, 6:20 + c] = 255
            mask[1, 1] = 51          # a faint annotator pixel: still object (> 0)
            mask[2, W - 3] = 153
            if seg_root is not None:
                Image.fromarray(mask, "L").save(seg_root / rel.replace(".jpg", ".png"))
            t.ids.append(i)
            t.path[i], t.label[i], t.is_train[i] = rel, c, int(k % 2 == 0)
            t.box[i], t.size[i], t.kp[i], t.mask[i] = (x, y, w, h), (W, H), kp, mask > 0
            img_lines.append(f"{i} {rel}")
            lab_lines.append(f"{i} {c + 1}")
            split_lines.append(f"{i} {t.is_train[i]}")
            box_lines.append(f"{i} {x} {y} {w} {h}")
    (base / "images.txt").write_text("\n".join(img_lines) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(lab_lines) + "\n")
    (base / "train_test_split.txt").write_text("\n".join(split_lines) + "\n")
    (base / "bounding_boxes.txt").write_text("\n".join(box_lines) + "\n")
    (base / "classes.txt").write_text("".join(f"{c + 1} {d}\n" for c, d in enumerate(dirs)))
    (base / "parts" / "parts.txt").write_text("".join(f"{p + 1} {n}\n" for p, n in enumerate(PART_NAMES)))
    (base / "parts" / "part_locs.txt").write_text("\n".join(loc_lines) + "\n")
    return t
