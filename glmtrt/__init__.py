"""glmtrt: GLM-family checkpoints to TensorRT-LLM engines and a streaming Triton service.

Stages (each a subpackage, data flowing one way through files with manifests):
convert -> build -> triton -> client.
"""

__version__ = "0.1.0"

# The TensorRT-LLM release whose checkpoint format, trtllm-build flags and Triton
# tensor contract glmtrt targets (the last release with the engine path).
TRTLLM_TARGET_VERSION = "1.2.0"
