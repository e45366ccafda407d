"""Triton python model `tensorrt_llm` for CPU: the reference executor behind the engine's contract.

NOT FOR PRODUCTION: a development/CI/demo stand-in that runs `glmtrt.reference.ReferenceModel`
(float32 torch on CPU; in-flight batching by `engine_loop.EngineLoop`: one KV cache per request,
one batched forward per decoding step, one thread owning every response) so the whole Triton
path — ensemble, BLS, streaming, stop words, limits — runs on a laptop. Tensor names, dtypes
and shapes are those of TensorRT-LLM 1.2.x triton_backend/all_models/inflight_batcher_llm/
tensorrt_llm/config.pbtxt; behaviour follows the tensorrtllm backend:

- streaming (`streaming`=true, decoupled): one response per new token (output_ids [1, 1, 1],
  sequence_length [1, 1] = 1), then an empty final response; otherwise one response with
  output_ids [1, 1, L] (prompt + answer unless `exclude_input_in_output`);
- generation ends at `end_id` (not emitted), after a stop word (emitted, as the engine does),
  or after `request_output_len` tokens; `min_tokens` masks end_id until reached;
- sampling with the engine's defaults and domain (docs/INTERFACES.md 3.1: no sampling inputs =
  greedy; top_p 0 = not set), bad words, embedding_bias, penalties; beam_width must be 1;
- pacing mode (`pace_ttft_ms`, `pace_itl_ms` parameters): tokens on a fixed schedule;
- prompt over `max_input_len`, prompt + output over `max_seq_len`, batch > 1 per request: errors;
- GLM-4.1V checkpoints (`<checkpoint>/llm`): `glmtrt.reference.glm4v.Glm4vReference` with the 1.2
  backend's prompt-tuning and M-RoPE inputs (`multimodal_inputs`): ids >= vocab_size read the request's
  prompt_embedding_table, the context phase takes its rotary from mrope_rotary_cos_sin, the
  generation phase adds mrope_position_deltas; both are required on every request, like the engine.
"""
from __future__ import annotations

import logging
import os
import threading

import numpy as np

from glmtrt.triton.pymodels import common
from glmtrt.triton.pymodels.common import RequestError, from_words_list
from glmtrt.triton.pymodels.engine_loop import EngineLoop, Job
from glmtrt.triton.pymodels.generation import GenRequest

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


MROPE_INPUTS = ("mrope_rotary_cos_sin", "mrope_position_deltas")


def multimodal_inputs(request, ids: list[int], *, vocab_size: int, hidden: int) -> dict:
    """The Glm4v prefill inputs of one request (raises RequestError): what the engine reads from
    prompt_embedding_table [1, K, hidden], prompt_vocab_size, prompt_table_extra_ids [1, T] (one per
    input token when given), mrope_rotary_cos_sin [1, L] and mrope_position_deltas [1, 1]."""
    import torch

    g = common.get_array
    missing = [n for n in MROPE_INPUTS if g(request, n) is None]
    if missing:
        raise RequestError(f"input(s) {', '.join(missing)} required: an M-RoPE engine needs them on every request")
    out = {"mrope_rotary_cos_sin": g(request, "mrope_rotary_cos_sin").reshape(-1).astype(np.float32),
           "rope_delta": int(g(request, "mrope_position_deltas").reshape(-1)[0])}
    table = g(request, "prompt_embedding_table")
    top = max(ids)
    if table is not None:
        table = np.asarray(table, dtype=np.float32)
        table = table.reshape(-1, table.shape[-1])
        if table.shape[1] != hidden:
            raise RequestError(f"prompt_embedding_table rows have {table.shape[1]} values; the model's hidden size is {hidden}")
        size = common.get_scalar(request, "prompt_vocab_size", table.shape[0])
        if int(size) != table.shape[0]:
            raise RequestError(f"prompt_vocab_size {size} but prompt_embedding_table has {table.shape[0]} rows")
        extra = g(request, "prompt_table_extra_ids")
        if extra is not None and extra.size != len(ids):
            raise RequestError(f"prompt_table_extra_ids has {extra.size} entries for {len(ids)} input tokens "
                               "(TensorRT-LLM llmRequest.h: one per input token)")
        out["prompt_table"] = torch.from_numpy(table)
    if top >= vocab_size + (0 if table is None else table.shape[0]):
        raise RequestError(f"input id {top} is past vocab_size {vocab_size} + the prompt table's "
                           f"{0 if table is None else table.shape[0]} rows")
    return out


