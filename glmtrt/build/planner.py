"""Memory planner: does a model fit a GPU profile at a precision / TP / workload, and how many
KV-cache tokens are left?

Per GPU (one TP rank):
  usable      = profile memory - reserved (CUDA context, workspaces, runtime buffers)
  weights     = linear layers / tp at the precision's bytes (+ per-channel scales)
                + embedding (replicated: TensorRT-LLM's use_parallel_embedding is off by default)
                + lm_head / tp + norms, in the model dtype (weight-only / SmoothQuant / FP8
                  quantization keep embedding and lm_head unquantized) + extra weights (vision tower)
  prompt table = 2 x max_prompt_embedding_table_size x hidden x model dtype bytes (multimodal engines):
                the runtime's shared table [max_prompt_embedding_table_size, hidden * tp] on every rank
                (cpp/tensorrt_llm/batch_manager/promptTuningBuffers.cpp, PromptTuningBuffers ctor) plus the
                in-flight requests' own tables, which LlmRequest::movePromptEmbeddingTableToGpu keeps on the
                GPU (at most max_batch_size x table_size / max_batch_size rows: the per-request limit)
  activations = max_num_tokens x (qkv + 3 x hidden + 3 x intermediate) / tp x activation bytes
                + max_batch_size x beams x vocab x 4 (fp32 logits of the last tokens, gathered on
                  every rank; max_num_tokens x vocab x 4 with gather_context_logits)
  kv_budget   = (usable - weights - activations) x kv_cache_free_gpu_mem_fraction
  kv/token    = 2 (K and V) x layers x ceil(kv_heads / tp) x head_size x kv bytes
  kv_tokens   = floor(kv_budget / kv/token), rounded down to whole blocks of tokens_per_block
It fits when kv_tokens >= max_batch_size x (max_seq_len rounded up to whole blocks).
Not counted: the vision engine's own activation memory (TensorRT sizes it at build; trtexec prints it),
to be read on the GPU.

The fraction is the Triton `kv_cache_free_gpu_mem_fraction` (default 0.9): TensorRT-LLM sizes the
paged KV pool from the memory left free after the engine is loaded.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from glmtrt.build.profile import GpuProfile
from glmtrt.errors import GlmtrtError

GiB = 1024 ** 3
MiB = 1024 ** 2

#: Bytes per weight of a linear layer, and whether a per-output-channel scale (fp16) is stored.
WEIGHT_BYTES = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8-wo": 1.0, "int4-wo": 0.5,
                "int8-sq": 1.0, "fp8": 1.0, "int4-awq": 0.5}
#: Bytes of the per-output-channel scale: fp16 for weight-only (per_channel_scale in the activation
#: dtype), float32 for SmoothQuant (quantization/layers.py SmoothQuantLinear.per_channel_scale).
_PER_CHANNEL_SCALES = {"int8-wo": 2, "int4-wo": 2, "int8-sq": 4}
#: AWQ: one fp16 scale per output channel per group of AWQ_GROUP input channels
#: (quantization/layers.py WeightOnlyGroupwiseQuantLinear.weights_scaling_factor (in/group, out)).
AWQ_GROUP = 128
#: Model dtype bytes (embedding, lm_head, norms, activations) per precision.
BASE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8-wo": 2, "int4-wo": 2, "int8-sq": 2, "fp8": 2, "int4-awq": 2}
KV_BYTES = {"int8": 1, "fp8": 1}
#: Lower-memory precisions tried, in order, when suggesting alternatives.
_SMALLER = ("int8-wo", "fp8", "int8-sq", "int4-wo", "int4-awq")
DEFAULT_MAX_NUM_TOKENS = 8192   # BuildConfig.max_num_tokens default in TensorRT-LLM 1.2


@dataclass(frozen=True)
class ModelDims:
    """What the planner needs to know about a decoder (plus optional extra non-LLM weights)."""

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_size: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    extra_params: int = 0           # e.g. a vision tower that must sit on the same GPU
    extra_name: str = ""

    @property
    def qkv_out(self) -> int:
        return (self.num_heads + 2 * self.num_kv_heads) * self.head_size

    def linear_params(self) -> int:
        """Weights of all per-layer GEMMs (qkv, dense, fc = gate+up, proj)."""
        h, i = self.hidden_size, self.intermediate_size
        per_layer = self.qkv_out * h + self.num_heads * self.head_size * h + 2 * i * h + i * h
        return self.num_layers * per_layer

    def linear_out_channels(self) -> int:
        """Output channels of all GEMMs (number of per-channel scales)."""
        return self.num_layers * (self.qkv_out + self.hidden_size + 2 * self.intermediate_size
                                  + self.hidden_size)

    def num_params(self) -> int:
        h = self.hidden_size
        small = self.num_layers * (2 * h + self.qkv_out) + h   # norms + qkv bias + final norm
        return self.linear_params() + 2 * self.vocab_size * h + small + self.extra_params


@dataclass(frozen=True)
class Workload:
    """The engine limits asked for (trtllm-build --max_* flags)."""

    max_batch_size: int = 8
    max_seq_len: int = 8192
    max_input_len: int | None = None        # default: max_seq_len - 1
    max_num_tokens: int | None = None       # default: min(8192, batch x seq)
    max_beam_width: int = 1
    kv_cache_free_gpu_mem_fraction: float = 0.9
    gather_context_logits: bool = False
    max_prompt_embedding_table_size: int = 0  # rows of the prompt-tuning table (vision tokens), 0 = none

    def resolved(self) -> "Workload":
        for name in ("max_batch_size", "max_seq_len", "max_beam_width"):
            if getattr(self, name) < 1:
                raise GlmtrtError(f"{name}={getattr(self, name)}", expected="a positive integer")
        if not 0.0 < self.kv_cache_free_gpu_mem_fraction <= 1.0:
            raise GlmtrtError(f"kv_cache_free_gpu_mem_fraction={self.kv_cache_free_gpu_mem_fraction}",
                              expected="a fraction in (0, 1]")
        inp = self.max_input_len if self.max_input_len is not None else max(1, self.max_seq_len - 1)
        if inp > self.max_seq_len:
            raise GlmtrtError(f"max_input_len {inp} > max_seq_len {self.max_seq_len}",
                              expected="max_input_len <= max_seq_len")
        mnt = self.max_num_tokens
        if mnt is None:
            mnt = min(DEFAULT_MAX_NUM_TOKENS, self.max_batch_size * self.max_seq_len)
        return replace(self, max_input_len=inp, max_num_tokens=mnt)


@dataclass(frozen=True)
class Plan:
    """Result of planning one (model, profile, precision, tp, workload)."""

    model: str
    profile: str
    precision: str
    kv_cache_dtype: str
    tp_size: int
    workload: Workload
    usable_bytes: int
    weight_bytes: int
    extra_weight_bytes: int
    activation_bytes: int
    kv_budget_bytes: int
    kv_bytes_per_token: int
    tokens_per_block: int
    kv_tokens: int
    needed_kv_tokens: int
    max_batch_at_seq_len: int
    max_seq_len_at_batch: int
    fits: bool
    reason: str = ""
    suggestions: tuple[str, ...] = ()
    prompt_table_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["suggestions"] = list(self.suggestions)
        return d


def kv_bytes_per_token(dims: ModelDims, kv_dtype_bytes: int, tp_size: int = 1) -> int:
    """K and V of one token over all layers on one TP rank (KV heads are replicated when
    there are fewer of them than ranks)."""
    kv_heads = math.ceil(dims.num_kv_heads / tp_size)
    return 2 * dims.num_layers * kv_heads * dims.head_size * kv_dtype_bytes


def weight_bytes(dims: ModelDims, precision: str, tp_size: int = 1) -> int:
    """Bytes of LLM weights on one TP rank at `precision` (extra weights not included)."""
    if precision not in WEIGHT_BYTES:
        raise GlmtrtError(f"unknown precision '{precision}'", expected="one of " + ", ".join(WEIGHT_BYTES))
    base = BASE_BYTES[precision]
    linear = dims.linear_params() / tp_size * WEIGHT_BYTES[precision]
    if precision in _PER_CHANNEL_SCALES:
        linear += dims.linear_out_channels() / tp_size * _PER_CHANNEL_SCALES[precision]
    if precision == "int4-awq":
        linear += dims.linear_params() / AWQ_GROUP / tp_size * 2
    if precision == "fp8":      # FP8Linear: weights_scaling_factor + activation_scaling_factor, f32 (1,) each
        linear += dims.num_layers * 4 * 2 * 4
    h = dims.hidden_size
    embedding = dims.vocab_size * h * base                 # replicated on every rank
    lm_head = dims.vocab_size * h * base / tp_size
    small = (dims.num_layers * (2 * h + dims.qkv_out) + h) * base
    return int(math.ceil(linear + embedding + lm_head + small))


def activation_bytes(dims: ModelDims, wl: Workload, precision: str, tp_size: int = 1) -> int:
    """Rough peak activation workspace of the engine for max_num_tokens tokens in flight."""
    act = BASE_BYTES[precision]
    width = (dims.qkv_out + 3 * dims.hidden_size + 3 * dims.intermediate_size) / tp_size
    tokens_with_logits = wl.max_num_tokens if wl.gather_context_logits else wl.max_batch_size
    # lm_head is column-parallel with gather_output: every rank holds the full-vocab fp32 logits
    logits = tokens_with_logits * wl.max_beam_width * dims.vocab_size * 4
    return int(math.ceil(wl.max_num_tokens * width * act + logits))


def prompt_table_bytes(dims: ModelDims, wl: Workload, precision: str) -> int:
    """GPU bytes per rank of the prompt-embedding table (module docstring): the shared buffer and the
    in-flight requests' copies, full hidden size in the model dtype."""
    return 2 * wl.max_prompt_embedding_table_size * dims.hidden_size * BASE_BYTES[precision]


