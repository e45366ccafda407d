"""Review of the build stage: feature combinations trtllm-build refuses, FP8 GEMM plugin, workers,
max_num_tokens without chunked context, the arithmetic shown to users, Docker dependencies.

Upstream sources read (TensorRT-LLM, NVIDIA/TensorRT-LLM):
- tensorrt_llm/builder.py `build()`: with `use_paged_context_fmha`, an INT8 KV cache raises
  "Paged Context FMHA doesn't work with int8 kv cache currently." and an FP8 KV cache without FP8
  quantization raises "FP8 Paged Context FMHA only works with fp8 quantization workflow currently."
  (the same checks sit in cpp/tensorrt_llm/common/attentionOp.cpp at run time).
- tensorrt_llm/quantization/layers.py FP8Linear.forward: only `gemm_plugin == 'fp8'` runs the FP8
  GEMM plugin; docs "Useful Build-Time Flags" (performance tuning guide): GEMM plugin on FP8 is
  recommended disabled; the fp8 GEMM plugin only pays off at batch <= 4.
- tensorrt_llm/commands/build.py main(): `workers = min(torch.cuda.device_count(), args.workers)`.
- docs/source/release-notes.md: `enable_xqa` was removed from trtllm-build in 0.16.0, so 0.13 has it.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from glmtrt.build.inputs import CheckpointInfo
from glmtrt.build.planner import ModelDims, Workload, activation_bytes, format_plan, plan_memory
from glmtrt.build.profile import load_profile
from glmtrt.build.trtllm_build import BuildRequest, build_command, feature_choices, load_flags
from glmtrt.errors import GlmtrtError

ROOT = Path(__file__).parents[2]
DIMS = ModelDims("m", 2, 512, 4, 2, 128, 96, 128, 512)


def _ck(precision, dtype="float16", kv="auto", head_size=128):
    dims = ModelDims("m", 2, 4 * head_size, 4, 2, head_size, 96, 128, 512)
    return CheckpointInfo(Path("convert/m"), {}, {}, "0" * 64, dims, dtype, precision, kv, 1, 1)


def _args(cmd):
    return dict(zip(cmd[1::2], cmd[2::2]))


def _cmd(gpu, ck, wl=None):
    return build_command(BuildRequest(load_profile(gpu), ck, Path("e"), (wl or Workload(4, 512)).resolved()))


@pytest.mark.parametrize("precision,dtype,kv,paged", [
    ("fp16", "float16", "int8", "disable"),     # builder.py: int8 KV + paged context FMHA -> RuntimeError
    ("int8-wo", "float16", "int8", "disable"),
    ("int8-sq", "float16", "int8", "disable"),
    ("fp16", "float16", "fp8", "disable"),      # fp8 KV without FP8 quantization -> RuntimeError
    ("bf16", "bfloat16", "fp8", "disable"),
    ("fp8", "bfloat16", "fp8", "enable"),       # the FP8 workflow keeps it
    ("fp8", "bfloat16", "auto", "enable"),
    ("fp16", "float16", "auto", "enable"),
])
def test_paged_context_fmha_only_with_a_kv_cache_trtllm_build_accepts(precision, dtype, kv, paged):
    args = _args(_cmd("rtx4090", _ck(precision, dtype, kv)))
    assert args["--use_paged_context_fmha"] == paged
    assert args["--context_fmha"] == "enable"
    why = feature_choices(load_profile("rtx4090"), precision, dtype, 128, kv)["use_paged_context_fmha"][1]
    if paged == "disable":
        assert "KV cache" in why


def test_t4_small_heads_int8_kv_no_paged_context_fmha():
    args = _args(_cmd("t4", _ck("fp16", "float16", "int8", head_size=64)))
    assert args["--context_fmha"] == "enable" and args["--use_paged_context_fmha"] == "disable"


def test_fp8_gemm_plugin_disabled_on_1_2():
    args = _args(_cmd("rtx4090", _ck("fp8", "bfloat16", "fp8")))
    assert args["--gemm_plugin"] == "disable"          # not the model dtype: FP8 GEMMs go through TRT
    assert args["--gpt_attention_plugin"] == "bfloat16"
    assert args["--use_fp8_context_fmha"] == "enable"
    for prec, dt in (("fp16", "float16"), ("bf16", "bfloat16"), ("int8-wo", "float16"), ("int8-sq", "float16")):
        assert _args(_cmd("rtx4090", _ck(prec, dt)))["--gemm_plugin"] == dt


def test_workers_default_to_tp_size(tiny_ckpts, tmp_path):
    from glmtrt.build.engine import prepare_build

    job = prepare_build(tiny_ckpts["int8wo-tp2"], tmp_path / "e", "rtx4090", workload=Workload(2, 128))
    assert _args(job.command)["--workers"] == "2"      # trtllm-build caps it at the visible GPU count
    job1 = prepare_build(tiny_ckpts["fp16"], tmp_path / "e", "t4", workload=Workload(2, 128))
    assert _args(job1.command)["--workers"] == "1"
    job3 = prepare_build(tiny_ckpts["int8wo-tp2"], tmp_path / "e", "rtx4090", workload=Workload(2, 128), workers=1)
    assert _args(job3.command)["--workers"] == "1"


def test_no_chunked_context_means_max_num_tokens_covers_a_whole_prompt(tiny_ckpts, tmp_path):
    from glmtrt.build.engine import _whole_prompt_per_step, prepare_build

    # t4 + head size 128: no paged context FMHA, so no chunked context: a prompt is one engine step
    feats = feature_choices(load_profile("t4"), "fp16", "float16", 128)
    assert feats["use_paged_context_fmha"][0] is False
    big = Workload(1, 12288)
    wl = _whole_prompt_per_step(big, chunked=False).resolved()
    assert wl.max_num_tokens == wl.max_input_len == 12287
    with pytest.raises(GlmtrtError, match="max_num_tokens 4096 < max_input_len 12287"):
        _whole_prompt_per_step(Workload(1, 12288, max_num_tokens=4096), chunked=False)
    assert _whole_prompt_per_step(big, chunked=True).resolved().max_num_tokens == 8192
    # with chunked context (tiny heads: paged context FMHA on) the default stays at 8192
    job = prepare_build(tiny_ckpts["fp16"], tmp_path / "e", "rtx4090", workload=big, check_fit=False)
    assert _args(job.command)["--max_num_tokens"] == "8192"
    # end to end on a head-128 checkpoint for t4: the command and the plan carry the raised value
    from glmtrt.convert.pipeline import convert_checkpoint
    from glmtrt.models.chatglm.tiny import make_tiny_checkpoint

    hf = make_tiny_checkpoint(tmp_path / "hf128", fmt="chatglm", seed=0, hidden_size=256, num_heads=2,
                              head_size=128, num_kv_heads=1, intermediate_size=128, vocab_size=128)
    ck = convert_checkpoint(hf, tmp_path / "ck128", progress=False, dtype="float16")
    job = prepare_build(ck, tmp_path / "e", "t4", workload=big, check_fit=False)
    a = _args(job.command)
    assert a["--max_num_tokens"] == a["--max_input_len"] == "12287" and a["--use_paged_context_fmha"] == "disable"
    assert job.plan.workload.max_num_tokens == 12287


def test_shown_arithmetic_uses_whole_blocks_and_beams():
    t4 = load_profile("t4")                              # tokens_per_block 64
    p = plan_memory(DIMS, t4, "fp16", 1, Workload(max_batch_size=8, max_seq_len=1000))
    assert p.needed_kv_tokens == 8 * 1024
    text = format_plan(p)
    line = next(x for x in text.splitlines() if x.startswith("kv tokens needed"))
    assert "8192 = 8 x 1024" in line, line
    nums = [int(n) for n in re.findall(r"\d+", line.split("needed", 1)[1])]
    assert nums[0] == nums[1] * nums[2]
    pb = plan_memory(DIMS, t4, "fp16", 1, Workload(max_batch_size=2, max_seq_len=128, max_beam_width=4))
    line = next(x for x in format_plan(pb).splitlines() if x.startswith("kv tokens needed"))
    assert "1024 = 2 x 4 beams x 128" in line, line


def test_refusal_reason_shows_beams_and_small_kv_sizes():
    tiny_gpu = load_profile("t4")
    big = ModelDims("big", 28, 4096, 32, 2, 128, 13696, 65024, 8192)
    p = plan_memory(big, tiny_gpu, "fp16", 1, Workload(max_batch_size=4, max_seq_len=8192, max_beam_width=2))
    assert not p.fits
    assert "4 x 2 beams x 8192 tokens = 65536 tokens" in p.reason and "28 KiB" in p.reason
    small = ModelDims("s", 1, 64, 4, 1, 16, 96, 128, 512)           # 64 B of KV per token
    wl = Workload(max_batch_size=10**6, max_seq_len=512)
    ps = plan_memory(small, tiny_gpu, "fp16", 1, wl)
    assert not ps.fits and "64 B" in ps.reason and " 0 KiB" not in ps.reason


def test_logits_are_gathered_on_every_rank():
    # lm_head is column-parallel with gather_output: each rank holds the full-vocab logits
    wl = Workload(max_batch_size=4, max_seq_len=512, gather_context_logits=True).resolved()
    per_rank_logits = wl.max_num_tokens * DIMS.vocab_size * 4
    a1 = activation_bytes(DIMS, wl, "fp16", 1)
    a2 = activation_bytes(DIMS, wl, "fp16", 2)
    width = DIMS.qkv_out + 3 * DIMS.hidden_size + 3 * DIMS.intermediate_size
    assert a1 == wl.max_num_tokens * width * 2 + per_rank_logits
    assert a2 == wl.max_num_tokens * width // 2 * 2 + per_rank_logits


def test_013_flag_list_has_enable_xqa():
    flags = load_flags("0.13")["flags"]
    assert flags["enable_xqa"] == {"type": "choice", "choices": ["enable", "disable"]}
    assert "enable_xqa" not in load_flags("1.2")["flags"]


def test_dockerfile_pins_every_dependency_the_container_lacks():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!;\[ ]", d, 1)[0].lower() for d in deps}
    shipped = {"numpy", "torch", "safetensors", "protobuf"}   # TensorRT-LLM's own requirements
    dockerfile = (ROOT / "Dockerfile").read_text()
    pinned = {m.lower() for m in re.findall(r'"([A-Za-z0-9_.-]+)==[0-9][^"]*"', dockerfile)}
    assert names - shipped <= pinned, names - shipped - pinned


@pytest.mark.skipif(__import__("shutil").which("trtllm-build") is not None, reason="TensorRT-LLM is installed here")
def test_container_command_keeps_the_requested_limits(tiny_ckpts, tmp_path):
    from glmtrt.build.engine import prepare_build, run_build

    wl = Workload(max_batch_size=4, max_seq_len=256, max_input_len=200, max_num_tokens=512,
                  kv_cache_free_gpu_mem_fraction=0.8, gather_context_logits=True)
    job = prepare_build(tiny_ckpts["int8wo-tp2"], tmp_path / "e", "rtx4090", workload=wl, max_multimodal_len=64)
    with pytest.raises(GlmtrtError) as err:
        run_build(job, log_dir=tmp_path / "logs")
    msg = str(err.value) + " " + (err.value.fix or "")
    for opt in ("--max-batch-size 4", "--max-seq-len 256", "--max-input-len 200", "--max-num-tokens 512",
                "--kv-cache-free-gpu-mem-fraction 0.8", "--gather-context-logits", "--max-multimodal-len 64",
                "--tp 2", "--workers 2", "tritonserver:26.04-trtllm-python-py3"):
        assert opt in msg, opt
    # the checkpoint and the engine's parent dir live outside the current dir: mounted at the same path
    ck = str(tiny_ckpts["int8wo-tp2"].resolve())
    assert f"-v {ck}:{ck}" in msg and f"-v {tmp_path.resolve()}:{tmp_path.resolve()}" in msg


def test_manifest_records_the_toolchain_that_built_it(tiny_ckpts, tmp_path):
    from glmtrt.build.engine import engine_manifest, prepare_build

    job = prepare_build(tiny_ckpts["fp16"], tmp_path / "e", "rtx4090", workload=Workload(2, 128))
    assert engine_manifest(job, {}).toolchain["tensorrt_llm"] == "1.2.1"              # dry: the profile's
    m = engine_manifest(job, {}, tensorrt_llm="1.2.0")                               # --ignore-toolchain build
    assert m.toolchain["tensorrt_llm"] == "1.2.0"
    assert m.toolchain["triton_container"].endswith("26.04-trtllm-python-py3")
