"""Triton python model `tensorrt_llm_bls`: prompt -> `tensorrt_llm` -> text, in one decoupled model.

Client tensors: those of the ensemble (TensorRT-LLM 1.2.x triton_backend/all_models/
inflight_batcher_llm/tensorrt_llm_bls/config.pbtxt). Compared with upstream's BLS
(tensorrt_llm_bls/1/lib/decode.py, triton_decoder.py), which calls the preprocessing and
postprocessing models per response:

- tokenization and detokenization run in-process with glmtrt's tokenizer (same code as our
  preprocessing model: `preprocessing.read_request`), only `tensorrt_llm` is called via BLS;
- the streaming detokenizer state lives in this request's loop, so streamed text never splits a
  character and the state ends with the request (no TTL needed, unlike the ensemble path);
  bytes of a character cut off by max_tokens are dropped (never a trailing U+FFFD);
- `output_mode` request parameter ("delta" | "cumulative"); the `accumulate_tokens` model
  parameter (upstream) makes "cumulative" the default;
- each request runs in its own thread, so concurrent streams interleave;
- multimodal repositories (parameter `multimodal_config`): the `images` input, the `vision_encoder`
  call and the prompt-table / M-RoPE engine inputs (glmtrt.triton.pymodels.mmrequest); the first
  response carries the per-request image numbers as response parameters (docs/INTERFACES.md).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from glmtrt.triton.pymodels import common
from glmtrt.triton.pymodels.common import RequestError
from glmtrt.triton.pymodels.preprocessing import read_request
from glmtrt.triton.pymodels.textproc import find_stop

log = logging.getLogger(__name__)

BLS_NAMES = {"text": "text_input", "max_tokens": "max_tokens", "stop_words": "stop_words",
             "bad_words": "bad_words", "end_id": "end_id", "pad_id": "pad_id",
             "bias_words": "embedding_bias_words", "chat": "apply_chat_template", "messages": "messages"}

#: client tensor -> tensorrt_llm tensor, passed through when the client sends it
#: (the ensemble's input_map in TensorRT-LLM 1.2.x .../ensemble/config.pbtxt).
PASS_THROUGH = {"top_k": "runtime_top_k", "top_p": "runtime_top_p", "temperature": "temperature",
                "length_penalty": "len_penalty", "repetition_penalty": "repetition_penalty",
                "min_tokens": "min_tokens", "presence_penalty": "presence_penalty",
                "frequency_penalty": "frequency_penalty", "seed": "seed",
                "return_log_probs": "return_log_probs", "return_context_logits": "return_context_logits",
                "return_generation_logits": "return_generation_logits", "beam_width": "beam_width",
                "exclude_input_in_output": "exclude_input_in_output"}
ENGINE_OUTPUTS = ("cum_log_probs", "output_log_probs", "context_logits", "generation_logits", "batch_index")


def engine_tensor_names(engine_config: Path) -> dict[str, str]:
    """Engine tensor per client tensor. A 0.13-toolchain repository names them random_seed /
    min_length on both sides (tensorrtllm_backend v0.13.0 tensorrt_llm_bls and tensorrt_llm
    config.pbtxt) and has no exclude_input_in_output tensor; guided_decoding_guide_type / _guide
    pass through where the engine model declares them (1.2, --guided-decoding)."""
    names = dict(PASS_THROUGH)
    try:
        text = engine_config.read_text(encoding="utf-8")
    except OSError:
        return names
    for new, old in (("random_seed", "seed"), ("min_length", "min_tokens")):
        if f'"{new}"' in text:
            names.pop(old)
            names[new] = new
    if 'name: "exclude_input_in_output"' not in text:
        names.pop("exclude_input_in_output")  # 0.13: a model parameter only (v0.13.0 tensorrt_llm config)
    for guide in ("guided_decoding_guide_type", "guided_decoding_guide"):
        if f'name: "{guide}"' in text:
            names[guide] = guide
    return names


class TritonPythonModel:
    """Business-logic-scripting model: one request -> engine stream -> UTF-8-safe text stream."""

    def initialize(self, args):
        pb = common.pb()
        params = common.model_params(args)
        self.model_config = __import__("json").loads(args["model_config"])
        self.decoupled = pb.using_decoupled_model_transaction_policy(self.model_config)
        self.tokenizer = common.tokenizer_from_args(args, params)
        self.engine = params.get("tensorrt_llm_model_name", "tensorrt_llm")
        self.default_mode = "cumulative" if common.param_bool(params, "accumulate_tokens", False) else "delta"
        self.skip_special_tokens = common.param_bool(params, "skip_special_tokens", True)
        self.add_special_tokens = common.param_bool(params, "add_special_tokens", True)
        self.max_input_len = int(params["max_input_len"]) if "max_input_len" in params else None
        self.mm = None
        if "multimodal_config" in params:
            from glmtrt.triton.pymodels.mmproc import MultimodalFacts

            self.mm = MultimodalFacts.load(common.repo_path(args, params["multimodal_config"]))
        self.names = engine_tensor_names(Path(args["model_repository"]).parent / self.engine / "config.pbtxt")
        self._threads = common.RequestThreads()

    def execute(self, requests):
        if not self.decoupled:
            return [self._non_decoupled(r) for r in requests]
        for request in requests:
            self._threads.start(self._serve, request)
        return None

    # -- per request ----------------------------------------------------------------------
    def _engine_request(self, request, p, stream: bool, mm=None):
        pb = common.pb()
        i32 = lambda v: np.array([[v]], dtype=np.int32)  # noqa: E731
        tensors = [pb.Tensor("request_output_len", i32(p.output_len)),
                   pb.Tensor("end_id", i32(p.end_id)), pb.Tensor("pad_id", i32(p.pad_id)),
                   pb.Tensor("stop_words_list", common.stack_words([common.to_words_list(p.stop_words)])),
                   pb.Tensor("bad_words_list", common.stack_words([common.to_words_list(p.bad_words)])),
                   pb.Tensor("streaming", np.array([[stream]], dtype=bool))]
        if mm is None:
            tensors += [pb.Tensor("input_ids", np.array([p.input_ids], dtype=np.int32)),
                        pb.Tensor("input_lengths", i32(len(p.input_ids)))]
        else:
            from glmtrt.triton.pymodels.mmrequest import table_tensor

            tensors += [pb.Tensor(k, v) for k, v in mm.engine.items() if k != "prompt_embedding_table"]
            tensors.append(table_tensor("prompt_embedding_table", mm.engine["prompt_embedding_table"], self.mm.table_dtype))
        for client_name, engine_name in self.names.items():
            arr = common.get_array(request, client_name)
            if arr is not None:
                tensors.append(pb.Tensor(engine_name, arr.reshape(1, -1)))
        return pb.InferenceRequest(model_name=self.engine, inputs=tensors,
                                   requested_output_names=["output_ids", "sequence_length", *ENGINE_OUTPUTS])

    def _responses(self, request, stream: bool, mode: str | None = None, info: dict | None = None):
        """Parse, call the engine, and yield (text_delta_or_full, engine_response) tuples; `info` gets the
        multimodal request's numbers (mmproc.image_report) before the first one."""
        from glmtrt.tokenizer import IncrementalDetokenizer

        params = common.request_parameters(request, strict=True)
        mode = mode or params.get("output_mode", self.default_mode)
        mm = None
        if self.mm is not None:
            from glmtrt.triton.pymodels.mmrequest import prepare_request

            mm = prepare_request(request, self.tokenizer, self.mm, names=BLS_NAMES, images_name="images",
                                 add_special_tokens=self.add_special_tokens, max_input_len=self.max_input_len)
            p = mm.prepared
        else:
            p = read_request(request, self.tokenizer, add_special_tokens=self.add_special_tokens,
                             max_input_len=self.max_input_len, names=BLS_NAMES)
        if info is not None and mm is not None:
            info.update(mm.report)
        detok = IncrementalDetokenizer(self.tokenizer, skip_special_tokens=self.skip_special_tokens)
        text = ""
        responses = self._engine_request(request, p, stream, mm).exec(decoupled=True)
        for resp in responses:
            if resp.has_error():
                raise RequestError(resp.error().message())
            out = common.pb().get_output_tensor_by_name(resp, "output_ids")
            if out is None:  # the engine's empty final response
                continue
            ids = out.as_numpy().reshape(-1)
            n = common.pb().get_output_tensor_by_name(resp, "sequence_length")
            if n is not None:
                ids = ids[:int(n.as_numpy().reshape(-1)[0])]
            delta = detok.push([int(i) for i in ids])
            # stop words on text too: also those whose tokens merged with their neighbours
            end = find_stop(text + delta, p.stop_texts, start=len(text))
            if end is not None:
                delta = delta[:end - len(text)]
            text += delta
            yield (text if mode == "cumulative" else delta), resp
            if end is not None:
                if hasattr(responses, "cancel"):  # newer python backends can cancel a BLS request
                    responses.cancel()
                else:  # Triton 2.51 cannot: read the engine's remaining responses off this request's path
                    self._threads.start(lambda: [None for _ in responses])
                return
        # bytes of a character cut off by max_tokens/stop can only become U+FFFD: drop them, as
        # the ensemble's postprocessing does (it never sees the end of a stream)
        if detok.pending_bytes:
            log.debug("dropping %d bytes of an incomplete character at the end", detok.pending_bytes)

    def _response(self, text: str, engine_resp, params: dict | None = None):
        pb = common.pb()
        tensors = [pb.Tensor("text_output", common.bytes_array([text], (1, 1)))]
        if engine_resp is not None:
            for name in ENGINE_OUTPUTS:
                t = pb.get_output_tensor_by_name(engine_resp, name)
                if t is not None:
                    tensors.append(pb.Tensor(name, t.as_numpy()))
        if params:  # Triton 2.51's python backend has no response parameters: a JSON output tensor
            tensors.append(pb.Tensor("image_info", common.bytes_array([json.dumps(params, ensure_ascii=False)], (1, 1))))
        return pb.InferenceResponse(output_tensors=tensors)

    def _serve(self, request) -> None:
        pb = common.pb()
        sender = request.get_response_sender()
        try:
            stream = bool(common.get_scalar(request, "stream", False))
            if stream:
                info: dict = {}
                for text, resp in self._responses(request, True, info=info):
                    if sender.is_cancelled():
                        break
                    common.send(sender, self._response(text, resp, info))
                    info = {}
                common.send(sender, None, pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            else:
                common.send(sender, self._collect(request), pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except RequestError as exc:
            common.send(sender, common.error_response(f"tensorrt_llm_bls: {exc}"), pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as exc:  # keep serving; say what happened
            log.exception("tensorrt_llm_bls failed")
            common.send(sender, common.error_response(f"tensorrt_llm_bls: internal error: {exc}"),
                        pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def _collect(self, request):
        parts, last, info = [], None, {}
        for text, resp in self._responses(request, False, mode="delta", info=info):
            parts.append(text)
            last = resp if resp is not None else last
        return self._response("".join(parts), last, info)

    def _non_decoupled(self, request):
        try:
            if common.get_scalar(request, "stream", False):
                raise RequestError("stream=true needs the decoupled tensorrt_llm_bls (generate the repo with decoupled)")
            return self._collect(request)
        except RequestError as exc:
            return common.error_response(f"tensorrt_llm_bls: {exc}")

    def finalize(self):
        self._threads.join()
