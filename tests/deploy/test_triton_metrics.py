"""The metric names in the HPA and the Prometheus adapter rules are names a real Triton (2.51,
CPU, the nvidia-pytriton wheel) exports on /metrics, with the labels the rules select on."""
from __future__ import annotations

import re
import urllib.request

import pytest

from glmtrt.deploy import objects
from tests.triton.conftest import answer, repo, scripted, server, tok, tok_dir  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.triton, pytest.mark.slow]


def _scrape(srv) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=30).read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_rule_metrics_are_exported_by_triton(server):
    # Triton exports its per-model series from load on (zero before the first request)
    families = _scrape(server)
    wanted = {objects.PENDING_SERIES, objects.QUEUE_SERIES, objects.COUNT_SERIES}
    names = {n for n in families}
    # prometheus_client strips a counter's _total suffix only; Triton's names carry none
    assert wanted <= names, sorted(n for n in names if n.startswith("nv_inference"))
    for name in wanted:
        models = {s.labels.get("model") for s in families[name].samples}
        assert "tensorrt_llm" in models, (name, models)
    assert families[objects.PENDING_SERIES].type == "gauge"
    assert families[objects.QUEUE_SERIES].type == "counter"


def test_adapter_rules_name_only_exported_series(server, make_repo):
    from glmtrt.deploy.spec import resolve

    spec = resolve(make_repo(), image="i", replicas=1, max_replicas=2, gpu_type="t4", model_store="pvc:m")
    rules = objects.adapter_rules(spec)["rules"]["custom"]
    text = " ".join(r["seriesQuery"] + " " + r["metricsQuery"] for r in rules)
    used = set(re.findall(r"\bnv_[a-z_]+", text))
    assert used and used <= set(_scrape(server)), used
