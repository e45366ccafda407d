"""Triton python model `postprocessing`: output ids -> text, UTF-8 safe while streaming.

Tensors: TensorRT-LLM 1.2.x triton_backend/all_models/inflight_batcher_llm/postprocessing/
config.pbtxt (TOKENS_BATCH [B, beam, T], SEQUENCE_LENGTH [B, beam] in; OUTPUT [B, beam] out).

Streaming through the ensemble, this step sees only each response's *new* tokens; decoding
them one response at a time splits characters whose bytes span tokens (byte-fallback pieces)
into U+FFFD — the garbled Chinese of tensorrtllm_backend issues #192/#606 and TensorRT-LLM
#2488. Triton gives every composing model of an ensemble the client's request id and request
parameters (verified on Triton 2.51), so we keep one incremental detokenizer per request id
(`DetokenizerCache`: LRU-bounded, idle TTL) and emit only complete characters. The final flag
is not visible here, so entries end by TTL/LRU; bytes of a character still incomplete when a
stream ends are dropped (they could only have become U+FFFD). Requests without an id are
decoded statelessly (correct for non-streaming; streaming clients must send request ids, as
glmtrt's client does, or use `tensorrt_llm_bls`, which keeps the state in its own loop).
The client's `stream` cannot be wired here: Triton 2.51 refuses an ensemble step fed by a
decoupled model and by an ensemble input ("receives inputs originated from different decoupled
models", verified). The model runs as ONE instance
(the generator writes count 1): a second stub process would see every other response of a
stream. A streaming client must use a fresh request id per request (ids are keys here).
"""
from __future__ import annotations

import logging

import numpy as np

from glmtrt.triton.pymodels import common
from glmtrt.triton.pymodels.textproc import DetokenizerCache

log = logging.getLogger(__name__)


def sequences(tokens: np.ndarray, lengths: np.ndarray | None):
    """Yield (batch, beam, ids) from TOKENS_BATCH [B, beam, T] (or [B, T]) and SEQUENCE_LENGTH."""
    tokens = np.asarray(tokens)
    if tokens.ndim == 2:
        tokens = tokens[:, None, :]
    for b in range(tokens.shape[0]):
        for k in range(tokens.shape[1]):
            n = tokens.shape[2] if lengths is None else int(np.asarray(lengths).reshape(tokens.shape[0], -1)[b, k])
            yield b, k, tokens[b, k, :max(0, n)]


class TritonPythonModel:
    """Detokenizes engine output for the ensemble."""

    def initialize(self, args):
        params = common.model_params(args)
        self.tokenizer = common.tokenizer_from_args(args, params)
        self.skip_special_tokens = common.param_bool(params, "skip_special_tokens", True)
        self.default_mode = params.get("output_mode", "delta")
        self.cache = DetokenizerCache(self.tokenizer, skip_special_tokens=self.skip_special_tokens,
                                      max_entries=int(params.get("stream_state_max_entries", 4096)),
                                      ttl_s=float(params.get("stream_state_ttl_s", 600)))
        self._warned = False

    def execute(self, requests):
        pb = common.pb()
        responses = []
        for request in requests:
            try:
                responses.append(self._one(request, pb))
            except (common.RequestError, ValueError) as exc:
                responses.append(common.error_response(f"postprocessing: {exc}"))
        return responses

    def _one(self, request, pb):
        tokens = common.get_array(request, "TOKENS_BATCH")
        if tokens is None:
            raise common.RequestError("input TOKENS_BATCH is required")
        lengths = common.get_array(request, "SEQUENCE_LENGTH")
        rid = request.request_id() if hasattr(request, "request_id") else ""
        stream = bool(common.get_scalar(request, "STREAM", True))
        params = common.request_parameters(request, strict=False)
        mode = params.get("output_mode", self.default_mode)
        tokens = np.asarray(tokens)
        shape = (tokens.shape[0], tokens.shape[1] if tokens.ndim == 3 else 1)
        texts = []
        for b, k, ids in sequences(tokens, lengths):
            if rid and stream:
                delta, full = self.cache.push((rid, b, k), ids)
                texts.append(full if mode == "cumulative" else delta)
            else:
                if stream and not self._warned:
                    log.warning("postprocessing: a request without request id; streamed text may split characters")
                    self._warned = True
                texts.append(self.tokenizer.decode([int(i) for i in ids],
                                                   skip_special_tokens=self.skip_special_tokens))
        return pb.InferenceResponse(output_tensors=[pb.Tensor("OUTPUT", common.bytes_array(texts, shape))])

    def finalize(self):
        log.info("postprocessing: finalize (%d stream states dropped)", len(self.cache))
