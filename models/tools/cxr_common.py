"""Shared pieces of cxrflow's model tools: the findings list, the manifest writer, the letterbox
preprocessing that must match the Rust `preprocess` service (profile gray224-v1), and ONNX helpers.

See docs/model-manifest.md for the manifest format.
"""

from __future__ import annotations

import json
import math
import os
import tempfile

import numpy as np

# The 14 CheXpert findings in cxrflow's canonical output order (docs/model-manifest.md).
FINDINGS = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
]

# Findings that triage treats as critical.
CRITICAL = {
    "Pneumothorax",
    "Pleural Effusion",
    "Edema",
    "Consolidation",
    "Lung Lesion",
    "Pneumonia",
    "Enlarged Cardiomediastinum",
}

PROFILE_ID = "gray224-v1"
SIZE = 224

# ONNX opset / IR version written by the tools: old enough for any ONNX Runtime >= 1.14.
OPSET = 17
IR_VERSION = 8


def letterbox_dims(width: int, height: int, size: int = SIZE) -> tuple[int, int, int, int]:
    """Geometry of the gray224-v1 letterbox: (new_w, new_h, x0, y0).

    The long side becomes `size`; the short side is round(short * size / long) (at least 1),
    which is what the Rust `image` crate's aspect-preserving resize computes; the resized image is
    placed at x0 = (size - new_w) // 2, y0 = (size - new_h) // 2 and the rest is 0 (black).
    """
    # Same f64 arithmetic as image::math::resize_dimensions (ratio = min(size/w, size/h), then
    # f64::round, which rounds halves away from zero: floor(x + 0.5) here, not Python's round()).
    scale = min(size / width, size / height)
    new_w = max(1, int(math.floor(width * scale + 0.5)))
    new_h = max(1, int(math.floor(height * scale + 0.5)))
    new_w, new_h = min(new_w, size), min(new_h, size)
    return new_w, new_h, (size - new_w) // 2, (size - new_h) // 2


def load_gray_u8(path: str):
    """Opens an image file as an 8-bit grayscale PIL image (16-bit PNGs are scaled down, >> 8)."""
    from PIL import Image

    img = Image.open(path)
    img.load()
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.uint32)
        maxv = 65535 if img.mode.startswith("I;16") or arr.max() > 255 else 255
        arr = (arr * 255 + maxv // 2) // maxv
        img = Image.fromarray(arr.astype(np.uint8))
    elif img.mode != "L":
        img = img.convert("L")
    return img


def letterbox_u8(img, size: int = SIZE) -> np.ndarray:
    """gray224-v1 preprocessing: bilinear resize (long side -> size, aspect kept), centred on black.

    Returns a (size, size) uint8 array. Pillow's BILINEAR filter widens its triangle kernel when
    downscaling (antialiasing), as the Rust `image` crate's FilterType::Triangle does; the two can
    differ by a grey level here and there from rounding, which the pooled features do not notice.
    """
    from PIL import Image

    new_w, new_h, x0, y0 = letterbox_dims(img.width, img.height, size)
    if (new_w, new_h) != (img.width, img.height):
        img = img.resize((new_w, new_h), Image.BILINEAR)
    out = np.zeros((size, size), dtype=np.uint8)
    out[y0 : y0 + new_h, x0 : x0 + new_w] = np.asarray(img, dtype=np.uint8)
    return out


def manifest(
    name: str,
    version: str,
    scale: float,
    offset: float,
    thresholds: dict[str, float],
    training: dict,
    features: bool = True,
) -> dict:
    """A manifest.json document in the format of docs/model-manifest.md."""
    m = {
        "name": name,
        "version": version,
        "file": "model.onnx",
        "input": {
            "name": "image",
            "layout": "NCHW",
            "channels": 1,
            "height": SIZE,
            "width": SIZE,
            "dtype": "float32",
        },
        "preprocessing": {
            "profile_id": PROFILE_ID,
            "width": SIZE,
            "height": SIZE,
            "channels": 1,
            "interpolation": "bilinear",
            "fit": "letterbox",
        },
        "normalization": {"scale": scale, "offset": offset},
        "outputs": {"probabilities": "probabilities"},
        "activation": "none",
        "findings": [
            {"name": f, "threshold": float(thresholds[f]), "critical": f in CRITICAL} for f in FINDINGS
        ],
        "training": training,
    }
    if features:
        m["outputs"]["features"] = "features"
    return m


def write_model_dir(outdir: str, model, manifest_doc: dict) -> None:
    """Writes OUTDIR/model.onnx and OUTDIR/manifest.json, each atomically (temp file + rename)."""
    import onnx

    os.makedirs(outdir, exist_ok=True)
    for fname, write in (
        ("model.onnx", lambda f: f.write(model.SerializeToString())),
        ("manifest.json", lambda f: f.write((json.dumps(manifest_doc, indent=2) + "\n").encode())),
    ):
        fd, tmp = tempfile.mkstemp(dir=outdir, prefix="." + fname + ".")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.chmod(tmp, 0o644)
            os.replace(tmp, os.path.join(outdir, fname))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    onnx.checker.check_model(os.path.join(outdir, "model.onnx"))


def ort_session(path: str, threads: int = 0):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
