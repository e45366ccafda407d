"""`glmtrt deploy k8s`: a generated repository -> Kustomize base + Helm chart (thin command)."""
from __future__ import annotations

import logging
from pathlib import Path

import click

log = logging.getLogger(__name__)


@click.group("deploy")
def deploy() -> None:
    """Deploy a generated repository (Kubernetes manifests)."""


@deploy.command("k8s")
@click.argument("repo", type=click.Path(path_type=Path))
@click.option("--image", required=True, help="Serving image (glmtrt:<profile>, `make image GPU=<profile>`, pushed to your registry).")
@click.option("--replicas", type=click.IntRange(1, 1000), default=1, show_default=True, help="Triton replicas (HPA minimum).")
@click.option("--max-replicas", type=click.IntRange(1, 1000), default=4, show_default=True, help="HPA maximum.")
@click.option("--gpu-type", required=True, help="t4 | rtx4090: node affinity and the TensorRT-LLM line checked.")
@click.option("--model-store", required=True, help="pvc:CLAIM (holds repo/ and engine/) or init:https://.../store.tar.gz.")
@click.option("--name", help="Object name prefix (default: the repository dir name).")
@click.option("--gpus-per-node", type=click.IntRange(1, 64), help="GPUs on one node (default: t4 4, rtx4090 8).")
@click.option("--multi-node", is_flag=True, help="TP across nodes when world size > GPUs per node (LeaderWorkerSet).")
@click.option("--bench-summary", type=click.Path(dir_okay=False, path_type=Path),
              help="summary.json of `glmtrt bench --search` against one replica: sets the HPA targets.")
@click.option("--openai-replicas", type=click.IntRange(0, 1000), default=1, show_default=True)
@click.option("--ui-replicas", type=click.IntRange(0, 1000), default=1, show_default=True)
@click.option("--proxy-replicas", type=click.IntRange(1, 1000), default=2, show_default=True, help="gRPC balancer (Envoy) replicas.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@click.option("--force", is_flag=True, help="Replace an existing output dir.")
def k8s(repo: Path, image: str, replicas: int, max_replicas: int, gpu_type: str, model_store: str, name: str | None,
        gpus_per_node: int | None, multi_node: bool, bench_summary: Path | None, openai_replicas: int,
        ui_replicas: int, proxy_replicas: int, output: Path, force: bool) -> None:
    """Write a Kustomize base (kubectl apply -k OUT) and a Helm chart (OUT/chart) for REPO.

    \b
      glmtrt deploy k8s triton_models/chatglm3-int8-t4 --image registry.example/glmtrt:t4 \\
          --replicas 2 --max-replicas 8 --gpu-type t4 --model-store pvc:glm-models -o deploy/chatglm3
    """
    import importlib.util

    from glmtrt.errors import GlmtrtError

    missing = [m for m in ("yaml", "kubernetes_validate", "jsonschema") if importlib.util.find_spec(m) is None]
    if missing:
        raise GlmtrtError(f"python modules {', '.join(missing)} are not installed", fix="pip install 'glmtrt[deploy]'")
    from glmtrt.deploy.objects import build_objects, default_values
    from glmtrt.deploy.render import write_deployment
    from glmtrt.deploy.spec import resolve
    from glmtrt.deploy.validate import K8S_VERSION, check

    spec = resolve(repo, image=image, replicas=replicas, max_replicas=max_replicas, gpu_type=gpu_type,
                   model_store=model_store, name=name, multi_node=multi_node, gpus_per_node=gpus_per_node,
                   bench_summary=bench_summary, openai_replicas=openai_replicas, ui_replicas=ui_replicas,
                   proxy_replicas=proxy_replicas)
    log.info("deploy %s: gpu=%s world_size=%d nodes/replica=%d replicas=%d..%d store=%s:%s hpa targets: "
             "pending=%d queue=%dus (%s)", spec.name, spec.gpu_type, spec.world_size, spec.nodes, spec.replicas,
             spec.max_replicas, spec.store_kind, spec.store_ref, spec.pending_target, spec.queue_us_target,
             spec.target_source)
    check(build_objects(spec, default_values(spec)))
    out = write_deployment(spec, output, force=force)
    click.echo(f"wrote {out} (schemas of Kubernetes {K8S_VERSION} pass): kubectl apply -k {out}  |  "
               f"helm install {spec.name} {out}/chart; Prometheus adapter rules: {out}/prometheus-adapter-values.yaml")


def register(main: click.Group) -> None:
    main.add_command(deploy)
