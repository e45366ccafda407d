"""Benchmark datasets: what each request asks.

- `synthetic`: prompts of an exact input length in tokens (our tokenizer: the text re-encodes to
  exactly that many ids), output lengths forced through `min_tokens` = `max_tokens`; lengths are
  drawn from normal distributions (mean, stddev) with `--seed`.
- `builtin-zh-en`: glmtrt's bilingual prompt set (prompts_zh_en.json, written for this project).
- `builtin-multiturn`: its multi-turn conversations (each turn is sent with the model's own answers).
- a ShareGPT-style file (`.json` list or `.jsonl` lines of {"conversations": [{"from": "human"|"gpt",
  "value": ...}]}): the first human turn is the prompt, the first gpt turn's length (our tokenizer)
  the max_tokens when `--max-tokens` is not given; `--multi-turn` sends every human turn.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from glmtrt.errors import GlmtrtError

BUILTIN = ("builtin-zh-en", "builtin-multiturn", "synthetic")
# words the synthetic prompts are made of (bilingual, so both tokenizer halves are exercised)
_POOL = ("the model streams tokens to every user while the server batches requests in flight "
         "latency throughput cache engine layer prompt answer question river mountain city data "
         "模型 服务 流式 输出 请求 延迟 吞吐 缓存 长江 城市 数据 问题 回答 今天 学习 计算").split()


@dataclass
class Item:
    """One conversation to send: `turns` user texts (one for single-turn datasets)."""

    id: str
    turns: list[str]
    max_tokens: int
    min_tokens: int | None = None
    chat: bool = True
    input_tokens: list[int | None] = field(default_factory=list)


def builtin_prompts() -> dict:
    """The built-in bilingual prompt set as stored (prompts + conversations)."""
    return json.loads(resources.files("glmtrt.client").joinpath("prompts_zh_en.json").read_text("utf-8"))


def exact_length_text(tok, n: int, rng: np.random.Generator, *, max_tries: int = 64) -> str:
    """Text that our tokenizer encodes to exactly `n` ids (no special tokens)."""
    if n < 1:
        raise GlmtrtError(f"synthetic input length {n} tokens", expected=">= 1")
    for _ in range(max_tries):
        words = list(rng.choice(_POOL, size=n + 8))
        ids = tok.encode(" ".join(words))
        while len(ids) < n + 8:
            words += list(rng.choice(_POOL, size=n))
            ids = tok.encode(" ".join(words))
        # decoding a prefix and re-encoding can merge or split pieces at the cut: search near n
        for cut in sorted(range(max(1, n - 6), n + 7), key=lambda c: abs(c - n)):
            text = tok.decode(ids[:cut]).strip()
            if text and len(tok.encode(text)) == n:
                return text
    raise GlmtrtError(f"could not make a prompt of exactly {n} tokens with this tokenizer")


def _lengths(rng, mean: int, std: float, count: int, lo: int = 1) -> list[int]:
    if std <= 0:
        return [mean] * count
    return [max(lo, int(round(x))) for x in rng.normal(mean, std, size=count)]


def synthetic(tok, *, count: int, input_tokens: int, output_tokens: int, input_std: float = 0.0,
              output_std: float = 0.0, seed: int = 0) -> list[Item]:
    """`count` raw-text prompts of exact token lengths with forced output lengths."""
    if tok is None:
        raise GlmtrtError("the synthetic dataset needs a tokenizer for exact lengths",
                          fix="pass --tokenizer DIR (the served model's tokenizer)")
    rng = np.random.default_rng(seed)
    ins = _lengths(rng, input_tokens, input_std, count)
    outs = _lengths(rng, output_tokens, output_std, count)
    return [Item(id=f"syn-{i:05d}", turns=[exact_length_text(tok, n, rng)], max_tokens=o, min_tokens=o,
                 chat=False, input_tokens=[n]) for i, (n, o) in enumerate(zip(ins, outs))]


def _read_sharegpt(path: Path) -> list[dict]:
    text = path.read_text("utf-8")
    try:
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GlmtrtError(f"{path}: not JSON / JSON lines: {exc}",
                          expected='ShareGPT rows {"conversations": [{"from": "human", "value": ...}, ...]}') from None
    if not isinstance(rows, list):
        raise GlmtrtError(f"{path}: expected a list of conversations")
    return rows


def sharegpt(path: Path, tok, *, multi_turn: bool = False, max_tokens: int | None = None,
             default_max_tokens: int = 256) -> list[Item]:
    """Items from a ShareGPT-style file (see the module docstring)."""
    items = []
    for n, row in enumerate(_read_sharegpt(Path(path))):
        conv = row.get("conversations") or row.get("conversation") or row.get("messages") or []
        human = [str(t.get("value", t.get("content", ""))) for t in conv
                 if t.get("from", t.get("role")) in ("human", "user")]
        gpt = [str(t.get("value", t.get("content", ""))) for t in conv
               if t.get("from", t.get("role")) in ("gpt", "assistant")]
        human = [h for h in human if h.strip()]
        if not human:
            continue
        mt = max_tokens
        if mt is None:
            mt = max(1, len(tok.encode(gpt[0]))) if (gpt and tok is not None) else default_max_tokens
        items.append(Item(id=str(row.get("id", f"sharegpt-{n:05d}")), turns=human if multi_turn else human[:1],
                          max_tokens=mt))
    if not items:
        raise GlmtrtError(f"{path}: no conversation with a human turn")
    return items


def builtin(name: str, *, max_tokens: int) -> list[Item]:
    """The built-in prompt set (`builtin-zh-en`) or its conversations (`builtin-multiturn`)."""
    data = builtin_prompts()
    if name == "builtin-zh-en":
        return [Item(id=p["id"], turns=[p["text"]], max_tokens=max_tokens) for p in data["prompts"]]
    return [Item(id=c["id"], turns=list(c["turns"]), max_tokens=max_tokens) for c in data["conversations"]]


def load_dataset(name: str, *, tok=None, count: int | None = None, max_tokens: int | None = None,
                 input_tokens: int = 128, output_tokens: int = 128, input_std: float = 0.0,
                 output_std: float = 0.0, multi_turn: bool = False, seed: int = 0) -> list[Item]:
    """Items for `name` (a built-in name or a ShareGPT file path), cycled/trimmed to `count` when given."""
    if name == "synthetic":
        return synthetic(tok, count=count or 100, input_tokens=input_tokens, output_tokens=output_tokens,
                         input_std=input_std, output_std=output_std, seed=seed)
    if name in BUILTIN:
        items = builtin(name, max_tokens=max_tokens or 256)
    else:
        path = Path(name)
        if not path.is_file():
            raise GlmtrtError(f"dataset {name!r}: not a built-in name and not a file",
                              expected=f"one of {', '.join(BUILTIN)} or a ShareGPT .json/.jsonl file")
        items = sharegpt(path, tok, multi_turn=multi_turn, max_tokens=max_tokens)
    if count is not None and items:
        rng = np.random.default_rng(seed)
        order = list(rng.permutation(len(items))) if count < len(items) else list(range(len(items)))
        items = [items[order[i % len(order)]] for i in range(count)]
    return items
