"""Unit tests of the pure transforms (TensorRT-LLM 1.2.x tensorrt_llm/models/chatglm/convert.py layouts)."""
import numpy as np
import pytest

from glmtrt.convert import transforms as T
from glmtrt.errors import GlmtrtError


def test_concat_rows():
    a, b = np.ones((2, 3)), np.zeros((1, 3))
    assert T.concat_rows([a, b]).tolist() == [[1] * 3, [1] * 3, [0] * 3]


def test_swap_gate_up_puts_gate_second():
    t = np.arange(4.0)  # gate = [0, 1], up = [2, 3]
    assert T.swap_gate_up(t).tolist() == [2, 3, 0, 1]
    with pytest.raises(GlmtrtError):
        T.swap_gate_up(np.arange(3.0))


def test_split_dim_and_halves():
    t = np.arange(8.0).reshape(8, 1)
    assert T.split_dim(t, 1, 2, 0).reshape(-1).tolist() == [4, 5, 6, 7]
    # halves: [a0 a1 a2 a3 | b0 b1 b2 b3] -> rank 1 gets [a2 a3 b2 b3]
    assert T.split_halves(t, 1, 2).reshape(-1).tolist() == [2, 3, 6, 7]
    with pytest.raises(GlmtrtError, match="not divisible"):
        T.split_dim(np.zeros((3, 2)), 0, 2, 0)


def test_split_qkv_with_kv_tiling():
    # 4 q heads, 1 kv head, head size 1, tp 2: kv head replicated on both ranks
    t = np.array([0.0, 1, 2, 3, 10, 20])  # q0..q3, k0, v0
    r0 = T.split_qkv(t, 0, 2, num_heads=4, num_kv_heads=1, head_size=1)
    r1 = T.split_qkv(t, 1, 2, num_heads=4, num_kv_heads=1, head_size=1)
    assert r0.tolist() == [0, 1, 10, 20] and r1.tolist() == [2, 3, 10, 20]


def test_split_qkv_per_head():
    # 2 q heads, 2 kv heads, head size 2, tp 2
    t = np.arange(12.0)  # q: 0..3, k: 4..7, v: 8..11
    assert T.split_qkv(t, 1, 2, num_heads=2, num_kv_heads=2, head_size=2).tolist() == [2, 3, 6, 7, 10, 11]
    with pytest.raises(GlmtrtError, match="multiple"):
        T.tile_kv_heads(np.zeros((4, 1)), 2, 3)


def test_pad_rows():
    assert T.pad_rows(np.ones((3, 2)), 2).shape == (4, 2)
    assert T.pad_rows(np.ones((4, 2)), 2).shape == (4, 2)
    assert np.abs(T.pad_rows(np.ones((3, 2)), 2)[3]).sum() == 0
