#!/usr/bin/env python3
"""Writes a DenseNet-121 with synthetic (untrained) weights as an ONNX model directory:

    python models/tools/make_densenet121.py OUTDIR [--seed 121] [--version 0.0.1]

OUTDIR gets model.onnx and manifest.json (docs/model-manifest.md): name "densenet121-synthetic",
profile "gray224-v1". It is the real DenseNet-121 architecture (Huang et al. 2017; torchvision's
`densenet121` layout): growth rate 32, dense blocks of 6/12/24/16 layers, bottleneck size 4
(1x1 conv to 128 channels before each 3x3 conv), transition layers halving the channels and the
resolution, BatchNormalization nodes kept as such, a 1-channel 224x224 input and a dynamic batch
dimension. Outputs:

    probabilities [N,14]  sigmoid(8*tanh(Linear(features)/8)), so the manifest's activation is
                          "none" (the soft clip keeps them strictly inside (0,1) for any input)
    features      [N,1024] global average pool after the final BatchNorm+ReLU

Its purpose is load and latency: its compute cost equals a real CheXpert DenseNet's (about 2.9
GMAC per image), its predictions mean nothing. Weights are deterministic from --seed:

* every conv: He (Kaiming) normal init, std = sqrt(2 / fan_in), as torchvision does;
* BatchNorm: scale 1, bias 0, and running mean/variance set from the statistics each BN node sees
  on a fixed batch of synthetic chest-like calibration images (data-dependent init), so every
  layer is normalized and activations stay O(1) through all 121 layers;
* classifier: normal weights, then per finding rescaled and biased so that on the calibration
  batch its logit has standard deviation 1 and mean logit(prior), prior being a rough CheXpert
  prevalence. The manifest threshold of each finding is that prior.

The input normalization is TorchXRayVision's: pixel * 2048/255 - 1024.

Verification (printed): onnx.checker, ONNX Runtime vs an independent numpy forward pass on the
calibration batch, batch sizes 1 and 8 on fresh inputs run with finite outputs, probabilities
strictly inside (0, 1), the parameter count and the CPU time per image.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cxr_common import FINDINGS, IR_VERSION, OPSET, SIZE, manifest, ort_session, write_model_dir  # noqa: E402

GROWTH = 32
BLOCKS = (6, 12, 24, 16)
BN_SIZE = 4
INIT_FEATURES = 64
EPS = 1e-5
SCALE = 2048.0 / 255.0
OFFSET = -1024.0
LOGIT_CLIP = 8.0  # probabilities stay within [sigmoid(-8), sigmoid(8)] = [0.00034, 0.99966]

# Rough CheXpert training-set prevalences (uncertain counted as positive), canonical order. They
# only centre the synthetic logits and set the synthetic thresholds.
PRIORS = [0.10, 0.10, 0.15, 0.50, 0.05, 0.30, 0.19, 0.10, 0.30, 0.10, 0.43, 0.03, 0.05, 0.52]


# --------------------------------------------------------------------------------------------
# Architecture description: a list of layers, shared by the numpy forward pass and the ONNX writer.


def he_conv(rng, out_ch, in_ch, k):
    fan_in = in_ch * k * k
    return (rng.standard_normal((out_ch, in_ch, k, k)) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def build_weights(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    w = {"conv0": he_conv(rng, INIT_FEATURES, 1, 7)}
    ch = INIT_FEATURES
    for b, n_layers in enumerate(BLOCKS, start=1):
        for l in range(1, n_layers + 1):
            p = f"block{b}.layer{l}"
            w[p + ".conv1"] = he_conv(rng, BN_SIZE * GROWTH, ch, 1)
            w[p + ".conv2"] = he_conv(rng, GROWTH, BN_SIZE * GROWTH, 3)
            ch += GROWTH
        if b != len(BLOCKS):
            w[f"trans{b}.conv"] = he_conv(rng, ch // 2, ch, 1)
            ch //= 2
    assert ch == 1024, ch
    w["classifier.weight"] = (rng.standard_normal((len(FINDINGS), ch)) / np.sqrt(ch)).astype(np.float32)
    w["classifier.bias"] = np.zeros(len(FINDINGS), np.float32)
    return w


# --------------------------------------------------------------------------------------------
# numpy forward pass (NHWC), which also calibrates the BatchNorm statistics when asked to.


def np_conv(x, w, stride=1, pad=0):
    n, h, wd, c = x.shape
    o, i, kh, kw = w.shape
    assert i == c
    if kh == 1 and kw == 1 and stride == 1 and pad == 0:
        return (x.reshape(-1, c) @ w.reshape(o, i).T).reshape(n, h, wd, o)
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ho = (h + 2 * pad - kh) // stride + 1
    wo = (wd + 2 * pad - kw) // stride + 1
    cols = np.empty((n, ho, wo, kh, kw, c), np.float32)
    for a in range(kh):
        for b in range(kw):
            cols[:, :, :, a, b, :] = xp[:, a : a + stride * ho : stride, b : b + stride * wo : stride, :]
    wm = w.transpose(2, 3, 1, 0).reshape(kh * kw * i, o)
    return (cols.reshape(n * ho * wo, -1) @ wm).reshape(n, ho, wo, o)


def np_maxpool3s2p1(x):
    n, h, w, c = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    out = np.full((n, ho, wo, c), -np.inf, np.float32)
    for a in range(3):
        for b in range(3):
            out = np.maximum(out, xp[:, a : a + 2 * ho : 2, b : b + 2 * wo : 2, :])
    return out


def np_avgpool2(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4), dtype=np.float32)


class BN:
    """BatchNorm parameters, keyed by name; calibrate=True sets running stats from the batch."""

    def __init__(self, calibrate: bool):
        self.calibrate = calibrate
        self.params: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self.order: list[str] = []

    def __call__(self, name, x):
        if self.calibrate:
            c = x.shape[-1]
            mean = x.mean(axis=(0, 1, 2), dtype=np.float64).astype(np.float32)
            var = x.var(axis=(0, 1, 2), dtype=np.float64).astype(np.float32)
            self.params[name] = (np.ones(c, np.float32), np.zeros(c, np.float32), mean, var)
            self.order.append(name)
        g, b, mean, var = self.params[name]
        return ((x - mean) * (g / np.sqrt(var + EPS)) + b).astype(np.float32)


def np_forward(w, bn: BN, images_u8):
    """images_u8: (N, 224, 224) uint8 -> (features [N,1024], logits [N,14])."""
    relu = lambda t: np.maximum(t, 0, dtype=np.float32)  # noqa: E731
    x = (images_u8.astype(np.float32) * np.float32(SCALE) + np.float32(OFFSET))[..., None]
    x = np_conv(x, w["conv0"], stride=2, pad=3)
    x = np_maxpool3s2p1(relu(bn("norm0", x)))
    for b, n_layers in enumerate(BLOCKS, start=1):
        for l in range(1, n_layers + 1):
            p = f"block{b}.layer{l}"
            y = np_conv(relu(bn(p + ".norm1", x)), w[p + ".conv1"])
            y = np_conv(relu(bn(p + ".norm2", y)), w[p + ".conv2"], pad=1)
            x = np.concatenate([x, y], axis=-1)
        if b != len(BLOCKS):
            x = np_avgpool2(np_conv(relu(bn(f"trans{b}.norm", x)), w[f"trans{b}.conv"]))
    x = relu(bn("norm5", x))
    feats = x.mean(axis=(1, 2), dtype=np.float32)
    logits = feats @ w["classifier.weight"].T + w["classifier.bias"]
    return feats, logits


# --------------------------------------------------------------------------------------------
# ONNX graph


def build_onnx(w, bn: BN):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))
        return name

    def conv(name, x, stride=1, pad=0):
        wt = w[name]
        k = wt.shape[2]
        out = name + ".out"
        nodes.append(
            helper.make_node(
                "Conv", [x, init(name + ".weight", wt)], [out], name=name,
                kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4,
            )
        )
        return out

    def bn_relu(name, x):
        g, b, mean, var = bn.params[name]
        ins = [x, init(name + ".weight", g), init(name + ".bias", b),
               init(name + ".running_mean", mean), init(name + ".running_var", var)]
        nodes.append(helper.make_node("BatchNormalization", ins, [name + ".out"], name=name, epsilon=EPS))
        nodes.append(helper.make_node("Relu", [name + ".out"], [name + ".relu"], name=name + ".relu"))
        return name + ".relu"

    # "image" already holds pixel*scale+offset (the manifest normalization): conv0 reads it.
    x = conv("conv0", "image", stride=2, pad=3)
    x = bn_relu("norm0", x)
    nodes.append(helper.make_node("MaxPool", [x], ["pool0"], name="pool0",
                                  kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
    x = "pool0"
    for b, n_layers in enumerate(BLOCKS, start=1):
        for l in range(1, n_layers + 1):
            p = f"block{b}.layer{l}"
            y = conv(p + ".conv1", bn_relu(p + ".norm1", x))
            y = conv(p + ".conv2", bn_relu(p + ".norm2", y), pad=1)
            cat = p + ".concat"
            nodes.append(helper.make_node("Concat", [x, y], [cat], name=cat, axis=1))
            x = cat
        if b != len(BLOCKS):
            t = conv(f"trans{b}.conv", bn_relu(f"trans{b}.norm", x))
            nodes.append(helper.make_node("AveragePool", [t], [f"trans{b}.pool"], name=f"trans{b}.pool",
                                          kernel_shape=[2, 2], strides=[2, 2]))
            x = f"trans{b}.pool"
    x = bn_relu("norm5", x)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["features"], name="flatten", axis=1))
    nodes.append(helper.make_node(
        "Gemm", ["features", init("classifier.weight", w["classifier.weight"]),
                 init("classifier.bias", w["classifier.bias"])], ["logits"], name="classifier", transB=1))
    # Soft clip: logits -> LOGIT_CLIP * tanh(logits / LOGIT_CLIP), so that inputs far from the
    # calibration images (noise, a black frame) cannot saturate the sigmoid to exactly 0 or 1.
    nodes.append(helper.make_node("Mul", ["logits", init("clip.inv", np.array(1.0 / LOGIT_CLIP))], ["logits.s"]))
    nodes.append(helper.make_node("Tanh", ["logits.s"], ["logits.t"]))
    nodes.append(helper.make_node("Mul", ["logits.t", init("clip.scale", np.array(LOGIT_CLIP))], ["logits.c"]))
    nodes.append(helper.make_node("Sigmoid", ["logits.c"], ["probabilities"], name="sigmoid"))

    graph = helper.make_graph(
        nodes, "densenet121_synthetic",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, SIZE, SIZE])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", len(FINDINGS)]),
         helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 1024])],
        initializer=inits,
    )
    model = helper.make_model(graph, producer_name="cxrflow make_densenet121.py",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    model.doc_string = "DenseNet-121, synthetic deterministic weights (not trained). cxrflow."
    onnx.checker.check_model(model)
    return model


# --------------------------------------------------------------------------------------------


def synthetic_cxr(rng, n):
    """Chest-radiograph-like uint8 images: a bright body, two darker lung fields, a mediastinum,
    noise, and on some images a letterbox border (black bands)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    out = np.zeros((n, SIZE, SIZE), np.uint8)
    for i in range(n):
        cx = 0.5 + rng.uniform(-0.03, 0.03)
        body = ((xx - cx) / rng.uniform(0.42, 0.5)) ** 2 + ((yy - 0.55) / 0.55) ** 2 < 1
        img = 40 + 130 * body.astype(np.float32)
        for side in (-1, 1):
            lung = ((xx - cx - side * 0.18) / rng.uniform(0.12, 0.16)) ** 2 + ((yy - 0.48) / rng.uniform(0.26, 0.32)) ** 2 < 1
            img -= 80 * lung
        img += 60 * np.exp(-(((xx - cx) / 0.06) ** 2) - ((yy - 0.55) / 0.3) ** 2)
        img += rng.normal(0, 12, img.shape)
        img = np.clip(img, 0, 255)
        pad = int(rng.integers(0, 40)) if i % 2 else 0
        if pad:
            if i % 4 == 1:
                img[:, :pad] = 0
                img[:, SIZE - pad :] = 0
            else:
                img[:pad] = 0
                img[SIZE - pad :] = 0
        out[i] = img.astype(np.uint8)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=121)
    ap.add_argument("--version", default="0.0.1")
    ap.add_argument("--calibration-images", type=int, default=8)
    args = ap.parse_args()

    t0 = time.perf_counter()
    w = build_weights(args.seed)
    rng = np.random.default_rng(args.seed + 1)
    calib = synthetic_cxr(rng, args.calibration_images)
    bn = BN(calibrate=True)
    feats, logits = np_forward(w, bn, calib)
    bn.calibrate = False
    # Classifier: per finding, logit std 1 and mean logit(prior) over the calibration batch.
    priors = np.array(PRIORS, np.float64)
    z = logits.astype(np.float64)
    sd = z.std(axis=0)
    sd[sd < 1e-6] = 1.0
    W = w["classifier.weight"].astype(np.float64) / sd[:, None]
    bias = np.log(priors / (1 - priors)) - feats.astype(np.float64) @ W.T
    w["classifier.weight"] = W.astype(np.float32)
    w["classifier.bias"] = bias.mean(axis=0).astype(np.float32)
    feats, logits = np_forward(w, bn, calib)
    t_build = time.perf_counter() - t0
    print(f"numpy forward + BatchNorm calibration on {len(calib)} images: {t_build:.1f}s")

    model = build_onnx(w, bn)
    n_params = sum(v.size for k, v in w.items())
    n_params += sum(g.size + b.size for g, b, _, _ in bn.params.values())
    n_buffers = sum(m.size + v.size for _, _, m, v in bn.params.values())
    convs = sum(1 for k in w if "conv" in k)
    thresholds = dict(zip(FINDINGS, PRIORS))
    training = {
        "dataset": "none: synthetic deterministic weights (He init, seed %d), not trained" % args.seed,
        "heldout_auroc": {},
        "n": 0,
        "architecture": "DenseNet-121 (growth 32, blocks 6/12/24/16, bn_size 4), 1x224x224 input",
        "parameters": int(n_params),
    }
    man = manifest("densenet121-synthetic", args.version, SCALE, OFFSET, thresholds, training)
    write_model_dir(args.outdir, model, man)
    path = os.path.join(args.outdir, "model.onnx")
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB) and manifest.json")
    print(f"layers: {convs} conv + 1 linear = {convs + 1} weight layers, {len(bn.params)} BatchNorm")
    print(f"parameters: {n_params:,} (conv + BN scale/bias + classifier; plus {n_buffers:,} BN running stats)")

    # ---- verification with ONNX Runtime
    sess = ort_session(path)
    inp = lambda u8: (u8.astype(np.float32) * np.float32(SCALE) + np.float32(OFFSET))[:, None]  # noqa: E731
    probs, ofeats = sess.run(["probabilities", "features"], {"image": inp(calib)})
    ref_p = 1 / (1 + np.exp(-LOGIT_CLIP * np.tanh(logits.astype(np.float64) / LOGIT_CLIP)))
    dp = np.abs(probs - ref_p).max()
    df = np.abs(ofeats - feats).max() / max(1e-6, np.abs(feats).max())
    print(f"ONNX Runtime vs numpy forward: max |dprob| = {dp:.2e}, max relative |dfeature| = {df:.2e}")
    if not (dp < 1e-3 and df < 1e-3):
        sys.exit("ONNX graph disagrees with the numpy reference")

    rng = np.random.default_rng(7)
    fresh = np.concatenate([synthetic_cxr(rng, 4), rng.integers(0, 256, (3, SIZE, SIZE), dtype=np.uint8),
                            np.zeros((1, SIZE, SIZE), np.uint8)])
    for n in (1, 8):
        x = inp(fresh[:n])
        p, f = sess.run(["probabilities", "features"], {"image": x})
        assert p.shape == (n, len(FINDINGS)) and f.shape == (n, 1024), (p.shape, f.shape)
        ok = np.isfinite(p).all() and np.isfinite(f).all() and (p > 0).all() and (p < 1).all()
        print(f"batch {n}: probabilities {p.shape} in [{p.min():.4f}, {p.max():.4f}], "
              f"features {f.shape} in [{f.min():.3f}, {f.max():.3f}]: {'ok' if ok else 'FAILED'}")
        if not ok:
            sys.exit("non-finite or saturated outputs")

    for n, reps in ((1, 10), (8, 3)):
        x = inp(fresh[:n])
        sess.run(None, {"image": x})
        t = time.perf_counter()
        for _ in range(reps):
            sess.run(None, {"image": x})
        dt = (time.perf_counter() - t) / reps
        print(f"CPU ({os.cpu_count()} cores) batch {n}: {dt * 1000:.0f} ms per batch, {dt * 1000 / n:.0f} ms per image")
    print(f"total {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
