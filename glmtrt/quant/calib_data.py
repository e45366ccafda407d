"""Calibration data: texts or token ids -> a deterministic [samples, seq_len] id tensor.

Sources: `--calib-data FILE` (.jsonl: one object per line with "text" or "input_ids"; .txt: one
document per non-empty line), `--calib-dataset NAME` (the `datasets` library, online only,
column "text"), or the built-in bilingual prompt set `calib_prompts.txt` (written for glmtrt).

Samples are built by concatenating documents in a seeded random order and cutting the token
stream into seq_len pieces. A user's data must hold samples x seq_len tokens (nothing is
repeated); the small built-in set is re-shuffled for every sample instead.
"""
from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence, Union

from glmtrt.errors import GlmtrtError

log = logging.getLogger(__name__)

Document = Union[str, list]
BUILTIN = "builtin"


def builtin_prompts() -> list[str]:
    """The built-in Chinese + English calibration prompts (one per line)."""
    text = resources.files("glmtrt.quant").joinpath("calib_prompts.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def read_calib_file(path: str | Path) -> list[Document]:
    """Documents of a .jsonl / .txt calibration file; clear errors for missing, empty, non-UTF-8 input."""
    p = Path(path)
    if not p.is_file():
        raise GlmtrtError(f"calibration file {p} does not exist", expected="a .jsonl or .txt file")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GlmtrtError(f"calibration file {p} is not UTF-8 (byte {exc.start})",
                          expected="UTF-8 text", fix="re-encode it, e.g. iconv -f GBK -t UTF-8") from None
    docs: list[Document] = []
    if p.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise GlmtrtError(f"{p} line {n} is not JSON ({exc.msg})",
                                  expected='one object per line: {"text": "..."} or {"input_ids": [...]}') from None
            if isinstance(obj, dict) and isinstance(obj.get("text"), str):
                docs.append(obj["text"])
            elif isinstance(obj, dict) and isinstance(obj.get("input_ids"), list) and \
                    all(isinstance(i, int) for i in obj["input_ids"]):
                docs.append(list(obj["input_ids"]))
            else:
                raise GlmtrtError(f"{p} line {n} has neither a 'text' string nor an 'input_ids' int list",
                                  expected='{"text": "..."} or {"input_ids": [1, 2, ...]}')
    elif p.suffix == ".txt":
        docs = [line for line in text.splitlines() if line.strip()]
    else:
        raise GlmtrtError(f"calibration file {p} has suffix {p.suffix!r}", expected=".jsonl or .txt")
    docs = [d for d in docs if len(d) > 0 and (not isinstance(d, str) or d.strip())]
    if not docs:
        raise GlmtrtError(f"calibration file {p} holds no documents", expected="at least one non-empty line")
    return docs


def load_dataset_texts(name: str, split: str = "train", limit: int = 4096) -> list[str]:
    """Texts of a Hugging Face dataset through `datasets` (needs the library and network access)."""
    try:
        import datasets
    except ImportError:
        raise GlmtrtError(f"--calib-dataset {name} needs the `datasets` library",
                          expected="pip install datasets (and network access)",
                          fix="or pass --calib-data FILE / use the built-in prompts") from None
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # offline, unknown name, ...: one paragraph, no traceback
        raise GlmtrtError(f"could not load dataset {name!r} split {split!r}: {type(exc).__name__}: {exc}",
                          expected="a dataset reachable through `datasets.load_dataset`",
                          fix="use --calib-data FILE when offline") from None
    if "text" not in ds.column_names:
        raise GlmtrtError(f"dataset {name} has columns {ds.column_names}", expected="a 'text' column")
    return [t for t in ds["text"][:limit] if isinstance(t, str) and t.strip()]


def calibration_ids(docs: Sequence[Document], encode: Callable[[str], list[int]] | None, *, num_samples: int,
                    seq_len: int, seed: int, vocab_size: int, reuse: bool = False):
    """[num_samples, seq_len] int64 ids: documents in a seeded order, concatenated and cut.

    reuse=False (user data): the data must hold num_samples * seq_len tokens.
    reuse=True (built-in set): every sample re-shuffles all documents (needs >= seq_len tokens).
    """
    import torch

    if num_samples < 1 or seq_len < 1:
        raise GlmtrtError(f"--calib-samples {num_samples} --calib-seq-len {seq_len}", expected="both >= 1")
    encoded = []
    for d in docs:
        if isinstance(d, str):
            if encode is None:
                raise GlmtrtError("text calibration data needs the model's tokenizer (tokenizer.model)",
                                  expected="a tokenizer.model in the model folder",
                                  fix='or pass --calib-data with {"input_ids": [...]} lines')
            d = encode(d)
        encoded.append([int(i) for i in d])
    bad = [i for ids in encoded for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise GlmtrtError(f"calibration token id {bad[0]} is outside the vocabulary", expected=f"ids in [0, {vocab_size})")
    total = sum(len(e) for e in encoded)
    need = seq_len if reuse else num_samples * seq_len
    if total < need:
        raise GlmtrtError(f"the calibration data has {total} tokens, fewer than the {need} asked "
                          f"({num_samples} samples x {seq_len} tokens)",
                          expected=f"at least {need} tokens",
                          fix="pass more data, or lower --calib-samples / --calib-seq-len")
    g = torch.Generator().manual_seed(int(seed))
    rows = []
    if reuse:
        for _ in range(num_samples):
            order = torch.randperm(len(encoded), generator=g).tolist()
            stream = [t for k in order for t in encoded[k]]
            rows.append(stream[:seq_len])
    else:
        order = torch.randperm(len(encoded), generator=g).tolist()
        stream = [t for k in order for t in encoded[k]]
        rows = [stream[k * seq_len:(k + 1) * seq_len] for k in range(num_samples)]
    return torch.tensor(rows, dtype=torch.long)


def resolve_calibration(model_dir: str | Path, *, calib_data: str | Path | None, calib_dataset: str | None,
                        num_samples: int, seq_len: int, seed: int, vocab_size: int):
    """The calibration id tensor for a model folder (its tokenizer encodes the texts)."""
    if calib_data and calib_dataset:
        raise GlmtrtError("both --calib-data and --calib-dataset given", expected="one calibration source")
    if calib_data:
        docs, reuse, what = read_calib_file(calib_data), False, str(calib_data)
    elif calib_dataset:
        docs, reuse, what = load_dataset_texts(calib_dataset), False, f"dataset {calib_dataset}"
    else:
        docs, reuse, what = builtin_prompts(), True, "the built-in bilingual prompts"
    encode = None
    if any(isinstance(d, str) for d in docs):
        from glmtrt.tokenizer import load_tokenizer

        encode = load_tokenizer(model_dir).encode
    ids = calibration_ids(docs, encode, num_samples=num_samples, seq_len=seq_len, seed=seed,
                          vocab_size=vocab_size, reuse=reuse)
    log.info("calibration: %d samples x %d tokens from %s (seed %d)", num_samples, seq_len, what, seed)
    return ids
