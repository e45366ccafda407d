"""Profiles x precisions -> a valid trtllm-build command or a clear refusal; pinned flag lists."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from glmtrt.build.inputs import CheckpointInfo, check_tp, precision_of, read_checkpoint
from glmtrt.build.planner import ModelDims, Workload
from glmtrt.build.profile import PRECISIONS, known_profiles, load_profile, profile_from_dict
from glmtrt.build.trtllm_build import BuildRequest, build_command, load_flags, validate_command
from glmtrt.errors import GlmtrtError

# Plugin/feature flags of TensorRT-LLM 1.2.x: tensorrt_llm/plugin/plugin.py `cli_plugin_args`;
# the others: tensorrt_llm/commands/build.py `parse_arguments()`. Pinned here so a change of the
# data file is a deliberate, reviewed change.
PINNED_12 = {
    "bert_attention_plugin", "gpt_attention_plugin", "gemm_plugin", "gemm_swiglu_plugin", "fp8_rowwise_gemm_plugin",
    "lora_plugin", "dora_plugin", "moe_plugin", "mamba_conv1d_plugin", "nccl_plugin", "low_latency_gemm_plugin",
    "low_latency_gemm_swiglu_plugin", "gemm_allreduce_plugin", "context_fmha", "bert_context_fmha_fp32_acc",
    "remove_input_padding", "tokens_per_block", "use_paged_context_fmha", "use_fp8_context_fmha", "fuse_fp4_quant",
    "multiple_profiles", "paged_state", "streamingllm", "norm_quant_fusion", "reduce_fusion", "user_buffer",
    "use_fused_mlp", "pp_reduce_scatter",
    "checkpoint_dir", "model_config", "build_config", "model_cls_file", "model_cls_name", "output_dir",
    "max_batch_size", "max_input_len", "max_seq_len", "max_beam_width", "max_num_tokens", "opt_num_tokens",
    "max_encoder_input_len", "max_prompt_embedding_table_size", "kv_cache_type", "paged_kv_cache",
    "input_timing_cache", "output_timing_cache", "profiling_verbosity", "strip_plan", "weight_sparsity",
    "weight_streaming", "fast_build", "workers", "log_level", "enable_debug_output", "visualize_network", "dry_run",
    "monitor_memory", "logits_dtype", "gather_context_logits", "gather_generation_logits", "gather_all_token_logits",
    "lora_dir", "lora_ckpt_source", "lora_target_modules", "max_lora_rank", "speculative_decoding_mode",
    "max_draft_len",
}
# 0.13: no use_fused_mlp/fp8_rowwise/low-latency/nvfp4 plugin flags; still has auto-parallel flags.
# enable_xqa: removed from trtllm-build in 0.16.0 (docs/source/release-notes.md), so 0.13 still has it.
PINNED_013_ONLY = {"auto_parallel", "gpus_per_node", "cluster_key", "enable_xqa"}
NOT_IN_013 = {"use_fused_mlp", "fp8_rowwise_gemm_plugin", "low_latency_gemm_plugin", "low_latency_gemm_swiglu_plugin",
              "gemm_allreduce_plugin", "dora_plugin", "bert_context_fmha_fp32_acc", "fuse_fp4_quant",
              "norm_quant_fusion", "user_buffer", "pp_reduce_scatter", "monitor_memory"}


def test_pinned_flag_lists():
    assert set(load_flags("1.2")["flags"]) == PINNED_12
    assert set(load_flags("0.13")["flags"]) == (PINNED_12 - NOT_IN_013) | PINNED_013_ONLY
    assert "nvfp4" in load_flags("1.2")["flags"]["gemm_plugin"]["choices"]
    assert "nvfp4" not in load_flags("0.13")["flags"]["gemm_plugin"]["choices"]
    for line in ("0.13", "1.2"):
        assert load_flags(line)["flags"]["kv_cache_type"]["choices"] == ["continuous", "paged", "disabled"]


def test_validate_command_rejects_bad_flags():
    validate_command(["trtllm-build", "--max_batch_size", "8", "--use_fused_mlp", "enable"], "1.2")
    with pytest.raises(GlmtrtError, match="not a trtllm-build flag of TensorRT-LLM 0.13"):
        validate_command(["trtllm-build", "--use_fused_mlp", "enable"], "0.13")
    with pytest.raises(GlmtrtError, match="not valid"):
        validate_command(["trtllm-build", "--context_fmha", "yes"], "1.2")
    with pytest.raises(GlmtrtError, match="integer"):
        validate_command(["trtllm-build", "--max_batch_size", "many"], "1.2")
    with pytest.raises(GlmtrtError, match="needs a value"):
        validate_command(["trtllm-build", "--max_batch_size", "--workers", "1"], "1.2")


def test_profiles_are_complete():
    assert {"t4", "rtx4090"} <= set(known_profiles())
    t4, r = load_profile("T4"), load_profile("rtx-4090")
    assert (t4.sm, t4.toolchain.line) == (75, "0.13") and (r.sm, r.toolchain.line) == (89, "1.2")
    assert set(t4.precisions) == {"fp16", "fp32", "int8-wo", "int4-wo"}
    assert "fp8" in r.precisions and "fp8" in r.kv_cache_dtypes and "fp8" not in t4.kv_cache_dtypes
    for name in known_profiles():
        p = load_profile(name)
        assert p.toolchain.triton_container.startswith("nvcr.io/nvidia/tritonserver:")
        assert p.toolchain.triton_container.endswith("-trtllm-python-py3")
        assert all(f["reason"] for f in p.features.values())



# Triton "Release Compatibility Matrix", section "Container Name: trtllm-python-py3"
# (triton-inference-server/server docs/introduction/compatibility.md, commit 4b54459, 2026-07-29):
# the TensorRT-LLM version each trtllm-python-py3 tag ships, around the two pinned lines.
_MATRIX_TRTLLM = {"24.08": "0.12.0", "24.09": "0.13.0", "24.10": "0.14.0", "25.12": "1.1.0",
                  "26.01": "1.1.0", "26.02": "1.1.0", "26.03": "1.2.0", "26.04": "1.2.1",
                  "26.05": "1.2.1", "26.06": "1.2.1", "26.07": "1.2.1"}


def test_profile_containers_ship_the_profile_tensorrt_llm():
    import json
    from importlib import resources
    for name in known_profiles():
        p = load_profile(name)
        tag = p.toolchain.triton_container.split(":", 1)[1].split("-", 1)[0]
        assert _MATRIX_TRTLLM.get(tag) == p.toolchain.tensorrt_llm, (name, tag)
        # the data file says where the tag comes from, quoting the matrix row it relies on
        raw = json.loads(resources.files("glmtrt.build").joinpath("profiles", f"{name}.json").read_text())
        source = raw["toolchain"]["source"]
        assert "compatibility" in source and "trtllm-python-py3" in source
        assert f"row {tag}" in source and f"TensorRT-LLM {p.toolchain.tensorrt_llm}" in source
    assert load_profile("t4").toolchain.triton_container.endswith(":24.09-trtllm-python-py3")
    assert load_profile("rtx4090").toolchain.triton_container.endswith(":26.04-trtllm-python-py3")

def test_unknown_gpu_lists_known_ones():
    with pytest.raises(GlmtrtError, match="(?s)unknown GPU 'a100'.*one of: rtx4090, t4"):
        load_profile("a100")


def test_profile_validation_names_the_problem():
    d = json.loads((Path(__file__).parents[2] / "glmtrt/build/profiles/t4.json").read_text())
    with pytest.raises(GlmtrtError, match="unknown precisions"):
        profile_from_dict({**d, "precisions": ["fp16", "int3"]}, "x.json")
    feats = dict(d["features"])
    del feats["context_fmha"]
    with pytest.raises(GlmtrtError, match="context_fmha"):
        profile_from_dict({**d, "features": feats}, "x.json")


def _fake_ckpt(precision: str, dtype: str, head_size: int = 128) -> CheckpointInfo:
    dims = ModelDims("m", 2, 64 * head_size // 16, 4, 2, head_size, 96, 128, 512)
    return CheckpointInfo(Path("convert/m"), {}, {}, "0" * 64, dims, dtype, precision, "auto", 1, 1)


_DTYPE = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32", "fp8": "bfloat16"}


@pytest.mark.parametrize("gpu", ["t4", "rtx4090"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_profile_precision_gives_command_or_refusal(gpu, precision):
    from glmtrt.build.planner import plan_memory

    prof = load_profile(gpu)
    ck = _fake_ckpt(precision, _DTYPE.get(precision, "float16"))
    if precision not in prof.precisions:
        with pytest.raises(GlmtrtError, match=f"precision {precision} is not supported on {gpu}"):
            plan_memory(ck.dims, prof, precision)
        return
    wl = Workload(4, 512).resolved()
    cmd = build_command(BuildRequest(prof, ck, Path("engines/x"), wl, timing_cache=Path("build/timing-cache/x")))
    validate_command(cmd, prof.toolchain.flags)
    args = dict(zip(cmd[1::2], cmd[2::2]))
    assert args["--kv_cache_type"] == "paged" and args["--remove_input_padding"] == "enable"
    assert args["--gpt_attention_plugin"] == _DTYPE.get(precision, "float16")
    assert args["--max_seq_len"] == "512" and args["--max_num_tokens"] == "2048"
    if gpu == "t4":   # head size 128 on sm75: no context FMHA, hence no paged context FMHA
        assert args["--context_fmha"] == "disable" and args["--use_paged_context_fmha"] == "disable"
        assert "--use_fused_mlp" not in cmd
    else:
        fmha = "disable" if precision == "fp32" else "enable"
        assert args["--context_fmha"] == fmha
        assert args["--use_fp8_context_fmha"] == ("enable" if precision == "fp8" else "disable")
        assert args["--use_fused_mlp"] == ("enable" if precision in ("fp16", "bf16", "fp32", "fp8") else "disable")


def test_t4_small_heads_keep_context_fmha_and_bf16_is_refused():
    t4 = load_profile("t4")
    cmd = build_command(BuildRequest(t4, _fake_ckpt("fp16", "float16", head_size=64), Path("e"),
                                     Workload(1, 128).resolved()))
    assert cmd[cmd.index("--context_fmha") + 1] == "enable"
    with pytest.raises(GlmtrtError, match="bfloat16 cannot run on t4"):
        build_command(BuildRequest(t4, _fake_ckpt("int8-wo", "bfloat16"), Path("e"), Workload(1, 128).resolved()))


def test_precision_of_checkpoint_config():
    assert precision_of({"dtype": "float16", "quantization": {"quant_algo": None}}) == ("fp16", "auto")
    assert precision_of({"dtype": "bfloat16", "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8"}}) \
        == ("fp8", "fp8")
    assert precision_of({"dtype": "float16", "quantization": {"quant_algo": "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN",
                                                              "kv_cache_quant_algo": "INT8"}}) == ("int8-sq", "int8")
    assert precision_of({"dtype": "float16", "quantization": {"quant_algo": "W4A16"}})[0] == "int4-wo"
    with pytest.raises(GlmtrtError, match="W4A16_AWQ"):
        precision_of({"dtype": "float16", "quantization": {"quant_algo": "W4A16_AWQ"}})


def test_real_checkpoints(tiny_ckpts, tmp_path):
    ck = read_checkpoint(tiny_ckpts["int8wo-tp2"])
    assert (ck.precision, ck.tp_size, ck.dtype) == ("int8-wo", 2, "float16") and len(ck.manifest_sha256) == 64
    assert check_tp(ck, None) == 2 and check_tp(ck, 2) == 2
    with pytest.raises(GlmtrtError, match="converted with tp_size=2"):
        check_tp(ck, 1)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((tiny_ckpts["fp16"] / "config.json").read_text())
    with pytest.raises(GlmtrtError, match="has no manifest.json"):
        read_checkpoint(bare)
    with pytest.raises(GlmtrtError, match="does not exist"):
        read_checkpoint(tmp_path / "nope")
    (bare / "manifest.json").write_text('{"kind": "trtllm-checkpoint"}')
    with pytest.raises(GlmtrtError, match="lacks rank0.safetensors"):
        read_checkpoint(bare)
