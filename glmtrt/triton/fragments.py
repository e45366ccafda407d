"""Toolchain- and option-dependent lines of the Triton config templates (glmtrt.triton.templates):
the 0.13 / 1.2 tensor differences, the guided-decoding tensors and the release-specific
`tensorrt_llm` parameters. Inputs are the generator's resolved settings."""
from __future__ import annotations

import json
from typing import Any

from glmtrt.triton.template import Raw

_EXCLUDE_TENSOR = ('  { name: "exclude_input_in_output"  data_type: TYPE_BOOL  dims: [ 1 ]  '
                   'reshape: { shape: [ ] }  optional: true },\n')
_EXCLUDE_REQUEST = '  { name: "exclude_input_in_output"  data_type: TYPE_BOOL  dims: [ 1 ]  optional: true },\n'
_EXCLUDE_MAP = '      input_map { key: "exclude_input_in_output"  value: "exclude_input_in_output" }\n'
# Guided decoding tensors (TensorRT-LLM 1.2.x .../tensorrt_llm/config.pbtxt and ensemble/config.pbtxt:
# TYPE_STRING dims [ 1 ], optional, allow_ragged_batch, no reshape), only with --guided-decoding.
GUIDE_TENSORS = ("guided_decoding_guide_type", "guided_decoding_guide")
_GUIDE_TENSOR = '  {{ name: "{}"  data_type: TYPE_STRING  dims: [ 1 ]  optional: true  allow_ragged_batch: true }},\n'
_GUIDE_MAP = '      input_map {{ key: "{0}"  value: "{0}" }}\n'


def fragments(s: dict[str, Any]) -> dict[str, Raw]:
    """Toolchain-dependent template lines (settings written before these keys: the 1.2.x contract)."""
    exclude = s.get("exclude_input_tensor", True)
    guided = bool(s.get("guided_decoding_backend"))
    return {"exclude_input_tensor": Raw(_EXCLUDE_TENSOR if exclude else ""),
            "exclude_input_request": Raw(_EXCLUDE_REQUEST if exclude else ""),
            "exclude_input_map": Raw(_EXCLUDE_MAP if exclude else ""),
            "input_ids_optional": Raw("  optional: true" if s.get("input_ids_optional", True) else ""),
            "guide_tensors": Raw("".join(_GUIDE_TENSOR.format(n) for n in GUIDE_TENSORS) if guided else ""),
            "guide_map": Raw("".join(_GUIDE_MAP.format(n) for n in GUIDE_TENSORS) if guided else "")}


def backend_parameters(s: dict[str, Any]) -> Raw:
    """`tensorrt_llm` parameters only one release line reads (glmtrt.triton.contract
    REQUIRED_BACKEND_PARAMETERS): the 1.2 backend reads the guided-decoding trio without a default,
    so they are always written, "" meaning unset; the 0.13 backend reads none of them."""
    if s.get("contract", "1.2") != "1.2":
        return Raw("")
    values = {"tokenizer_dir": "", "guided_decoding_backend": s.get("guided_decoding_backend", ""),
              "xgrammar_tokenizer_info_path": s.get("xgrammar_tokenizer_info_path", "")}
    return Raw("".join(f'parameters {{ key: "{k}"  value: {{ string_value: {json.dumps(v, ensure_ascii=False)} }} }}\n'
                       for k, v in values.items()))


# Multimodal (GLM-4.1V) repositories. Engine inputs: TensorRT-LLM triton_backend/all_models/
# inflight_batcher_llm/tensorrt_llm/config.pbtxt (prompt_embedding_table: the engine dtype, dims [-1, -1],
# ragged; prompt_table_extra_ids: UINT64 [-1]; prompt_vocab_size: INT32 [1] -> [ ]; mrope_rotary_cos_sin:
# FP32 [-1]; mrope_position_deltas: INT64 [1], no reshape).
_MM_TENSORS = (
    '  { name: "prompt_embedding_table"  data_type: {table}  dims: [ -1, -1 ]  optional: true  allow_ragged_batch: true },\n'
    '  { name: "prompt_table_extra_ids"  data_type: TYPE_UINT64  dims: [ -1 ]  optional: true  allow_ragged_batch: true },\n'
    '  { name: "prompt_vocab_size"  data_type: TYPE_INT32  dims: [ 1 ]  reshape: { shape: [ ] }  optional: true },\n'
    '  { name: "mrope_rotary_cos_sin"  data_type: TYPE_FP32  dims: [ -1 ]  optional: true },\n'
    '  { name: "mrope_position_deltas"  data_type: TYPE_INT64  dims: [ 1 ]  optional: true },\n')
#: preprocessing output -> tensorrt_llm input (also glmtrt.triton.pymodels.preprocessing.MM_OUTPUTS)
MM_WIRING = {"PROMPT_EMBEDDING_TABLE": "prompt_embedding_table", "PROMPT_VOCAB_SIZE": "prompt_vocab_size",
             "PROMPT_TABLE_EXTRA_IDS": "prompt_table_extra_ids", "MROPE_ROTARY_COS_SIN": "mrope_rotary_cos_sin",
             "MROPE_POSITION_DELTAS": "mrope_position_deltas"}
_MM_PRE_OUTPUTS = (
    ',\n  { name: "PROMPT_EMBEDDING_TABLE"  data_type: {table}  dims: [ -1, -1 ] },\n'
    '  { name: "PROMPT_VOCAB_SIZE"  data_type: TYPE_INT32  dims: [ 1 ] },\n'
    '  { name: "PROMPT_TABLE_EXTRA_IDS"  data_type: TYPE_UINT64  dims: [ -1 ] },\n'
    '  { name: "MROPE_ROTARY_COS_SIN"  data_type: TYPE_FP32  dims: [ -1 ] },\n'
    '  { name: "MROPE_POSITION_DELTAS"  data_type: TYPE_INT64  dims: [ 1 ] }')
IMAGES_TENSOR = "images"


def multimodal_fragments(s: dict[str, Any]) -> dict[str, Raw]:
    """Template lines of a multimodal repository (all empty for a text repository)."""
    mm = s.get("multimodal")
    if not mm:
        return {k: Raw("") for k in ("mm_tensors", "images_request", "mm_pre_inputs", "mm_pre_outputs",
                                     "mm_params", "mm_pre_map", "mm_engine_map", "mm_bls_outputs")}
    table = mm["table_type"]
    return {
        "mm_tensors": Raw(_MM_TENSORS.replace("{table}", table)),
        "images_request": Raw(f'  {{ name: "{IMAGES_TENSOR}"  data_type: TYPE_STRING  dims: [ -1 ]  optional: true }},\n'),
        "mm_pre_inputs": Raw(',\n  { name: "IMAGES"  data_type: TYPE_STRING  dims: [ -1 ]  optional: true }'),
        "mm_pre_outputs": Raw(_MM_PRE_OUTPUTS.replace("{table}", table)),
        "mm_params": Raw(f'parameters {{ key: "multimodal_config"  value: {{ string_value: {json.dumps(mm["config"])} }} }}\n'),
        "mm_pre_map": Raw(f'      input_map {{ key: "IMAGES"  value: "{IMAGES_TENSOR}" }}\n'
                          + "".join(f'      output_map {{ key: "{k}"  value: "_{k}" }}\n' for k in MM_WIRING)),
        "mm_bls_outputs": Raw('output [ { name: "image_info"  data_type: TYPE_STRING  dims: [ 1 ] } ]\n'),
        "mm_engine_map": Raw("".join(f'      input_map {{ key: "{v}"  value: "_{k}" }}\n' for k, v in MM_WIRING.items())),
    }
