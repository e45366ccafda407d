"""glmtrt.client.autoglm on answers in AutoGLM-Phone's format (zai-org/Open-AutoGLM), malformed ones included."""
from __future__ import annotations

import pytest

from glmtrt.client.autoglm import ACTIONS, annotate, parse, to_pixels

SIZE = (1080, 2400)     # a portrait phone screenshot


def test_tap_with_thinking_and_pixels():
    p = parse('<think>设置图标在第二行，点击它。</think>\n<answer>do(action="Tap", element=[499, 102])</answer>', SIZE)
    assert p.ok and p.finish is None
    assert p.thinking == "设置图标在第二行，点击它。"
    assert p.action.name == "Tap" and p.action.arguments == {"element": [499, 102]}
    # handler.py: int(499 / 1000 * 1080) = 538, int(102 / 1000 * 2400) = 244
    assert p.action.pixels == {"element": (538, 244)}


def test_grid_edges_and_clamp():
    assert to_pixels([0, 0], SIZE) == (0, 0)
    assert to_pixels([999, 999], SIZE) == (1078, 2397)
    assert to_pixels([1000, 1000], SIZE) == (1079, 2399)      # the edge, clamped to the last pixel


def test_swipe_long_press_double_tap():
    p = parse('<think>向上滑动</think><answer>do(action="Swipe", start=[500, 800], end=[500, 200])</answer>', SIZE)
    assert p.ok and p.action.pixels == {"start": (540, 1920), "end": (540, 480)}
    for name in ("Long Press", "Double Tap"):
        q = parse(f'<answer>do(action="{name}", element=[100, 900])</answer>', SIZE)
        assert q.ok and q.action.name == name and q.action.pixels == {"element": (108, 2160)}


@pytest.mark.parametrize("text, name, args", [
    ('do(action="Launch", app="设置")', "Launch", {"app": "设置"}),
    ('do(action="Type", text="北京天气")', "Type", {"text": "北京天气"}),
    ('do(action="Type_Name", text="张三")', "Type_Name", {"text": "张三"}),
    ('do(action="Back")', "Back", {}),
    ('do(action="Home")', "Home", {}),
    ('do(action="Wait", duration="2 seconds")', "Wait", {"duration": "2 seconds"}),
    ('do(action="Take_over", message="请输入验证码")', "Take_over", {"message": "请输入验证码"}),
    ('do(action="Tap", element=[10, 20], message="支付")', "Tap", {"element": [10, 20], "message": "支付"}),
    ('do(action="Interact")', "Interact", {}),
])
def test_every_action_form(text, name, args):
    p = parse(f"<think>t</think><answer>{text}</answer>")
    assert p.ok, p.error
    assert p.action.name == name and p.action.arguments == args
    assert p.action.pixels == {}        # no image size: grid coordinates only
    assert name in ACTIONS


def test_finish_and_quotes_and_newlines():
    p = parse('<think>已经打开</think><answer>finish(message="已打开设置。")</answer>')
    assert p.ok and p.finish == "已打开设置。" and p.action is None
    # unescaped quotes inside Type / finish text (handler.py takes everything up to the closing '")')
    assert parse('<answer>do(action="Type", text="他说"你好"")</answer>').action.arguments["text"] == '他说"你好"'
    assert parse('<answer>finish(message="完成"了"")</answer>').finish == '完成"了"'
    assert parse('<answer>do(action="Type", text="第一行\n第二行")</answer>').action.arguments["text"] == "第一行\n第二行"


def test_without_answer_tags():
    p = parse('我需要点击搜索框 do(action="Tap", element=[500, 80])', SIZE)
    assert p.ok and p.thinking == "我需要点击搜索框" and p.action.pixels == {"element": (540, 192)}
    assert parse("任务完成 finish(message=\"好的\")").finish == "好的"


@pytest.mark.parametrize("text, why", [
    ("", "no action"),
    ("<think>只想不做</think>", "no action"),
    ('<answer>do(action="Tap", element=[500</answer>', "cannot parse"),
    ('<answer>do(action="Tap", element=[500, 1200])</answer>', "outside"),
    ('<answer>do(action="Tap", element=[-1, 5])</answer>', "outside"),
    ('<answer>do(action="Tap", element="500,100")</answer>', "expected [x, y]"),
    ('<answer>do(action="Tap", element=[1, 2, 3])</answer>', "expected [x, y]"),
    ('<answer>do(action="Tap")</answer>', "needs element"),
    ('<answer>do(action="Swipe", start=[1, 2])</answer>', "needs end"),
    ('<answer>do(action="Fly", element=[1, 2])</answer>', "unknown action 'Fly'"),
    ('<answer>do(element=[1, 2])</answer>', "without action"),
    ('<answer>do("Tap", [1, 2])</answer>', "positional"),
    ('<answer>__import__("os").system("true")</answer>', "cannot parse"),
    ('<answer>finish(message=42)</answer>', "without a message"),
    ('<answer>do(action="Tap", element=[x, y])</answer>', "cannot parse"),
])
def test_malformed_answers_give_an_error_not_a_crash(text, why):
    p = parse(text, SIZE)
    assert not p.ok and why in p.error, p.error
    assert isinstance(p.to_dict(), dict)


def test_not_text():
    assert not parse(None).ok


def test_annotate_tap_and_swipe(shot, tmp_path):
    from PIL import Image

    out = tmp_path / "tap.png"
    p = parse('<answer>do(action="Tap", element=[500, 500])</answer>', SIZE)
    assert annotate(shot, p, out)
    with Image.open(out) as im, Image.open(shot) as orig:
        assert im.size == orig.size
        ring = [im.getpixel((540 + dx, 1200)) for dx in range(20, 35)]
        assert (255, 0, 0) in ring                     # the ring around the tap point is drawn in red
    sw = parse('<answer>do(action="Swipe", start=[500, 800], end=[500, 200])</answer>', SIZE)
    assert annotate(shot.read_bytes(), sw, tmp_path / "swipe.png")
    with Image.open(tmp_path / "swipe.png") as im:
        assert im.getpixel((540, 1200)) == (255, 0, 0)   # on the arrow's shaft
    assert not annotate(shot, parse('<answer>do(action="Back")</answer>', SIZE), tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
