"""Wraps full-size 16-bit PNG radiographs (12 bits stored; cxrflow-bench reduced-decode and
pydicom-compare render them) as DICOM CR objects in a transfer syntax each:

    full_size_dicom.py DIR [SYNTAX...]     SYNTAX: one of those below; default j2k jpeg

For each DIR/NAME.png writes DIR/NAME.SYNTAX.dcm:
- native:    Explicit VR Little Endian (1.2.840.10008.1.2.1), 12 bits stored in 16;
- deflate:   Deflated Explicit VR Little Endian (1.2.840.10008.1.2.1.99), DCMTK's `dcmconv +td`;
- rle:       RLE Lossless (1.2.840.10008.1.2.5), DCMTK's `dcmcrle`;
- jpeg-ll:   JPEG Lossless SV1 (1.2.840.10008.1.2.4.70), DCMTK's `dcmcjpeg`;
- jls:       JPEG-LS Lossless (1.2.840.10008.1.2.4.80), DCMTK's `dcmcjpls +el`;
- j2k:       JPEG 2000 lossless (1.2.840.10008.1.2.4.90), Pillow's OpenJPEG, 12 bits;
- j2k-lossy: JPEG 2000 (1.2.840.10008.1.2.4.91), 10:1, 12 bits;
- jpeg:      JPEG baseline (1.2.840.10008.1.2.4.50), Pillow's libjpeg at quality 95, the top 8 bits;
- jpeg12:    JPEG Extended 12-bit (1.2.840.10008.1.2.4.51), DCMTK's `dcmcjpeg +ee` (quality 90).
Each carries the window of its full range, so the display mapping is the same linear one at
every resolution level (preprocess reduces only images that state their window).
"""

import glob
import io
import os
import subprocess
import sys

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    generate_uid,
)


def dataset(pixels, bits, uid, frame):
    h, w = pixels.shape
    m = FileMetaDataset()
    m.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    m.MediaStorageSOPInstanceUID = generate_uid()
    m.TransferSyntaxUID = uid
    ds = Dataset()
    ds.file_meta = m
    ds.SOPClassUID = m.MediaStorageSOPClassUID
    ds.SOPInstanceUID = m.MediaStorageSOPInstanceUID
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "CR", "CHEST", "PA"
    ds.Rows, ds.Columns = h, w
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = 16 if bits > 8 else 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    top = (1 << bits) - 1
    ds.WindowCenter, ds.WindowWidth = (top + 1) / 2, top + 1
    if uid == ExplicitVRLittleEndian:
        ds.PixelData = frame
    else:
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
    return ds


def encode(pixels, syntax):
    h, w = pixels.shape
    out = io.BytesIO()
    if syntax == "jpeg":
        eight = (pixels >> 4).astype(np.uint8)
        Image.fromarray(eight).save(out, format="JPEG", quality=95)
        return dataset(eight, 8, JPEGBaseline8Bit, out.getvalue())
    im = Image.frombytes("I;16", (w, h), pixels.astype("<u2").tobytes())
    opts = {"irreversible": syntax == "j2k-lossy", "no_jp2": True}
    if syntax == "j2k-lossy":
        opts.update(quality_mode="rates", quality_layers=[10])
    im.save(out, format="JPEG2000", **opts)
    return dataset(pixels, 12, JPEG2000 if syntax == "j2k-lossy" else JPEG2000Lossless, out.getvalue())


# Syntaxes DCMTK encodes from the native file: the tool and its options.
DCMTK = {
    "deflate": ["dcmconv", "+td"],
    "rle": ["dcmcrle"],
    "jpeg-ll": ["dcmcjpeg"],
    "jls": ["dcmcjpls", "+el"],
    "jpeg12": ["dcmcjpeg", "+ee"],
}
SYNTAXES = ["native", *DCMTK, "j2k", "j2k-lossy", "jpeg"]


def main():
    d = sys.argv[1]
    syntaxes = sys.argv[2:] or ["j2k", "jpeg"]
    unknown = [s for s in syntaxes if s not in SYNTAXES]
    if unknown:
        sys.exit(f"unknown syntax {unknown} (known: {' '.join(SYNTAXES)})")
    for png in sorted(glob.glob(os.path.join(d, "*.png"))):
        pixels = np.asarray(Image.open(png)).astype(np.uint16)
        pixels = np.minimum(pixels, 4095)
        base = png[: -len(".png")]
        native = f"{base}.native.dcm"
        if "native" in syntaxes or any(s in DCMTK for s in syntaxes):
            ds = dataset(pixels, 12, ExplicitVRLittleEndian, pixels.astype("<u2").tobytes())
            ds.save_as(native, enforce_file_format=True)
        for s in syntaxes:
            out = f"{base}.{s}.dcm"
            if s in DCMTK:
                subprocess.run([*DCMTK[s], native, out], check=True)
            elif s != "native":
                encode(pixels, s).save_as(out, enforce_file_format=True)
        if "native" not in syntaxes and os.path.exists(native):
            os.remove(native)


if __name__ == "__main__":
    main()
