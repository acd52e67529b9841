"""Reading image files so that every failure is a one-line `DataError` naming the file.

Loaders call these instead of `PIL.Image.open` directly: a missing, truncated
or undecodable file raises `DataError` (never a PIL or OS exception), which the
extractor's `--skip-bad` path catches, counts and substitutes.

Choices:

* images are fully decoded inside the `try` (`Image.load()`), so a truncated
  JPEG fails here and not later inside a transform; PIL's
  `LOAD_TRUNCATED_IMAGES` is left at its default (False);
* every colour mode (greyscale, palette, CMYK, RGBA...) is converted to RGB;
  RGBA is converted by dropping alpha (FunnyBirds' loader does the same);
* masks are read as 8-bit greyscale (`L`); palette / RGB masks are converted
  with PIL's standard luma conversion, which keeps 0 at 0 and anything else > 0.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError


def _problem(path: Path, err: BaseException) -> str:
    """`<path>: <what is wrong>` (no fix), as `xbench data check` lists it."""
    if isinstance(err, FileNotFoundError):
        return f"{path}: file is missing"
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"{path}: cannot read image ({reason})"


def _fail(path: Path, err: BaseException) -> DataError:
    return DataError(f"{_problem(path, err)}; replace the file (see `xbench data check`) or rerun with --skip-bad")


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """The fully decoded image at `path`, in its own mode. Raises DataError naming the file."""
    p = Path(path)
    try:
        with Image.open(p) as img:
            img.load()
            out = img.copy() if img.mode != "P" else img.convert("RGBA")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise _fail(p, err) from None
    return out


def read_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """RGB PIL image (alpha dropped). Raises DataError naming the file when unreadable."""
    img = open_image(path)
    if img.mode == "RGBA":
        return Image.fromarray(np.asarray(img)[..., :3].copy(), "RGB")
    if img.mode != "RGB":
        try:
            img = img.convert("RGB")
        except (OSError, ValueError) as err:  # pragma: no cover - exotic modes
            raise _fail(Path(path), err) from None
    return img


def read_gray(path: str | os.PathLike[str]) -> np.ndarray:
    """uint8 [H, W] greyscale array of a mask image. Raises DataError naming the file."""
    img = open_image(path)
    if img.mode == "RGBA":
        img = Image.fromarray(np.asarray(img)[..., :3].copy(), "RGB")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(img)
        return np.clip(arr, 0, 255).astype(np.uint8)
    if img.mode != "L":
        img = img.convert("L")
    return np.asarray(img, dtype=np.uint8).copy()


def read_rgb_array(path: str | os.PathLike[str]) -> np.ndarray:
    """uint8 [H, W, 3] array (alpha dropped), e.g. a colour-coded part map."""
    return np.asarray(read_rgb(path), dtype=np.uint8)


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    p = Path(path)
    try:
        with Image.open(p) as img:
            return img.size
    except (OSError, ValueError, SyntaxError) as err:
        raise _fail(p, err) from None


def verify_image(path: str | os.PathLike[str]) -> str | None:
    """None if the file decodes completely, else the one-line problem."""
    p = Path(path)
    try:
        with Image.open(p) as img:
            img.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        return _problem(p, err)
    return None


__all__ = ["open_image", "read_rgb", "read_gray", "read_rgb_array", "image_size", "verify_image"]
