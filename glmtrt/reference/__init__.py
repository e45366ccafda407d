"""Reference executor: the numerical model of the TensorRT-LLM engine (CPU or CUDA).

`ReferenceModel.from_checkpoint(dir)` loads a TensorRT-LLM chatglm checkpoint (any tp_size);
`glmtrt.reference.verify.verify_checkpoint` compares it with transformers' GlmForCausalLM.
Heavy imports (torch) happen inside the submodules' functions.
"""
from __future__ import annotations

__all__ = ["ReferenceModel"]


def __getattr__(name):
    if name == "ReferenceModel":
        from glmtrt.reference.model import ReferenceModel

        return ReferenceModel
    raise AttributeError(name)
