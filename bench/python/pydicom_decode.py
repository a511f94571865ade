"""The obvious Python alternative to cxrflow's preprocess, timed on the same DICOM files:
pydicom decodes the pixel data with each of its decoding plugins that handles the file's
transfer syntax (pylibjpeg with its openjpeg, libjpeg and rle plugins; GDCM; Pillow; pydicom's
own native and RLE decoders), applies the modality LUT and the VOI window
(pydicom.pixels.apply_modality_lut / apply_voi_lut, PS3.3 C.11.2.1.2.1 as cxrflow does) and
MONOCHROME1 inversion, and OpenCV resizes the 16-bit display plane (INTER_AREA) into the same
224² letterbox (long side to 224, centred, black bars) as cxrflow's gray224-v1 profile. One
thread: cv2.setNumThreads(1), OMP/OpenBLAS threads 1 (the caller sets them too), and the
process pinned to one CPU, so a decoder that starts threads of its own (GDCM's OpenJPEG does)
gets no second core either: wall time is single-core time.

    pydicom_decode.py --reps N --out OUT.json [--tensors DIR] FILE...

Each file's bytes are read once, before timing; each timed run parses them (dcmread on a
BytesIO), decodes, windows and resizes, as cxrflow's timed run does. One untimed run first,
then N timed ones; per file and plugin the median wall and CPU milliseconds go to OUT.json. With
--tensors, the first file's 224² tensor per plugin is written as DIR/PLUGIN.u8 (raw bytes) for
the caller to compare with cxrflow's.
"""

import argparse
import io
import json
import math
import os
import statistics
import sys
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
# Before any library sizes a thread pool from the CPUs it may use.
CPU = min(os.sched_getaffinity(0))
os.sched_setaffinity(0, {CPU})

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder  # noqa: E402

cv2.setNumThreads(1)
SIDE = 224
NATIVE = "pydicom"


def letterbox(width, height, side=SIDE):
    """cxrflow's Letterbox::fit: long side to `side`, rounding half away from zero."""
    scale = side / max(width, height, 1)
    w = min(max(math.floor(width * scale + 0.5), 1), side)
    h = min(max(math.floor(height * scale + 0.5), 1), side)
    return w, h, (side - w) // 2, (side - h) // 2


def output_range(ds):
    """The range apply_voi_lut maps a window onto (pydicom's apply_windowing)."""
    bits = int(ds.BitsStored)
    if ds.get("ModalityLUTSequence"):
        lo, hi = 0, 2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
    elif ds.PixelRepresentation == 0:
        lo, hi = 0, 2**bits - 1
    else:
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if ds.get("RescaleSlope") is not None and ds.get("RescaleIntercept") is not None:
        lo = lo * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        hi = hi * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    return lo, hi


def prepare(data, plugin):
    ds = pydicom.dcmread(io.BytesIO(data))
    if plugin != NATIVE:
        ds.pixel_array_options(decoding_plugin=plugin)
    arr = apply_modality_lut(ds.pixel_array, ds)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        lo, hi = output_range(ds)
        y = (apply_voi_lut(arr, ds) - lo) / (hi - lo)
    else:
        arr = arr.astype(np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        y = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        y = 1.0 - y
    plane = np.rint(np.clip(y, 0.0, 1.0) * 65535.0).astype(np.uint16)
    w, h, left, top = letterbox(plane.shape[1], plane.shape[0])
    small = cv2.resize(plane, (w, h), interpolation=cv2.INTER_AREA)
    out = np.zeros((SIDE, SIDE), dtype=np.uint8)
    out[top : top + h, left : left + w] = ((small.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return out


def plugins(data):
    """The decoding plugins pydicom has for the file's transfer syntax (NATIVE for the
    uncompressed ones, which pydicom decodes itself)."""
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    uid = ds.file_meta.TransferSyntaxUID
    if not uid.is_compressed:
        return [NATIVE]
    return sorted(get_decoder(uid).available_plugins)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tensors")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    blobs = [(f, open(f, "rb").read()) for f in a.files]
    results = []
    for k, (name, data) in enumerate(blobs):
        for plugin in plugins(data):
            entry = {"file": name, "plugin": plugin}
            try:
                tensor = prepare(data, plugin)
            except Exception as e:  # a plugin that cannot decode this file is reported, not timed
                entry["error"] = f"{type(e).__name__}: {e}"
                results.append(entry)
                continue
            if k == 0 and a.tensors:
                tensor.tofile(os.path.join(a.tensors, f"{plugin}.u8"))
            wall, cpu, proc = [], [], []
            for _ in range(a.reps):
                t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
                prepare(data, plugin)
                wall.append((time.perf_counter() - t0) * 1e3)
                cpu.append((time.thread_time() - c0) * 1e3)
                proc.append((time.process_time() - p0) * 1e3)
            entry.update(
                wall_ms=statistics.median(wall),
                thread_cpu_ms=statistics.median(cpu),
                process_cpu_ms=statistics.median(proc),
            )
            results.append(entry)
    versions = {"python": sys.version.split()[0], "pydicom": pydicom.__version__}
    versions["numpy"] = np.__version__
    versions["opencv"] = cv2.__version__
    for mod in ("pylibjpeg", "openjpeg", "libjpeg", "rle", "gdcm", "PIL"):
        try:
            m = __import__(mod)
            versions[mod] = getattr(m, "__version__", None) or getattr(m, "GDCM_VERSION", "?")
        except ImportError:
            pass
    with open(a.out, "w") as f:
        json.dump(
            {
                "versions": versions,
                "opencv_threads": cv2.getNumThreads(),
                "pinned_cpu": CPU,
                "results": results,
            },
            f,
        )


if __name__ == "__main__":
    main()
