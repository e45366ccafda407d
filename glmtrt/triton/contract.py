"""Per-release facts of the TensorRT-LLM Triton backend, shared by the generator and `--check`.

Two release lines are served: TensorRT-LLM 1.2.x (RTX 4090 profile; backend source in
NVIDIA/TensorRT-LLM `triton_backend/`) and 0.13 (T4 profile; triton-inference-server/
tensorrtllm_backend tag v0.13.0). docs/TRITON.md and docs/INTERFACES.md have the tables.
"""
from __future__ import annotations

from typing import Any

from glmtrt.errors import GlmtrtError

CONTRACTS = ("1.2", "0.13")

#: `tensorrt_llm` model parameters the C++ backend reads with a bare `GetParameter<...>` (no
#: default, no try/catch), so a missing key throws "Cannot find parameter with name: <key>" while
#: the model instance is created and the model never loads.
#: - 0.13: tensorrtllm_backend v0.13.0 inflight_batcher_llm/src/model_instance_state.cc
#:   `getBatchingTypeFromParams` (gpt_model_type); every other read there and in model_state.cc
#:   sits in a try/catch with a default.
#: - 1.2: NVIDIA/TensorRT-LLM 1.x triton_backend/inflight_batcher_llm/src/model_instance_state.cc
#:   `getBatchingTypeFromParams` (gpt_model_type) and `getGuidedDecodingConfigFromParams`, called
#:   from `getExecutorConfigFromParams` in the ModelInstanceState constructor (tokenizer_dir,
#:   xgrammar_tokenizer_info_path, guided_decoding_backend); model_state.cc reads nothing bare.
#: (lookahead_window_size / _ngram_size / _verification_set_size are needed only with
#: decoding_mode "lookahead", which glmtrt does not set; gpt_model_path is read in a try/catch
#: but an empty engine path fails "Both encoder and decoder model paths are empty".)
REQUIRED_BACKEND_PARAMETERS: dict[str, tuple[str, ...]] = {
    "0.13": ("gpt_model_type",),
    "1.2": ("gpt_model_type", "tokenizer_dir", "xgrammar_tokenizer_info_path", "guided_decoding_backend"),
}
#: `guided_decoding_backend` values of the 1.2 C++ backend ("" = unset; anything else throws
#: "Guided decoding is currently supported with 'xgrammar' backend").
GUIDED_DECODING_BACKENDS = ("xgrammar",)
#: `guided_decoding_guide_type` values (tensorrtllm_backend docs/guided_decoding.md).
GUIDE_TYPES = ("json", "json_schema", "regex", "ebnf_grammar")
#: Where `glmtrt repo --guided-decoding xgrammar` writes the tokenizer info, inside the repository.
XGRAMMAR_INFO_FILE = "tensorrt_llm/xgrammar_tokenizer_info.json"


def contract_of(toolchain: str) -> str:
    """"1.2" for TensorRT-LLM >= 1.0, "0.13" below (the engine manifest's toolchain.tensorrt_llm)."""
    try:
        major, minor = (int(x) for x in (str(toolchain).split(".") + ["0"])[:2])
    except ValueError:
        raise GlmtrtError(f"unreadable TensorRT-LLM version {toolchain!r} in the engine manifest",
                          expected="a version like 1.2.0 or 0.13.0", fix="rebuild the engine with glmtrt build")
    return "0.13" if (major, minor) < (1, 0) else "1.2"


def tensor_names(toolchain: str) -> dict[str, Any]:
    """Tensor-contract details that changed between toolchains.

    tensorrtllm_backend v0.13.0 .. v0.19.0 call them `min_length` / `random_seed`, both in the
    `tensorrt_llm` model and in the client-facing `ensemble` / `tensorrt_llm_bls` inputs
    (all_models/inflight_batcher_llm/{tensorrt_llm,ensemble,tensorrt_llm_bls}/config.pbtxt);
    TensorRT-LLM 1.2.x `triton_backend/all_models/...` calls them `min_tokens` / `seed` in all
    three. The `exclude_input_in_output` input tensor exists from v0.14.0 (v0.13.0 has only the
    model parameter) and `input_ids` is optional from v0.15.0.
    """
    contract = contract_of(toolchain)
    major, minor = (int(x) for x in (str(toolchain).split(".") + ["0"])[:2])
    old = contract == "0.13"
    return {"contract": contract,
            "min_tokens_tensor": "min_length" if old else "min_tokens",
            "seed_tensor": "random_seed" if old else "seed",
            "min_tokens_request": "min_length" if old else "min_tokens",
            "seed_request": "random_seed" if old else "seed",
            "exclude_input_tensor": (major, minor) >= (0, 14), "input_ids_optional": (major, minor) >= (0, 15)}
