"""Triton python model `tensorrt_llm` for CPU: the reference executor behind the engine's contract.

NOT FOR PRODUCTION: a development/CI/demo stand-in that runs `glmtrt.reference.ReferenceModel`
(float32 torch on CPU, one KV cache per request, one thread per request) so the whole Triton
path — ensemble, BLS, streaming, stop words, limits — runs on a laptop. Tensor names, dtypes
and shapes are those of TensorRT-LLM 1.2.x triton_backend/all_models/inflight_batcher_llm/
tensorrt_llm/config.pbtxt; behaviour follows the tensorrtllm backend:

- streaming (`streaming`=true, decoupled): one response per new token (output_ids [1, 1, 1],
  sequence_length [1, 1] = 1), then an empty final response; otherwise one response with
  output_ids [1, 1, L] (prompt + answer unless `exclude_input_in_output`);
- generation ends at `end_id` (not emitted), after a stop word (emitted, as the engine does),
  or after `request_output_len` tokens; `min_tokens` blocks both ends until reached;
- sampling: temperature / runtime_top_k / runtime_top_p / seed (greedy at temperature 0 or top_k 1),
  bad words, embedding_bias, repetition/presence/frequency penalties; beam_width must be 1;
- prompt over `max_input_len`, prompt + output over `max_seq_len`, batch > 1 per request: errors.
"""
from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np

from glmtrt.triton.pymodels import common
from glmtrt.triton.pymodels.common import RequestError, from_words_list
from glmtrt.triton.pymodels.generation import GenRequest, generate_tokens

log = logging.getLogger(__name__)


def parse_request(request, *, max_input_len: int | None, max_seq_len: int | None, default_end_id: int,
                  default_exclude: bool) -> GenRequest:
    """A GenRequest from the tensors of one request (raises RequestError)."""
    g, s = common.get_array, common.get_scalar
    ids = g(request, "input_ids")
    if ids is None:
        raise RequestError("input input_ids is required")
    if ids.ndim == 2 and ids.shape[0] != 1:
        raise RequestError(f"a request holds {ids.shape[0]} sequences; send one sequence per request")
    ids = ids.reshape(-1)
    n = s(request, "input_lengths", len(ids))
    ids = [int(i) for i in ids[:int(n)]]
    if not ids:
        raise RequestError("input_ids is empty")
    if max_input_len is not None and len(ids) > max_input_len:
        raise RequestError(f"prompt has {len(ids)} tokens, over max_input_len={max_input_len}")
    out_len = s(request, "request_output_len")
    if out_len is None or int(out_len) < 1:
        raise RequestError(f"request_output_len={out_len}: must be >= 1")
    if max_seq_len is not None and len(ids) + int(out_len) > max_seq_len:
        raise RequestError(f"prompt ({len(ids)}) + request_output_len ({out_len}) exceeds max_seq_len={max_seq_len}")
    beam = int(s(request, "beam_width", 1))
    if beam != 1:
        raise RequestError(f"beam_width={beam}: the CPU reference engine supports beam_width 1 only")
    seed = s(request, "seed", s(request, "random_seed"))
    bias = g(request, "embedding_bias")

    def words(name):
        arr = g(request, name)
        return [] if arr is None or arr.size == 0 else from_words_list(arr.reshape(-1, 2, arr.shape[-1])[0])

    num = lambda name, default, kind: default if s(request, name) is None else kind(s(request, name))  # noqa: E731
    req = GenRequest(
        input_ids=ids, max_new_tokens=int(out_len),
        end_id=int(s(request, "end_id", default_end_id)),
        stop_words=words("stop_words_list"), bad_words=words("bad_words_list"),
        temperature=num("temperature", GenRequest.temperature, float),
        top_k=num("runtime_top_k", GenRequest.top_k, int), top_p=num("runtime_top_p", GenRequest.top_p, float),
        seed=None if seed is None else int(seed),
        min_tokens=int(s(request, "min_tokens", s(request, "min_length", 0)) or 0),
        repetition_penalty=num("repetition_penalty", GenRequest.repetition_penalty, float),
        presence_penalty=num("presence_penalty", GenRequest.presence_penalty, float),
        frequency_penalty=num("frequency_penalty", GenRequest.frequency_penalty, float),
        embedding_bias=None if bias is None or bias.size == 0 else bias.reshape(-1).astype(np.float32),
        streaming=bool(s(request, "streaming", False)),
        exclude_input=bool(s(request, "exclude_input_in_output", default_exclude)),
        return_log_probs=bool(s(request, "return_log_probs", False)),
        return_context_logits=bool(s(request, "return_context_logits", False)),
        return_generation_logits=bool(s(request, "return_generation_logits", False)),
    )
    try:
        req.validate()
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    return req


