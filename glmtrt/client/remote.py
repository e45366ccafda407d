"""What the chat client asks the server about its prompts: the input limit and token counts.

The model's chat template and tokenizer live in the server's `preprocessing` model, so counting
is done there (one non-streaming call; the prompt is never generated from): QUERY empty plus the
`messages` request parameter gives the prompt of those messages, REQUEST_INPUT_LEN its length.
The limit is the `max_input_len` parameter of `preprocessing` (the engine's max_input_len,
written by `glmtrt repo`).
"""
from __future__ import annotations

import json
import re

import numpy as np

from glmtrt.errors import GlmtrtError

_OVER = re.compile(r"prompt has (\d+) tokens, over max_input_len")


class ServerTokenCounter:
    """Input limit and prompt token counts from the glmtrt repository served at `url`."""

    def __init__(self, url: str, *, model: str = "preprocessing", timeout: float = 60.0):
        self.url, self.model, self.timeout = url, model, timeout
        self._client = None
        self._limit: int | None | bool = False   # False: not asked yet

    def _grpc(self):
        if self._client is None:
            import tritonclient.grpc as grpcclient

            self._client = grpcclient.InferenceServerClient(self.url)
        return self._client

    def max_input_tokens(self) -> int | None:
        """The model's max_input_len, or None when the server does not say (no trimming by tokens)."""
        if self._limit is False:
            from tritonclient.utils import InferenceServerException

            try:
                cfg = self._grpc().get_model_config(self.model, as_json=True)["config"]
                self._limit = int(cfg["parameters"]["max_input_len"]["string_value"])
            except (InferenceServerException, KeyError, ValueError):
                self._limit = None
        return self._limit

    def count(self, messages: list[dict]) -> int:
        """Prompt tokens of `messages` with the model's chat template (generation prompt included).

        Over the limit, preprocessing refuses the prompt and says its length: that length is returned.
        """
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        inputs = []
        for name, arr, dtype in (("QUERY", np.array([[b""]], dtype=object), "BYTES"),
                                 ("REQUEST_OUTPUT_LEN", np.array([[1]], dtype=np.int32), "INT32")):
            t = grpcclient.InferInput(name, list(arr.shape), dtype)
            t.set_data_from_numpy(arr)
            inputs.append(t)
        params = {"apply_chat_template": True, "messages": json.dumps(list(messages), ensure_ascii=False)}
        try:
            res = self._grpc().infer(self.model, inputs, parameters=params, client_timeout=self.timeout,
                                     outputs=[grpcclient.InferRequestedOutput("REQUEST_INPUT_LEN")])
        except InferenceServerException as exc:
            m = _OVER.search(str(exc))
            if m:
                return int(m.group(1))
            raise GlmtrtError(f"counting prompt tokens on {self.url} ({self.model}) failed: {exc}") from exc
        return int(res.as_numpy("REQUEST_INPUT_LEN").reshape(-1)[0])
