"""Strict `${name}` templates: every placeholder filled, every value used, nothing survives."""
from __future__ import annotations

import re

import pytest

from glmtrt.errors import GlmtrtError
from glmtrt.triton import template as T

TEMPLATES = ("ensemble.pbtxt", "preprocessing.pbtxt", "postprocessing.pbtxt", "tensorrt_llm.pbtxt",
             "tensorrt_llm_reference.pbtxt", "tensorrt_llm_bls.pbtxt", "tensorrt_llm_io.pbtxt", "request_io.pbtxt")


def test_render_fills_and_formats_values():
    text = 'a: ${n}\nb: ${flag}\nc: "${s}"\nd: ${x}\n${block}'
    out = T.render(text, {"n": 3, "flag": True, "s": 'say "hi"\\ 你好', "x": 0.5, "block": T.Raw('e: "raw"')})
    assert out == 'a: 3\nb: true\nc: "say \\"hi\\"\\\\ 你好"\nd: 0.5\ne: "raw"'


def test_missing_value_names_parameter_and_file():
    with pytest.raises(GlmtrtError) as err:
        T.render("x: ${alpha}\ny: ${beta}", {"alpha": 1}, source="templates/demo.pbtxt")
    msg = str(err.value)
    assert "beta" in msg and "templates/demo.pbtxt" in msg and "alpha" not in msg.split("expected")[0].split(":")[-1]


def test_unused_value_is_an_error():
    with pytest.raises(GlmtrtError, match="gamma.*not used"):
        T.render("x: ${alpha}", {"alpha": 1, "gamma": 2}, source="t")


@pytest.mark.parametrize("bad", ["x: $alpha", "x: ${alpha", "x: ${1abc}", "x: ${}", "cost: 5$"])
def test_malformed_placeholder_is_an_error_with_line(bad):
    with pytest.raises(GlmtrtError, match=r"t:2: malformed placeholder"):
        T.render("ok: 1\n" + bad, {"alpha": 1}, source="t")


def test_value_may_not_smuggle_a_placeholder():
    with pytest.raises(GlmtrtError, match="'a' contains"):
        T.render('x: "${a}"', {"a": "${b}"}, source="t")
    with pytest.raises(GlmtrtError, match="'a' contains"):
        T.render("${a}", {"a": T.Raw("y: ${b}")}, source="t")


def test_value_type_is_checked():
    with pytest.raises(GlmtrtError, match="type list"):
        T.render("x: ${a}", {"a": [1]}, source="t")


@pytest.mark.parametrize("name", TEMPLATES)
def test_packaged_templates_are_well_formed(name):
    text = T.load_template(name)
    names = T.placeholders(text, source=name)
    assert names, f"{name} has no placeholders"
    # every placeholder must fail loudly when left out
    values = {n: "v" for n in names}
    for n in names:
        partial = {k: v for k, v in values.items() if k != n}
        with pytest.raises(GlmtrtError, match=re.escape(n)):
            T.render_template(name, partial)
    assert "${" not in T.render_template(name, values)


def test_unknown_template_is_an_error():
    with pytest.raises(GlmtrtError, match="not found"):
        T.load_template("nope.pbtxt")
