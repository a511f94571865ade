#!/usr/bin/env python3
"""Fits cxrflow's small, honest CheXpert classifier and writes it as an ONNX model directory:

    python models/tools/fit_small_model.py DATASET_DIR OUTDIR [--version 1.0.0] [--seed 0]

DATASET_DIR is a CheXpert-layout dataset: DATASET_DIR/train.csv with CheXpert's columns (Path,
Sex, Age, Frontal/Lateral, AP/PA, then the 14 findings), Path relative to the PARENT of
DATASET_DIR (e.g. CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.png), labels
1.0 / 0.0 / -1.0 / blank. OUTDIR gets model.onnx and manifest.json (docs/model-manifest.md):
name "cxr-small", profile "gray224-v1".

Method (everything fixed and seeded, so the same data gives the same model):

1. Frontal images only. Patients (the `patientNNNNN` path component) are shuffled with --seed and
   split 80/20 into train and held-out: no patient is in both.
2. Preprocessing = profile gray224-v1, as the Rust preprocess service does it: 8-bit grayscale,
   bilinear resize of the long side to 224 keeping the aspect ratio (short side rounded), centred,
   padded with 0. Model input = pixel * (1/255) + 0 (manifest normalization), so in [0, 1].
3. Features: a fixed transform (no learned weights), part of the ONNX graph, D = 160:
     p    = 4x4 average pool of the input                       -> 56x56
     mean = mean of p over each cell of an 8x8 grid (7x7 of p)  -> 64   regional brightness
     mad  = mean |p - mean| over the same cells                 -> 64   regional texture
     edge = |Sobel_x(p)|, |Sobel_y(p)| (kernels /8, zero pad 1),
            averaged over each cell of a 4x4 grid (14x14 of p)  -> 2x16 regional edge energy
   concatenated [mean, mad, edge_x, edge_y] (row-major cells), then standardized with the
   training split's mean and standard deviation (sklearn StandardScaler). This standardized
   vector is the `features` output [N,160] (drift's representation channel: ~N(0,1) per dimension
   on the training distribution).
4. One L2 logistic regression per finding (scikit-learn, lbfgs) on the standardized features, with
   U-Ones labels (1.0 and -1.0 -> positive, 0.0 and blank -> negative). C is picked per finding
   from {0.01, 0.1, 1} by 3-fold patient-grouped cross-validated AUROC on the training split only.
   A finding with fewer than 5 positives (or negatives) in training gets a constant model (its
   training prevalence).
5. On the held-out split: AUROC per finding, and the operating threshold: for critical findings
   the highest-sensitivity point with specificity >= 0.90 (a triage operating point that keeps
   the CRITICAL tier small), for the others the one maximizing Youden's J. Note that
   sensitivity/specificity measured on the
   held-out split at these thresholds are therefore optimistic; the AUROCs are not affected.
6. ONNX graph: image [N,1,224,224] -> features [N,160] -> Gemm -> Sigmoid -> probabilities [N,14]
   (manifest activation "none"). It is checked with ONNX Runtime: its probabilities must equal
   scikit-learn's predict_proba within 1e-4 on held-out images (and the features the numpy ones).

Runs in 10-30 s for ~3000 images on 2 cores (image loading and the C search dominate).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import math
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cxr_common import (  # noqa: E402
    CRITICAL, FINDINGS, IR_VERSION, OPSET, SIZE, letterbox_u8, load_gray_u8, manifest, ort_session, write_model_dir,
)

SCALE = 1.0 / 255.0
OFFSET = 0.0
POOL = 4  # 224 -> 56
GRID = 8  # mean / mad cells: 56/8 = 7
EDGE_GRID = 4  # edge cells: 56/4 = 14
P = SIZE // POOL
SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float64) / 8.0
SOBEL_Y = SOBEL_X.T.copy()
D = 2 * GRID * GRID + 2 * EDGE_GRID * EDGE_GRID
C_GRID = (0.01, 0.1, 1.0)
MIN_CLASS = 5
PATIENT_RE = re.compile(r"(patient\d+)")
REQUIRED = ["Path", "Frontal/Lateral"] + FINDINGS


# --------------------------------------------------------------------------------------------
# Data


def read_rows(dataset_dir):
    csv_path = os.path.join(dataset_dir, "train.csv")
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            sys.exit(f"{csv_path}: missing columns {missing}")
        rows = list(reader)
    return csv_path, rows


def resolve(dataset_dir, rel):
    parent = os.path.dirname(os.path.abspath(dataset_dir))
    p = os.path.join(parent, rel)
    if os.path.exists(p):
        return p
    parts = rel.replace("\\", "/").split("/", 1)
    if len(parts) == 2:  # Path given relative to DATASET_DIR under another top-level name
        q = os.path.join(dataset_dir, parts[1])
        if os.path.exists(q):
            return q
    return p


def u_ones(v: str) -> int:
    v = v.strip()
    if v == "":
        return 0
    return 1 if float(v) != 0.0 else 0  # 1.0 and -1.0 (uncertain) -> 1


def load_images(paths, workers):
    def one(p):
        try:
            return letterbox_u8(load_gray_u8(p))
        except Exception as e:  # noqa: BLE001
            return e

    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(one, paths, chunksize=16))


# --------------------------------------------------------------------------------------------
# Feature transform (numpy reference; the ONNX graph below computes the same thing)


def np_features(u8: np.ndarray, batch: int = 256) -> np.ndarray:
    """(n, 224, 224) uint8 -> (n, D) float64 raw (unstandardized) features."""
    out = np.empty((len(u8), D), np.float64)
    c, ec = P // GRID, P // EDGE_GRID
    for s in range(0, len(u8), batch):
        x = u8[s : s + batch].astype(np.float64) * SCALE + OFFSET
        n = len(x)
        p = x.reshape(n, P, POOL, P, POOL).mean(axis=(2, 4))
        cells = p.reshape(n, GRID, c, GRID, c)
        mean = cells.mean(axis=(2, 4), keepdims=True)
        mad = np.abs(cells - mean).mean(axis=(2, 4))
        pp = np.pad(p, ((0, 0), (1, 1), (1, 1)))
        gx = np.zeros_like(p)
        gy = np.zeros_like(p)
        for a in range(3):
            for b in range(3):
                win = pp[:, a : a + P, b : b + P]
                gx += SOBEL_X[a, b] * win
                gy += SOBEL_Y[a, b] * win
        ex = np.abs(gx).reshape(n, EDGE_GRID, ec, EDGE_GRID, ec).mean(axis=(2, 4))
        ey = np.abs(gy).reshape(n, EDGE_GRID, ec, EDGE_GRID, ec).mean(axis=(2, 4))
        out[s : s + n] = np.concatenate(
            [mean.reshape(n, -1), mad.reshape(n, -1), ex.reshape(n, -1), ey.reshape(n, -1)], axis=1)
    return out


def to_input(u8: np.ndarray) -> np.ndarray:
    return (u8.astype(np.float32) * np.float32(SCALE) + np.float32(OFFSET))[:, None]


# --------------------------------------------------------------------------------------------
# Model


class Head:
    """Per-finding classifier: a fitted LogisticRegression, or a constant for degenerate labels."""

    def __init__(self, finding, clf=None, prevalence=None, C=None):
        self.finding, self.clf, self.prevalence, self.C = finding, clf, prevalence, C

    def coef_intercept(self):
        if self.clf is not None:
            return self.clf.coef_[0].astype(np.float64), float(self.clf.intercept_[0])
        p = min(max(self.prevalence, 1e-4), 1 - 1e-4)
        return np.zeros(D), math.log(p / (1 - p))

    def predict_proba(self, z):
        if self.clf is not None:
            return self.clf.predict_proba(z)[:, 1]
        _, b = self.coef_intercept()
        return np.full(len(z), 1 / (1 + math.exp(-b)))


def fit_heads(z, y, groups, seed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold

    heads = []
    folds = list(GroupKFold(n_splits=3).split(z, groups=groups))
    for k, f in enumerate(FINDINGS):
        yk = y[:, k]
        pos = int(yk.sum())
        if pos < MIN_CLASS or len(yk) - pos < MIN_CLASS:
            heads.append(Head(f, prevalence=float(yk.mean())))
            continue
        best_c, best_auc = C_GRID[0], -1.0
        for c in C_GRID:
            aucs = []
            for tr, va in folds:
                if yk[tr].min() == yk[tr].max() or yk[va].min() == yk[va].max():
                    continue
                m = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(z[tr], yk[tr])
                aucs.append(roc_auc_score(yk[va], m.predict_proba(z[va])[:, 1]))
            auc = float(np.mean(aucs)) if aucs else 0.0
            if auc > best_auc + 1e-9:
                best_c, best_auc = c, auc
        clf = LogisticRegression(C=best_c, max_iter=2000, random_state=seed).fit(z, yk)
        heads.append(Head(f, clf=clf, C=best_c))
    return heads


def build_onnx(scaler_mean, scaler_scale, heads):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = []

    def init(name, arr, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=dtype), name))
        return name

    c, ec = P // GRID, P // EDGE_GRID
    sobel = np.stack([SOBEL_X, SOBEL_Y])[:, None]  # [2,1,3,3]
    W = np.stack([h.coef_intercept()[0] for h in heads])
    b = np.array([h.coef_intercept()[1] for h in heads])
    n = helper.make_node
    nodes = [
        n("AveragePool", ["image"], ["p"], kernel_shape=[POOL, POOL], strides=[POOL, POOL], name="pool4"),
        # regional mean and mean absolute deviation over an 8x8 grid of 7x7 cells
        n("Reshape", ["p", init("shape.cells", [-1, GRID, c, GRID, c], np.int64)], ["cells"], name="cells"),
        n("ReduceMean", ["cells"], ["cell_mean"], axes=[2, 4], keepdims=1, name="cell_mean"),
        n("Sub", ["cells", "cell_mean"], ["dev"], name="dev"),
        n("Abs", ["dev"], ["absdev"], name="absdev"),
        n("ReduceMean", ["absdev"], ["cell_mad"], axes=[2, 4], keepdims=1, name="cell_mad"),
        n("Reshape", ["cell_mean", init("shape.flat64", [-1, GRID * GRID], np.int64)], ["f_mean"], name="f_mean"),
        n("Reshape", ["cell_mad", "shape.flat64"], ["f_mad"], name="f_mad"),
        # edge energy: |Sobel| averaged over a 4x4 grid of 14x14 cells
        n("Conv", ["p", init("sobel", sobel)], ["grad"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="sobel"),
        n("Abs", ["grad"], ["absgrad"], name="absgrad"),
        n("Reshape", ["absgrad", init("shape.ecells", [-1, 2, EDGE_GRID, ec, EDGE_GRID, ec], np.int64)],
          ["ecells"], name="ecells"),
        n("ReduceMean", ["ecells"], ["edge"], axes=[3, 5], keepdims=0, name="edge"),
        n("Reshape", ["edge", init("shape.flatedge", [-1, 2 * EDGE_GRID * EDGE_GRID], np.int64)], ["f_edge"],
          name="f_edge"),
        n("Concat", ["f_mean", "f_mad", "f_edge"], ["raw"], axis=1, name="raw"),
        # standardization (StandardScaler) -> the features output
        n("Sub", ["raw", init("scaler.mean", scaler_mean)], ["centred"], name="centre"),
        n("Div", ["centred", init("scaler.scale", scaler_scale)], ["features"], name="standardize"),
        # 14 logistic regressions
        n("Gemm", ["features", init("lr.coef", W), init("lr.intercept", b)], ["logits"], transB=1, name="lr"),
        n("Sigmoid", ["logits"], ["probabilities"], name="sigmoid"),
    ]
    graph = helper.make_graph(
        nodes, "cxr_small",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, SIZE, SIZE])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", len(FINDINGS)]),
         helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", D])],
        initializer=inits,
    )
    model = helper.make_model(graph, producer_name="cxrflow fit_small_model.py",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    model.doc_string = "cxr-small: fixed pooled/texture/edge features + per-finding logistic regression."
    onnx.checker.check_model(model, full_check=True)
    return model


# --------------------------------------------------------------------------------------------


def youden_threshold(y, p):
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y, p)
    ok = np.isfinite(thr)
    j = (tpr - fpr)[ok]
    i = int(np.argmax(j))
    return float(thr[ok][i]), float(tpr[ok][i]), float(1 - fpr[ok][i])


def specificity_threshold(y, p, specificity=0.90):
    """Highest-sensitivity threshold whose specificity is at least `specificity`.

    Critical findings use this triage operating point: a worklist where most studies are
    flagged critical is a FIFO list with extra steps, so the flag must be specific."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y, p)
    ok = np.isfinite(thr) & (fpr <= 1 - specificity)
    if not ok.any():
        return youden_threshold(y, p)
    i = int(np.argmax(np.where(ok, tpr, -1)))
    return float(thr[i]), float(tpr[i]), float(1 - fpr[i])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset_dir")
    ap.add_argument("outdir")
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--heldout-fraction", type=float, default=0.2)
    ap.add_argument("--max-images", type=int, default=0, help="use at most this many frontal images (0: all)")
    ap.add_argument("--verify-images", type=int, default=64)
    ap.add_argument("--workers", type=int, default=max(2, os.cpu_count() or 2))
    args = ap.parse_args()

    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    csv_path, rows = read_rows(args.dataset_dir)
    frontal = [r for r in rows if r["Frontal/Lateral"].strip().lower() == "frontal"]
    items = []
    for r in frontal:
        m = PATIENT_RE.search(r["Path"])
        pid = m.group(1) if m else os.path.dirname(os.path.dirname(r["Path"]))
        items.append((pid, resolve(args.dataset_dir, r["Path"]), [u_ones(r[f]) for f in FINDINGS]))
    if args.max_images and len(items) > args.max_images:
        keep = np.random.default_rng(args.seed).choice(len(items), args.max_images, replace=False)
        items = [items[i] for i in sorted(keep)]
    if not items:
        sys.exit(f"{csv_path}: no frontal images")
    patients = sorted({pid for pid, _, _ in items})
    perm = np.random.default_rng(args.seed).permutation(len(patients))
    n_held_pat = max(1, int(round(args.heldout_fraction * len(patients))))
    held_pat = {patients[i] for i in perm[:n_held_pat]}
    print(f"{csv_path}: {len(rows)} rows, {len(items)} frontal images used, {len(patients)} patients "
          f"({len(patients) - n_held_pat} train / {n_held_pat} held-out)")

    imgs = load_images([p for _, p, _ in items], args.workers)
    bad = [(items[i][1], e) for i, e in enumerate(imgs) if isinstance(e, Exception)]
    if bad:
        print(f"warning: {len(bad)} images could not be read, skipped; first: {bad[0][0]}: {bad[0][1]}")
        if len(bad) > 0.05 * len(items):
            sys.exit("more than 5% of the images are unreadable")
    ok = [i for i, e in enumerate(imgs) if not isinstance(e, Exception)]
    u8 = np.stack([imgs[i] for i in ok])
    del imgs
    items = [items[i] for i in ok]
    y = np.array([lab for _, _, lab in items], np.int64)
    groups = np.array([pid for pid, _, _ in items])
    is_held = np.array([pid in held_pat for pid in groups])
    t_load = time.perf_counter() - t0
    print(f"loaded and letterboxed {len(u8)} images in {t_load:.1f}s")

    t1 = time.perf_counter()
    raw = np_features(u8)
    scaler = StandardScaler().fit(raw[~is_held])
    z = scaler.transform(raw)
    heads = fit_heads(z[~is_held], y[~is_held], groups[~is_held], args.seed)
    t_fit = time.perf_counter() - t1
    print(f"features ({D}) and {len(heads)} logistic regressions fitted in {t_fit:.1f}s")

    zh, yh = z[is_held], y[is_held]
    thresholds, aurocs, undefined, positives, sens_spec = {}, {}, [], {}, {}
    print(f"{'finding':28s} {'C':>5s} {'train+':>6s} {'held+':>6s} {'AUROC':>6s} {'thresh':>7s} {'sens':>5s} {'spec':>5s}")
    for k, h in enumerate(heads):
        f = h.finding
        p = h.predict_proba(zh)
        positives[f] = int(yh[:, k].sum())
        if 0 < positives[f] < len(yh):
            aurocs[f] = round(float(roc_auc_score(yh[:, k], p)), 4)
            pick = specificity_threshold if f in CRITICAL else youden_threshold
            thr, se, sp = pick(yh[:, k], p)
            thresholds[f] = round(thr, 6)
            sens_spec[f] = (round(se, 4), round(sp, 4))
        else:
            undefined.append(f)
            thresholds[f] = 0.5
        print(f"{f:28s} {h.C if h.C is not None else '-':>5} {int(y[~is_held][:, k].sum()):6d} {positives[f]:6d} "
              f"{aurocs.get(f, float('nan')):6.3f} {thresholds[f]:7.4f} "
              f"{sens_spec.get(f, (float('nan'),) * 2)[0]:5.2f} {sens_spec.get(f, (float('nan'),) * 2)[1]:5.2f}")
    aucs = list(aurocs.values())
    if aucs:
        print(f"mean held-out AUROC over {len(aucs)} findings: {np.mean(aucs):.3f}")

    model = build_onnx(scaler.mean_, scaler.scale_, heads)
    with open(csv_path, "rb") as fh:
        csv_sha = hashlib.sha256(fh.read()).hexdigest()
    training = {
        "dataset": f"{os.path.basename(os.path.abspath(args.dataset_dir))} (train.csv sha256 {csv_sha[:16]})",
        "heldout_auroc": aurocs,
        "n": int(is_held.sum()),
        "n_train": int((~is_held).sum()),
        "n_heldout": int(is_held.sum()),
        "patients_train": len(patients) - n_held_pat,
        "patients_heldout": n_held_pat,
        "heldout_positives": positives,
        "heldout_auroc_undefined": undefined,
        "split": f"by patient, {1 - args.heldout_fraction:.0%}/{args.heldout_fraction:.0%}, seed {args.seed}, frontal only",
        "labels": "U-Ones (uncertain -1.0 -> positive, blank -> negative)",
        "thresholds": "critical findings: highest sensitivity at >= 90% specificity; others: Youden's J; both on the held-out split",
        "method": "fixed features (8x8 regional mean + mean abs deviation of 4x4-pooled image, 4x4 regional "
                  "|Sobel x|,|Sobel y|; D=160, standardized) + L2 logistic regression per finding "
                  "(C by 3-fold patient-grouped CV on train)",
    }
    man = manifest("cxr-small", args.version, SCALE, OFFSET, thresholds, training)
    write_model_dir(args.outdir, model, man)
    path = os.path.join(args.outdir, "model.onnx")
    print(f"wrote {path} ({os.path.getsize(path) / 1e3:.1f} kB) and manifest.json")

    # ---- verification: ONNX Runtime vs scikit-learn on held-out images
    idx = np.flatnonzero(is_held)[: args.verify_images]
    sess = ort_session(path)
    t2 = time.perf_counter()
    probs, feats = sess.run(["probabilities", "features"], {"image": to_input(u8[idx])})
    t_inf = time.perf_counter() - t2
    ref = np.stack([h.predict_proba(z[idx]) for h in heads], axis=1)
    dp = float(np.abs(probs - ref).max())
    dz = float(np.abs(feats - z[idx]).max())
    one = sess.run(["probabilities"], {"image": to_input(u8[idx[:1]])})[0]
    print(f"ONNX Runtime vs scikit-learn on {len(idx)} held-out images: max |dprob| = {dp:.2e}, "
          f"max |dfeature| = {dz:.2e}; batch 1 shape {one.shape}; {t_inf * 1000 / len(idx):.2f} ms/image")
    if not (dp < 1e-4 and np.isfinite(probs).all()):
        sys.exit("ONNX model disagrees with scikit-learn")
    print(f"total {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
