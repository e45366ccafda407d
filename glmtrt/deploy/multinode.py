"""Multi-node tensor parallel: one replica = one LeaderWorkerSet group of `nodes` pods.

LeaderWorkerSet v1 (kubernetes-sigs/lws, `config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml`):
`spec.leaderWorkerTemplate.{leaderTemplate, workerTemplate (required), size, restartPolicy}`,
`spec.replicas` with a scale subresource (so the HPA can target it; it selects the leader pods),
`startupPolicy` LeaderCreated | LeaderReady. LWS gives every pod `LWS_LEADER_ADDRESS`
(`<name>-<group>.<name>.<namespace>`), `LWS_GROUP_SIZE` and `LWS_WORKER_INDEX`; worker i of a
group is `<name>-<group>-<i>` in the same subdomain. The schema subset we rely on is pinned in
`glmtrt/deploy/data/lws_v1_schema.json`.

The leader runs the repository's own launch command (`glmtrt.triton.launch.launch_command`, one
`mpirun` with world-size app contexts) over all pods of the group: `--host leader:G,worker1:G,...`
puts ranks 0..G-1 on the leader (rank 0 serves), the next G on worker 1, and so on. Workers only
run sshd for mpirun's launcher: the image must have openssh-server and a shared key (docs/DEPLOY.md).
Constraints: same GPU type on every node (the affinity), a fast interconnect (InfiniBand/RoCE,
NCCL) between them, one pod per node. Not exercised here: there is no cluster.
"""
from __future__ import annotations

import shlex
from typing import Any

from glmtrt.deploy.spec import DeploySpec
from glmtrt.triton.launch import launch_command


def leader_script(spec: DeploySpec) -> str:
    """bash: build the group's host list from the LWS env, then exec the launcher's mpirun."""
    argv = launch_command(spec.repo_path, spec.world_size)
    assert argv[:2] == ["mpirun", "--allow-run-as-root"]
    g = spec.gpus_per_pod
    return "\n".join([
        "set -euo pipefail",
        f'hosts="${{LWS_LEADER_ADDRESS}}:{g}"',
        'for i in $(seq 1 $((LWS_GROUP_SIZE - 1))); do hosts="${hosts},${LWS_LEADER_ADDRESS/./-$i.}:' + f'{g}"; done',
        "exec mpirun --allow-run-as-root --host \"${hosts}\" --map-by slot -x NCCL_DEBUG "
        + " ".join(shlex.quote(a) for a in argv[2:]),
    ])


def leader_worker_set(spec: DeploySpec, v: dict[str, Any]) -> dict[str, Any]:
    """The LeaderWorkerSet of a multi-node replica set (the HPA scales `spec.replicas` groups)."""
    from glmtrt.deploy.objects import _labels, _meta, triton_pod

    leader = triton_pod(spec, v, command=["bash", "-c", leader_script(spec)])
    worker = triton_pod(spec, v, command=["/usr/sbin/sshd", "-D", "-e"], probes=False)
    worker["containers"][0]["ports"] = [{"name": "ssh", "containerPort": 22, "protocol": "TCP"}]
    labels = _labels(spec, "triton")
    return {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "metadata": _meta(spec, "triton"),
            "spec": {"startupPolicy": "LeaderCreated",  # replicas: the HPA's (minReplicas = --replicas)
                     "leaderWorkerTemplate": {
                         "size": spec.nodes, "restartPolicy": "RecreateGroupOnPodRestart",
                         "leaderTemplate": {"metadata": {"labels": {**labels, "role": "leader"}}, "spec": leader},
                         "workerTemplate": {"metadata": {"labels": {**labels, "role": "worker"}}, "spec": worker}}}}
