"""A tiny ChatGLM3-style tokenizer trained here, for the demo and the tests.

`make_tiny_chatglm3_tokenizer(out_dir)` trains a SentencePiece BPE model (byte fallback,
identity normalisation, dummy prefix, whitespace kept - the settings of the real ChatGLM3
model) on the bilingual corpus `tiny_corpus.txt` plus sentences made from a few templates.
Training is single-threaded with a fixed seed, so the file is the same on every run (same
sentencepiece version). `load_tokenizer(out_dir)` then gives a ChatGLM3 tokenizer with the 9
specials appended: vocab `TINY_VOCAB_SIZE`, embedding rows `TINY_VOCAB_PADDED`.
"""
from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from importlib import resources
from itertools import product
from pathlib import Path

from glmtrt.errors import GlmtrtError

log = logging.getLogger(__name__)

#: SentencePiece pieces of the tiny model (<unk> <s> </s>, 256 bytes, characters, merges).
TINY_SP_PIECES = 1000
#: + the 9 ChatGLM3 specials.
TINY_VOCAB_SIZE = TINY_SP_PIECES + 9
#: Embedding rows of a tiny model: the vocab padded to a multiple of 64.
PAD_MULTIPLE = 64


def padded_vocab_size(vocab_size: int, multiple: int = PAD_MULTIPLE) -> int:
    """`vocab_size` rounded up to a multiple of `multiple` (embedding / lm_head rows)."""
    if vocab_size <= 0 or multiple <= 0:
        raise GlmtrtError(f"cannot pad vocab {vocab_size} to a multiple of {multiple}", expected="positive ints")
    return -(-vocab_size // multiple) * multiple


TINY_VOCAB_PADDED = padded_vocab_size(TINY_VOCAB_SIZE)  # 1024

_SEED = 1234

_MODELS = ["ChatGLM3-6B", "GLM-4-9B-chat", "AutoGLM-Phone-9B"]
_GPUS = ["T4", "RTX 4090", "A100", "H100"]
_PRECISIONS = [("FP16", "半精度"), ("INT8", "八位整数"), ("INT4", "四位整数"), ("FP8", "八位浮点")]
_TASKS = [
    ("convert the checkpoint", "转换检查点"),
    ("build the engine", "构建引擎"),
    ("start the server", "启动服务器"),
    ("run the benchmark", "运行基准测试"),
]


def corpus_lines() -> list[str]:
    """The training sentences: the embedded corpus then the template sentences."""
    text = resources.files("glmtrt.tokenizer").joinpath("tiny_corpus.txt").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for k, (model, gpu, (prec, prec_zh)) in enumerate(product(_MODELS, _GPUS, _PRECISIONS)):
        n = 20 + 37 * k
        lines.append(f"{model} runs in {prec} on the {gpu} at {n} tokens per second.")
        lines.append(f"{model} 在 {gpu} 上以{prec_zh}（{prec}）运行，每秒生成 {n} 个词元。")
    for (task, task_zh), model in product(_TASKS, _MODELS):
        lines.append(f"First {task} for {model}, then check the logs.")
        lines.append(f"先为 {model} {task_zh}，然后检查日志。")
        lines.append(f"<|user|> Please {task}. <|assistant|> Sure, I will {task} now.")
        lines.append(f"用户：请{task_zh}。助手：好的，我现在就{task_zh}。")
    return lines


def make_tiny_chatglm3_tokenizer(out_dir: str | os.PathLike) -> Path:
    """Train the tiny tokenizer into `out_dir` (tokenizer.model + tokenizer_config.json,
    no auto_map) and return `out_dir`. Deterministic; takes about a second."""
    import sentencepiece as spm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.set_random_generator_seed(_SEED)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_lines()),
        model_writer=model,
        model_type="bpe",
        vocab_size=TINY_SP_PIECES,
        character_coverage=0.98,  # rare characters go to byte fallback, as on the real model
        byte_fallback=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        split_digits=True,
        num_threads=1,
        shuffle_input_sentence=False,
        input_sentence_size=0,
        minloglevel=2,
    )
    data = model.getvalue()
    if not data:  # pragma: no cover - trainer failure surfaces as an exception
        raise GlmtrtError("sentencepiece training produced no model", expected="a tokenizer.model")
    cfg = {
        "name_or_path": "glmtrt/tiny-chatglm3",
        "tokenizer_class": "ChatGLMTokenizer",
        "remove_space": False,
        "do_lower_case": False,
        "padding_side": "left",
        "glmtrt_note": "tiny tokenizer trained by glmtrt.tokenizer.tiny for demos and tests",
    }
    _write_bytes(out / "tokenizer.model", data)
    _write_bytes(out / "tokenizer_config.json", (json.dumps(cfg, ensure_ascii=False, indent=2) + "\n").encode())
    log.info("wrote tiny ChatGLM3 tokenizer (%d pieces) to %s", TINY_SP_PIECES, out)
    return out


def tiny_vocab_padded(out_dir: str | os.PathLike | None = None) -> int:
    """Embedding rows of a tiny model; checks the trained file when `out_dir` is given."""
    if out_dir is not None:
        from glmtrt.tokenizer.loader import load_tokenizer

        n = load_tokenizer(out_dir).vocab_size
        if n != TINY_VOCAB_SIZE:
            raise GlmtrtError(
                f"tiny tokenizer in {out_dir} has vocab {n}",
                expected=f"{TINY_VOCAB_SIZE}",
                fix="re-create it with make_tiny_chatglm3_tokenizer",
            )
        return padded_vocab_size(n)
    return TINY_VOCAB_PADDED


def _write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
