"""Pinned trtllm-build flag lists per TensorRT-LLM line; read with glmtrt.build.flags.load_flags."""
