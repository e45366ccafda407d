"""What a deployment is made from: the repository manifest, the GPU type and the user's choices.

Everything the manifests need is resolved and validated here, once; `glmtrt.deploy.objects`
only arranges it. Facts about the cluster side:
- GPU nodes carry `nvidia.com/gpu.product` (NVIDIA GPU Feature Discovery, part of the GPU
  Operator): the product name with spaces as dashes.
- tritonserver's `--exit-timeout-secs` defaults to 30 (triton-inference-server/server
  `src/command_line_parser.h`, `exit_timeout_secs_ = 30`; Triton 2.51's `--help` states no
  default); the repository's launcher does not change it, so the pod's grace period must exceed it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glmtrt.errors import GlmtrtError
from glmtrt.fileio import read_json_object

# gpu type -> node label value, GPUs on the usual node, TensorRT-LLM line of its repositories
GPU_TYPES: dict[str, dict[str, Any]] = {
    "t4": {"product": "Tesla-T4", "gpus_per_node": 4, "contract": "0.13"},          # g4dn.12xlarge: 4 x T4
    "rtx4090": {"product": "NVIDIA-GeForce-RTX-4090", "gpus_per_node": 8, "contract": "1.2"},
}
SERVER_EXIT_TIMEOUT_S = 30       # tritonserver --exit-timeout-secs default
GRACE_MARGIN_S = 30              # mpirun teardown + python stubs after the server's own timeout
DEFAULT_PENDING_TARGET = 4       # pending (queued, not yet batched) requests per replica, no bench
DEFAULT_QUEUE_US_TARGET = 100_000  # mean queue time per request, microseconds, no bench SLO
PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
ENVOY_IMAGE = "envoyproxy/envoy:v1.31.2"


@dataclass
class DeploySpec:
    """Resolved inputs of `glmtrt deploy k8s`."""

    name: str
    repo: Path
    image: str
    replicas: int
    max_replicas: int
    gpu_type: str
    store_kind: str            # "pvc" | "init"
    store_ref: str             # PVC name or http(s) URI of a .tar(.gz) holding repo/ and engine/
    world_size: int
    repo_path: str             # repository dir as the server sees it (configs name it)
    engine_path: str           # engine dir as the server sees it
    multi_node: bool = False
    gpus_per_node: int = 8
    pending_target: int = DEFAULT_PENDING_TARGET
    queue_us_target: int = DEFAULT_QUEUE_US_TARGET
    target_source: str = "default"
    openai_replicas: int = 1
    ui_replicas: int = 1
    proxy_replicas: int = 2
    shm_size: str = "2Gi"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def grace_s(self) -> int:
        return SERVER_EXIT_TIMEOUT_S + GRACE_MARGIN_S

    @property
    def product(self) -> str:
        return GPU_TYPES[self.gpu_type]["product"]

    @property
    def nodes(self) -> int:
        """Nodes one replica spans (1 unless multi-node TP)."""
        return -(-self.world_size // self.gpus_per_node) if self.multi_node else 1

    @property
    def gpus_per_pod(self) -> int:
        return self.world_size // self.nodes


def _dns_name(name: str) -> str:
    import re

    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?", name):
        raise GlmtrtError(f"deployment name {name!r}", expected="a DNS label: lower-case letters, digits and '-', "
                          "1-40 characters, starting and ending with a letter or digit", fix="pass --name")
    return name


def parse_store(value: str) -> tuple[str, str]:
    """`pvc:NAME` or `init:URI` (http(s) tarball with repo/ and engine/ at the top)."""
    kind, _, ref = value.partition(":")
    if kind == "pvc" and ref:
        return kind, _dns_name(ref)
    if kind == "init" and ref.startswith(("http://", "https://")):
        return kind, ref
    raise GlmtrtError(f"--model-store {value!r}", expected="pvc:CLAIM_NAME or init:https://HOST/PATH.tar.gz "
                      "(a tarball holding repo/ and engine/; for S3/GCS use a pre-signed URL)")


def bench_targets(summary: Path, max_batch_size: int) -> tuple[int, int, str]:
    """(pending target, queue-time target us, source) from a `glmtrt bench --search` summary.json.

    One replica met the SLO up to `max_concurrency_at_slo` (C) concurrent streams. The engine keeps
    up to max_batch_size (B) of them in flight; the rest wait in Triton's queue. So a replica is
    over its SLO once more than C - B requests are pending: that is the target (at least 1).
    The queue-time target is half the SLO's TTFT budget (`slo_ttft_ms`) when the run states one.
    """
    top = read_json_object(summary, "bench summary.json")
    c = top.get("max_concurrency_at_slo")
    if not isinstance(c, int) or c < 1:
        raise GlmtrtError(f"{summary}: max_concurrency_at_slo is {c!r}", expected="an integer >= 1 from a "
                          "`glmtrt bench --search` run that met its SLO at some concurrency",
                          fix="rerun the bench with --search and --slo-ttft-ms / --slo-tpot-ms")
    slo = top.get("slo_ttft_ms") or (top.get("slo") or {}).get("ttft_ms")
    queue_us = int(float(slo) * 1000 / 2) if slo else DEFAULT_QUEUE_US_TARGET
    return max(1, c - max_batch_size), queue_us, f"{summary} (max_concurrency_at_slo={c}, max_batch_size={max_batch_size})"


def resolve(repo: Path, *, image: str, replicas: int, max_replicas: int, gpu_type: str, model_store: str,
            name: str | None = None, multi_node: bool = False, gpus_per_node: int | None = None,
            bench_summary: Path | None = None, openai_replicas: int = 1, ui_replicas: int = 1,
            proxy_replicas: int = 2) -> DeploySpec:
    """Validate the inputs against the repository manifest; raise GlmtrtError naming the problem."""
    if gpu_type not in GPU_TYPES:
        raise GlmtrtError(f"GPU type {gpu_type!r}", expected="one of " + ", ".join(sorted(GPU_TYPES)))
    man_file = Path(repo) / "glmtrt_repo.json"
    if not man_file.is_file():
        raise GlmtrtError(f"{repo}: no repository manifest glmtrt_repo.json",
                          expected="a repository written by `glmtrt repo`", fix="glmtrt repo ENGINE_DIR --tokenizer DIR -o REPO")
    man = read_json_object(man_file, "repository manifest glmtrt_repo.json")
    engine = man.get("engine") or {}
    if engine.get("kind") != "gpu":
        raise GlmtrtError(f"{repo}: engine kind {engine.get('kind')!r}", expected="a GPU repository (`glmtrt repo ENGINE_DIR`); "
                          "the CPU reference stand-in is for development only")
    contract = man.get("trtllm_contract")
    want = GPU_TYPES[gpu_type]["contract"]
    if contract != want:
        raise GlmtrtError(f"{repo}: repository for the TensorRT-LLM {contract} contract on --gpu-type {gpu_type}",
                          expected=f"{want} repositories on {gpu_type}", fix="build the engine for this GPU's profile")
    world = int(engine.get("world_size") or 1)
    per_node = gpus_per_node or GPU_TYPES[gpu_type]["gpus_per_node"]
    if not 1 <= replicas <= max_replicas <= 1000:
        raise GlmtrtError(f"--replicas {replicas} --max-replicas {max_replicas}", expected="1 <= replicas <= max-replicas <= 1000")
    if world > per_node and not multi_node:
        raise GlmtrtError(f"engine world size {world} (tp {engine.get('tp_size')} x pp {engine.get('pp_size')}) "
                          f"on {gpu_type} nodes with {per_node} GPUs", expected=f"world size <= {per_node} GPUs per node",
                          fix="pass --multi-node (LeaderWorkerSet across nodes), --gpus-per-node if your nodes "
                              "have more, or build with a smaller TP")
    if multi_node and world % per_node and world > per_node:
        raise GlmtrtError(f"world size {world} over nodes of {per_node} GPUs", expected="a multiple of --gpus-per-node")
    kind, ref = parse_store(model_store)
    mbs = int((man.get("limits") or {}).get("max_batch_size") or 1)
    pending, queue_us, source = (bench_targets(bench_summary, mbs) if bench_summary
                                 else (DEFAULT_PENDING_TARGET, DEFAULT_QUEUE_US_TARGET, "default"))
    return DeploySpec(name=_dns_name(name or Path(repo).resolve().name.lower().replace("_", "-")[:40]),
                      repo=Path(repo), image=image, replicas=replicas, max_replicas=max_replicas, gpu_type=gpu_type,
                      store_kind=kind, store_ref=ref, world_size=world,
                      repo_path=man.get("repo_path") or "/models/repo",
                      engine_path=engine.get("path_in_server") or engine.get("dir") or "/engines/engine",
                      multi_node=multi_node and world > per_node, gpus_per_node=per_node, pending_target=pending,
                      queue_us_target=queue_us, target_source=source, openai_replicas=openai_replicas,
                      ui_replicas=ui_replicas, proxy_replicas=proxy_replicas, extra={"manifest": json.dumps(engine)})