class TritonPythonModel:
    """The CPU reference engine (decoupled: one thread per request)."""

    def initialize(self, args):
        import torch

        from glmtrt.reference import ReferenceModel

        params = common.model_params(args)
        self.model_config = __import__("json").loads(args["model_config"])
        self.decoupled = common.pb().using_decoupled_model_transaction_policy(self.model_config)
        ckpt = params.get("checkpoint_dir") or params.get("gpt_model_path")
        if not ckpt:
            raise RuntimeError("tensorrt_llm (reference): parameter checkpoint_dir is not set")
        torch.set_num_threads(int(params.get("cpu_threads", min(2, os.cpu_count() or 1))))
        self.model = ReferenceModel.from_checkpoint(str(common.repo_path(args, ckpt)), device="cpu")
        self.max_input_len = int(params["max_input_len"]) if "max_input_len" in params else None
        self.max_seq_len = int(params["max_seq_len"]) if "max_seq_len" in params else None
        self.exclude_input = common.param_bool(params, "exclude_input_in_output", False)
        self.end_id = -1
        if "tokenizer_dir" in params:
            self.end_id = common.tokenizer_from_args(args, params).eos_id
        # pacing mode: first token pace_ttft_ms after arrival, then one every pace_itl_ms (a schedule)
        self.pace_ttft = float(params.get("pace_ttft_ms", 0) or 0) / 1000.0
        self.pace_itl = float(params.get("pace_itl_ms", 0) or 0) / 1000.0
        slots = int(self.model_config.get("max_batch_size") or 1)
        self._slots = threading.BoundedSemaphore(max(1, slots))  # in-flight requests, like the engine's batch
        self._threads = common.RequestThreads()
        log.warning("tensorrt_llm: CPU REFERENCE ENGINE (not for production) on %s", ckpt)

    def execute(self, requests):
        pb = common.pb()
        responses = [] if not self.decoupled else None
        for request in requests:
            try:
                req = parse_request(request, max_input_len=self.max_input_len, max_seq_len=self.max_seq_len,
                                    default_end_id=self.end_id, default_exclude=self.exclude_input)
            except RequestError as exc:
                err = common.error_response(f"tensorrt_llm: {exc}")
                if self.decoupled:
                    request.get_response_sender().send(err, flags=pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                else:
                    responses.append(err)
                continue
            if self.decoupled:
                self._threads.start(self._run, req, request.get_response_sender(), time.monotonic())
            else:
                responses.append(self._collect(req))
        return responses

    def _pace(self, arrived: float, index: int) -> None:
        """Sleep until token `index` is due (pacing mode; no-op when pacing is off)."""
        if self.pace_ttft or self.pace_itl:
            delay = arrived + self.pace_ttft + index * self.pace_itl - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def _run(self, req: GenRequest, sender, arrived: float) -> None:
        pb = common.pb()
        try:
            with self._slots:
                if req.streaming:
                    steps = generate_tokens(self.model, req, cancelled=getattr(sender, "is_cancelled", None))
                    for i, step in enumerate(steps):
                        self._pace(arrived, i)
                        sender.send(pb.InferenceResponse(output_tensors=self._tensors(req, step, [step.token])))
                    sender.send(flags=pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                else:
                    sender.send(self._collect(req), flags=pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as exc:  # a bug or a bad value deep inside: answer, keep serving
            log.exception("tensorrt_llm: generation failed")
            sender.send(common.error_response(f"tensorrt_llm: generation failed: {exc}"),
                        flags=pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def _collect(self, req: GenRequest):
        pb = common.pb()
        steps = list(generate_tokens(self.model, req))
        out = [s.token for s in steps]
        ids = out if req.exclude_input else req.input_ids + out
        last = steps[-1] if steps else None
        return pb.InferenceResponse(output_tensors=self._tensors(req, last, ids, steps))

    def _tensors(self, req: GenRequest, step, ids, steps=None):
        pb = common.pb()
        t = {
            "output_ids": np.array([[ids]], dtype=np.int32).reshape(1, 1, len(ids)),
            "sequence_length": np.array([[len(ids)]], dtype=np.int32),
            "batch_index": np.zeros((1, 1), dtype=np.int32),
            "sequence_index": np.zeros((1, 1), dtype=np.int32),
        }
        steps = steps if steps is not None else ([step] if step is not None else [])
        if req.return_log_probs:
            t["cum_log_probs"] = np.array([[step.cum_log_prob if step else 0.0]], dtype=np.float32)
            t["output_log_probs"] = np.array([[[s.log_prob for s in steps]]], dtype=np.float32).reshape(1, 1, -1)
        if req.return_context_logits and step is not None and step.context_logits is not None:
            t["context_logits"] = step.context_logits[None].astype(np.float32)
        if req.return_generation_logits and steps:
            t["generation_logits"] = np.stack([s.logits for s in steps])[None, None].astype(np.float32)
        return [pb.Tensor(k, v) for k, v in t.items()]

    def finalize(self):
        self._threads.join()
        log.info("tensorrt_llm (reference): finalize")
