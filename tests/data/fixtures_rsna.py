"""A tiny RSNA Pneumonia folder: real DICOM files (pydicom) with pixel data, and the labels CSV."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


def write_dicom(path: Path, pixels: np.ndarray | None, *, photometric: str = "MONOCHROME2", bits_stored: int = 8,
                slope: float | None = None, intercept: float | None = None, jpeg: bool = False) -> None:
    """A secondary-capture DICOM file; `pixels` None writes a file without pixel data."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID = path.stem
    ds.Modality = "CR"
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        alloc = 8 if bits_stored <= 8 else 16
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = alloc, bits_stored, bits_stored - 1, 0
        if slope is not None:
            ds.RescaleSlope, ds.RescaleIntercept = slope, intercept or 0.0
        if jpeg:
            buf = io.BytesIO()
            Image.fromarray(pixels.astype(np.uint8)).save(buf, format="JPEG", quality=90)
            ds.PixelData = encapsulate([buf.getvalue()])
            ds["PixelData"].VR = "OB"
            ds["PixelData"].is_undefined_length = True
        else:
            ds.PixelData = pixels.astype(np.uint8 if alloc == 8 else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


@dataclass
class RSNATruth:
    base: Path
    target: dict[str, int] = field(default_factory=dict)
    boxes: dict[str, np.ndarray] = field(default_factory=dict)   # (x1, y1, x2, y2)
    pixels: dict[str, np.ndarray] = field(default_factory=dict)  # stored values
    size: tuple[int, int] = (24, 32)                             # (H, W)


def make_rsna(root: Path, n_neg: int = 10, n_pos: int = 5) -> RSNATruth:
    base = root / "rsna-pneumonia-detection-challenge"
    (base / "stage_2_train_images").mkdir(parents=True)
    t = RSNATruth(base)
    H, W = t.size
    rows = ["patientId,x,y,width,height,Target"]
    for k in range(n_neg + n_pos):
        pid = f"{k:04x}a1b2-c3d4-{k * 7919 % 65536:04x}-9e8f-0123456789ab"
        pos = k >= n_neg
        px = ((np.arange(H * W).reshape(H, W) * (k + 3)) % 256).astype(np.uint8)
        write_dicom(base / "stage_2_train_images" / f"{pid}.dcm", px)
        t.pixels[pid], t.target[pid] = px, int(pos)
        if pos:
            boxes = [(2.0 + k % 3, 3.5, 10.0, 6.0)] + ([(18.0, 10.0, 4.5, 8.0)] if k % 2 else [])
            for x, y, w, h in boxes:
                rows.append(f"{pid},{x},{y},{w},{h},1")
            t.boxes[pid] = np.array([(x, y, x + w, y + h) for x, y, w, h in boxes], dtype=np.float32)
        else:
            rows.append(f"{pid},,,,,0")
            t.boxes[pid] = np.zeros((0, 4), dtype=np.float32)
    (base / "stage_2_train_labels.csv").write_text("\n".join(rows) + "\n")
    return t
