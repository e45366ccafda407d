"""Offline validation of generated objects: Kubernetes API schemas (kubernetes-validate, strict,
pinned version) for built-in kinds; CRD kinds (LeaderWorkerSet, PodMonitor) against the subset of
their CRD schema pinned in `data/` (unknown fields refused), a LeaderWorkerSet's pod templates as
PodTemplate objects of the same Kubernetes version."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from glmtrt.errors import GlmtrtError

K8S_VERSION = "1.32.0"   # the Kubernetes API the manifests are checked against (kubernetes-validate schemas)
_DATA = Path(__file__).with_name("data")
CRD_SCHEMAS = {("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"): "lws_v1_schema.json",
               ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor_v1_schema.json"}


def _k8s(obj: dict[str, Any], version: str) -> list[str]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}: {exc.message} at "
                + "/".join(str(p) for p in exc.path)]
    return []


def _pod_templates(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] != "LeaderWorkerSet":
        return []
    lwt = obj["spec"]["leaderWorkerTemplate"]
    return [lwt[k] for k in ("leaderTemplate", "workerTemplate") if k in lwt]


def problems(objs: list[dict[str, Any]], version: str = K8S_VERSION) -> list[str]:
    """Every schema violation of the objects (empty: all valid)."""
    import jsonschema

    out: list[str] = []
    for obj in objs:
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in CRD_SCHEMAS:
            schema = json.loads((_DATA / CRD_SCHEMAS[key]).read_text(encoding="utf-8"))
            for err in jsonschema.Draft202012Validator(schema).iter_errors(obj):
                out.append(f"{key[1]}: {err.message} at {'/'.join(str(p) for p in err.path)}")
            for tpl in _pod_templates(obj):
                out += _k8s({"apiVersion": "v1", "kind": "PodTemplate",
                             "metadata": {"name": obj["metadata"]["name"]}, "template": tpl}, version)
        else:
            out += _k8s(obj, version)
    return out


def check(objs: list[dict[str, Any]], version: str = K8S_VERSION) -> None:
    """Raise GlmtrtError listing the violations (a glmtrt bug when it fires on generated objects)."""
    found = problems(objs, version)
    if found:
        raise GlmtrtError("generated Kubernetes objects fail schema validation (a glmtrt bug):\n" + "\n".join(found))
