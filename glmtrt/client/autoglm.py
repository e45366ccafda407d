"""AutoGLM-Phone answers -> thinking, action and finish message, coordinates in screenshot pixels.

The model answers `<think>REASONING</think><answer>ACTION</answer>` where ACTION is one call:
`do(action="Tap", element=[x, y])`, `do(action="Swipe", start=[x1, y1], end=[x2, y2])`,
`do(action="Type", text="...")`, ... or `finish(message="...")`.

Facts from zai-org/Open-AutoGLM (main branch as indexed; files named below):
- the action set is the handler table of `phone_agent/actions/handler.py` (`ActionHandler._get_handler`):
  Launch, Tap, Type, Type_Name, Swipe, Back, Home, Double Tap, Long Press, Wait, Take_over, Note,
  Call_API, Interact; `finish(...)` ends the task;
- coordinates: the system prompt (`phone_agent/config/prompts_zh.py`) tells the model the screen runs
  from (0,0) top-left to (999,999) bottom-right, and the handler converts with
  `int(v / 1000 * screen_size)` (`_convert_relative_to_absolute`, "relative coordinates (0-1000)").
  We convert the same way (so pixels equal what the phone agent taps) and accept 0..1000 inclusive;
- splitting: text after `<answer>` (tags removed) is the action, the text before it (think tags
  removed) the thinking; without `<answer>`, the action starts at `finish(message=` or `do(action=`
  (`phone_agent/model/client.py` `ModelClient._parse_response`);
- `Type` text may hold quotes the model did not escape, so a failed literal parse of a Type action
  falls back to the text between `text="` and the closing `")` (as `parse_action` in handler.py does).

`parse(text, image_size)` never raises on model output: a malformed answer gives `error` (one line)
and whatever could be read.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

#: action name -> its coordinate arguments (phone_agent/actions/handler.py)
ACTIONS: dict[str, tuple[str, ...]] = {
    "Launch": (), "Tap": ("element",), "Type": (), "Type_Name": (), "Swipe": ("start", "end"),
    "Back": (), "Home": (), "Double Tap": ("element",), "Long Press": ("element",), "Wait": (),
    "Take_over": (), "Note": (), "Call_API": (), "Interact": (),
}
#: the model's grid: x_px = int(x / GRID * width) (handler.py _convert_relative_to_absolute)
GRID = 1000
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


@dataclass(frozen=True)
class Action:
    """One `do(...)` call: its name, its keyword arguments as the model wrote them (grid coordinates),
    and the coordinate arguments in pixels of the screenshot (empty without an image size)."""

    name: str
    arguments: dict[str, Any]
    pixels: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Parsed:
    """A parsed AutoGLM answer; `error` is None when the answer is well formed."""

    thinking: str
    action: Action | None
    finish: str | None
    raw: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        a = self.action
        return {"thinking": self.thinking, "finish": self.finish, "error": self.error,
                "action": None if a is None else {"name": a.name, "arguments": a.arguments,
                                                  "pixels": {k: list(v) for k, v in a.pixels.items()}}}


def split_answer(text: str) -> tuple[str, str]:
    """(thinking, action text) as Open-AutoGLM's client splits a response."""
    if "<answer>" in text:
        before, after = text.split("<answer>", 1)
        return (before.replace("<think>", "").replace("</think>", "").strip(),
                after.replace("</answer>", "").strip())
    for marker in ("finish(message=", "do(action="):
        if marker in text:
            before, after = text.split(marker, 1)
            return before.replace("<think>", "").replace("</think>", "").strip(), marker + after.strip()
    return text.replace("<think>", "").replace("</think>", "").strip(), ""


def _call(action: str) -> tuple[str, dict[str, Any]]:
    """('do'|'finish', keyword arguments) of one call, by Python's literal parser (no eval)."""
    src = "".join(_ESCAPES.get(c, c) for c in action)
    tree = ast.parse(src, mode="eval")
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name) or call.func.id not in ("do", "finish"):
        raise ValueError("expected do(...) or finish(...)")
    if call.args:
        raise ValueError("positional arguments (the model writes keywords: action=..., element=...)")
    return call.func.id, {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def _text_fallback(action: str) -> tuple[str, dict[str, Any]] | None:
    """Type / finish text with unescaped quotes: everything between the opening quote and the final `")`."""
    m = re.match(r'do\(action="(Type|Type_Name)",\s*text="(.*)"\)\s*$', action, re.S)
    if m:
        return "do", {"action": m.group(1), "text": m.group(2)}
    m = re.match(r'finish\(message="(.*)"\)\s*$', action, re.S)
    return ("finish", {"message": m.group(1)}) if m else None


def _point(value, what: str) -> tuple[float, float]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"{what}={value!r}: expected [x, y] numbers on the 0-{GRID - 1} grid")
    x, y = value
    if not (0 <= x <= GRID and 0 <= y <= GRID):
        raise ValueError(f"{what}={list(value)} is outside the model's 0-{GRID - 1} grid")
    return float(x), float(y)


