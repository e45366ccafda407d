"""GPU: build a tiny GLM-4.1V engine with our engine class and compare it with transformers.

Runs with `pytest -m gpu` where TensorRT-LLM 1.2 and a CUDA GPU are present (the rtx4090 profile's
container); skipped elsewhere. The engine gets the image features as a prompt table (ids >= vocab)
and the M-RoPE table / deltas computed by glmtrt.models.glm4v.positions, as in TensorRT-LLM 1.2
examples/models/core/multimodal (Qwen2-VL: prompt_table + mrope_params to ModelRunner.generate).
"""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

trtllm = pytest.importorskip("tensorrt_llm", reason="TensorRT-LLM is not installed (GPU suite)")
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU", allow_module_level=True)


def _tiny(path):
    from transformers import Glm4vConfig, Glm4vForConditionalGeneration

    torch.manual_seed(0)
    cfg = Glm4vConfig(
        text_config=dict(vocab_size=256, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                          "partial_rotary_factor": 0.5, "mrope_section": [4, 6, 6]}),
        vision_config=dict(depth=2, hidden_size=64, num_heads=2, out_hidden_size=256, intermediate_size=128,
                           image_size=56, patch_size=14),
        image_token_id=250, image_start_token_id=251, image_end_token_id=252, video_token_id=253,
        video_start_token_id=254, video_end_token_id=255)
    model = Glm4vForConditionalGeneration(cfg).eval()
    model.save_pretrained(path)
    return model


def _mrope_params(positions, delta, cfg):
    from glmtrt.models.glm4v.positions import mrope_table

    try:
        from tensorrt_llm.runtime import MropeParams
    except ImportError:
        from tensorrt_llm.layers.attention import MropeParams
    table = mrope_table(positions, cfg["rotary_embedding_dim"], cfg["rotary_base"], cfg["mrope_section"],
                        cfg["max_position_embeddings"])
    return MropeParams(mrope_rotary_cos_sin=table[None].cuda(),
                       mrope_position_deltas=torch.tensor([[delta]], dtype=torch.int32).cuda())


def test_glm4v_engine_matches_transformers(tmp_path):
    import json

    from PIL import Image
    from tensorrt_llm.runtime import ModelRunner

    from glmtrt.build.engine import prepare_build, run_build
    from glmtrt.build.planner import Workload
    from glmtrt.convert.pipeline import convert_checkpoint
    from glmtrt.models.glm4v.positions import expand_image_tokens
    from glmtrt.models.glm4v.preprocess import preprocess_image
    from glmtrt.reference.glm4v import Glm4vReference

    hf = _tiny(tmp_path / "hf")
    ckpt = convert_checkpoint(tmp_path / "hf", tmp_path / "ckpt", dtype="float16", progress=False)
    job = prepare_build(ckpt, tmp_path / "engine", "rtx4090", max_multimodal_len=64,
                        workload=Workload(max_batch_size=1, max_seq_len=256, gather_context_logits=True),
                        timing_cache_dir=tmp_path / "tc")
    assert "--model_cls_file" in job.command
    engine = run_build(job, log_dir=tmp_path / "logs")
    cfg = json.loads((ckpt / "llm" / "config.json").read_text())

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (84, 112, 3), dtype=np.uint8))
    ref = Glm4vReference.from_checkpoint(ckpt)
    ids = [1, 5, 251, 250, 252, 9, 11, 12]
    prompt = ref.prepare(ids, [img])
    inp = preprocess_image(img)
    full, types = expand_image_tokens(ids, [inp.grid_thw], 250)
    with torch.no_grad():
        want = hf(input_ids=torch.tensor([full]), pixel_values=torch.tensor(inp.patches),
                  image_grid_thw=torch.tensor([inp.grid_thw]), mm_token_type_ids=torch.tensor([types])).logits[0]
        greedy = hf.generate(input_ids=torch.tensor([full]), pixel_values=torch.tensor(inp.patches),
                             image_grid_thw=torch.tensor([inp.grid_thw]), mm_token_type_ids=torch.tensor([types]),
                             max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0)
    runner = ModelRunner.from_dir(engine_dir=str(engine), rank=0)
    out = runner.generate([torch.tensor(prompt.input_ids, dtype=torch.int32)], max_new_tokens=8, end_id=-1,
                          pad_id=0, top_k=1, prompt_table=prompt.prompt_table.half()[None].cuda(),
                          prompt_tasks="0", mrope_params=_mrope_params(prompt.positions, prompt.rope_delta, cfg),
                          output_generation_logits=False, return_dict=True)
    ctx = out["context_logits"][0].float().cpu()[: len(full)]
    assert (ctx - want).abs().max().item() <= 0.05             # fp16 engine vs fp32 transformers
    tokens = out["output_ids"][0, 0, len(full):len(full) + 8].tolist()
    assert tokens[:4] == greedy[0, len(full):len(full) + 4].tolist()
