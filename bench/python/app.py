"""The common design of a hospital AI prototype, as the cxrflow bench's baseline.

A FastAPI service under uvicorn: POST /predict with a PNG body decodes the image, letterboxes it
to the model input (long side to 224 with bilinear interpolation, aspect kept, centred, black
padding: cxrflow's gray224-v1 profile), normalizes it as the model manifest says and calls
onnxruntime once per request with batch size 1. One InferenceSession per uvicorn worker process,
shared by FastAPI's thread pool (session.run releases the GIL).

The model directory (model.onnx + manifest.json) comes from $CXRFLOW_BENCH_MODEL_DIR;
$CXRFLOW_BENCH_INTRA_OP_THREADS sets the session's intra-op threads (unset or 0: onnxruntime's
default, one per physical core), so the bench can search workers × threads as it searches the
bare layouts.
"""

import io
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from PIL import Image

MODEL_DIR = Path(os.environ["CXRFLOW_BENCH_MODEL_DIR"])
MANIFEST = json.loads((MODEL_DIR / "manifest.json").read_text())
SIDE = int(MANIFEST["input"]["width"])
SCALE = float(MANIFEST["normalization"]["scale"])
OFFSET = float(MANIFEST["normalization"]["offset"])
INPUT = MANIFEST["input"]["name"]
OUTPUT = MANIFEST["outputs"]["probabilities"]
FINDINGS = [f["name"] for f in MANIFEST["findings"]]

OPTIONS = ort.SessionOptions()
OPTIONS.intra_op_num_threads = int(os.environ.get("CXRFLOW_BENCH_INTRA_OP_THREADS") or 0)
session = ort.InferenceSession(
    str(MODEL_DIR / MANIFEST.get("file", "model.onnx")),
    sess_options=OPTIONS,
    providers=["CPUExecutionProvider"],
)
app = FastAPI(title="cxr prototype")


def letterbox(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png))
    img.load()
    if img.mode in ("I;16", "I;16B", "I"):
        arr = np.asarray(img, dtype=np.float32)
        img = Image.fromarray(np.clip(arr / 257.0, 0, 255).astype(np.uint8))
    img = img.convert("L")
    w, h = img.size
    s = SIDE / max(w, h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    img = img.resize((nw, nh), Image.BILINEAR)
    canvas = np.zeros((SIDE, SIDE), dtype=np.uint8)
    top, left = (SIDE - nh) // 2, (SIDE - nw) // 2
    canvas[top : top + nh, left : left + nw] = np.asarray(img, dtype=np.uint8)
    return canvas


def infer(png: bytes) -> dict:
    x = letterbox(png).astype(np.float32) * SCALE + OFFSET
    probs = session.run([OUTPUT], {INPUT: x[None, None, :, :]})[0][0]
    return {name: float(p) for name, p in zip(FINDINGS, probs)}


@app.get("/healthz")
def healthz() -> dict:
    return {"ok": True}


@app.get("/info")
def info() -> dict:
    opts = session.get_session_options()
    return {
        "onnxruntime": ort.__version__,
        "intra_op_threads": opts.intra_op_num_threads,
        "pid": os.getpid(),
        "providers": session.get_providers(),
        "model": f'{MANIFEST["name"]}/{MANIFEST["version"]}',
    }


@app.post("/predict")
async def predict(request: Request) -> dict:
    body = await request.body()
    if not body:
        raise HTTPException(status_code=400, detail="empty body")
    try:
        return await run_in_threadpool(infer, body)
    except (OSError, ValueError) as e:
        raise HTTPException(status_code=422, detail=f"bad image: {e}") from e
