"""Our TensorRT-LLM engine model class for GLM-4.1V (model.py; imported only inside the GPU container).

`trtllm-build --model_cls_file <this folder>/model.py --model_cls_name Glm4vForCausalLM` loads it
(tensorrt_llm/commands/build.py main(): SourceFileLoader('models', file), getattr(mod, name)), so
model.py imports only tensorrt_llm and never glmtrt.
"""
from pathlib import Path

MODEL_FILE = Path(__file__).with_name("model.py")
MODEL_CLASS = "Glm4vForCausalLM"
