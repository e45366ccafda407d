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
