"""The Kubernetes objects of a deployment, built once from (spec, values).

`values` holds the settings a Helm user may override; the Kustomize base is these objects with
the defaults, the Helm chart is the same objects built with placeholders where the values go
(`glmtrt.deploy.render`), so there is one source and no second hand-kept copy.

gRPC balancing: Triton's clients keep one HTTP/2 connection, so a ClusterIP Service pins every
request of a front to one Triton pod. We put an L7 proxy (Envoy, `lb_policy: LEAST_REQUEST` over
the headless Service's pod addresses, re-resolved by DNS) in front of Triton: it balances each
gRPC stream whatever the client (our OpenAI endpoint, the web chat, `glmtrt bench`,
perf_analyzer) and needs no client change; least-request suits streams of very unequal length.
"""
from __future__ import annotations

from typing import Any

from glmtrt.deploy.spec import ENVOY_IMAGE, PORTS, DeploySpec
from glmtrt.triton.launch import launch_command

# The fronts' command lines (`glmtrt openai`, `glmtrt ui`): argv before --triton, listen port.
FRONTS = {"openai": (["glmtrt", "openai"], 8080), "ui": (["glmtrt", "ui"], 8501)}
STORE_MOUNT = "/store"


def default_values(spec: DeploySpec) -> dict[str, Any]:
    """The chart's values.yaml (and the Kustomize base's settings)."""
    v = {"image": spec.image, "frontImage": spec.image, "proxyImage": ENVOY_IMAGE, "replicas": spec.replicas,
         "maxReplicas": spec.max_replicas, "pendingTarget": spec.pending_target,
         "queueTimeTargetUs": spec.queue_us_target, "openaiReplicas": spec.openai_replicas,
         "uiReplicas": spec.ui_replicas, "proxyReplicas": spec.proxy_replicas, "shmSize": spec.shm_size}
    v["modelStore"] = spec.store_ref
    return v


def _labels(spec: DeploySpec, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": "glmtrt"}


def _meta(spec: DeploySpec, component: str, suffix: str | None = None) -> dict[str, Any]:
    return {"name": f"{spec.name}-{suffix or component}", "labels": _labels(spec, component)}


def _ports() -> list[dict[str, Any]]:
    return [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in PORTS.items()]


def _store_volumes(spec: DeploySpec, v: dict) -> tuple[list, list, list]:
    """(volumes, mounts of the server, init containers): repo/ and engine/ of the model store at the
    paths the repository's configs name."""
    vols = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": v["shmSize"]}}]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"},
              {"name": "store", "mountPath": spec.repo_path, "subPath": "repo", "readOnly": True},
              {"name": "store", "mountPath": spec.engine_path, "subPath": "engine", "readOnly": True}]
    inits: list = []
    if spec.store_kind == "pvc":
        vols.append({"name": "store", "persistentVolumeClaim": {"claimName": v["modelStore"], "readOnly": True}})
    else:
        vols.append({"name": "store", "emptyDir": {}})
        fetch = ("import sys, tarfile, urllib.request; "
                 "tarfile.open(fileobj=urllib.request.urlopen(sys.argv[1]), mode='r|*').extractall(sys.argv[2])")
        inits.append({"name": "fetch-model-store", "image": v["image"], "command": ["python3", "-c", fetch],
                      "args": [v["modelStore"], STORE_MOUNT],
                      "volumeMounts": [{"name": "store", "mountPath": STORE_MOUNT}]})
    return vols, mounts, inits


