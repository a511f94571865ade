# syntax=docker/dockerfile:1.7
# cxrflow: one image, one binary, one subcommand per container (`cxrflow ingest`, `cxrflow inference`, ...).
#
#   docker build -t cxrflow:cpu  --target cpu  .                     # default target: CPU ONNX Runtime
#   docker build -t cxrflow:cuda --target cuda .                     # CUDA 13 + cuDNN 9, onnxruntime-gpu
#   docker build -t cxrflow:cpu --build-arg MODELS_DIR=deploy/docker/models .   # bake models in
#
# Models: <models-dir>/<name>/<version>/{model.onnx,manifest.json} (docs/model-manifest.md). Either
# mount them at /opt/cxrflow/models (compose and the Helm chart do), or bake them in: copy the
# directories produced by scripts/make-models.sh (~/.cache/cxrflow/data/models) to a folder inside
# the build context and pass it as MODELS_DIR. The default MODELS_DIR holds no model.

ARG RUST_IMAGE=rust:1.92-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim
# onnxruntime-gpu 1.31 is built against CUDA 13 and cuDNN 9 (scripts/install-onnxruntime.sh).
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
ARG ORT_VERSION=1.31.1
ARG MODELS_DIR=deploy/docker/models

# ---- build the cxrflow binary --------------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
# librdkafka is compiled from source by rdkafka-sys: a C toolchain, cmake, zlib, and OpenSSL/SASL
# headers so that enabling rdkafka's ssl/sasl features needs no change here.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config python3 zlib1g-dev libssl-dev libsasl2-dev libzstd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p cxrflow \
 && install -D -m 0755 target/release/cxrflow /out/cxrflow

# ---- ONNX Runtime libraries from the PyPI wheels ---------------------------------------------------
FROM ${PYTHON_IMAGE} AS ort
ARG ORT_VERSION
COPY scripts/install-onnxruntime.sh /usr/local/bin/install-onnxruntime.sh
RUN CXRFLOW_TOOLS=/ort ORT_VERSION=${ORT_VERSION} install-onnxruntime.sh \
 && CXRFLOW_TOOLS=/ort ORT_VERSION=${ORT_VERSION} install-onnxruntime.sh --gpu \
 && ls -l /ort/onnxruntime /ort/onnxruntime-gpu

# ---- the model directory (empty unless MODELS_DIR names one in the build context) ----------------
FROM scratch AS models
ARG MODELS_DIR
COPY ${MODELS_DIR}/ /models/

# ---- CUDA runtime ---------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS cuda
ARG ORT_VERSION
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g libsasl2-2 libzstd1 tini \
 && rm -rf /var/lib/apt/lists/* \
 && (userdel -r ubuntu 2>/dev/null || true) \
 && groupadd --system --gid 10001 cxrflow \
 && useradd --system --uid 10001 --gid cxrflow --home-dir /var/lib/cxrflow --create-home --shell /usr/sbin/nologin cxrflow
COPY --from=ort /ort/onnxruntime-gpu/ /opt/onnxruntime/
COPY --from=builder /out/cxrflow /usr/local/bin/cxrflow
COPY --from=models --chown=10001:10001 /models/ /opt/cxrflow/models/
ENV ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so.${ORT_VERSION} \
    LD_LIBRARY_PATH=/opt/onnxruntime:/usr/local/cuda/lib64 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    CXRFLOW_MODELS_DIR=/opt/cxrflow/models \
    CXRFLOW_INFERENCE_DEVICE=cuda \
    CXRFLOW_HTTP=0.0.0.0:8080 \
    CXRFLOW_LOG_FORMAT=json
WORKDIR /var/lib/cxrflow
USER 10001:10001
# 8080: every service's HTTP (/metrics, /healthz, /readyz; the gateway's STOW-RS); 11112: the
# gateway's DICOM listener (it binds it with CXRFLOW_GATEWAY_DICOM_LISTEN=0.0.0.0:11112)
EXPOSE 8080 11112
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/cxrflow"]
CMD ["--help"]

# ---- CPU runtime (default target: last stage) -----------------------------------------------------
FROM ${RUNTIME_IMAGE} AS cpu
ARG ORT_VERSION
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g libsasl2-2 libzstd1 libstdc++6 libgomp1 tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 cxrflow \
 && useradd --system --uid 10001 --gid cxrflow --home-dir /var/lib/cxrflow --create-home --shell /usr/sbin/nologin cxrflow
COPY --from=ort /ort/onnxruntime/ /opt/onnxruntime/
COPY --from=builder /out/cxrflow /usr/local/bin/cxrflow
COPY --from=models --chown=10001:10001 /models/ /opt/cxrflow/models/
ENV ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so.${ORT_VERSION} \
    CXRFLOW_MODELS_DIR=/opt/cxrflow/models \
    CXRFLOW_INFERENCE_DEVICE=cpu \
    CXRFLOW_HTTP=0.0.0.0:8080 \
    CXRFLOW_LOG_FORMAT=json
WORKDIR /var/lib/cxrflow
USER 10001:10001
# 8080: every service's HTTP (/metrics, /healthz, /readyz; the gateway's STOW-RS); 11112: the
# gateway's DICOM listener (it binds it with CXRFLOW_GATEWAY_DICOM_LISTEN=0.0.0.0:11112)
EXPOSE 8080 11112
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/cxrflow"]
CMD ["--help"]
