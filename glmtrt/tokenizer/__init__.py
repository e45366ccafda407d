"""GLM tokenizers without remote code: ChatGLM3 (SentencePiece) and GLM-4 (tiktoken BPE).

`load_tokenizer(path)` recognises the family from the content of tokenizer.model;
`IncrementalDetokenizer` streams text without splitting characters. See docs/TOKENIZERS.md.
"""
from glmtrt.tokenizer.base import ROLES, GLMTokenizer
from glmtrt.tokenizer.loader import detect_format, load_tokenizer
from glmtrt.tokenizer.stream import IncrementalDetokenizer

__all__ = ["GLMTokenizer", "IncrementalDetokenizer", "ROLES", "detect_format", "load_tokenizer"]
