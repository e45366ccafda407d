"""--image at the client boundary: validation, the `images` request tensor, generate / chat CLI, the OpenAI
endpoint's image_url parts (against a fake backend; the served path is in test_autoglm_e2e when the
multimodal repository exists)."""
from __future__ import annotations

import base64
import json

import pytest
from click.testing import CliRunner

from glmtrt.cli import main
from glmtrt.client.images import decode_data_url, read_image
from glmtrt.client.request import request_arrays
from glmtrt.errors import GlmtrtError
from tests.autoglm.conftest import make_screenshot


def test_read_image_png_jpeg(tmp_path):
    png = read_image(make_screenshot(tmp_path / "a.png", (64, 48)))
    jpg = read_image(make_screenshot(tmp_path / "a.jpg", (64, 48), "JPEG"))
    assert (png.format, png.size, jpg.format) == ("PNG", (64, 48), "JPEG")
    assert png.data == (tmp_path / "a.png").read_bytes()          # sent unchanged
    assert decode_data_url(png.data_url()).data == png.data


@pytest.mark.parametrize("make, why", [
    (lambda p: None, "does not exist"),
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_text("这不是图片", encoding="utf-8"), "not a readable image"),
    (lambda p: p.write_bytes(make_screenshot(p.with_suffix(".ok.png"), (64, 64)).read_bytes()[:100]),
     "not a readable image"),                                       # truncated PNG
    (lambda p: make_screenshot(p, (16, 16), "GIF"), "GIF image"),
])
def test_bad_images_are_clear_errors(tmp_path, make, why):
    p = tmp_path / "x.png"
    make(p)
    with pytest.raises(GlmtrtError, match=why):
        read_image(p)


def test_bad_data_urls():
    for url, why in (("http://x/a.png", "not a base64 data URL"), ("data:image/png,abc", "not a base64"),
                     ("data:image/png;base64,@@@", "malformed"),
                     ("data:image/png;base64," + base64.b64encode(b"text").decode(), "not a readable image")):
        with pytest.raises(GlmtrtError, match=why):
            decode_data_url(url)


def test_images_tensor():
    arrs = {n: (a, d) for n, a, d in request_arrays("打开设置", max_tokens=8, images=[b"\x89PNG1", b"\xff\xd8J2"])}
    a, dtype = arrs["images"]
    assert dtype == "BYTES" and a.shape == (1, 2) and a.dtype == object and list(a[0]) == [b"\x89PNG1", b"\xff\xd8J2"]
    assert "images" not in {n for n, _, _ in request_arrays("hi", max_tokens=8)}


ANSWER = '<think>设置在第一屏。</think><answer>do(action="Tap", element=[500, 250])</answer>'


@pytest.fixture
def fake_stream(monkeypatch):
    calls = []

    def stream_generate(url, text, **kw):
        calls.append((url, text, kw))
        yield from (ANSWER[:20], ANSWER[20:])

    monkeypatch.setattr("glmtrt.client.stream.stream_generate", stream_generate)
    return calls


def test_generate_image_autoglm_annotated(tmp_path, fake_stream):
    shot = make_screenshot(tmp_path / "shot.png")
    out = tmp_path / "out.png"
    r = CliRunner().invoke(main, ["generate", "127.0.0.1:1", "打开设置", "--image", str(shot), "--autoglm",
                                  "--save-annotated", str(out)])
    assert r.exit_code == 0, r.output
    (_, text, kw), = fake_stream
    assert text == "打开设置" and kw["images"] == [shot.read_bytes()] and kw["chat"] is True
    assert "action: Tap(element=[500, 250])" in r.output and "(540, 600)" in r.output
    js = json.loads([line for line in r.output.splitlines() if line.startswith("{")][0])
    assert js["action"]["pixels"] == {"element": [540, 600]} and js["thinking"] == "设置在第一屏。"
    assert out.is_file()


@pytest.mark.parametrize("args, why", [
    (["--image", "missing.png"], "does not exist"),
    (["--save-annotated", "o.png"], "--save-annotated needs --autoglm"),
    (["--raw", "--image", "IMG"], "--raw"),
    (["--image", "TXT"], "not a readable image"),
])
def test_generate_validation(tmp_path, fake_stream, args, why):
    img = make_screenshot(tmp_path / "i.png", (32, 32))
    (tmp_path / "t.png").write_text("x")
    args = [a.replace("IMG", str(img)).replace("TXT", str(tmp_path / "t.png")) for a in args]
    r = CliRunner().invoke(main, ["generate", "127.0.0.1:1", "hi", *args])
    assert r.exit_code == 2 and why in r.output and "Traceback" not in r.output
    assert not fake_stream                                   # refused before any request


