"""The Streamlit page's logic through streamlit.testing.v1.AppTest against a real CPU Triton:
history, streaming answer with thinking folded away, trimming with a note, reset, idle
clearing, and the startup error panel."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.api.fronts import CONTENT, REASONING, make_repo, start_server

pytestmark = [pytest.mark.triton, pytest.mark.slow]
testing = pytest.importorskip("streamlit.testing.v1")
APP = str(Path(__file__).resolve().parents[2] / "glmtrt" / "ui" / "app.py")


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    with start_server(make_repo(tmp_path_factory.mktemp("ui"), max_batch_size=8)[0]) as srv:
        yield srv


def page(url: str, metrics: str = "") -> "testing.AppTest":
    os.environ["GLMTRT_UI_TRITON"] = url
    os.environ["GLMTRT_UI_METRICS"] = metrics
    os.environ["GLMTRT_UI_TEMPERATURE"] = "0"        # greedy: the scripted answer
    os.environ["GLMTRT_UI_MAX_TOKENS"] = "48"        # the test repository's max_seq_len is 160
    at = testing.AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def ask(at, text: str):
    at.chat_input[0].set_value(text).run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def at(triton):
    return page(triton.grpc_url, f"http://{triton.host}:{triton.metrics_port}/metrics")


def test_answer_streams_with_thinking_folded_and_stats(at):
    ask(at, "你好")
    hist = at.session_state["history"]
    assert [m["role"] for m in hist] == ["user", "assistant"]
    assert hist[1]["content"] == CONTENT and hist[1]["reasoning"] == REASONING
    assert hist[1]["stats"].startswith("TTFT ") and "tok/s" in hist[1]["stats"]
    assert any(CONTENT in md.value for md in at.markdown)
    assert [e.label for e in at.expander] == ["思考过程 / Thinking"]
    captions = [c.value for c in at.sidebar.caption]
    assert "GPU memory: not reported" in captions and "KV-cache blocks: not reported" in captions
    ask(at, "再说一遍")
    assert len(at.session_state["history"]) == 4


def test_trimming_drops_old_turns_with_a_note_and_reset(at):
    old = []
    for i in range(24):
        old += [{"role": "user", "content": f"第{i}个问题"}, {"role": "assistant", "content": f"第{i}个回答"}]
    at.session_state["history"] = old
    ask(at, "你好")
    hist = at.session_state["history"]
    users = [m for m in hist if m["role"] == "user"]
    assert 1 <= len(users) <= 20 and users[-1]["content"] == "你好"
    assert hist[-1]["content"] == CONTENT
    notes = [i.value for i in at.info]
    assert any("older turn(s) dropped" in n and "96 prompt tokens" in n for n in notes)
    at.sidebar.button[0].click().run()
    assert at.session_state["history"] == []


def test_idle_session_is_cleared(at):
    ask(at, "你好")
    at.session_state["last_active"] = time.time() - 31 * 60
    at.run()
    assert at.session_state["history"] == []
    assert any("30 minutes" in i.value for i in at.info)


def test_unreachable_server_shows_the_fix(triton):
    from glmtrt.triton.server import free_port

    at = page(f"127.0.0.1:{free_port()}")
    assert at.error and "Fix:" in at.error[0].value and "glmtrt serve" in at.error[0].value
    assert not at.chat_input
