"""Strict `${name}` templates for Triton config.pbtxt files.

Rules (docs/CONTRIBUTING.md: "Templates are strict"):
- every `${name}` in the template must get a value, else GlmtrtError naming the
  parameter and the template file;
- every value given must be used by the template (a typo in a key is an error, not
  a silently ignored setting);
- a `$` not followed by a well-formed `${identifier}` is an error (no `$name`, no `${`);
- nothing of the form `${...}` survives rendering (values may not contain `${`).

Values: `bool` renders as `true` / `false`, numbers as their decimal text, `str` is
escaped for a protobuf text-format string (backslash, double quote, newline), and a
`Raw` block (an already-rendered fragment) is inserted verbatim.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Mapping, Union

from glmtrt.errors import GlmtrtError

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ANY_DOLLAR = re.compile(r"\$")

TEMPLATE_PACKAGE = "glmtrt.triton.templates"


@dataclass(frozen=True)
class Raw:
    """An already-rendered text block, inserted without escaping (e.g. a shared fragment)."""

    text: str


Value = Union[str, int, float, bool, Raw]


def placeholders(text: str, *, source: str = "<template>") -> list[str]:
    """Names of the `${name}` placeholders in `text`, in order of first use.

    Raises GlmtrtError on a malformed `$` (anything but `${identifier}`).
    """
    names: list[str] = []
    for match in _ANY_DOLLAR.finditer(text):
        ok = _PLACEHOLDER.match(text, match.start())
        if not ok:
            line = text.count("\n", 0, match.start()) + 1
            snippet = text[match.start(): match.start() + 20].splitlines()[0]
            raise GlmtrtError(
                f"{source}:{line}: malformed placeholder {snippet!r}",
                expected="placeholders written as ${identifier}",
                fix=f"correct the placeholder in {source}",
            )
        if ok.group(1) not in names:
            names.append(ok.group(1))
    return names


def _format(name: str, value: Value, source: str) -> str:
    if isinstance(value, Raw):
        text = value.text
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = repr(value)
    elif isinstance(value, str):
        text = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    else:
        raise GlmtrtError(
            f"{source}: value of parameter '{name}' has type {type(value).__name__}",
            expected="str, int, float, bool or Raw",
            fix="convert the value before rendering",
        )
    if "${" in text:
        raise GlmtrtError(
            f"{source}: value of parameter '{name}' contains '${{': {text[:60]!r}",
            expected="a value without template placeholders",
            fix=f"resolve the value of '{name}' before rendering",
        )
    return text


def render(text: str, values: Mapping[str, Value], *, source: str = "<template>") -> str:
    """Substitute every `${name}` in `text` from `values`, strictly (see module doc)."""
    names = placeholders(text, source=source)
    missing = [n for n in names if n not in values]
    if missing:
        raise GlmtrtError(
            f"{source}: no value for parameter(s) {', '.join(missing)}",
            expected=f"a value for every placeholder of {source}",
            fix="pass the missing parameter(s) to the generator (a bug if you did not edit the template)",
        )
    unused = sorted(set(values) - set(names))
    if unused:
        raise GlmtrtError(
            f"{source}: parameter(s) {', '.join(unused)} given but not used by the template",
            expected=f"only the placeholders of {source}: {', '.join(names) or '(none)'}",
            fix="remove the unknown parameter(s) or add them to the template",
        )
    formatted = {n: _format(n, values[n], source) for n in names}
    out = _PLACEHOLDER.sub(lambda m: formatted[m.group(1)], text)
    if "${" in out:  # cannot happen after the checks above; defence in depth
        raise GlmtrtError(f"{source}: unfilled placeholder survived rendering", fix="report this bug")
    return out


def load_template(name: str) -> str:
    """Text of the packaged template `glmtrt/triton/templates/<name>` (UTF-8)."""
    try:
        return resources.files(TEMPLATE_PACKAGE).joinpath(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GlmtrtError(
            f"template {name!r} not found in {TEMPLATE_PACKAGE}",
            fix="reinstall glmtrt (package data missing)",
        ) from None


def render_template(name: str, values: Mapping[str, Value]) -> str:
    """Load and strictly render a packaged template; errors name `templates/<name>`."""
    return render(load_template(name), values, source=f"templates/{name}")
