"""`glmtrt deploy k8s`: the objects, their schema validity (Kubernetes 1.32, strict), bad input."""
from __future__ import annotations

import json

import pytest

from glmtrt.deploy.objects import PENDING_METRIC, QUEUE_METRIC, build_objects, default_values
from glmtrt.deploy.spec import SERVER_EXIT_TIMEOUT_S, resolve
from glmtrt.deploy.validate import problems
from glmtrt.errors import GlmtrtError
from glmtrt.triton.launch import launch_command


def _spec(repo, **kw):
    args = {"image": "registry.example/glmtrt:t4", "replicas": 2, "max_replicas": 8, "gpu_type": "t4",
            "model_store": "pvc:glm-models", **kw}
    return resolve(repo, **args)


def _by(objs, kind, name=None):
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert found, (kind, name)
    return found[0] if name else found


@pytest.mark.parametrize("tp,gpu,toolchain,store", [(1, "t4", "0.13.0", "pvc:glm-models"),
                                                    (2, "rtx4090", "1.2.0", "init:https://store.example/chatglm3.tar.gz")])
def test_objects_are_valid_and_carry_the_repository_facts(make_repo, tp, gpu, toolchain, store):
    repo = make_repo(tp, toolchain)
    spec = _spec(repo, gpu_type=gpu, model_store=store)
    objs = build_objects(spec, default_values(spec))
    assert problems(objs) == []
    assert sorted({o["kind"] for o in objs}) == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler",
                                                 "Ingress", "PodDisruptionBudget", "PodMonitor", "Service"]
    dep = _by(objs, "Deployment", "chatglm3-int8-triton")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["command"] == launch_command("/models/repo", tp)  # the repository's own launcher
    assert (c["command"][0] == "mpirun") == (tp > 1)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == tp
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert pod["terminationGracePeriodSeconds"] > SERVER_EXIT_TIMEOUT_S
    want = {"t4": "Tesla-T4", "rtx4090": "NVIDIA-GeForce-RTX-4090"}[gpu]
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"] == [{"key": "nvidia.com/gpu.product", "operator": "In", "values": [want]}]
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["dshm"]["emptyDir"]["medium"] == "Memory"
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/dev/shm"]["name"] == "dshm"
    assert mounts["/models/repo"]["subPath"] == "repo" and mounts["/engines/chatglm3"]["subPath"] == "engine"
    if store.startswith("pvc:"):
        assert vols["store"]["persistentVolumeClaim"]["claimName"] == "glm-models" and "initContainers" not in pod
    else:
        assert pod["initContainers"][0]["args"][0] == store[5:] and "emptyDir" in vols["store"]
    # every Service selects the pods of one Deployment, by labels those pods really have; named ports exist
    deps = {d["metadata"]["name"]: d for d in _by(objs, "Deployment")}
    for svc in _by(objs, "Service"):
        owners = [d for d in deps.values() if d["spec"]["template"]["metadata"]["labels"] == svc["spec"]["selector"]]
        assert len(owners) == 1, svc["metadata"]["name"]
        names = {p["name"] for ct in owners[0]["spec"]["template"]["spec"]["containers"] for p in ct["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= names
    assert _by(objs, "Service", "chatglm3-int8-triton")["spec"]["clusterIP"] == "None"  # headless: the proxy sees pods
    envoy = json.loads(_by(objs, "ConfigMap")[0]["data"]["envoy.json"])
    cluster = envoy["static_resources"]["clusters"][0]
    assert cluster["type"] == "STRICT_DNS" and cluster["lb_policy"] == "LEAST_REQUEST"
    assert cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == \
        {"address": "chatglm3-int8-triton", "port_value": 8001}
    for front, argv in (("openai", ["glmtrt", "openai"]), ("ui", ["glmtrt", "ui"])):
        fc = deps[f"chatglm3-int8-{front}"]["spec"]["template"]["spec"]["containers"][0]
        assert fc["command"] == [*argv, "--triton", "chatglm3-int8-grpc:8001"] and "nvidia.com/gpu" not in str(fc)
    ing = _by(objs, "Ingress")[0]["spec"]["rules"][0]["http"]["paths"][0]
    assert ing["path"] == "/v1" and ing["backend"]["service"]["name"] == "chatglm3-int8-openai"
    hpa = _by(objs, "HorizontalPodAutoscaler")[0]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chatglm3-int8-triton"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 8) and "replicas" not in dep["spec"]  # the HPA's
    assert [m["pods"]["metric"]["name"] for m in hpa["metrics"]] == [PENDING_METRIC, QUEUE_METRIC]
    pm = _by(objs, "PodMonitor")[0]["spec"]
    assert pm["selector"]["matchLabels"] == dep["spec"]["template"]["metadata"]["labels"]
    assert pm["podMetricsEndpoints"][0]["port"] in {p["name"] for p in c["ports"]}
    assert {p["metadata"]["name"] for p in _by(objs, "PodDisruptionBudget")} == {"chatglm3-int8-triton",
                                                                               "chatglm3-int8-grpc-proxy"}


def test_the_schema_check_rejects_broken_objects(make_repo):
    spec = _spec(make_repo())
    objs = build_objects(spec, default_values(spec))
    dep = _by(objs, "Deployment", "chatglm3-int8-triton")
    dep["spec"]["replicas"] = "two"
    dep["spec"]["template"]["spec"]["containers"][0]["gpuCount"] = 1   # unknown field: strict
    _by(objs, "PodMonitor")[0]["spec"]["podMetricsEndpoints"][0]["interval"] = "15 seconds"
    found = problems(objs)
    assert any("Deployment/chatglm3-int8-triton" in p for p in found) and any("PodMonitor" in p for p in found)


def test_multi_node_tp_is_a_leader_worker_set(make_repo):
    repo = make_repo(8)
    with pytest.raises(GlmtrtError, match="(?s)world size 8.*4 GPUs.*--multi-node"):
        _spec(repo)
    spec = _spec(repo, multi_node=True)
    assert (spec.nodes, spec.gpus_per_pod) == (2, 4)
    objs = build_objects(spec, default_values(spec))
    assert problems(objs) == []
    lws = _by(objs, "LeaderWorkerSet")[0]
    lwt = lws["spec"]["leaderWorkerTemplate"]
    assert lwt["size"] == 2 and lwt["restartPolicy"] == "RecreateGroupOnPodRestart"
    leader = lwt["leaderTemplate"]["spec"]["containers"][0]
    script = leader["command"][2]
    assert leader["resources"]["limits"]["nvidia.com/gpu"] == 4 and "--host" in script
    assert script.count("/bin/tritonserver ") == 8 and script.count("shm-region-prefix-name=prefix") == 8
    assert lwt["workerTemplate"]["spec"]["containers"][0]["command"][0] == "/usr/sbin/sshd"
    hpa = _by(objs, "HorizontalPodAutoscaler")[0]["spec"]
    assert hpa["scaleTargetRef"]["kind"] == "LeaderWorkerSet"
    lwt["size"] = 0
    lwt["restartPolicy"] = "Always"
    lwt["workerTemplate"]["spec"]["containers"][0]["volumeMount"] = []
    found = problems(objs)
    assert any("size" in p for p in found) and any("restartPolicy" in p for p in found)
    assert any("PodTemplate" in p for p in found), found


def test_bench_summary_sets_the_hpa_targets(make_repo, tmp_path):
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"max_concurrency_at_slo": 24, "slo_ttft_ms": 500}))
    spec = _spec(make_repo(), bench_summary=summary)
    assert (spec.pending_target, spec.queue_us_target) == (24 - 8, 250_000)   # max_batch_size 8
    summary.write_text(json.dumps({"max_concurrency_at_slo": 0}))
    with pytest.raises(GlmtrtError, match="max_concurrency_at_slo"):
        _spec(make_repo(), bench_summary=summary)


