"""Writes a corpus of images a chest X-ray model has no business scoring, for measuring the
out-of-distribution and eligibility gates (`cxrflow model ood-eval`). Nothing in cxrflow is
tuned to it: the sources are other projects' sample images and generic corruptions.

    python make_ood_corpus.py --dataset DATASET_DIR --out OUT_DIR [--seed 0]

One sub-directory per kind:
  photos/            scikit-image's and scikit-learn's bundled sample photographs and drawings,
                     as PNG and JPEG, colour and grey, whole and cropped
  medical-nonchest/  scikit-image's retina, microscopy (cell, IHC, microaneurysms) and the
                     Shepp-Logan CT phantom, as PNG and JPEG
  dicom-nonchest/    the same pixels written as DICOM by DCMTK's img2dcm (secondary capture) and
                     edited by dcmodify into MR, CT and non-chest CR objects (run by the caller:
                     see scripts/make-ood-corpus.sh)
  corrupted-chest/   chest images of the dataset's train split (never the held-out split the
                     measurement passes) under heavy corruption: noise, inversion, rotation,
                     blank, saturation, tiling; and reframed: upside down, cropped, zoomed
"""

import argparse
import csv
import os
import random

import numpy as np
from PIL import Image, ImageOps
import skimage.data
from sklearn.datasets import load_sample_images

MEDICAL = {"retina", "cell", "ihc", "microaneurysms", "phantom"}


def skimage_images():
    here = os.path.dirname(skimage.data.__file__)
    for name in sorted(os.listdir(here)):
        stem, ext = os.path.splitext(name)
        if ext.lower() not in (".png", ".jpg", ".jpeg"):
            continue
        img = Image.open(os.path.join(here, name))
        img.load()
        yield stem, img


def sklearn_images():
    data = load_sample_images()
    for name, arr in zip(data.filenames, data.images):
        yield "sklearn-" + os.path.splitext(os.path.basename(name))[0], Image.fromarray(arr)


def variants(img, rng):
    """The image as PNG and JPEG, colour and grey, whole and cropped to a random half."""
    rgb = img.convert("RGB")
    gray = img.convert("L")
    w, h = rgb.size
    cw, ch = max(w // 2, 32), max(h // 2, 32)
    x, y = rng.randrange(0, w - cw + 1), rng.randrange(0, h - ch + 1)
    crop = gray.crop((x, y, x + cw, y + ch))
    return [("rgb.png", rgb), ("gray.jpg", gray), ("crop.png", crop)]


def write(img, path):
    if path.endswith(".jpg"):
        img.convert("RGB" if img.mode not in ("L", "RGB") else img.mode).save(path, quality=90)
    else:
        img.save(path)


def chest_images(dataset, n, rng):
    root = dataset
    if not os.path.exists(os.path.join(root, "train.csv")):
        root = os.path.join(dataset, "CheXpert-v1.0-small")
    parent = os.path.dirname(root)
    with open(os.path.join(root, "train.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["Frontal/Lateral"] == "Frontal"]
    rng.shuffle(rows)
    return [os.path.join(parent, r["Path"]) for r in rows[:n]]


def corruptions(arr, rng):
    a = arr.astype(np.float64)
    h, w = a.shape
    noise = np.clip(a + np.random.default_rng(rng.randrange(1 << 30)).normal(0, 90, a.shape), 0, 255)
    sp = a.copy()
    mask = np.random.default_rng(rng.randrange(1 << 30)).random(a.shape)
    sp[mask < 0.25] = 0
    sp[mask > 0.75] = 255
    tiled = np.tile(a[: h // 4, : w // 4], (4, 4))

    def enlarged(part):
        """A part of the film stretched back to the film's size (bilinear), as a cropped or
        coned-down export is."""
        return np.asarray(Image.fromarray(part.astype(np.uint8)).resize((w, h), Image.BILINEAR))

    return {
        "noise": noise,
        "salt-pepper": sp,
        "inverted": 255 - a,
        "rotated90": np.rot90(a),
        "blank-black": np.zeros_like(a),
        "blank-grey": np.full_like(a, 128),
        "saturated": np.clip((a - 96) * 6, 0, 255),
        "tiled": tiled,
        # Framing, not pixel damage: upside down, the upper half alone (an apical view), the
        # central 60 % (the costophrenic angles and apices cut off).
        "rotated180": np.rot90(a, 2),
        "upper-half": enlarged(a[: h // 2]),
        "center-zoom": enlarged(a[h // 5 : h * 4 // 5, w // 5 : w * 4 // 5]),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chest", type=int, default=12, help="chest images to corrupt")
    a = p.parse_args()
    rng = random.Random(a.seed)
    counts = {}
    for kind in ("photos", "medical-nonchest", "corrupted-chest", "dicom-sources"):
        os.makedirs(os.path.join(a.out, kind), exist_ok=True)
    for stem, img in list(skimage_images()) + list(sklearn_images()):
        kind = "medical-nonchest" if stem in MEDICAL else "photos"
        for suffix, v in variants(img, rng):
            write(v, os.path.join(a.out, kind, f"{stem}-{suffix}"))
            counts[kind] = counts.get(kind, 0) + 1
        # A grey JPEG of each, for DCMTK's img2dcm to wrap as DICOM.
        gray = img.convert("L")
        gray.save(os.path.join(a.out, "dicom-sources", f"{stem}.jpg"), quality=90)
    for i, path in enumerate(chest_images(a.dataset, a.chest, rng)):
        arr = np.asarray(Image.open(path).convert("L"))
        for name, c in corruptions(arr, rng).items():
            out = os.path.join(a.out, "corrupted-chest", f"chest{i:02d}-{name}.png")
            Image.fromarray(c.astype(np.uint8)).save(out)
            counts["corrupted-chest"] = counts.get("corrupted-chest", 0) + 1
    print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
