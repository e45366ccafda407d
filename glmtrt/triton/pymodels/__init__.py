"""glmtrt's Triton python models (imported by the `1/model.py` shims of a generated repository).

- `preprocessing`: prompt -> ids (our GLM tokenizers, no trust_remote_code), optional server-side
  chat template, stop/bad words as TensorRT-LLM `[2, L]` lists, end/pad ids from the model.
- `postprocessing`: ids -> text, UTF-8 safe while streaming (per-request detokenizer state).
- `bls`: preprocessing -> tensorrt_llm -> detokenize in one decoupled model.
- `reference_engine`: the CPU stand-in of the `tensorrt_llm` model (NOT for production).

Tensor names/dims follow TensorRT-LLM 1.2.x `triton_backend/all_models/inflight_batcher_llm/*`.
Request parameters we add (no config change needed; Triton forwards them to every ensemble
step): see `glmtrt.triton.pymodels.common.REQUEST_PARAMETERS` and docs/TRITON.md.
"""
