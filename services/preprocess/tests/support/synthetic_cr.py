# A synthetic grayscale radiograph written by pydicom, shared by the codec tests (prepended to
# their scripts with include_str!): a gradient, a brighter disc with a sharp edge, optional
# rib-like bands and detector noise, so no codec gets a trivially flat picture. It carries the
# window of its full range, so the display mapping is the same linear one for the original and
# every re-encoding (a min-max window would move with lossy codecs' over- and undershoot).
import io, sys, numpy as np, pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


def header(bits, w, h, mono):
    """A chest CR's header without pixel data or window: the samples unsigned."""
    m = FileMetaDataset()
    m.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    m.MediaStorageSOPInstanceUID = generate_uid()
    m.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = m
    ds.SOPClassUID = m.MediaStorageSOPClassUID
    ds.SOPInstanceUID = m.MediaStorageSOPInstanceUID
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "CR", "CHEST", "PA"
    ds.Rows, ds.Columns = h, w
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, mono
    ds.BitsAllocated = 16 if bits > 8 else 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    return ds


def make(bits, w, h, mono, grad=(0.6, 0.3), disc=0.1, bands=0.0, noise=200):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    top = (1 << bits) - 1
    img = (x / w * grad[0] + y / h * grad[1]) * top
    img += np.where((x - w / 3) ** 2 + (y - h / 2) ** 2 < (w / 6) ** 2, disc * top, 0)
    if bands:
        img += bands * top * (np.sin(y / 37.0) > 0.6)
    img += np.random.default_rng(7).normal(0, top / noise, (h, w))
    img = np.clip(img, 0, top).astype(np.uint16 if bits > 8 else np.uint8)
    ds = header(bits, w, h, mono)
    ds.WindowCenter, ds.WindowWidth = (top + 1) / 2, top + 1
    ds.PixelData = img.tobytes()
    return ds


d = sys.argv[1]