def test_bad_input_gives_a_clear_error(make_repo, tmp_path):
    with pytest.raises(GlmtrtError, match="no repository manifest glmtrt_repo.json"):
        _spec(tmp_path)
    with pytest.raises(GlmtrtError, match="(?s)GPU type .a100.*rtx4090, t4"):
        _spec(make_repo(), gpu_type="a100")
    with pytest.raises(GlmtrtError, match="0.13 contract on --gpu-type rtx4090"):
        _spec(make_repo(), gpu_type="rtx4090")
    with pytest.raises(GlmtrtError, match="--model-store"):
        _spec(make_repo(), model_store="s3://bucket/x")
    with pytest.raises(GlmtrtError, match="replicas"):
        _spec(make_repo(), replicas=9)


def test_cli_writes_and_refuses(make_repo, tmp_path):
    from click.testing import CliRunner

    from glmtrt.cli import main

    out = tmp_path / "deploy"
    args = ["deploy", "k8s", str(make_repo()), "--image", "r/glmtrt:t4", "--gpu-type", "t4",
            "--model-store", "pvc:glm-models", "--replicas", "2", "--max-replicas", "8", "-o", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert (out / "kustomization.yaml").is_file() and (out / "chart" / "values.yaml").is_file()
    assert json.loads((out / "glmtrt_deploy.json").read_text())["hpa_targets"]["source"] == "default"
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "already exists" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, [*args[:-2], "-o", str(tmp_path / "x"), "--gpu-type", "v100"])
    assert res.exit_code == 2 and "expected: one of rtx4090, t4" in res.output
    res = CliRunner().invoke(main, ["deploy", "k8s", str(tmp_path), "--image", "i", "--gpu-type", "t4",
                                    "--model-store", "pvc:m", "-o", str(tmp_path / "y")])
    assert res.exit_code == 2 and "glmtrt_repo.json" in res.output
