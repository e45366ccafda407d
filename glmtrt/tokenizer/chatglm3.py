"""ChatGLM3 tokenizer: a SentencePiece model plus 9 special tokens appended after it.

Facts from THUDM/chatglm3-6b `tokenization_chatglm.py` (SPTokenizer, ChatGLMTokenizer):
- specials are not pieces of the SentencePiece model; their ids are n_pieces + k in the
  order `[MASK] [gMASK] [sMASK] sop eop <|system|> <|user|> <|assistant|> <|observation|>`;
- eos is the model's `</s>` (2), pad is `<unk>` (0); prompts start with `[gMASK] sop`;
- `build_single_message(role, metadata, message)` = `<|role|>` + encode(f"{metadata}\\n")
  + encode(message), each encode run separately through `sp.encode`, so each gets its own
  dummy-prefix "▁" (encode("\\n") is [30910 "▁", 13 "<0x0A>"] on the real model);
- a system message carrying `tools` gets "\\n" + json.dumps(tools, indent=4,
  ensure_ascii=False) appended to its content (`build_chat_input`);
- generation stops at eos and `<|user|>` (`chat()`), and `<|observation|>` for tool calls.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from glmtrt.errors import GlmtrtError
from glmtrt.tokenizer.base import GLMTokenizer

SPECIAL_TOKENS = (
    "[MASK]", "[gMASK]", "[sMASK]", "sop", "eop",
    "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>",
)
# `sop` / `eop` are ordinary English letters ("desktop"): never recognised inside text.
_TEXT_SPECIALS = [t for t in SPECIAL_TOKENS if t not in ("sop", "eop")]
_SPECIAL_RE = re.compile("|".join(re.escape(t) for t in _TEXT_SPECIALS))

_SPACE = "\u2581"  # SentencePiece whitespace symbol
# piece kinds
_NORMAL, _BYTE, _CONTROL = 0, 1, 2


class ChatGLM3Tokenizer(GLMTokenizer):
    """ChatGLM3-6B tokenizer (SentencePiece, byte fallback) without remote code."""

    name = "chatglm3"

    def __init__(
        self,
        model_file: Path,
        sp_model: Any,
        *,
        tokenizer_config: Mapping[str, Any] | None = None,
        extra_eos_ids: Iterable[int] = (),
        generation_config_file: Path | None = None,
    ):
        self.sp = sp_model
        n = sp_model.get_piece_size()
        eos = sp_model.eos_id()
        unk = sp_model.unk_id()
        if eos < 0 or unk < 0:
            raise GlmtrtError(
                f"SentencePiece model {model_file} has no eos or unk piece (eos={eos}, unk={unk})",
                expected="a ChatGLM3-style model with <unk> 0, <s> 1, </s> 2",
            )
        super().__init__(
            model_file,
            base_vocab_size=n,
            special_names=SPECIAL_TOKENS,
            eos_id=eos,
            pad_id=unk,
            sop_name="sop",
            tokenizer_config=tokenizer_config,
            extra_eos_ids=extra_eos_ids,
            generation_config_file=generation_config_file,
        )
        # The SentencePiece control/unknown pieces (<unk>, <s>, </s>) behave like special
        # tokens when decoding (upstream convert_id_to_token maps eos/bos/pad to "").
        self._control_text: dict[int, str] = {}
        kinds: list[int] = []
        table: list[bytes] = []
        for i in range(n):
            piece = sp_model.id_to_piece(i)
            if sp_model.is_byte(i):
                kinds.append(_BYTE)
                table.append(bytes([int(piece[3:5], 16)]))  # "<0xE4>"
            elif sp_model.is_control(i) or sp_model.is_unknown(i) or sp_model.is_unused(i):
                kinds.append(_CONTROL)
                table.append(piece.encode("utf-8"))
                self._control_text[i] = piece
            else:
                kinds.append(_NORMAL)
                table.append(piece.replace(_SPACE, " ").encode("utf-8"))
        self._kinds = kinds
        self._table = table

    # ---- encoding ---------------------------------------------------------------------
    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        """SentencePiece ids of `text` (dummy prefix "▁" included, as upstream `sp.encode`).

        With `allow_special=True`, `[MASK] [gMASK] [sMASK] <|system|> <|user|> <|assistant|>
        <|observation|>` inside `text` become their ids and the text between them is encoded
        piece by piece (upstream `tokenize(encode_special_tokens=True)`); the bare words
        `sop` / `eop` are never recognised inside text.
        """
        if not isinstance(text, str):
            raise GlmtrtError(f"can only encode str, got {type(text).__name__}", expected="str")
        if not allow_special:
            return list(self.sp.encode(text)) if text else []
        ids: list[int] = []
        last = 0
        for m in _SPECIAL_RE.finditer(text):
            if m.start() > last:
                ids.extend(self.sp.encode(text[last:m.start()]))
            ids.append(self.special_tokens[m.group(0)])
            last = m.end()
        if last < len(text):
            ids.extend(self.sp.encode(text[last:]))
        return ids

    def _message_ids(self, role: str, metadata: str, content: str) -> list[int]:
        ids = [self.special_tokens[f"<|{role}|>"]]
        ids.extend(self.encode(f"{metadata}\n"))
        ids.extend(self.encode(content))
        return ids

    def _with_tools(self, n: int, role: str, content: str, tools: Any) -> str:
        if role != "system":
            return super()._with_tools(n, role, content, tools)
        return content + "\n" + json.dumps(tools, indent=4, ensure_ascii=False)

    # ---- decoding ---------------------------------------------------------------------
    def piece_bytes(self, token_id: int, *, at_start: bool, skip_special_tokens: bool) -> tuple[bytes, bool]:
        """Bytes of one id. Mirrors SentencePiece's decoder: byte pieces give their byte,
        normal pieces their text with "▁" -> " ", and the first text-producing piece of a
        sequence loses one leading "▁" (the dummy prefix). Control pieces and the appended
        specials give nothing, or their text when `skip_special_tokens=False`."""
        i = self._check_id(token_id)
        if i >= self.base_vocab_size:
            if i < self.vocab_size and not skip_special_tokens:
                return self._special_by_id[i].encode("utf-8"), False
            return b"", at_start
        kind = self._kinds[i]
        if kind == _NORMAL:
            b = self._table[i]
            if at_start and b[:1] == b" ":
                b = b[1:]
            return b, False
        if kind == _BYTE:
            return self._table[i], False
        if skip_special_tokens:
            return b"", at_start
        return self._table[i], False

    def is_special(self, token_id: int) -> bool:
        i = int(token_id)
        return i in self._special_by_id or i in self._control_text

    def _base_token_text(self, i: int) -> str:
        """The piece text ("▁Hello", "<0xE4>")."""
        return self.sp.id_to_piece(i)