def _affinity(spec: DeploySpec) -> dict[str, Any]:
    term = {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": [spec.product]}]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


def triton_pod(spec: DeploySpec, v: dict, *, command: list[str] | None = None, probes: bool = True) -> dict[str, Any]:
    """Pod template of one Triton replica (or of the leader/worker of a multi-node replica)."""
    vols, mounts, inits = _store_volumes(spec, v)
    container = {"name": "triton", "image": v["image"],
                 "command": command or launch_command(spec.repo_path, spec.world_size),
                 "ports": _ports(), "volumeMounts": mounts,
                 "resources": {"limits": {"nvidia.com/gpu": spec.gpus_per_pod},
                               "requests": {"nvidia.com/gpu": spec.gpus_per_pod, "cpu": "2", "memory": "16Gi"}}}
    if probes:
        http = {"port": "http"}
        container["startupProbe"] = {"httpGet": {"path": "/v2/health/ready", **http}, "periodSeconds": 10,
                                     "failureThreshold": 90}  # engine load: up to 15 min
        container["readinessProbe"] = {"httpGet": {"path": "/v2/health/ready", **http}, "periodSeconds": 5,
                                       "failureThreshold": 3}
        container["livenessProbe"] = {"httpGet": {"path": "/v2/health/live", **http}, "periodSeconds": 10,
                                      "failureThreshold": 6}
    pod = {"terminationGracePeriodSeconds": spec.grace_s, "affinity": _affinity(spec),
           "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
           "containers": [container], "volumes": vols}
    if inits:
        pod["initContainers"] = inits
    return pod


def _deployment(spec: DeploySpec, component: str, replicas: Any, pod: dict) -> dict[str, Any]:
    """replicas None: the HPA owns the count (Kubernetes docs, HPA: leave spec.replicas out of the
    manifest, or every apply resets what the HPA set); it starts at 1 and the HPA raises it to min."""
    sel = _labels(spec, component)
    body = {"selector": {"matchLabels": sel}, "template": {"metadata": {"labels": sel}, "spec": pod}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(spec, component),
            "spec": body if replicas is None else {"replicas": replicas, **body}}


def _service(spec: DeploySpec, component: str, ports: dict[str, int], *, headless: bool = False,
             suffix: str | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"selector": _labels(spec, component),
                         "ports": [{"name": n, "port": p, "targetPort": n, "protocol": "TCP"} for n, p in ports.items()]}
    if headless:
        s["clusterIP"] = "None"
        s["publishNotReadyAddresses"] = False
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(spec, component, suffix), "spec": s}


def _front(spec: DeploySpec, v: dict, which: str, replicas: Any) -> list[dict[str, Any]]:
    argv, port = FRONTS[which]
    grpc = f"{spec.name}-grpc:{PORTS['grpc']}"
    c = {"name": which, "image": v["frontImage"], "command": [*argv, "--triton", grpc],
         "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
         "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
         "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5}}
    return [_deployment(spec, which, replicas, {"containers": [c]}),
            _service(spec, which, {"http": port})]


def openai_ingress(spec: DeploySpec) -> dict[str, Any]:
    """HTTP entry for the OpenAI endpoint (`glmtrt bench http://<ingress>/v1 --api openai`); the
    cluster's default IngressClass serves it; streamed answers need a long read timeout (ingress-nginx)."""
    backend = {"service": {"name": f"{spec.name}-openai", "port": {"name": "http"}}}
    meta = _meta(spec, "openai")
    meta["annotations"] = {"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
                           "nginx.ingress.kubernetes.io/proxy-buffering": "off"}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
            "spec": {"rules": [{"http": {"paths": [{"path": "/v1", "pathType": "Prefix", "backend": backend}]}}]}}


def envoy_config(spec: DeploySpec) -> dict[str, Any]:
    """Envoy v3 bootstrap: HTTP/2 listener on the gRPC port -> every ready Triton pod, per stream."""
    upstream = {"address": {"socket_address": {"address": f"{spec.name}-triton", "port_value": PORTS["grpc"]}}}
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
           "stat_prefix": "grpc", "codec_type": "AUTO", "stream_idle_timeout": "0s",
           "route_config": {"virtual_hosts": [{"name": "triton", "domains": ["*"],
                                               "routes": [{"match": {"prefix": "/"},
                                                           "route": {"cluster": "triton", "timeout": "0s"}}]}]},
           "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 9901}}},
            "static_resources": {
                "listeners": [{"name": "grpc", "address": {"socket_address": {"address": "0.0.0.0",
                                                                              "port_value": PORTS["grpc"]}},
                               "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                               "typed_config": hcm}]}]}],
                "clusters": [{"name": "triton", "type": "STRICT_DNS", "dns_lookup_family": "V4_ONLY",
                              "dns_refresh_rate": "5s", "lb_policy": "LEAST_REQUEST", "connect_timeout": "2s",
                              "typed_extension_protocol_options": {
                                  "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                                      "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                                      "explicit_http_config": {"http2_protocol_options": {}}}},
                              "outlier_detection": {"consecutive_5xx": 3, "base_ejection_time": "10s"},
                              "load_assignment": {"cluster_name": "triton",
                                                  "endpoints": [{"lb_endpoints": [{"endpoint": upstream}]}]}}]}}


