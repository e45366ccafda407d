# glmtrt: HF checkpoint -> TensorRT-LLM checkpoint -> engine -> Triton repository -> client.
# `make help` lists the targets. Variables: MODEL, PRECISION, GPU, TP, MAX_BATCH, MAX_SEQ, NAME, ENGINE, REPO.
# GLM-4.1V / AutoGLM-Phone-9B: MAX_IMAGES, MAX_PIXELS (vision engine profile and prompt table; ignored by text models).

PYTHON      ?= python3
VENV        ?= .venv
GLMTRT      ?= $(VENV)/bin/glmtrt
MODEL       ?=
PRECISION   ?= fp16
GPU         ?= t4
TP          ?= 1
MAX_BATCH   ?= 8
MAX_SEQ     ?=
MAX_IMAGES  ?= 1
MAX_PIXELS  ?= 5000000
# extra `glmtrt build` flags, e.g. BUILD_FLAGS=--ignore-toolchain
BUILD_FLAGS ?=
NAME        ?= $(notdir $(patsubst %/,%,$(MODEL)))-$(PRECISION)-tp$(TP)
CKPT        ?= convert/$(NAME)
ENGINE      ?= engines/$(NAME)-$(GPU)
REPO        ?= triton_models/$(NAME)-$(GPU)
DOCKER      ?= docker
IMAGE       ?= glmtrt:$(GPU)
BENCH_DIR   ?= /tmp/glmtrt-bench
BENCH_RUNS  ?= 3

# PRECISION -> `glmtrt convert` flags (the quantization lives in the checkpoint, not in trtllm-build).
# Calibrated precisions take CALIB_FLAGS (e.g. CALIB_FLAGS="--calib-data prompts.jsonl --int8-kv-cache").
CALIB_FLAGS ?=
CONVERT_FLAGS_fp16     := --precision fp16
CONVERT_FLAGS_bf16     := --precision bf16
CONVERT_FLAGS_fp32     := --precision fp32
CONVERT_FLAGS_int8-wo  := --precision int8-wo
CONVERT_FLAGS_int4-wo  := --precision int4-wo
CONVERT_FLAGS_int8-sq  := --precision int8-sq $(CALIB_FLAGS)
CONVERT_FLAGS_int4-awq := --precision int4-awq $(CALIB_FLAGS)
CONVERT_FLAGS_fp8      := --precision fp8 $(CALIB_FLAGS)
CONVERT_FLAGS = $(CONVERT_FLAGS_$(PRECISION))
SEQ_FLAG = $(if $(MAX_SEQ),--max-seq-len $(MAX_SEQ),)
MM_FLAGS = --max-images $(MAX_IMAGES) --max-pixels $(MAX_PIXELS)

# The profile's Triton TensorRT-LLM container, read from glmtrt/build/profiles/$(GPU).json.
CONTAINER = $(shell $(PYTHON) -c "import json,sys; print(json.load(open('glmtrt/build/profiles/$(GPU).json'))['toolchain']['triton_container'])" 2>/dev/null)
HAVE_TRTLLM = $(shell command -v trtllm-build >/dev/null 2>&1 && echo yes)
IN_CONTAINER = $(DOCKER) run --rm --gpus all --shm-size=2g --ulimit memlock=-1 --ulimit stack=67108864 \
	-v "$(CURDIR)":/workspace -v "$(abspath $(MODEL))":/model:ro -w /workspace $(IMAGE)

.PHONY: help install test demo plan convert engine engine-local image repo serve bench quality check-model check-precision

help: ## Show this help
	@echo "glmtrt make targets (variables: MODEL=<hf dir> PRECISION=$(PRECISION) GPU=$(GPU) TP=$(TP))"
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'
	@echo "precisions: fp16 bf16 fp32 int8-wo int4-wo int8-sq int4-awq fp8   GPUs: $(basename $(notdir $(wildcard glmtrt/build/profiles/*.json)))"
	@echo "example: make plan MODEL=~/models/chatglm3-6b PRECISION=int8-wo GPU=t4"
	@echo "         make engine MODEL=~/models/chatglm3-6b PRECISION=int8-wo GPU=t4"
	@echo "         make engine MODEL=~/models/AutoGLM-Phone-9B PRECISION=int8-wo GPU=rtx4090 TP=2  (LLM + vision engine)"

