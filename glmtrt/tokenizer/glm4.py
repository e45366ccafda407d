"""GLM-4 tokenizer: tiktoken byte-level BPE ranks plus 14 special tokens appended after them.

Facts from THUDM/glm-4-9b-chat `tokenization_chatglm.py` (ChatGLM4Tokenizer):
- tokenizer.model is text, one "base64(token bytes) rank" per line; specials get ids
  len(ranks) + k in the order of `SPECIAL_TOKENS` below (151329.. on the real file);
- the pre-tokenizer is the cl100k-like pattern `PAT_STR`;
- user text is encoded with `disallowed_special=()`: special-token text is ordinary text.
Chat format from the `chat_template` of glm-4-9b-chat's tokenizer_config.json:
`[gMASK]<sop>` then, for every message with non-empty content,
`<|{role}|>{metadata}\\n{content}`, then `<|assistant|>` with NO newline after it as the
generation prompt. The template renders one string that HF tokenizes segment by segment
between special tokens, so `{metadata}\\n{content}` is encoded as ONE piece of text (this
matters: "\\n\\n" is one token, 271, not two 198s).
Stops: generation_config.json eos_token_id = [151329 <|endoftext|>, 151336 <|user|>,
151338 <|observation|>]; pad 151329.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from glmtrt.errors import GlmtrtError
from glmtrt.tokenizer.base import GLMTokenizer

SPECIAL_TOKENS = (
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>",
    "<|user|>", "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>",
    "<|begin_of_video|>", "<|end_of_video|>",
)

PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


class GLM4Tokenizer(GLMTokenizer):
    """GLM-4-9B-chat tokenizer (tiktoken BPE) without remote code."""

    name = "glm4"

    def __init__(
        self,
        model_file: Path,
        ranks: dict[bytes, int],
        *,
        tokenizer_config: Mapping[str, Any] | None = None,
        extra_eos_ids: Iterable[int] = (),
        generation_config_file: Path | None = None,
    ):
        import tiktoken

        n = len(ranks)
        super().__init__(
            model_file,
            base_vocab_size=n,
            special_names=SPECIAL_TOKENS,
            eos_id=n,  # <|endoftext|>
            pad_id=n,
            sop_name="<sop>",
            tokenizer_config=tokenizer_config,
            extra_eos_ids=extra_eos_ids,
            generation_config_file=generation_config_file,
        )
        try:
            self._enc = tiktoken.Encoding(
                name="glm4",
                pat_str=PAT_STR,
                mergeable_ranks=ranks,
                special_tokens=dict(self.special_tokens),
                explicit_n_vocab=self.vocab_size,
            )
        except (ValueError, AssertionError) as e:
            raise GlmtrtError(
                f"tiktoken rejected the BPE ranks in {model_file}: {e}",
                expected="unique ranks 0..N-1 covering all 256 single bytes",
            ) from e
        table: list[bytes] = [b""] * n
        for tok, r in ranks.items():
            table[r] = tok
        self._table = table

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        """BPE ids of `text`. Special-token text is ordinary text unless `allow_special=True`
        (then all 14 specials are recognised)."""
        if not isinstance(text, str):
            raise GlmtrtError(f"can only encode str, got {type(text).__name__}", expected="str")
        if allow_special:
            return self._enc.encode(text, allowed_special="all")
        return self._enc.encode(text, disallowed_special=())

    def _message_ids(self, role: str, metadata: str, content: str) -> list[int]:
        if not content:  # the template's `{% if item['content'] %}` drops empty messages
            return []
        return [self.special_tokens[f"<|{role}|>"]] + self.encode(f"{metadata}\n{content}")

    def piece_bytes(self, token_id: int, *, at_start: bool, skip_special_tokens: bool) -> tuple[bytes, bool]:
        """Raw token bytes (a token may hold part of a UTF-8 character); specials give
        nothing, or their text when `skip_special_tokens=False`; padding ids give nothing."""
        i = self._check_id(token_id)
        if i < self.base_vocab_size:
            return self._table[i], False
        if i < self.vocab_size and not skip_special_tokens:
            return self._special_by_id[i].encode("utf-8"), False
        return b"", at_start

    def _base_token_text(self, i: int) -> str:
        """The token bytes as text (undecodable bytes as \\xNN)."""
        return self._table[i].decode("utf-8", errors="backslashreplace")