def _proxy(spec: DeploySpec, v: dict) -> list[dict[str, Any]]:
    import json

    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(spec, "grpc-proxy", "grpc-proxy"),
          "data": {"envoy.json": json.dumps(envoy_config(spec), indent=1, sort_keys=True)}}
    c = {"name": "envoy", "image": v["proxyImage"], "command": ["envoy", "-c", "/etc/envoy/envoy.json"],
         "ports": [{"name": "grpc", "containerPort": PORTS["grpc"], "protocol": "TCP"}],
         "volumeMounts": [{"name": "config", "mountPath": "/etc/envoy", "readOnly": True}],
         "readinessProbe": {"tcpSocket": {"port": "grpc"}, "periodSeconds": 5},
         "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}
    pod = {"containers": [c], "volumes": [{"name": "config", "configMap": {"name": cm["metadata"]["name"]}}]}
    return [cm, _deployment(spec, "grpc-proxy", v["proxyReplicas"], pod),
            _service(spec, "grpc-proxy", {"grpc": PORTS["grpc"]}, suffix="grpc")]


def hpa(spec: DeploySpec, v: dict, target_kind: str, target_api: str) -> dict[str, Any]:
    """HPA on the Triton queue metrics the Prometheus adapter serves (`adapter_rules`)."""
    def pods(metric: str, avg: Any) -> dict[str, Any]:
        return {"type": "Pods", "pods": {"metric": {"name": metric}, "target": {"type": "AverageValue", "averageValue": avg}}}
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": _meta(spec, "triton"),
            "spec": {"scaleTargetRef": {"apiVersion": target_api, "kind": target_kind, "name": f"{spec.name}-triton"},
                     "minReplicas": v["replicas"], "maxReplicas": v["maxReplicas"],
                     "metrics": [pods(PENDING_METRIC, v["pendingTarget"]), pods(QUEUE_METRIC, v["queueTimeTargetUs"])],
                     "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}}}}


# Triton metric -> the custom metric the adapter derives from it (per pod)
PENDING_SERIES = "nv_inference_pending_request_count"    # gauge, per model
QUEUE_SERIES = "nv_inference_queue_duration_us"          # counter, per model
COUNT_SERIES = "nv_inference_request_success"            # counter, per model
PENDING_METRIC = "triton_pending_requests"
QUEUE_METRIC = "triton_queue_time_us_per_request"


def adapter_rules(spec: DeploySpec) -> dict[str, Any]:
    """prometheus-adapter `rules.custom` (the prometheus-community chart's values)."""
    res = {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}}
    sel = 'namespace!="",pod!=""'
    return {"rules": {"custom": [
        {"seriesQuery": f"{PENDING_SERIES}{{{sel}}}", "resources": res,
         "name": {"matches": f"^{PENDING_SERIES}$", "as": PENDING_METRIC},
         "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)"},
        {"seriesQuery": f"{QUEUE_SERIES}{{{sel}}}", "resources": res,
         "name": {"matches": f"^{QUEUE_SERIES}$", "as": QUEUE_METRIC},
         "metricsQuery": (f'sum(rate(<<.Series>>{{<<.LabelMatchers>>,model="tensorrt_llm"}}[2m])) by (<<.GroupBy>>) / '
                          f'clamp_min(sum(rate({COUNT_SERIES}{{<<.LabelMatchers>>,model="tensorrt_llm"}}[2m])) '
                          "by (<<.GroupBy>>), 1e-9)")},
    ]}}


def pod_monitor(spec: DeploySpec) -> dict[str, Any]:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": _meta(spec, "triton"),
            "spec": {"selector": {"matchLabels": _labels(spec, "triton")},
                     "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}]}}


def pdb(spec: DeploySpec, component: str) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(spec, component),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _labels(spec, component)}}}


def build_objects(spec: DeploySpec, v: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object of the base, in apply order."""
    from glmtrt.deploy.multinode import leader_worker_set

    if spec.multi_node:
        server = [leader_worker_set(spec, v)]
        kind, api = "LeaderWorkerSet", "leaderworkerset.x-k8s.io/v1"
    else:
        server = [_deployment(spec, "triton", None, triton_pod(spec, v))]
        kind, api = "Deployment", "apps/v1"
    return [*server, _service(spec, "triton", PORTS, headless=True), *_proxy(spec, v),
            *_front(spec, v, "openai", v["openaiReplicas"]), openai_ingress(spec), *_front(spec, v, "ui", v["uiReplicas"]),
            hpa(spec, v, kind, api), pdb(spec, "triton"), pdb(spec, "grpc-proxy"), pod_monitor(spec)]