install: ## Create .venv and install glmtrt with test extras (scripts/install.sh)
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/install.sh

$(GLMTRT): pyproject.toml
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/install.sh
	@touch $@

test: ## Install if needed and run the test suite (== bash .ci/run; GPU tests skip without TensorRT-LLM)
	bash .ci/run

demo: $(GLMTRT) ## Whole pipeline on an embedded tiny model: convert, verify, repo, real Triton on CPU
	$(GLMTRT) demo

check-model:
	@test -n "$(MODEL)" || { echo "error: set MODEL=<Hugging Face model dir>"; exit 2; }

check-precision:
	@test -n "$(CONVERT_FLAGS)" || { echo "error: unknown PRECISION=$(PRECISION) (fp16 bf16 fp32 int8-wo int4-wo int8-sq int4-awq fp8)"; exit 2; }

plan: check-model check-precision ## Does MODEL fit GPU at PRECISION/TP? (memory planner)
	$(GLMTRT) plan $(MODEL) --gpu $(GPU) --precision $(PRECISION) --tp $(TP) --max-batch-size $(MAX_BATCH) $(SEQ_FLAG) $(MM_FLAGS)

convert: check-model check-precision ## HF MODEL -> TRT-LLM checkpoint in convert/$(NAME)
	$(GLMTRT) convert $(MODEL) -o $(CKPT) $(CONVERT_FLAGS) --tp-size $(TP) --force

engine-local: ## Build $(ENGINE) from $(CKPT) with the local trtllm-build (GLM-4.1V: + trtexec vision engine)
	$(GLMTRT) build $(CKPT) -o $(ENGINE) --gpu $(GPU) --tp $(TP) --max-batch-size $(MAX_BATCH) $(SEQ_FLAG) $(MM_FLAGS) --force $(BUILD_FLAGS)

ifeq ($(HAVE_TRTLLM),yes)
engine: plan convert engine-local
else
engine: plan image ## plan + convert + build, in the GPU's container when TensorRT-LLM is not installed
	$(IN_CONTAINER) make convert engine-local MODEL=/model PRECISION=$(PRECISION) GPU=$(GPU) TP=$(TP) \
		CALIB_FLAGS="$(CALIB_FLAGS)" \
		MAX_BATCH=$(MAX_BATCH) MAX_SEQ=$(MAX_SEQ) MAX_IMAGES=$(MAX_IMAGES) MAX_PIXELS=$(MAX_PIXELS) \
		BUILD_FLAGS="$(BUILD_FLAGS)" NAME=$(NAME) GLMTRT=glmtrt PYTHON=python3
endif

image: ## Build the Docker image of GPU's profile (FROM its Triton TensorRT-LLM container)
	$(DOCKER) build --build-arg GPU_PROFILE=$(GPU) -t $(IMAGE) .

repo: check-model ## Triton model repository for $(ENGINE) in $(REPO) (tokenizer from MODEL)
	$(GLMTRT) repo $(ENGINE) --tokenizer $(MODEL) -o $(REPO)

serve: ## Serve $(REPO) with Triton
	$(GLMTRT) serve $(REPO)

quality: $(GLMTRT) ## Train the tiny GLM (CPU, minutes) and print the docs/QUANTIZATION.md quality table
	$(VENV)/bin/python scripts/quant_quality.py --out build/quality

bench: $(GLMTRT) ## Convert benchmark: 12.5 GB ChatGLM3-6B-shaped checkpoint, cp vs convert alternated (docs/BENCHMARKS.md)
	$(VENV)/bin/python scripts/bench_convert.py --workdir $(BENCH_DIR) --runs $(BENCH_RUNS)
