"""Package data: glmtrt's own Triton config.pbtxt templates (strict `${name}` placeholders).

Facts (tensor names, data types, dims, parameter keys) follow TensorRT-LLM 1.2.x
`triton_backend/all_models/inflight_batcher_llm/*/config.pbtxt`; the text is ours.
"""
