"""The Streamlit page of `glmtrt ui` (run by `streamlit run`; settings come from GLMTRT_UI_* env vars).

One ChatService per server process (`st.cache_resource`), one history per browser tab
(`st.session_state`), the last <= 20 turns that fit the engine's input limit are sent
(glmtrt.client.history.trim_history; older turns are dropped with a note), answers stream
through `st.write_stream`. Image upload stays hidden until an AutoGLM (GLM-4.1V) repository
exists: this page serves text models only.
"""
from __future__ import annotations

import json
import os
import time
import uuid

import streamlit as st

from glmtrt.api.backend import BackendError, Sampling
from glmtrt.client.history import MAX_TURNS, trim_history
from glmtrt.errors import GlmtrtError
from glmtrt.ui.service import CHAT_MODELS, IDLE_SECONDS, AnswerStats, ChatService

TRITON = os.environ.get("GLMTRT_UI_TRITON", "127.0.0.1:8001")
METRICS = os.environ.get("GLMTRT_UI_METRICS") or None
DEFAULT_MODEL = os.environ.get("GLMTRT_UI_MODEL", "ensemble")
DEFAULT_TEMPERATURE = min(2.0, max(0.0, float(os.environ.get("GLMTRT_UI_TEMPERATURE") or 0.7)))
DEFAULT_MAX_TOKENS = min(8192, max(1, int(os.environ.get("GLMTRT_UI_MAX_TOKENS") or 256)))


@st.cache_resource(show_spinner=False)
def get_service(url: str, metrics_url: str | None) -> ChatService:
    """The process-wide Triton connection."""
    return ChatService(url, metrics_url=metrics_url)


@st.cache_data(ttl=60, show_spinner=False)
def input_limit(url: str, metrics_url: str | None) -> int | None:
    return get_service(url, metrics_url).max_input_len()


def export_json(history: list[dict], system: str, model: str, sampling: dict) -> str:
    """The conversation as JSON (Chinese kept as is)."""
    return json.dumps({"server": TRITON, "model": model, "system": system, "sampling": sampling,
                       "messages": history}, ensure_ascii=False, indent=2)


st.set_page_config(page_title="GLM chat · glmtrt", page_icon="💬")
svc = get_service(TRITON, METRICS)
state = st.session_state
if "history" not in state:
    state.history, state.sid, state.last_active, state.notes = [], uuid.uuid4().hex, time.time(), []
now = time.time()
if state.history and now - state.last_active > IDLE_SECONDS:
    state.history.clear()
    state.notes.append("The conversation was cleared after 30 minutes without activity.")
svc.sessions.sweep(IDLE_SECONDS, now)
state.last_active = now
svc.sessions.touch(state.sid, state.history, now)

with st.sidebar:
    st.header("Settings / 设置")
    model = st.selectbox("Model", CHAT_MODELS, index=CHAT_MODELS.index(DEFAULT_MODEL) if DEFAULT_MODEL in CHAT_MODELS
                         else 0, help="ensemble: preprocessing → engine → postprocessing; BLS: one python model")
    system = st.text_area("System prompt / 系统提示", key="system", height=80)
    temperature = st.slider("Temperature", 0.0, 2.0, DEFAULT_TEMPERATURE, 0.05, help="0 = greedy")
    top_p = st.slider("Top-p", 0.05, 1.0, 0.9, 0.05)
    max_tokens = st.number_input("Max tokens", min_value=1, max_value=8192, value=DEFAULT_MAX_TOKENS, step=16)
    sampling = {"temperature": temperature, "top_p": top_p, "max_tokens": int(max_tokens)}
    st.subheader("Server")
    st.caption(f"Triton {TRITON}")
    facts = svc.facts()
    for line in (facts.lines() if facts else ["metrics: not reported (no metrics URL)"]):
        st.caption(line)
    if st.button("Reset / 清空", use_container_width=True):
        state.history.clear()
        state.notes.clear()
    st.download_button("Export JSON / 导出", export_json(state.history, system, model, sampling),
                       file_name="conversation.json", mime="application/json", use_container_width=True)

st.title("GLM chat")
ok, why = svc.check(model)
if not ok:
    st.error(f"**The model is not available.** {why}.\n\n**Fix:** start the Triton server "
             f"(`glmtrt serve REPO`, or `glmtrt demo --ui` for the CPU demo) and check "
             f"`glmtrt ui --triton {TRITON}` points at its gRPC port; then reload this page.")
    st.stop()

for note in state.notes:
    st.info(note)
for msg in state.history:
    with st.chat_message(msg["role"]):
        if msg.get("reasoning"):
            with st.expander("思考过程 / Thinking", expanded=False):
                st.markdown(msg["reasoning"])
        st.markdown(msg["content"])
        if msg.get("stats"):
            st.caption(msg["stats"])

prompt = st.chat_input("输入消息 / Type a message")
if prompt:
    state.history.append({"role": "user", "content": prompt})
    with st.chat_message("user"):
        st.markdown(prompt)
    convo = ([{"role": "system", "content": system}] if system.strip() else []) + \
        [{"role": m["role"], "content": m["content"]} for m in state.history]
    limit = input_limit(TRITON, METRICS)
    try:
        kept, dropped = trim_history(convo, count_tokens=svc.count_tokens,
                                     max_input_tokens=limit or 10**9, max_turns=MAX_TURNS)
    except (GlmtrtError, BackendError) as exc:
        state.history.pop()
        st.error(f"Not sent: {exc}")
        st.stop()
    if dropped:
        # drop the same oldest turns from the tab's history (they no longer reach the model)
        user_idx = [i for i, m in enumerate(state.history) if m["role"] == "user"]
        del state.history[:user_idx[dropped]]
        note = (f"{dropped} older turn(s) dropped: at most {MAX_TURNS} turns"
                + (f" and {limit} prompt tokens" if limit else "") + " reach the model.")
        state.notes = [note]
        st.info(note)
    with st.chat_message("assistant"):
        stats, thinking = AnswerStats(), []
        try:
            answer = st.write_stream(svc.stream(kept, Sampling(**sampling), model, stats, reasoning=thinking))
        except BackendError as exc:
            answer = ""
            st.error(f"Generation failed: {exc}")
        thought = "".join(thinking)
        if thought:
            with st.expander("思考过程 / Thinking", expanded=False):
                st.markdown(thought)
        caption = stats.caption()
        st.caption(caption)
    if answer:
        state.history.append({"role": "assistant", "content": answer, "stats": caption,
                              **({"reasoning": thought} if thought else {})})
    else:
        state.history.pop()
