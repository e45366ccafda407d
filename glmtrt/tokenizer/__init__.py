"""GLM tokenizers without remote code: ChatGLM3 (SentencePiece) and GLM-4 (tiktoken BPE).

`load_tokenizer(path)` recognises the family from the content of tokenizer.model;
`IncrementalDetokenizer` streams text without splitting characters. See docs/TOKENIZERS.md.
"""
from glmtrt.tokenizer.base import ROLES, GLMTokenizer
from glmtrt.tokenizer.chatglm3 import ChatGLM3Tokenizer
from glmtrt.tokenizer.glm4 import GLM4Tokenizer
from glmtrt.tokenizer.loader import detect_format, load_tokenizer
from glmtrt.tokenizer.stream import IncrementalDetokenizer
from glmtrt.tokenizer.tiny import padded_vocab_size

__all__ = [
    "ChatGLM3Tokenizer", "GLM4Tokenizer", "GLMTokenizer", "IncrementalDetokenizer", "ROLES",
    "detect_format", "load_tokenizer", "padded_vocab_size",
]