def to_pixels(point, image_size: tuple[int, int]) -> tuple[int, int]:
    """Grid [x, y] -> pixel (x, y) of a width x height screenshot (handler.py's int(v / 1000 * size)),
    clamped to the last pixel (1000 maps to the edge)."""
    w, h = image_size
    x, y = _point(point, "point")
    return min(int(x / GRID * w), w - 1), min(int(y / GRID * h), h - 1)


def parse(text: str, image_size: tuple[int, int] | None = None) -> Parsed:
    """Parse an AutoGLM answer. `image_size` (width, height) of the original screenshot converts the
    action's coordinates to pixels. Malformed text gives a Parsed with `error` set (never raises)."""
    raw = text if isinstance(text, str) else ""
    if not isinstance(text, str):
        return Parsed("", None, None, raw, f"expected the answer as text, got {type(text).__name__}")
    thinking, action = split_answer(text)
    if not action:
        return Parsed(thinking, None, None, raw, "no action: the answer has neither <answer> nor do(...)/finish(...)")
    try:
        kind, kwargs = _call(action)
    except (SyntaxError, ValueError) as exc:
        fallback = _text_fallback(action)
        if fallback is None:
            why = exc.msg if isinstance(exc, SyntaxError) else str(exc)
            return Parsed(thinking, None, None, raw, f"cannot parse the action {action[:80]!r}: {why}")
        kind, kwargs = fallback
    if kind == "finish":
        msg = kwargs.get("message")
        if not isinstance(msg, str):
            return Parsed(thinking, None, None, raw, "finish(...) without a message string")
        return Parsed(thinking, None, msg, raw)
    name = kwargs.pop("action", None)
    if not isinstance(name, str):
        return Parsed(thinking, None, None, raw, "do(...) without action=\"...\"")
    act = Action(name, kwargs)
    if name not in ACTIONS:
        return Parsed(thinking, act, None, raw, f"unknown action {name!r}; known: {', '.join(ACTIONS)}")
    pixels = {}
    try:
        for arg in ACTIONS[name]:
            if arg not in kwargs:
                raise ValueError(f"{name} needs {arg}=[x, y]")
            _point(kwargs[arg], arg)
            if image_size is not None:
                pixels[arg] = to_pixels(kwargs[arg], image_size)
    except ValueError as exc:
        return Parsed(thinking, act, None, raw, str(exc))
    return Parsed(thinking, Action(name, kwargs, pixels), None, raw)


def describe(p: Parsed) -> str:
    """One or two lines for the terminal."""
    if p.finish is not None:
        return f"finish: {p.finish}"
    lines = []
    if p.action is not None:
        args = ", ".join(f"{k}={v!r}" for k, v in p.action.arguments.items())
        px = "  ->  " + ", ".join(f"{k} at pixel {v}" for k, v in p.action.pixels.items()) if p.action.pixels else ""
        lines.append(f"action: {p.action.name}({args}){px}")
    if p.error:
        lines.append(f"not a valid AutoGLM action: {p.error}")
    return "\n".join(lines)


def annotate(image, parsed: Parsed, out_path) -> bool:
    """Save the screenshot (`image`: a path or the encoded bytes) with the action drawn: a ring at a
    tap / press point, an arrow for a swipe. False (nothing written) when there is no point to draw."""
    import io

    from PIL import Image, ImageDraw

    pts = parsed.action.pixels if parsed.action is not None else {}
    if not pts:
        return False
    with Image.open(io.BytesIO(image) if isinstance(image, (bytes, bytearray)) else image) as im:
        img = im.convert("RGB")
    draw = ImageDraw.Draw(img)
    r = max(6, min(img.size) // 40)
    width = max(2, r // 3)
    if "start" in pts and "end" in pts:
        (x0, y0), (x1, y1) = pts["start"], pts["end"]
        draw.line([(x0, y0), (x1, y1)], fill=(255, 0, 0), width=width)
        dx, dy = x1 - x0, y1 - y0
        n = max((dx * dx + dy * dy) ** 0.5, 1e-6)
        ux, uy = dx / n, dy / n
        head = [(x1, y1), (x1 - 2 * r * ux + r * uy, y1 - 2 * r * uy - r * ux),
                (x1 - 2 * r * ux - r * uy, y1 - 2 * r * uy + r * ux)]
        draw.polygon(head, fill=(255, 0, 0))
        draw.ellipse([x0 - r // 2, y0 - r // 2, x0 + r // 2, y0 + r // 2], outline=(255, 0, 0), width=width)
    else:
        x, y = pts["element"]
        draw.ellipse([x - r, y - r, x + r, y + r], outline=(255, 0, 0), width=width)
        draw.line([(x - r // 3, y), (x + r // 3, y)], fill=(255, 0, 0), width=max(1, width // 2))
        draw.line([(x, y - r // 3), (x, y + r // 3)], fill=(255, 0, 0), width=max(1, width // 2))
    import os
    from pathlib import Path

    out = Path(out_path)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        img.save(tmp, format=Image.registered_extensions().get(out.suffix.lower(), "PNG"))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return True
