"""The Helm chart renders (real Helm v4 engine, helm-python-sdk) to the objects of the Kustomize
base (rendered by `kubectl kustomize` when kubectl is at hand, else read from its files)."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from glmtrt.deploy.render import write_deployment
from glmtrt.deploy.spec import resolve
from glmtrt.deploy.validate import problems


def _docs(text: str) -> list[dict]:
    import yaml

    return [d for d in yaml.safe_load_all(text) if d]


def _key(o: dict) -> tuple:
    return o["kind"], o["metadata"]["name"]


def _canon(objs: list[dict]) -> dict:
    return {_key(o): json.loads(json.dumps(o, sort_keys=True)) for o in objs}


@pytest.fixture(scope="module", params=[(1, "pvc:glm-models", False), (8, "init:https://s.example/m.tar.gz", True)],
                ids=["tp1-pvc", "tp8-multinode-init"])
def out(request, make_repo, tmp_path_factory):
    tp, store, multi = request.param
    spec = resolve(make_repo(tp), image="registry.example/glmtrt:t4", replicas=2, max_replicas=8, gpu_type="t4",
                   model_store=store, multi_node=multi)
    return write_deployment(spec, tmp_path_factory.mktemp("deploy") / "chatglm3")


def _base(out) -> list[dict]:
    import yaml

    kust = yaml.safe_load((out / "kustomization.yaml").read_text())
    return [d for f in kust["resources"] for d in _docs((out / f).read_text())]


def _helm(out, values=None) -> list[dict]:
    chart_mod = pytest.importorskip("helm_python.chart", reason="helm-python-sdk (real Helm renderer) not installed")
    rendered = chart_mod.Chart.load(out / "chart").render(values=values, name="chatglm3", namespace="default")
    return [d for text in rendered.values() for d in _docs(text)]


def test_base_files_validate(out):
    assert problems(_base(out)) == []


def test_kubectl_kustomize_builds_the_base(out):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl (with its built-in kustomize) not on PATH")
    res = subprocess.run([kubectl, "kustomize", str(out)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert _canon(_docs(res.stdout)) == _canon(_base(out))


def test_helm_chart_renders_to_the_base(out):
    helm = _helm(out)
    assert _canon(helm) == _canon(_base(out))


def test_helm_values_change_what_they_name(out):
    helm = _canon(_helm(out, {"image": "r.example/glmtrt:v2", "maxReplicas": 16, "pendingTarget": 3}))
    base = _canon(_base(out))
    changed = {k[0] for k in base if base[k] != helm[k]}
    assert changed == {"HorizontalPodAutoscaler", "LeaderWorkerSet" if ("LeaderWorkerSet", "chatglm3-int8-triton")
                       in base else "Deployment"}
    hpa = next(v for k, v in helm.items() if k[0] == "HorizontalPodAutoscaler")["spec"]
    assert hpa["maxReplicas"] == 16 and hpa["metrics"][0]["pods"]["target"]["averageValue"] == 3
    fronts = [v for k, v in helm.items() if k[1].endswith(("-openai", "-ui")) and k[0] == "Deployment"]
    assert fronts and all(f["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/glmtrt:t4"
                          for f in fronts)   # the fronts follow frontImage, not image
    assert "r.example/glmtrt:v2" in json.dumps(list(helm.values()))
    assert problems(list(helm.values())) == []
