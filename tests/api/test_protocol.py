"""OpenAI request translation and the streaming text filters (pure; no server)."""
from __future__ import annotations

import pytest

pytest.importorskip("pydantic")

from glmtrt.api import protocol as P  # noqa: E402
from glmtrt.api.textstream import ReasoningSplitter, StopTrimmer, split_reasoning  # noqa: E402

CASES = ["<think>先想一想。</think>答案是 42", "没有思考的回答", "  <think>a</think>", "<think>被截断的思考",
         "<thi", "<think></think>", "a<think>b</think>c"]


def _cuts(text, sizes=(1, 2, 3, 5)):
    for n in sizes:
        yield [text[i:i + n] for i in range(0, len(text), n)]


@pytest.mark.parametrize("text", CASES)
def test_reasoning_split_is_independent_of_chunking(text):
    whole_r, whole_c = split_reasoning(text)
    for pieces in _cuts(text):
        s = ReasoningSplitter()
        out = [s.push(p) for p in pieces] + [s.flush()]
        r = "".join(x for x, _ in out)
        c = "".join(y for _, y in out)
        assert (r if s.opened else None, c) == (whole_r, whole_c)


def test_reasoning_split_values():
    assert split_reasoning("<think>先想一想。</think>答案是 42") == ("先想一想。", "答案是 42")
    assert split_reasoning("没有思考的回答") == (None, "没有思考的回答")
    assert split_reasoning("<think>被截断的思考") == ("被截断的思考", "")
    assert split_reasoning("a<think>b</think>c") == (None, "a<think>b</think>c")   # only a leading <think>


@pytest.mark.parametrize("stops, text, out", [
    (["。"], "你好。", "你好"), (["<|end|>"], "abc<|end|>", "abc"), (["xyz"], "abcxy", "abcxy"), ([], "abc", "abc"),
    (["世界", "bc"], "你好世界", "你好")])
def test_stop_trimmer(stops, text, out):
    for pieces in _cuts(text):
        t = StopTrimmer(stops)
        assert "".join([t.push(p) for p in pieces] + [t.flush()]) == out


def test_sampling_translation_and_refusals():
    req = P.ChatRequest(model="glm", messages=[{"role": "user", "content": "你好"}], max_tokens=9,
                        temperature=0.5, top_p=0.8, stop="。", seed=7, presence_penalty=0.1, frequency_penalty=-0.2)
    s = P.sampling_of(req)
    assert (s.max_tokens, s.temperature, s.top_p, s.stop, s.seed) == (9, 0.5, 0.8, ["。"], 7)
    assert (s.presence_penalty, s.frequency_penalty) == (0.1, -0.2)
    assert P.sampling_of(P.ChatRequest(model="m", messages=[{"role": "user", "content": "x"}])).max_tokens == \
        P.DEFAULT_MAX_TOKENS
    with pytest.raises(P.RequestError, match="n=3"):
        P.sampling_of(P.ChatRequest(model="m", messages=[{"role": "user", "content": "x"}], n=3))
    with pytest.raises(P.RequestError, match="at most 4"):
        P.sampling_of(P.ChatRequest(model="m", messages=[{"role": "user", "content": "x"}], stop=list("abcde")))


def test_messages_to_glm_roles():
    req = P.ChatRequest(model="m", messages=[
        {"role": "system", "content": "你是助手"}, {"role": "user", "content": [{"type": "text", "text": "天气"},
                                                                              {"type": "text", "text": "如何"}]},
        {"role": "tool", "content": "晴"}])
    assert P.glm_messages(req) == [{"role": "system", "content": "你是助手"}, {"role": "user", "content": "天气如何"},
                                   {"role": "observation", "content": "晴"}]
    with pytest.raises(P.RequestError) as info:
        P.glm_messages(P.ChatRequest(model="m", messages=[{"role": "robot", "content": "x"}]))
    assert info.value.param == "messages[0].role"
    assert P.wants_reasoning(P.ChatRequest(model="m", messages=[{"role": "user", "content": "x"}],
                                           chat_template_kwargs={"enable_thinking": True}))
    assert not P.wants_reasoning(P.ChatRequest(model="m", messages=[{"role": "user", "content": "x"}]))


def test_completion_prompt_and_finish_reason():
    assert P.completion_prompt(P.CompletionRequest(model="m", prompt=["你好"])) == "你好"
    for bad in ({"prompt": ["a", "b"]}, {"prompt": "a", "echo": True}, {"prompt": ""}):
        with pytest.raises(P.RequestError):
            P.completion_prompt(P.CompletionRequest(model="m", **bad))
    assert [P.finish_reason(n, 4) for n in (3, 4)] == ["stop", "length"]
    assert P.usage(5, 2) == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


def test_backend_error_classes():
    from glmtrt.api.backend import classify

    class E(Exception):
        def __init__(self, msg, status):
            super().__init__(msg)
            self._s = status

        def status(self):
            return self._s

    assert classify(E("Deadline Exceeded", "StatusCode.DEADLINE_EXCEEDED"), "h:1").status == 504
    assert classify(E("failed to connect to all addresses", "StatusCode.UNAVAILABLE"), "h:1").status == 503
    over = classify(E("prompt has 120 tokens, over max_input_len=96 of this model", None), "h:1")
    assert (over.status, over.code) == (400, "context_length_exceeded")
    assert classify(E("max_tokens=0: must be >= 1", "StatusCode.INVALID_ARGUMENT"), "h:1").status == 400
