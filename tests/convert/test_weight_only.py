"""Weight-only quantization numerics (cutlass_preprocessors.cpp `symmetric_quantize` of TensorRT-LLM)."""
import torch

from glmtrt.quant.weight_only import fake_quantize, is_quantized_weight, quantize


def test_int8_and_int4_by_hand():
    w = torch.tensor([[1.0, -0.5, 0.25, 0.126, 0.0]])
    q8, s8 = quantize(w, 8)
    assert s8.tolist() == [1 / 128]
    assert q8.tolist() == [[127, -64, 32, 16, 0]]          # 128 clips to 127
    assert fake_quantize(w, 8).tolist() == [[127 / 128, -0.5, 0.25, 0.125, 0.0]]
    q4, s4 = quantize(w, 4)
    assert s4.tolist() == [1 / 8] and q4.tolist() == [[7, -4, 2, 1, 0]]


def test_round_half_away_and_zero_rows():
    w = torch.tensor([[1.0, 3 / 16, -3 / 16], [0.0, 0.0, 0.0]])   # 3/16 / (1/8) = 1.5 -> 2 (not 2 by even? both 2)
    q, s = quantize(w, 4)
    assert q.tolist() == [[7, 2, -2], [0, 0, 0]] and s.tolist() == [1 / 8, 0.0]
    w = torch.tensor([[1.0, 5 / 16]])   # 2.5 -> 3 (round half to even would give 2)
    assert quantize(w, 4)[0].tolist() == [[7, 3]]


def test_scale_in_weight_dtype():
    w = (torch.randn(8, 32, generator=torch.Generator().manual_seed(0)) * 0.1).half()
    deq = fake_quantize(w, 8)
    assert deq.dtype == torch.float16
    assert (deq.float() - w.float()).abs().max() <= w.float().abs().max() / 128 * 1.01


def test_which_weights():
    assert is_quantized_weight("transformer.layers.0.attention.qkv.weight")
    assert is_quantized_weight("transformer.layers.0.attention.dense.weight")
    assert is_quantized_weight("transformer.layers.3.mlp.fc.weight")
    assert not is_quantized_weight("lm_head.weight")
    assert not is_quantized_weight("transformer.vocab_embedding.weight")
    assert not is_quantized_weight("transformer.layers.0.attention.qkv.bias")


def test_reference_serves_and_verifies_weight_only(tmp_path):
    """A W8A16 / W4A16 checkpoint runs in the reference (quantized per rank like the engine) and
    passes verify with the weight-only tolerance; a wrong conversion still fails."""
    from safetensors.torch import load_file, save_file

    from glmtrt.convert.pipeline import convert_checkpoint
    from glmtrt.models.chatglm.tiny import make_tiny_checkpoint
    from glmtrt.reference.model import ReferenceModel
    from glmtrt.reference.verify import verify_checkpoint

    src = make_tiny_checkpoint(tmp_path / "hf", seed=1)
    plain = ReferenceModel.from_checkpoint(
        convert_checkpoint(src, tmp_path / "fp16", dtype="float16", progress=False), dtype="auto")
    ids = torch.tensor([[5, 17, 42, 9]])
    base = plain.forward(ids)[0]
    for quant, key in (("int8-wo", "int8-wo"), ("int4-wo", "int4-wo")):
        ckpt = convert_checkpoint(src, tmp_path / quant, dtype="float16", quant=quant, tp_size=2, progress=False)
        logits = ReferenceModel.from_checkpoint(ckpt, dtype="auto").forward(ids)[0]
        assert not torch.equal(logits, base)           # the quantization is really applied
        report = verify_checkpoint(ckpt, src)
        assert report.passed and report.tolerance_key == key
    w = load_file(str(ckpt / "rank1.safetensors"))
    w["transformer.layers.1.mlp.fc.weight"] = torch.cat(w["transformer.layers.1.mlp.fc.weight"].chunk(2)[::-1])
    save_file({k: v.contiguous() for k, v in w.items()}, str(ckpt / "rank1.safetensors"))
    assert not verify_checkpoint(ckpt, src).passed