def prompt_table_rows(max_batch_size: int, max_images: int, tokens_per_image: int) -> int:
    """--max_prompt_embedding_table_size so that every request of a full batch can carry `max_images`
    images of `tokens_per_image` tokens: the runtime allows a request table_size / max_batch_size rows
    (PromptTuningBuffers: mMaxPromptVocabSize = maxPromptEmbeddingTableSize / maxBatchSize; "Prompt vocab
    size ... is larger than max prompt vocab size" otherwise), as TensorRT-LLM's multimodal examples
    size --max_multimodal_len = max_batch_size x visual features."""
    return max_batch_size * max_images * tokens_per_image


def _kv_dtype_bytes(precision: str, kv_cache_dtype: str) -> int:
    if kv_cache_dtype == "auto":
        return BASE_BYTES[precision]
    if kv_cache_dtype not in KV_BYTES:
        raise GlmtrtError(f"unknown KV-cache dtype '{kv_cache_dtype}'", expected="auto, int8 or fp8")
    return KV_BYTES[kv_cache_dtype]


def check_supported(profile: GpuProfile, precision: str, kv_cache_dtype: str = "auto") -> None:
    """Refuse a precision / KV-cache dtype the profile's GPU cannot run."""
    if precision not in profile.precisions:
        raise GlmtrtError(
            f"precision {precision} is not supported on {profile.name} (sm{profile.sm})",
            expected="one of " + ", ".join(profile.precisions),
            fix="use one of those precisions (convert again with the matching --quant/--dtype)")
    if kv_cache_dtype not in profile.kv_cache_dtypes:
        raise GlmtrtError(f"KV-cache dtype {kv_cache_dtype} is not supported on {profile.name} (sm{profile.sm})",
                          expected="one of " + ", ".join(profile.kv_cache_dtypes))


