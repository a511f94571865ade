"""ONNX Runtime half of scripts/gpu-check.sh: proves where the model's nodes run, checks the
outputs against the CPU, builds an fp16 model and measures throughput. Writes one JSON object.

    gpu_check.py MODEL_DIR --out FILE [--gpu] [--batches 1,8,32,64] [--seconds 2] [--work DIR]

MODEL_DIR is a cxrflow model directory (manifest.json + the graph). With --gpu the session asks
for CUDAExecutionProvider (CPU registered after it, as ONNX Runtime's fallback); without it, for
the CPU only. The reference for every output check is the float32 graph on the CPU.

Where nodes ran is read from an ONNX Runtime profile of one batch (each node event carries
`args.provider` and `args.op_name`), as the inference service does at load: the provider is named
only when every compute node ran there, else "mixed", with the nodes that did not listed.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# Inserted by ONNX Runtime to cross the device boundary: not the model's computation.
TRANSFER_OPS = {"MemcpyFromHost", "MemcpyToHost"}
FP16_MAX = 65504.0
# |Δprobability| against float32 on the CPU. CUDA float32 may use TF32 tensor cores for
# convolutions (ONNX Runtime's default on Ampere and newer): ~1e-3 relative per layer.
TOLERANCE = {"fp32": 5e-3, "fp16": 2e-2}


def placement(profile_path, requested):
    """The verdict for one profiled run: provider label, nodes per provider, nodes off `requested`."""
    with open(profile_path) as f:
        events = json.load(f)
    seen, nodes = set(), []
    for ev in events:
        if ev.get("cat") != "Node":
            continue
        args = ev.get("args", {})
        provider = args.get("provider")
        if provider is None:
            continue
        name = ev.get("name", "")
        if name.endswith("_kernel_time"):
            name = name[: -len("_kernel_time")]
        if (name, provider) in seen:
            continue
        seen.add((name, provider))
        nodes.append({"node": name, "op_type": args.get("op_name", "?"), "provider": provider})
    compute = [n for n in nodes if n["op_type"] not in TRANSFER_OPS]
    counts = {}
    for n in compute:
        counts[n["provider"]] = counts.get(n["provider"], 0) + 1
    label = CPU if not counts else (next(iter(counts)) if len(counts) == 1 else "mixed")
    off = [n for n in compute if n["provider"] != requested]
    return {
        "requested": requested,
        "provider": label,
        "all_on_requested": bool(compute) and not off,
        "nodes": counts,
        "off_requested": off,
    }


def session(model, providers, threads=0, profile_prefix=None):
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model, so, providers=providers)


def to_fp16(model_path, out_path):
    """float16 weights and arithmetic, float32 inputs and outputs (onnxconverter-common,
    keep_io_types). Two things the converter gets wrong are handled first:
    - a graph output that other nodes also read (the features, read by the classifier) gets an
      Identity, else the consumers read the float32 Cast the converter puts on the output;
    - a node that reads an initializer outside float16's range stays float32 (the converter
      would clamp it to 1e4: here the stem's BatchNorm variance, 2.8e6, from inputs in HU-like
      units), so its weights are never clamped.
    """
    from onnxconverter_common import float16

    m = onnx.load(model_path)
    g = m.graph
    outputs = {o.name for o in g.output}
    read = {i for n in g.node for i in n.input}
    shared = [
        (n, k, o)
        for n in g.node
        for k, o in enumerate(n.output)
        if o in outputs and o in read
    ]
    for n, k, o in shared:
        inner = o + ".fp16_inner"
        n.output[k] = inner
        for c in g.node:
            for j, i in enumerate(c.input):
                if i == o:
                    c.input[j] = inner
        g.node.append(helper.make_node("Identity", [inner], [o], name=o + ".out"))
    big = {
        i.name
        for i in g.initializer
        if i.data_type == onnx.TensorProto.FLOAT
        and np.abs(numpy_helper.to_array(i)).max(initial=0.0) > FP16_MAX
    }
    blocked = [n.name for n in g.node if big.intersection(n.input)]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m16 = float16.convert_float_to_float16(m, keep_io_types=True, node_block_list=blocked)
    onnx.save(m16, out_path)
    return blocked


def inputs(manifest, n, seed=0):
    """`n` 8-bit images with the manifest's normalization: smooth gradients plus noise, so every
    value range the model sees in practice is exercised (not only zeros)."""
    inp = manifest["input"]
    c, h, w = inp["channels"], inp["height"], inp["width"]
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    imgs = []
    for k in range(n):
        base = 128 + 90 * np.sin(xx / (17 + 5 * k)) * np.cos(yy / (23 + 3 * k))
        img = np.clip(base + rng.normal(0, 12, (h, w)), 0, 255).astype(np.uint8)
        imgs.append(np.broadcast_to(img, (c, h, w)))
    u8 = np.stack(imgs).astype(np.float32)
    norm = manifest["normalization"]
    return (u8 * norm["scale"] + norm["offset"]).astype(np.float32)


def probabilities(sess, manifest, x):
    name = manifest["outputs"]["probabilities"]
    p = sess.run([name], {manifest["input"]["name"]: x})[0]
    if manifest.get("activation") == "sigmoid":
        p = 1.0 / (1.0 + np.exp(-p))
    return p


def throughput(sess, manifest, batch, seconds, min_runs=3):
    x = inputs(manifest, batch, seed=batch)
    feed = {manifest["input"]["name"]: x}
    for _ in range(2):
        sess.run(None, feed)
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t)
    times.sort()
    total = sum(times)
    return {
        "batch": batch,
        "runs": len(times),
        "images_per_s": round(batch * len(times) / total, 2),
        "ms_per_batch_p50": round(1e3 * times[len(times) // 2], 3),
    }


def gpu_name():
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip().splitlines()
        return out[0] if out else None
    except Exception:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--out", required=True)
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--seconds", type=float, default=1.0, help="per throughput point")
    ap.add_argument("--work", default=None, help="where the fp16 model is written")
    a = ap.parse_args()

    started = time.perf_counter()
    if a.gpu and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # the CUDA/cuDNN libraries of the nvidia-* wheels, if not on the path
    with open(os.path.join(a.model_dir, "manifest.json")) as f:
        manifest = json.load(f)
    model32 = os.path.join(a.model_dir, manifest.get("file", "model.onnx"))
    work = a.work or tempfile.mkdtemp(prefix="cxrflow-gpu-check-")
    os.makedirs(work, exist_ok=True)
    requested = CUDA if a.gpu else CPU
    providers = [CUDA, CPU] if a.gpu else [CPU]
    available = ort.get_available_providers()
    report = {
        "gpu": a.gpu,
        "gpu_name": gpu_name() if a.gpu else None,
        "onnxruntime": {"version": ort.__version__, "available_providers": available},
        "model": {"name": manifest["name"], "version": manifest["version"], "path": model32},
        "requested_provider": requested,
        "tolerance_abs_probability": TOLERANCE,
    }
    if a.gpu and CUDA not in available:
        report["error"] = f"onnxruntime {ort.__version__} has no {CUDA} (available: {available})"
        json.dump(report, open(a.out, "w"), indent=1)
        print(report["error"], file=sys.stderr)
        return 1

    t = time.perf_counter()
    model16 = os.path.join(work, "model.fp16.onnx")
    blocked = to_fp16(model32, model16)
    report["fp16"] = {
        "path": model16,
        "converter": "onnxconverter-common convert_float_to_float16(keep_io_types=True)",
        "kept_float32_nodes": blocked,
        "build_s": round(time.perf_counter() - t, 2),
    }
    models = {"fp32": model32, "fp16": model16}

    x = inputs(manifest, 8)
    reference = probabilities(session(model32, [CPU]), manifest, x)
    report["placement"], report["agreement"], report["throughput"] = {}, {}, []
    batches = [int(b) for b in a.batches.split(",") if b]
    ok = True
    for precision, path in models.items():
        prefix = os.path.join(work, f"profile-{precision}")
        s = session(path, providers, profile_prefix=prefix)
        s.run(None, {manifest["input"]["name"]: x[:1]})
        profile = s.end_profiling()
        report["placement"][precision] = placement(profile, requested)
        os.remove(profile)
        ok &= report["placement"][precision]["all_on_requested"]

        s = session(path, providers)
        got = probabilities(s, manifest, x)
        diff = float(np.abs(got - reference).max())
        agree = {
            "against": "fp32 on CPUExecutionProvider",
            "images": int(x.shape[0]),
            "max_abs_diff_probability": diff,
            "tolerance": TOLERANCE[precision],
            "ok": bool(np.isfinite(got).all() and diff <= TOLERANCE[precision]),
        }
        report["agreement"][precision] = agree
        ok &= agree["ok"]
        for b in batches:
            r = throughput(s, manifest, b, a.seconds)
            r.update(precision=precision, provider=requested)
            print(f"{precision} {requested} batch {b}: {r['images_per_s']} images/s", file=sys.stderr)
            report["throughput"].append(r)
        del s
    best = {}
    for precision in models:
        rows = [r for r in report["throughput"] if r["precision"] == precision]
        top = max(rows, key=lambda r: r["images_per_s"])
        best[precision] = {"batch": top["batch"], "images_per_s": top["images_per_s"]}
    report["best"] = best
    report["ok"] = bool(ok)
    report["onnxruntime_s"] = round(time.perf_counter() - started, 1)
    if a.work is None:
        shutil.rmtree(work, ignore_errors=True)
        report["fp16"]["path"] = None
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
