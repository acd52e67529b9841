"""Reading a monochrome DICOM file into an 8-bit RGB image (RSNA Pneumonia, SPEC 1.6).

Conversion, in this order (the SPEC says "monochrome; apply rescale and
photometric interpretation, replicate to 3 channels"; the intensity mapping is
our documented choice):

1. stored values `s` = `pixel_array` (pydicom decodes uncompressed and, through
   Pillow, JPEG-baseline pixel data; the RSNA files are 8-bit MONOCHROME2);
   a multi-frame file uses its first frame;
2. modality rescale: `v = s * RescaleSlope + RescaleIntercept` (1 and 0 when absent);
3. intensity window = the rescaled image of the *stored* range
   (`[0, 2**BitsStored - 1]`, or the two's-complement range when
   PixelRepresentation is 1), mapped linearly onto [0, 1] and clipped. It does
   not depend on the image's own min / max, so the mapping is the same for
   every file of a series and 8-bit RSNA files keep their exact pixel values;
4. PhotometricInterpretation MONOCHROME1 (0 = white) is inverted: `x -> 1 - x`;
5. `round(255 x)` as uint8, replicated to three channels.

Every failure (not a DICOM file, no pixel data, undecodable compression, not
monochrome) raises a one-line `DataError` naming the file.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError


def _bad(path: Path, what: str) -> DataError:
    return DataError(f"{path}: cannot read DICOM ({what}); replace the file (see `xbench data check`) "
                     f"or rerun with --skip-bad")


def dicom_problem(path: str | os.PathLike[str]) -> str | None:
    """None if `read_dicom(path)` would succeed, else the one-line problem."""
    try:
        read_dicom(path)
    except DataError as err:
        return str(err).split("; replace the file")[0]
    return None


def to_uint8(stored: np.ndarray, slope: float = 1.0, intercept: float = 0.0, bits_stored: int = 8,
             signed: bool = False, monochrome1: bool = False) -> np.ndarray:
    """Steps 2-5 of the module docstring on a stored-value array; returns uint8 of the same shape."""
    if signed:
        lo_s, hi_s = -(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1
    else:
        lo_s, hi_s = 0, 2 ** bits_stored - 1
    v = stored.astype(np.float64) * slope + intercept
    a, b = lo_s * slope + intercept, hi_s * slope + intercept
    lo, hi = min(a, b), max(a, b)
    x = np.clip((v - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    if monochrome1:
        x = 1.0 - x
    return np.round(x * 255.0).astype(np.uint8)


def read_dicom(path: str | os.PathLike[str]) -> Image.Image:
    """RGB PIL image of a monochrome DICOM file (see the module docstring)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    p = Path(path)
    try:
        ds = pydicom.dcmread(p)
    except FileNotFoundError:
        raise DataError(f"{p}: file is missing; restore it (see `xbench data check`) or rerun with --skip-bad") from None
    except (InvalidDicomError, OSError, ValueError, EOFError) as err:
        raise _bad(p, f"not a readable DICOM file: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise _bad(p, "no pixel data")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2") or int(ds.get("SamplesPerPixel", 1)) != 1:
        raise _bad(p, f"photometric interpretation {photometric!r} is not monochrome")
    try:
        arr = ds.pixel_array
    except Exception as err:  # pydicom raises many types for undecodable data; all mean "bad file"
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise _bad(p, f"pixel data cannot be decoded: {msg}") from None
    arr = np.asarray(arr)
    if arr.ndim == 3:  # several frames: the first one
        arr = arr[0]
    if arr.ndim != 2 or arr.size == 0:
        raise _bad(p, f"unexpected pixel array shape {tuple(arr.shape)}")
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    u8 = to_uint8(arr, slope, intercept, bits, signed, photometric == "MONOCHROME1")
    return Image.fromarray(np.repeat(u8[..., None], 3, axis=2), "RGB")


__all__ = ["read_dicom", "dicom_problem", "to_uint8"]