def _seqs(wl: Workload) -> str:
    """"batch" or "batch x N beams": the sequences that each hold max_seq_len of KV cache."""
    return f"{wl.max_batch_size}" + (f" x {wl.max_beam_width} beams" if wl.max_beam_width > 1 else "")


def _bytes(n: int) -> str:
    return f"{n / 1024:g} KiB" if n >= 1024 else f"{n} B"


def _raw_plan(dims: ModelDims, profile: GpuProfile, precision: str, tp_size: int, wl: Workload,
              kv_cache_dtype: str) -> Plan:
    if tp_size < 1 or dims.num_heads % tp_size:
        raise GlmtrtError(f"tp_size={tp_size} does not divide the {dims.num_heads} attention heads",
                          expected="a power of two dividing the head count (1, 2, 4, ...)")
    usable = profile.usable_bytes
    w = weight_bytes(dims, precision, tp_size)
    extra = int(math.ceil(dims.extra_params * BASE_BYTES[precision]))   # replicated, unquantized
    act = activation_bytes(dims, wl, precision, tp_size)
    table = prompt_table_bytes(dims, wl, precision)
    free = usable - w - extra - act - table
    per_tok = kv_bytes_per_token(dims, _kv_dtype_bytes(precision, kv_cache_dtype), tp_size)
    tpb = profile.tokens_per_block
    budget = int(max(0, free) * wl.kv_cache_free_gpu_mem_fraction)
    kv_tokens = (budget // per_tok) // tpb * tpb
    seq_blocks = math.ceil(wl.max_seq_len / tpb) * tpb
    needed = wl.max_batch_size * wl.max_beam_width * seq_blocks
    max_batch = kv_tokens // (seq_blocks * wl.max_beam_width)
    max_seq = (kv_tokens // (wl.max_batch_size * wl.max_beam_width)) // tpb * tpb
    fits = free > 0 and kv_tokens >= needed
    reason = ""
    if free <= 0:
        reason = (f"weights {w / GiB:.2f} GiB + extra {extra / GiB:.2f} GiB + activations {act / GiB:.2f} GiB "
                  + (f"+ prompt table {table / GiB:.2f} GiB " if table else "")
                  + f"= {(w + extra + act + table) / GiB:.2f} GiB exceed the {usable / GiB:.2f} GiB usable on {profile.name} "
                  f"(tp={tp_size})")
    elif not fits:
        reason = (f"KV cache needs {_seqs(wl)} x {seq_blocks} tokens = {needed} tokens x "
                  f"{_bytes(per_tok)} = {needed * per_tok / GiB:.2f} GiB, but only "
                  f"{wl.kv_cache_free_gpu_mem_fraction:g} x ({usable / GiB:.2f} - {w / GiB:.2f} weights - "
                  f"{extra / GiB:.2f} extra - {act / GiB:.2f} activations"
                  + (f" - {table / GiB:.2f} prompt table" if table else "") + f") GiB = {budget / GiB:.2f} GiB "
                  f"= {kv_tokens} tokens are free")
    return Plan(dims.name, profile.name, precision, kv_cache_dtype, tp_size, wl, usable, w, extra, act,
                budget, per_tok, tpb, int(kv_tokens), needed, int(max_batch), int(max(0, max_seq)), fits, reason,
                prompt_table_bytes=table)


def plan_memory(dims: ModelDims, profile: GpuProfile, precision: str, tp_size: int = 1,
                workload: Workload | None = None, kv_cache_dtype: str = "auto",
                suggest: bool = True) -> Plan:
    """Plan one configuration; when it does not fit, attach suggestions that do."""
    check_supported(profile, precision, kv_cache_dtype)
    wl = (workload or Workload()).resolved()
    p = _raw_plan(dims, profile, precision, tp_size, wl, kv_cache_dtype)
    if p.fits or not suggest:
        return p
    return replace(p, suggestions=tuple(_suggestions(dims, profile, precision, tp_size, wl, kv_cache_dtype, p)))


def _suggestions(dims, profile, precision, tp_size, wl, kv, p: Plan) -> list[str]:
    out = []
    cur = WEIGHT_BYTES[precision]
    for prec in _SMALLER:
        if prec in profile.precisions and WEIGHT_BYTES[prec] < cur:
            alt = _raw_plan(dims, profile, prec, tp_size, wl, kv)
            if alt.fits:
                out.append(f"lower precision: --precision {prec} fits ({alt.kv_tokens} KV tokens)")
                break
    for tp in (2, 4, 8):
        if tp > tp_size and dims.num_heads % tp == 0:
            alt = _raw_plan(dims, profile, precision, tp, wl, kv)
            if alt.fits:
                out.append(f"tensor parallel: --tp {tp} ({tp} x {profile.name}) fits "
                           f"({alt.weight_bytes / GiB:.2f} GiB weights and {alt.kv_tokens} KV tokens per GPU)")
                break
    if "int8" in profile.kv_cache_dtypes and kv == "auto":
        alt = _raw_plan(dims, profile, precision, tp_size, wl, "int8")
        if alt.fits:
            out.append("int8 KV cache: --kv-cache-dtype int8 fits")
    if p.max_seq_len_at_batch >= profile.tokens_per_block:
        out.append(f"shorter context: --max-seq-len {p.max_seq_len_at_batch} at batch {wl.max_batch_size}")
    if p.max_batch_at_seq_len >= 1:
        out.append(f"smaller batch: --max-batch-size {p.max_batch_at_seq_len} at max_seq_len {wl.max_seq_len}")
    if not out:
        out.append("no single change fits: combine a lower precision with TP or choose a bigger GPU")
    return out


def require_fit(plan: Plan) -> Plan:
    """Raise a GlmtrtError with the arithmetic and the suggestions when the plan does not fit."""
    if plan.fits:
        return plan
    raise GlmtrtError(
        f"{plan.model} at {plan.precision} (tp={plan.tp_size}) does not fit {plan.profile} with "
        f"max_batch_size={plan.workload.max_batch_size}, max_seq_len={plan.workload.max_seq_len}: {plan.reason}",
        expected="a configuration whose weights, activations and KV cache fit the GPU",
        fix="; ".join(plan.suggestions) or "lower the precision, use TP=2 or shorten max_seq_len")


def format_plan(plan: Plan) -> str:
    """A human-readable table of the plan."""
    wl = plan.workload
    rows = [
        ("model", plan.model), ("gpu profile", plan.profile), ("precision", plan.precision),
        ("kv cache dtype", plan.kv_cache_dtype), ("tp size", str(plan.tp_size)),
        ("usable memory / GPU", f"{plan.usable_bytes / GiB:8.2f} GiB"),
        ("weights / GPU", f"{plan.weight_bytes / GiB:8.2f} GiB"),
        ("extra weights / GPU", f"{plan.extra_weight_bytes / GiB:8.2f} GiB"),
        ("activations / GPU", f"{plan.activation_bytes / GiB:8.2f} GiB  (max_num_tokens {wl.max_num_tokens})"),
        *([("prompt table / GPU", f"{plan.prompt_table_bytes / GiB:8.2f} GiB  "
                                  f"(2 x {wl.max_prompt_embedding_table_size} rows x hidden)")]
          if plan.prompt_table_bytes else []),
        ("kv budget / GPU", f"{plan.kv_budget_bytes / GiB:8.2f} GiB  (fraction {wl.kv_cache_free_gpu_mem_fraction:g})"),
        ("kv bytes / token", f"{plan.kv_bytes_per_token} B ({plan.kv_bytes_per_token / 1024:g} KiB)"),
        ("kv tokens available", f"{plan.kv_tokens} (blocks of {plan.tokens_per_block})"),
        ("kv tokens needed", f"{plan.needed_kv_tokens} = {_seqs(wl)} x {plan.needed_kv_tokens // (wl.max_batch_size * wl.max_beam_width)}"
                             + (f"  (max_seq_len {wl.max_seq_len} in whole blocks)"
                                if wl.max_seq_len % plan.tokens_per_block else "")),
        ("max batch @ seq_len", str(plan.max_batch_at_seq_len)),
        ("max seq_len @ batch", str(plan.max_seq_len_at_batch)),
        ("engine limits", f"max_batch_size={wl.max_batch_size} max_input_len={wl.max_input_len} "
                          f"max_seq_len={wl.max_seq_len} max_num_tokens={wl.max_num_tokens}"
                          + (f" max_prompt_embedding_table_size={wl.max_prompt_embedding_table_size}"
                             if wl.max_prompt_embedding_table_size else "")),
        ("verdict", "FITS" if plan.fits else "DOES NOT FIT"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    if not plan.fits:
        lines.append(f"{'why'.ljust(width)}  {plan.reason}")
        lines += [f"{'suggestion'.ljust(width)}  {s}" for s in plan.suggestions]
    return "\n".join(lines)
