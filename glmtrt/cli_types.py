"""Click parameter types with their allowed range, shared by every command (validated at the
boundary: a bad value is one line naming the option and the range, exit code 2).

Limits that come from the engine: token counts and batch sizes are int32 tensors in the
TensorRT-LLM Triton contract (tensorrt_llm/config.pbtxt `request_output_len` TYPE_INT32 in
TensorRT-LLM 1.2.x triton_backend/all_models/inflight_batcher_llm), the seed is uint64
(`random_seed` / `seed` TYPE_UINT64).
"""
from __future__ import annotations

import click

INT32_MAX = 2 ** 31 - 1
UINT64_MAX = 2 ** 64 - 1

POSITIVE_INT32 = click.IntRange(1, INT32_MAX)      # token counts, batch sizes, tp, instances
NON_NEGATIVE_INT32 = click.IntRange(0, INT32_MAX)  # queue sizes/delays, top_k (0 = off)
SEED = click.IntRange(0, UINT64_MAX)
PORT = click.IntRange(1, 65535)
FRACTION = click.FloatRange(0.0, 1.0, min_open=True)   # (0, 1]
NON_NEGATIVE_FLOAT = click.FloatRange(min=0.0)
POSITIVE_SECONDS = click.FloatRange(min=0.0, min_open=True)


class Utf8Text(click.ParamType):
    """A str that is valid UTF-8 (argv bytes that are not come in as surrogate escapes)."""

    name = "text"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = value[exc.start:exc.end].encode("utf-8", "surrogateescape")
            self.fail(f"{value.encode('utf-8', 'replace')[:40]!r}... is not valid UTF-8 (bytes {bad!r} at "
                      f"character {exc.start}); pass UTF-8 text", param, ctx)
        return value


UTF8 = Utf8Text()


def check_utf8(text: str, what: str) -> str:
    """`text` unchanged when it is valid UTF-8, else a click.BadParameter naming `what`."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise click.BadParameter(f"{what} is not valid UTF-8 (character {exc.start}); type UTF-8 text") from None
    return text
