#!/usr/bin/env python3
"""Writes a small toy dataset in the CheXpert-v1.0-small layout, for testing the model tools:

    python models/tools/make_toy_chexpert.py OUTROOT [--patients 1200] [--seed 0]

creates OUTROOT/CheXpert-v1.0-small/train.csv and the PNGs it names
(OUTROOT/CheXpert-v1.0-small/train/patientNNNNN/studyK/view1_frontal.png, some view2_lateral.png).
train.csv has CheXpert's columns; Path is relative to OUTROOT (the parent of the dataset dir).

The images are crude drawings of a chest (body, lung fields, mediastinum, ribs, noise), 8-bit
grayscale, of varied size and aspect ratio. Each finding that is truly present draws something in
its own place (effusion: bright lung bases; pneumothorax: a dark apex without lung texture;
cardiomegaly: a big heart; support devices: bright tubes; ...), with random strength, so a model
can learn them but not perfectly. Labels follow CheXpert's conventions: 1.0 positive, 0.0 negative,
-1.0 uncertain (given to some true positives and some true negatives), blank = not mentioned
(most negatives). Patients have their own anatomy shared by all their studies.

This is test data only: it says nothing about real radiographs. Do not commit its output.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cxr_common import FINDINGS  # noqa: E402

HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA"] + FINDINGS
PREVALENCE = {
    "Enlarged Cardiomediastinum": 0.08,
    "Cardiomegaly": 0.15,
    "Lung Lesion": 0.06,
    "Edema": 0.22,
    "Consolidation": 0.12,
    "Pneumonia": 0.08,
    "Atelectasis": 0.2,
    "Pneumothorax": 0.1,
    "Pleural Effusion": 0.3,
    "Pleural Other": 0.03,
    "Fracture": 0.05,
    "Support Devices": 0.35,
}
SIZES = [(320, 390), (320, 390), (390, 320), (320, 320), (336, 420), (448, 400)]


def ellipse(xx, yy, cx, cy, rx, ry):
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2


def draw_frontal(rng, anat, truth, w, h):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy /= h
    xx /= w
    cx = anat["cx"]
    s = lambda: rng.uniform(0.6, 1.4)  # noqa: E731  strength of a finding on this image
    img = np.full((h, w), 25.0, np.float32)
    img += 135 * (ellipse(xx, yy, cx, 0.58, anat["body_w"], 0.62) < 1)
    lungs = []
    for side in (-1, 1):
        lcx = cx + side * anat["lung_dx"]
        lung = ellipse(xx, yy, lcx, 0.47, anat["lung_w"], anat["lung_h"]) < 1
        lungs.append((side, lcx, lung))
        img -= 85 * lung
        # ribs: faint horizontal bands inside the lung fields
        img += 12 * lung * (np.sin(yy * 70 + side * xx * 8) > 0.6)
    both = lungs[0][2] | lungs[1][2]
    # mediastinum and heart
    med_w = 0.07 * (1.5 * s() if truth["Enlarged Cardiomediastinum"] else 1.0)
    img += 70 * (np.abs(xx - cx) < med_w) * (yy > 0.18) * (yy < 0.55)
    heart_r = 0.13 * (1.0 + 0.35 * s() if truth["Cardiomegaly"] else 1.0)
    img += 75 * (ellipse(xx, yy, cx + 0.04, 0.64, heart_r * 1.2, heart_r) < 1)

    def in_lung(side_idx):
        return lungs[side_idx][2]

    if truth["Edema"]:  # bilateral perihilar haze
        img += 35 * s() * both * np.exp(-(((xx - cx) / 0.22) ** 2) - ((yy - 0.48) / 0.2) ** 2)
    if truth["Consolidation"]:  # dense lower-zone patch, one lung
        k = int(rng.integers(2))
        _, lcx, _ = lungs[k]
        img += 60 * s() * in_lung(k) * (ellipse(xx, yy, lcx, 0.6, 0.1, 0.08) < 1)
    if truth["Pneumonia"]:  # patchy mid-zone opacity
        k = int(rng.integers(2))
        _, lcx, _ = lungs[k]
        patch = ellipse(xx, yy, lcx, 0.45, 0.1, 0.1) < 1
        img += 40 * s() * in_lung(k) * patch * (rng.random((h, w)) < 0.6)
    if truth["Atelectasis"]:  # band at a lung base
        k = int(rng.integers(2))
        img += 45 * s() * in_lung(k) * (np.abs(yy - 0.66) < 0.025)
    if truth["Lung Lesion"]:  # nodule
        k = int(rng.integers(2))
        _, lcx, _ = lungs[k]
        img += 80 * s() * (ellipse(xx, yy, lcx + rng.uniform(-0.04, 0.04), rng.uniform(0.35, 0.55), 0.03, 0.025) < 1)
    if truth["Pneumothorax"]:  # dark apex without lung markings, pleural line
        k = int(rng.integers(2))
        side, lcx, lung = lungs[k]
        apex = lung & (yy < 0.4) & ((xx - lcx) * side > -0.02)
        img[apex] = 25 - 20 * (s() - 1)
        edge = lung & (np.abs(ellipse(xx, yy, lcx + side * 0.04, 0.4, anat["lung_w"] * 0.8, 0.2) - 1) < 0.08) & (yy < 0.4)
        img += 40 * edge
    if truth["Pleural Effusion"]:  # bright lung bases with a meniscus
        for k in ([0, 1] if rng.random() < 0.5 else [int(rng.integers(2))]):
            side, lcx, lung = lungs[k]
            level = 0.72 - 0.08 * s() - 0.05 * ((xx - lcx) * side)
            img += 80 * lung * (yy > level)
    if truth["Pleural Other"]:  # thickened lateral pleura
        k = int(rng.integers(2))
        side, lcx, lung = lungs[k]
        img += 40 * s() * (np.abs(ellipse(xx, yy, lcx, 0.47, anat["lung_w"], anat["lung_h"]) - 1) < 0.1) * ((xx - lcx) * side > 0)
    if truth["Fracture"]:  # a bright callus on a lateral rib
        k = int(rng.integers(2))
        side, lcx, _ = lungs[k]
        img += 90 * s() * (ellipse(xx, yy, lcx + side * anat["lung_w"], rng.uniform(0.3, 0.6), 0.02, 0.015) < 1)
    if truth["Support Devices"]:  # tubes and lines, sometimes a pacemaker box
        x0 = cx + rng.uniform(-0.03, 0.03)
        img += 110 * (np.abs(xx - x0 - 0.05 * np.sin(yy * 3)) < 0.006) * (yy < rng.uniform(0.45, 0.7))
        if rng.random() < 0.4:
            px, py = rng.uniform(0.15, 0.25), rng.uniform(0.15, 0.25)
            img += 150 * ((np.abs(xx - px) < 0.04) & (np.abs(yy - py) < 0.03))
    img = img * anat["gain"] + anat["bias"]
    img += rng.normal(0, 10, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def draw_lateral(rng, anat, w, h):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy /= h
    xx /= w
    img = 25.0 + 140 * (ellipse(xx, yy, 0.5, 0.58, 0.35, 0.6) < 1) - 60 * (ellipse(xx, yy, 0.45, 0.45, 0.2, 0.3) < 1)
    img += rng.normal(0, 10, img.shape)
    return np.clip(img * anat["gain"] + anat["bias"], 0, 255).astype(np.uint8)


def label(rng, present):
    if present:
        return "1.0" if rng.random() < 0.85 else "-1.0"
    r = rng.random()
    return "" if r < 0.75 else ("0.0" if r < 0.96 else "-1.0")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outroot")
    ap.add_argument("--patients", type=int, default=1200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from PIL import Image

    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    ds = os.path.join(args.outroot, "CheXpert-v1.0-small")
    rows = []
    for p in range(1, args.patients + 1):
        pid = f"patient{p:05d}"
        anat = {
            "cx": rng.uniform(0.47, 0.53), "body_w": rng.uniform(0.4, 0.48), "lung_dx": rng.uniform(0.17, 0.2),
            "lung_w": rng.uniform(0.11, 0.14), "lung_h": rng.uniform(0.26, 0.32),
            "gain": rng.uniform(0.85, 1.15), "bias": rng.uniform(-15, 15),
        }
        sex = "Male" if rng.random() < 0.55 else "Female"
        age = int(rng.integers(18, 91))
        risk = rng.uniform(0.5, 1.6)  # sicker patients have more findings in every study
        for st in range(1, int(rng.integers(1, 5)) + 1):
            truth = {f: bool(rng.random() < min(0.9, pv * risk)) for f, pv in PREVALENCE.items()}
            truth["Lung Opacity"] = any(truth[f] for f in ("Edema", "Consolidation", "Pneumonia", "Atelectasis", "Lung Lesion")) or rng.random() < 0.05
            truth["No Finding"] = not any(v for f, v in truth.items() if f not in ("Support Devices", "No Finding"))
            labels = {f: label(rng, truth[f]) for f in FINDINGS}
            if truth["No Finding"]:
                labels["No Finding"] = "1.0"
            elif labels["No Finding"] == "-1.0":
                labels["No Finding"] = ""
            w, h = SIZES[int(rng.integers(len(SIZES)))]
            ap_pa = "AP" if rng.random() < (0.85 if truth["Support Devices"] else 0.55) else "PA"
            sdir = os.path.join(ds, "train", pid, f"study{st}")
            os.makedirs(sdir, exist_ok=True)
            rel = f"CheXpert-v1.0-small/train/{pid}/study{st}/view1_frontal.png"
            Image.fromarray(draw_frontal(rng, anat, truth, w, h)).save(os.path.join(args.outroot, rel))
            rows.append([rel, sex, age, "Frontal", ap_pa] + [labels[f] for f in FINDINGS])
            if rng.random() < 0.2:
                rel = f"CheXpert-v1.0-small/train/{pid}/study{st}/view2_lateral.png"
                Image.fromarray(draw_lateral(rng, anat, h, w)).save(os.path.join(args.outroot, rel))
                rows.append([rel, sex, age, "Lateral", ""] + [labels[f] for f in FINDINGS])
    with open(os.path.join(ds, "train.csv"), "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(HEADER)
        wr.writerows(rows)
    frontal = sum(r[3] == "Frontal" for r in rows)
    print(f"wrote {ds}/train.csv: {len(rows)} images ({frontal} frontal) of {args.patients} patients "
          f"in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
