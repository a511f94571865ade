"""Wraps full-size 16-bit PNG radiographs (12 bits stored; cxrflow-bench reduced-decode renders
them) as DICOM CR objects in the transfer syntaxes that preprocess decodes at a reduced
resolution:

    full_size_dicom.py DIR [SYNTAX...]     SYNTAX: j2k (default), j2k-lossy, jpeg (default), jpeg12

For each DIR/NAME.png writes DIR/NAME.SYNTAX.dcm:
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


def main():
    d = sys.argv[1]
    syntaxes = sys.argv[2:] or ["j2k", "jpeg"]
    for png in sorted(glob.glob(os.path.join(d, "*.png"))):
        pixels = np.asarray(Image.open(png)).astype(np.uint16)
        pixels = np.minimum(pixels, 4095)
        base = png[: -len(".png")]
        for s in syntaxes:
            out = f"{base}.{s}.dcm"
            if s == "jpeg12":
                native = f"{base}.native.dcm"
                ds = dataset(pixels, 12, ExplicitVRLittleEndian, pixels.astype("<u2").tobytes())
                ds.save_as(native, enforce_file_format=True)
                subprocess.run(["dcmcjpeg", "+ee", native, out], check=True)
                os.remove(native)
            else:
                encode(pixels, s).save_as(out, enforce_file_format=True)


if __name__ == "__main__":
    main()
