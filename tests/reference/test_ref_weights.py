"""Merging TP shards undoes glmtrt.convert's splits (TensorRT-LLM chatglm/convert.py layout)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from glmtrt.convert import transforms as _T
from glmtrt.errors import GlmtrtError
from glmtrt.reference.weights import load_merged_weights, merge_fc, merge_qkv, read_checkpoint_config


class T:
    """The converter's numpy transforms on torch tensors (the merges under test take torch)."""

    @staticmethod
    def split_qkv(t, *args, **kw):
        return torch.from_numpy(np.ascontiguousarray(_T.split_qkv(t.numpy(), *args, **kw)))

    @staticmethod
    def split_halves(t, *args):
        return torch.from_numpy(np.ascontiguousarray(_T.split_halves(t.numpy(), *args)))


@pytest.mark.parametrize("heads,kv,tp", [(4, 2, 1), (4, 2, 2), (4, 2, 4), (8, 1, 4), (8, 4, 2), (4, 4, 4)])
@pytest.mark.parametrize("bias", [False, True])
def test_merge_qkv_inverts_split_qkv(heads, kv, tp, bias):
    hd, hidden = 8, 16
    rows = (heads + 2 * kv) * hd
    full = torch.randn(rows) if bias else torch.randn(rows, hidden)
    shards = [T.split_qkv(full, r, tp, num_heads=heads, num_kv_heads=kv, head_size=hd) for r in range(tp)]
    assert torch.equal(merge_qkv(shards, heads, kv, hd), full)


def test_merge_qkv_rejects_inconsistent_kv_replicas():
    heads, kv, hd, tp = 4, 1, 8, 2
    full = torch.randn((heads + 2 * kv) * hd, 16)
    shards = [T.split_qkv(full, r, tp, num_heads=heads, num_kv_heads=kv, head_size=hd) for r in range(tp)]
    shards[1] = shards[1].clone()
    shards[1][-1, 0] += 1.0
    with pytest.raises(GlmtrtError, match="replicated kv head"):
        merge_qkv(shards, heads, kv, hd)


@pytest.mark.parametrize("tp", [1, 2, 3])
def test_merge_fc_inverts_split_halves(tp):
    full = torch.randn(2 * 12, 5)
    assert torch.equal(merge_fc([T.split_halves(full, r, tp) for r in range(tp)]), full)


def test_merged_checkpoint_equals_tp1(tiny):
    _, one = load_merged_weights(tiny.checkpoint(tp=1))
    cfg, two = load_merged_weights(tiny.checkpoint(tp=2))
    assert cfg["mapping"]["tp_size"] == 2 and one.keys() == two.keys()
    for name in one:
        assert torch.equal(one[name], two[name]), name


def test_dtype_conversion_on_load(tiny):
    _, w = load_merged_weights(tiny.checkpoint(dtype="bfloat16"), dtype="float32")
    assert {t.dtype for t in w.values()} == {torch.float32}


def _copy_ckpt(src, dst, **config_changes):
    dst.mkdir()
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(config_changes)
    (dst / "config.json").write_text(json.dumps(cfg))
    for f in src.glob("rank*.safetensors"):
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_bad_checkpoints_are_refused(tiny, tmp_path):
    src = tiny.checkpoint(tp=2)
    with pytest.raises(GlmtrtError, match="no config.json"):
        read_checkpoint_config(tmp_path)
    pp = _copy_ckpt(src, tmp_path / "pp", mapping={"tp_size": 1, "pp_size": 2, "world_size": 2})
    with pytest.raises(GlmtrtError, match="pp_size"):
        read_checkpoint_config(pp)
    quant = _copy_ckpt(src, tmp_path / "q", quantization={"quant_algo": "W8A8_SQ_PER_CHANNEL"})
    with pytest.raises(GlmtrtError, match="quantized"):
        read_checkpoint_config(quant)
    missing = _copy_ckpt(src, tmp_path / "m")
    (missing / "rank1.safetensors").unlink()
    with pytest.raises(GlmtrtError, match="rank1.safetensors"):
        load_merged_weights(missing)
