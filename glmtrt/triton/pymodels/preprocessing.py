"""Triton python model `preprocessing`: prompt text -> engine inputs.

Tensors: TensorRT-LLM 1.2.x triton_backend/all_models/inflight_batcher_llm/preprocessing/
config.pbtxt (QUERY, REQUEST_OUTPUT_LEN, STOP_WORDS_DICT, BAD_WORDS_DICT, END_ID, PAD_ID in;
INPUT_ID, REQUEST_INPUT_LEN, REQUEST_OUTPUT_LEN, STOP_WORDS_IDS, BAD_WORDS_IDS, EMBEDDING_BIAS,
OUT_END_ID, OUT_PAD_ID out). Unlike upstream: our own GLM tokenizer (no trust_remote_code), the
chat template on request (`apply_chat_template` / `messages` request parameters, or optional
APPLY_CHAT_TEMPLATE / MESSAGES inputs), end/pad ids and stop tokens from the model, and a
prompt longer than `max_input_len` is rejected here with a clear error.

Multimodal repositories (parameter `multimodal_config`, GLM-4.1V): the optional IMAGES input, the
`vision_encoder` call and the prompt-table / M-RoPE outputs (glmtrt.triton.pymodels.mmrequest).
"""
from __future__ import annotations

import logging

import numpy as np

from glmtrt.triton.pymodels import common
from glmtrt.triton.pymodels.common import RequestError
from glmtrt.triton.pymodels.textproc import prepare

log = logging.getLogger(__name__)


def read_request(request, tok, *, add_special_tokens: bool, max_input_len: int | None, names: dict[str, str],
                 prompt_builder=None):
    """Prepared inputs of one request. `names` maps our roles to this model's tensor names
    (preprocessing: QUERY...; BLS: text_input...); `prompt_builder`: see textproc.prepare."""
    params = common.request_parameters(request, strict=True)
    texts = common.get_strings(request, names["text"])
    if texts is None:
        raise RequestError(f"input {names['text']} is required")
    if len(texts) != 1:
        raise RequestError(f"input {names['text']} holds {len(texts)} prompts; send one prompt per request")
    chat = bool(params.get("apply_chat_template", False))
    chat = bool(common.get_scalar(request, names["chat"], chat)) if names.get("chat") else chat
    messages = params.get("messages")
    if names.get("messages"):
        m = common.get_strings(request, names["messages"])
        messages = m[0] if m else messages
    bias = common.get_strings(request, names["bias_words"])
    if bias:
        raise RequestError(f"{names['bias_words']} is not supported by glmtrt; use bad_words to forbid words")
    return prepare(tok, text=texts[0], max_tokens=common.get_scalar(request, names["max_tokens"]),
                   stop_words=common.get_strings(request, names["stop_words"]),
                   bad_words=common.get_strings(request, names["bad_words"]),
                   end_id=common.get_scalar(request, names["end_id"]),
                   pad_id=common.get_scalar(request, names["pad_id"]),
                   chat=chat, messages=messages, add_special_tokens=add_special_tokens,
                   max_input_len=max_input_len, prompt_builder=prompt_builder)


PREPROCESSING_NAMES = {"text": "QUERY", "max_tokens": "REQUEST_OUTPUT_LEN", "stop_words": "STOP_WORDS_DICT",
                       "bad_words": "BAD_WORDS_DICT", "end_id": "END_ID", "pad_id": "PAD_ID",
                       "bias_words": "EMBEDDING_BIAS_WORDS", "chat": "APPLY_CHAT_TEMPLATE", "messages": "MESSAGES"}


#: preprocessing output -> the engine input it feeds (besides PROMPT_EMBEDDING_TABLE)
MM_OUTPUTS = {"PROMPT_VOCAB_SIZE": "prompt_vocab_size", "PROMPT_TABLE_EXTRA_IDS": "prompt_table_extra_ids",
              "MROPE_ROTARY_COS_SIN": "mrope_rotary_cos_sin", "MROPE_POSITION_DELTAS": "mrope_position_deltas"}


class TritonPythonModel:
    """Tokenizes prompts for the `tensorrt_llm` model."""

    def initialize(self, args):
        params = common.model_params(args)
        self.tokenizer = common.tokenizer_from_args(args, params)
        self.add_special_tokens = common.param_bool(params, "add_special_tokens", True)
        self.max_input_len = int(params["max_input_len"]) if "max_input_len" in params else None
        self.mm = None
        if "multimodal_config" in params:
            from glmtrt.triton.pymodels.mmproc import MultimodalFacts

            self.mm = MultimodalFacts.load(common.repo_path(args, params["multimodal_config"]))
        log.info("preprocessing: tokenizer %s, max_input_len %s, multimodal %s", self.tokenizer.name,
                 self.max_input_len, self.mm is not None)

    def execute(self, requests):
        pb = common.pb()
        responses = []
        for request in requests:
            try:
                if self.mm is not None:
                    responses.append(self._multimodal(request))
                    continue
                p = read_request(request, self.tokenizer, add_special_tokens=self.add_special_tokens,
                                 max_input_len=self.max_input_len, names=PREPROCESSING_NAMES)
            except RequestError as exc:
                responses.append(common.error_response(f"preprocessing: {exc}"))
                continue
            responses.append(pb.InferenceResponse(output_tensors=[pb.Tensor(k, v) for k, v in self._text(p).items()]))
        return responses

    @staticmethod
    def _text(p, ids=None) -> dict:
        ids = p.input_ids if ids is None else ids
        return {
                "INPUT_ID": np.array([ids], dtype=np.int32),
                "REQUEST_INPUT_LEN": np.array([[len(ids)]], dtype=np.int32),
                "REQUEST_OUTPUT_LEN": np.array([[p.output_len]], dtype=np.int32),
                "STOP_WORDS_IDS": common.stack_words([common.to_words_list(p.stop_words)]),
                "BAD_WORDS_IDS": common.stack_words([common.to_words_list(p.bad_words)]),
                "EMBEDDING_BIAS": np.zeros((1, 0), dtype=np.float32),
                "OUT_END_ID": np.array([[p.end_id]], dtype=np.int32),
                "OUT_PAD_ID": np.array([[p.pad_id]], dtype=np.int32),
            }

    def _multimodal(self, request):
        """Images + text -> the text outputs plus the prompt-table and M-RoPE outputs."""
        from glmtrt.triton.pymodels import mmrequest

        pb = common.pb()
        mm = mmrequest.prepare_request(request, self.tokenizer, self.mm, names=PREPROCESSING_NAMES,
                                       images_name="IMAGES", add_special_tokens=self.add_special_tokens,
                                       max_input_len=self.max_input_len)
        e = mm.engine
        tensors = [pb.Tensor(k, v) for k, v in self._text(mm.prepared, e["input_ids"][0].tolist()).items()]
        tensors.append(mmrequest.table_tensor("PROMPT_EMBEDDING_TABLE", e["prompt_embedding_table"], self.mm.table_dtype))
        for out, name in MM_OUTPUTS.items():
            tensors.append(pb.Tensor(out, e[name]))
        return pb.InferenceResponse(output_tensors=tensors)

    def finalize(self):
        log.info("preprocessing: finalize")