def test_generate_autoglm_malformed_exit_1(tmp_path, monkeypatch):
    monkeypatch.setattr("glmtrt.client.stream.stream_generate", lambda *a, **k: iter(["<answer>do(action=</answer>"]))
    r = CliRunner().invoke(main, ["generate", "127.0.0.1:1", "hi", "--autoglm"])
    assert r.exit_code == 1 and "not a valid AutoGLM action" in r.output


def test_chat_image_command_attaches_to_next_turn(tmp_path, fake_stream, monkeypatch):
    class Counter:
        def __init__(self, *a, **k):
            pass

        def max_input_tokens(self):
            return None

    monkeypatch.setattr("glmtrt.client.remote.ServerTokenCounter", Counter)
    shot = make_screenshot(tmp_path / "s.png", (64, 64))
    r = CliRunner().invoke(main, ["chat", "127.0.0.1:1"], input=f"/image {shot}\n看图\n/image nope.png\n再说\n\n")
    assert r.exit_code == 0, r.output
    assert "attached" in r.output and "does not exist" in r.output
    assert [c[2]["images"] for c in fake_stream] == [[shot.read_bytes()], None]
    assert fake_stream[1][2]["history"][-1]["role"] == "assistant"


class FakeBackend:
    """What glmtrt.api.app needs from TritonBackend, recording the images it is given."""

    url, model = "fake:1", "ensemble"

    def __init__(self, images_ok=True):
        self.images_ok, self.seen = images_ok, []

    async def ready(self, model=None):
        return True, "ready"

    async def accepts_images(self):
        return self.images_ok

    async def count_prompt_tokens(self, prompt, messages, images=None):
        return 7

    async def stream(self, prompt, messages, sampling, model=None, images=None):
        from glmtrt.api.backend import Chunk

        self.seen.append((messages, images))
        yield Chunk(ANSWER, 5, False)
        yield Chunk("", 0, True)

    async def close(self):
        pass


def _post(backend, messages):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from glmtrt.api.app import create_app

    with TestClient(create_app(backend, served_model_name="autoglm")) as c:
        return c.post("/v1/chat/completions", json={"model": "autoglm", "messages": messages, "max_tokens": 16})


def _image_msg(url, text="打开设置"):
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": text}]}


def test_openai_image_url_data_url(tmp_path):
    img = read_image(make_screenshot(tmp_path / "s.png", (108, 240)))
    b = FakeBackend()
    r = _post(b, [{"role": "system", "content": "你是手机助手"}, _image_msg(img.data_url())])
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == ANSWER
    (messages, images), = b.seen
    assert images == [img.data] and messages[-1] == {"role": "user", "content": "打开设置"}


@pytest.mark.parametrize("messages, code, param", [
    ([_image_msg("https://example.com/shot.png")], "image_url_not_supported", "messages[0].content"),
    ([_image_msg("data:image/png;base64,AAAA")], "invalid_image", "messages[0].content"),
    ([_image_msg("DATA"), {"role": "assistant", "content": "好"}, {"role": "user", "content": "再来"}],
     None, "messages[0].content"),
])
def test_openai_image_refusals(tmp_path, messages, code, param):
    url = read_image(make_screenshot(tmp_path / "s.png", (32, 32))).data_url()
    messages = json.loads(json.dumps(messages).replace('"DATA"', json.dumps(url)))
    b = FakeBackend()
    r = _post(b, messages)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and (code is None or err["code"] == code)
    assert not b.seen
    if code == "image_url_not_supported":
        assert "data:image/png;base64" in err["message"]


def test_openai_image_to_a_text_repository_is_400(tmp_path):
    url = read_image(make_screenshot(tmp_path / "s.png", (32, 32))).data_url()
    b = FakeBackend(images_ok=False)
    r = _post(b, [_image_msg(url)])
    assert r.status_code == 400 and r.json()["error"]["code"] == "images_not_supported" and not b.seen