class TritonPythonModel:
    """The CPU reference engine: execute() parses and queues, the engine loop batches and answers."""

    def initialize(self, args):
        import torch

        from pathlib import Path

        from glmtrt.reference import ReferenceModel

        params = common.model_params(args)
        self.model_config = __import__("json").loads(args["model_config"])
        self.decoupled = common.pb().using_decoupled_model_transaction_policy(self.model_config)
        ckpt = params.get("checkpoint_dir") or params.get("gpt_model_path")
        if not ckpt:
            raise RuntimeError("tensorrt_llm (reference): parameter checkpoint_dir is not set")
        torch.set_num_threads(int(params.get("cpu_threads", min(2, os.cpu_count() or 1))))
        path = common.repo_path(args, ckpt)
        self.multimodal = (Path(path) / "llm").is_dir()
        if self.multimodal:  # a GLM-4.1V conversion (llm/ + vision/): our M-RoPE engine's numerical model
            from glmtrt.reference.glm4v import Glm4vReference

            self.model = Glm4vReference.from_checkpoint(str(path), device="cpu")
        else:
            self.model = ReferenceModel.from_checkpoint(str(path), device="cpu")
        self.max_input_len = int(params["max_input_len"]) if "max_input_len" in params else None
        self.max_seq_len = int(params["max_seq_len"]) if "max_seq_len" in params else None
        self.exclude_input = common.param_bool(params, "exclude_input_in_output", False)
        self.end_id = -1
        if "tokenizer_dir" in params:
            self.end_id = common.tokenizer_from_args(args, params).eos_id
        # in-flight batch of up to max_batch_size sequences, like the engine's
        self.loop = EngineLoop(self.model, max_batch=int(self.model_config.get("max_batch_size") or 1),
                               pace_ttft=float(params.get("pace_ttft_ms", 0) or 0) / 1000.0,
                               pace_itl=float(params.get("pace_itl_ms", 0) or 0) / 1000.0)
        log.warning("tensorrt_llm: CPU REFERENCE ENGINE (not for production) on %s", ckpt)

    def execute(self, requests):
        if not self.loop.alive():  # say why, to every request, instead of hanging
            raise RuntimeError(f"tensorrt_llm: {self.loop.failure() or 'the engine loop is not running'}")
        return self._decoupled(requests) if self.decoupled else self._blocking(requests)

    def _parse(self, request) -> GenRequest:
        req = parse_request(request, max_input_len=self.max_input_len, max_seq_len=self.max_seq_len,
                            default_end_id=self.end_id, default_exclude=self.exclude_input)
        if self.multimodal:
            req.model_inputs = multimodal_inputs(request, req.input_ids, vocab_size=self.model.vocab_size,
                                                 hidden=self.model.geometry.hidden_size)
        return req

    def _decoupled(self, requests):
        pb = common.pb()
        for request in requests:
            sender = request.get_response_sender()
            try:
                req = self._parse(request)
            except RequestError as exc:
                err = common.error_response(f"tensorrt_llm: {exc}")
                self.loop.post(lambda s=sender, e=err: common.send(s, e, pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL))
                continue
            self.loop.submit(Job(req, on_step=self._on_step, on_done=self._on_done, context=sender,
                                 cancelled=sender.is_cancelled if req.streaming else None))
        return None

    def _on_step(self, job: Job, step) -> None:
        if job.req.streaming:
            common.send(job.context, common.pb().InferenceResponse(output_tensors=self._tensors(job.req, step, [step.token])))

    def _on_done(self, job: Job, exc) -> None:
        pb = common.pb()
        final = pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        if exc is not None:
            common.send(job.context, common.error_response(f"tensorrt_llm: generation failed: {exc}"), final)
        elif job.req.streaming:
            common.send(job.context, None, final)
        else:
            common.send(job.context, self._full(job), final)

    def _blocking(self, requests):
        """Non-decoupled model: wait for every request of this batch, answer in order."""
        jobs, responses = [], []
        for request in requests:
            try:
                req = self._parse(request)
            except RequestError as exc:
                jobs.append(None)
                responses.append(common.error_response(f"tensorrt_llm: {exc}"))
                continue
            req.streaming = False
            job = Job(req, on_step=lambda j, s: None, on_done=lambda j, e: j.context.set_error(e),
                      context=_Done())
            self.loop.submit(job)
            jobs.append(job)
            responses.append(None)
        for i, job in enumerate(jobs):
            if job is not None:
                exc = job.context.wait()
                responses[i] = (common.error_response(f"tensorrt_llm: generation failed: {exc}") if exc
                                else self._full(job))
        return responses

    def _full(self, job: Job):
        """The one response of a non-streaming request."""
        req, steps = job.req, job.steps
        out = [s.token for s in steps]
        ids = out if req.exclude_input else req.input_ids + out
        return common.pb().InferenceResponse(output_tensors=self._tensors(req, steps[-1] if steps else None,
                                                                         ids, steps))

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
        self.loop.stop()
        log.info("tensorrt_llm (reference): finalize (%d batched steps, at most %d sequences in flight)",
                 self.loop.steps, self.loop.max_active)


class _Done:
    """Completion of one job for the non-decoupled path."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.error = None

    def set_error(self, exc) -> None:
        self.error = exc
        self._event.set()

    def wait(self):
        self._event.wait()
        return self.error
