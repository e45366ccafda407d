"""OpenAI transport (HTTP SSE) against a small local SSE server, through the bench runner, eval and CLI."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

ANSWER = ["你好", "，", "世界", "! ", "𠮷", "鿏"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: list = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": "glm-test", "object": "model"}]}).encode()
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.bodies.append(req)
        if req.get("model") != "glm-test":
            body = b'{"error": {"message": "no such model"}}'
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        chat = self.path.endswith("/chat/completions")
        pieces = ANSWER[: req["max_tokens"]]
        time.sleep(0.03)
        for i, p in enumerate(pieces):
            if chat:
                choice = {"index": 0, "delta": {"content": p}, "finish_reason": None}
                if req.get("logprobs"):
                    choice["logprobs"] = {"content": [{"token": p, "logprob": -0.1 * i,
                                                       "top_logprobs": [{"token": p, "logprob": -0.1 * i},
                                                                        {"token": "x", "logprob": -3.0}]}]}
            else:
                choice = {"index": 0, "text": p, "finish_reason": None}
            if i == len(pieces) - 1:
                choice["finish_reason"] = "length" if len(pieces) < len(ANSWER) else "stop"
            self.wfile.write(f"data: {json.dumps({'choices': [choice]}, ensure_ascii=False)}\n\n".encode())
            self.wfile.flush()
            time.sleep(0.01)
        usage = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": len(pieces) + 1}}
        self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture(scope="module")
def sse_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def test_stream_chat_and_completions(sse_server):
    from glmtrt.client.openai_sse import AsyncOpenAIClient

    async def main():
        async with AsyncOpenAIClient(sse_server, model="glm-test") as c:
            assert await c.ready()
            chunks = [ch async for ch in c.stream(messages=[{"role": "user", "content": "你好"}], max_tokens=16,
                                                  temperature=0.0, min_tokens=3, return_log_probs=True)]
        async with AsyncOpenAIClient(sse_server, model="glm-test", api="completions") as c:
            done = await c.generate("hi", max_tokens=3)
        return chunks, done

    chunks, done = asyncio.run(main())
    assert "".join(ch.text for ch in chunks) == "".join(ANSWER)
    assert chunks[-1].final and chunks[-1].num_tokens == len(ANSWER) + 1 and chunks[-1].finish_reason == "stop"
    assert chunks[1].top_log_probs[0] == {"，": -0.1, "x": -3.0} and chunks[1].log_probs == (-0.1,)
    body = _Handler.bodies[-2]
    assert body["stream"] and body["stream_options"] == {"include_usage": True} and body["min_tokens"] == 3
    assert body["messages"] == [{"role": "user", "content": "你好"}] and body["temperature"] == 0.0
    assert done.text == "".join(ANSWER[:3]) and done.finish_reason == "length"
    assert _Handler.bodies[-1]["prompt"] == "hi"


def test_errors(sse_server):
    from glmtrt.client.openai_sse import AsyncOpenAIClient
    from glmtrt.errors import GlmtrtError

    async def main():
        async with AsyncOpenAIClient(sse_server, model="nope") as c:
            with pytest.raises(GlmtrtError, match="HTTP 404"):
                await c.generate("hi")
        async with AsyncOpenAIClient("http://127.0.0.1:1/v1", model="x") as c:
            assert not await c.ready()
            with pytest.raises(GlmtrtError, match="is the server running"):
                await c.generate("hi")

    asyncio.run(main())


def test_bench_and_eval_cli_over_openai(sse_server, tmp_path):
    out = tmp_path / "oa"
    cmd = [sys.executable, "-m", "glmtrt", "bench", sse_server, "--api", "openai", "--model", "glm-test",
           "--concurrency", "1,3", "--num-requests", "6", "--no-progress", "--out", str(out), "--warmup", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "c3" / "summary.json").read_text())
    assert s["requests"]["successful"] == 6 and s["server_output_tokens_total"] == 6 * (len(ANSWER) + 1)
    # no --tokenizer: the client counts chunks with text (6) against the server's 7 -> a warning
    assert s["token_count_diff_pct"] == pytest.approx(100 * (6 - 7) / 7) and s["warnings"]
    run = json.loads((out / "c3" / "run.json").read_text())
    assert run["transport"] == "openai-chat" and run["server"]["models"][0]["id"] == "glm-test"
    texts = {json.loads(line)["text"] for line in (out / "c1" / "requests.jsonl").read_text("utf-8").splitlines()}
    assert texts == {"".join(ANSWER)}
    base = tmp_path / "base"
    ev = [sys.executable, "-m", "glmtrt", "eval", sse_server, "--api", "openai", "--model", "glm-test",
          "--max-tokens", "16"]
    assert subprocess.run(ev + ["--out", str(base)], capture_output=True, text=True, timeout=120).returncode == 0
    r = subprocess.run(ev + ["--out", str(tmp_path / "same"), "--baseline", str(base), "--max-divergence", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "PASS" in r.stdout, r.stderr
    e = json.loads((tmp_path / "same" / "eval.json").read_text())["summary"]
    assert e["exact_match_rate"] == 1.0 and e["kl"]["mean"] == pytest.approx(0.0, abs=1e-12)
    # a baseline that answered differently fails --max-divergence
    lines = (base / "requests.jsonl").read_text("utf-8").splitlines()
    rec = json.loads(lines[0])
    rec["chunk_texts"] = ["你好", "，", "朋友"]
    (base / "requests.jsonl").write_text("\n".join([json.dumps(rec, ensure_ascii=False)] + lines[1:]) + "\n", "utf-8")
    r = subprocess.run(ev + ["--out", str(tmp_path / "diff"), "--baseline", str(base), "--max-divergence", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "FAIL" in r.stderr and "Traceback" not in r.stderr
