# glmtrt on the official Triton TensorRT-LLM container of a GPU profile.
#
#   docker build --build-arg GPU_PROFILE=t4 -t glmtrt:t4 .            # TensorRT-LLM 0.13 (sm75)
#   docker build --build-arg GPU_PROFILE=rtx4090 -t glmtrt:rtx4090 .  # TensorRT-LLM 1.2.x
#   docker run --rm --gpus all -v $PWD:/workspace -v ~/models:/models:ro glmtrt:t4 \
#       make engine-local CKPT=convert/x ENGINE=engines/x-t4 GPU=t4
#
# BASE_IMAGE must be the profile's `toolchain.triton_container` (glmtrt/build/profiles/<gpu>.json);
# tests/build/test_docker_make.py checks that the two agree. Pinned tags only; the image refuses to
# build when the container's tensorrt_llm is not the profile's line, so a wrong tag fails here
# rather than producing engines for another runtime.
# Tag sources (profile `toolchain.source`, docs/BUILD.md): Triton "Release Compatibility Matrix",
# section trtllm-python-py3 (triton-inference-server/server docs/introduction/compatibility.md):
#   24.09 -> TensorRT-LLM 0.13.0 (24.08: 0.12.0, 24.10: 0.14.0)
#   26.04 -> TensorRT-LLM 1.2.1  (first 1.2.1 tag; 26.03: 1.2.0, 25.12-26.02: 1.1.0)
ARG GPU_PROFILE=t4
ARG BASE_IMAGE_t4=nvcr.io/nvidia/tritonserver:24.09-trtllm-python-py3
ARG BASE_IMAGE_rtx4090=nvcr.io/nvidia/tritonserver:26.04-trtllm-python-py3

FROM ${BASE_IMAGE_t4} AS base-t4
ENV GLMTRT_TRTLLM_LINE=0.13

FROM ${BASE_IMAGE_rtx4090} AS base-rtx4090
ENV GLMTRT_TRTLLM_LINE=1.2

FROM base-${GPU_PROFILE} AS final
ARG GPU_PROFILE
ENV GLMTRT_GPU_PROFILE=${GPU_PROFILE} \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

# The container must ship the profile's TensorRT-LLM line (metadata check: no GPU needed at build).
RUN python3 - <<'PY'
import os
from importlib import metadata
v = metadata.version("tensorrt_llm")
want = os.environ["GLMTRT_TRTLLM_LINE"]
assert v.startswith(want + "."), f"container has tensorrt_llm {v}, profile needs {want}.x: fix the BASE_IMAGE tag"
print("tensorrt_llm", v)
PY

WORKDIR /opt/glmtrt
COPY pyproject.toml README.md* ./
COPY glmtrt ./glmtrt
COPY Makefile ./
# Install glmtrt only: torch, numpy<2, safetensors and protobuf come with the container's
# TensorRT-LLM; every other runtime dependency of pyproject.toml is pinned here (click is not a
# requirement of every TensorRT-LLM line; tests/build/test_review.py checks this list).
RUN python3 -m pip install --no-deps . \
 && python3 -m pip install "click==8.1.7" "sentencepiece==0.2.0" "tiktoken==0.8.0" "tqdm==4.66.5" "ml_dtypes==0.5.4" \
 && glmtrt --help >/dev/null

WORKDIR /workspace
# `make engine-local ...` builds engines; `tritonserver --model-repository=/workspace/triton_models/<name>`
# (or `glmtrt serve`) serves a generated repository.
CMD ["bash"]
