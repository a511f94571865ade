# Radiographs with pixel padding (PS3.3 C.7.5.1.1.2: Pixel Padding Value, Pixel Padding Range
# Limit), written by pydicom, and beside each NAME.dcm the display plane the standard's grayscale
# pipeline gives it (NAME.expected: little-endian u16, 0 = black, 65535 = white), computed here in
# numpy and nowhere from cxrflow: modality LUT (rescale), then the file's window (PS3.3
# C.11.2.1.2.1) or, without one, a window over the range of the samples that are not padding;
# MONOCHROME1 inverted; padding black. Appended to synthetic_cr.py (its `header` and `d`).
from pydicom.uid import ImplicitVRLittleEndian

W, H = 500, 600
rng = np.random.default_rng(11)
y, x = np.mgrid[0:H, 0:W].astype(np.float64)
# Anatomy-like values on 0..1: a gradient, a brighter disc, noise.
shape = 0.15 + 0.6 * x / W + 0.2 * y / H
shape += np.where((x - W / 3) ** 2 + (y - H / 2) ** 2 < (W / 6) ** 2, 0.05, 0)
shape = np.clip(shape + rng.normal(0, 0.01, (H, W)), 0, 1)
# A collimated field: the frame outside it is padding.
frame = np.zeros((H, W), dtype=bool)
frame[: H // 10] = frame[-H // 12 :] = True
frame[:, : W // 9] = frame[:, -W // 11 :] = True


def dataset(stored, mono, bits, signed=False, window=None, rescale=None, **padding):
    ds = header(bits, W, H, mono)
    ds.PixelRepresentation = 1 if signed else 0
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    for k, v in padding.items():
        setattr(ds, k, v)
        # US or SS, as Pixel Representation says.
        ds[k].VR = "SS" if signed else "US"
    ds.PixelData = stored.astype("<i2" if signed else "<u2").tobytes()
    return ds


def expected(stored, mono, pad, window=None, rescale=(1.0, 0.0)):
    m = stored.astype(np.float64) * rescale[0] + rescale[1]
    if window:
        c, w = window
        c, w = c - 0.5, w - 1.0
        v = np.where(m <= c - w / 2, 0.0, np.where(m > c + w / 2, 1.0, (m - c) / w + 0.5))
    else:
        lo, hi = m[~pad].min(), m[~pad].max()
        v = (m - lo) / (hi - lo)
    v = np.clip(v, 0, 1)
    if mono == "MONOCHROME1":
        v = 1 - v
    out = np.round(v * 65535).astype("<u2")
    out[pad] = 0
    return out


def save(name, ds, plane, syntax=ExplicitVRLittleEndian):
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(f"{d}/{name}.dcm", enforce_file_format=True)
    plane.astype("<u2").tofile(f"{d}/{name}.expected")


# MONOCHROME2, 12 bits, padded with 0 (the black end, as the standard wants it), no window:
# the window spans the field, not 0.
s = np.round(300 + shape * 3200).astype(np.int64)
s[frame] = 0
save("mono2-pad0", dataset(s, "MONOCHROME2", 12, PixelPaddingValue=0),
     expected(s, "MONOCHROME2", frame))
# MONOCHROME1, 12 bits, padded with 4095 (its black end), no window.
s = np.round(4095 - (300 + shape * 3200)).astype(np.int64)
s[frame] = 4095
save("mono1-pad4095", dataset(s, "MONOCHROME1", 12, PixelPaddingValue=4095),
     expected(s, "MONOCHROME1", frame))
# MONOCHROME1, 16 bits stored holding 12-bit values, padded with 65535: counted in the window,
# the padding would leave the field within 6 % of white.
s = np.round(4095 - shape * 4095).astype(np.int64)
s[frame] = 65535
save("mono1-16bit-pad65535", dataset(s, "MONOCHROME1", 16, PixelPaddingValue=65535),
     expected(s, "MONOCHROME1", frame))
# Signed, rescaled, padded with -32768 (SS); the same file in implicit VR, where the attribute's
# VR (US or SS) is not written and its 16 bits are read as the samples are.
s = np.round(-1000 + shape * 3000).astype(np.int64)
s[frame] = -32768
ds = dataset(s, "MONOCHROME2", 16, signed=True, rescale=(2.0, -100.0), PixelPaddingValue=-32768)
plane = expected(s, "MONOCHROME2", frame, rescale=(2.0, -100.0))
save("signed-rescaled", ds, plane)
save("signed-implicit", ds, plane, ImplicitVRLittleEndian)
# A range: Pixel Padding Value 0 to Pixel Padding Range Limit 199, the frame holding values
# anywhere in it.
s = np.round(300 + shape * 3200).astype(np.int64)
s[frame] = rng.integers(0, 200, frame.sum())
save("range", dataset(s, "MONOCHROME2", 12, PixelPaddingValue=0, PixelPaddingRangeLimit=199),
     expected(s, "MONOCHROME2", (s <= 199)))
# With a window, padding at the white end (not where the standard asks for it) is still black.
s = np.round(300 + shape * 3200).astype(np.int64)
s[frame] = 4095
save("windowed-white", dataset(s, "MONOCHROME2", 12, window=(1900, 3200), PixelPaddingValue=4095),
     expected(s, "MONOCHROME2", frame, window=(1900, 3200)))
# Padding beyond BitsStored's range: 12 bits stored, the frame's words 0xFFFF, Pixel Padding
# Value 65535. Masked to 12 bits those words read 4095, which no window should reach for.
s = np.round(300 + shape * 3200).astype(np.int64)
s[frame] = 0xFFFF
masked = np.where(frame, 0, s)
save("above-high-bit", dataset(s, "MONOCHROME2", 12, PixelPaddingValue=65535),
     expected(masked, "MONOCHROME2", frame))
