"""Live server facts for the web chat's sidebar, from Triton's Prometheus metrics endpoint.

Metric names: Triton core (docs/user_guide/metrics.md: `nv_gpu_memory_used_bytes`,
`nv_gpu_memory_total_bytes`, label `gpu_uuid`) and the TensorRT-LLM backend's custom metrics
(triton-inference-server/tensorrtllm_backend inflight_batcher_llm custom metrics reporter,
v0.13.0 .. v1.0.0: `nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used"|"max"|...}`,
`nv_trt_llm_request_metrics{request_type="active"|...}`). A metric the server does not export
(the CPU stand-in has no GPU and no TensorRT-LLM backend) is None: shown as "not reported",
never as a made-up number.
"""
from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field

NOT_REPORTED = "not reported"


@dataclass
class ServerFacts:
    """What the metrics endpoint reported; None where it reported nothing."""

    gpus: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)  # uuid -> (used, total) bytes
    kv_blocks_used: float | None = None
    kv_blocks_max: float | None = None
    active_requests: float | None = None
    error: str | None = None

    def lines(self) -> list[str]:
        """Human-readable lines for the sidebar."""
        if self.error:
            return [f"metrics: {self.error}"]
        out = []
        if not self.gpus:
            out.append(f"GPU memory: {NOT_REPORTED}")
        for i, (uuid, (used, total)) in enumerate(sorted(self.gpus.items())):
            u = f"{used / 2**30:.1f}" if used is not None else "?"
            t = f"{total / 2**30:.1f}" if total is not None else "?"
            out.append(f"GPU {i} ({uuid[:12]}): {u} / {t} GiB")
        if self.kv_blocks_used is None:
            out.append(f"KV-cache blocks: {NOT_REPORTED}")
        else:
            mx = f" / {self.kv_blocks_max:.0f}" if self.kv_blocks_max is not None else ""
            out.append(f"KV-cache blocks: {self.kv_blocks_used:.0f}{mx} used")
        out.append("active requests: " + (NOT_REPORTED if self.active_requests is None
                                          else f"{self.active_requests:.0f}"))
        return out


def parse_metrics(text: str) -> ServerFacts:
    """ServerFacts from Prometheus text (parsed by glmtrt.client.server_side, prometheus-client)."""
    from glmtrt.client.server_side import parse_metrics as samples, split_key

    facts = ServerFacts()
    gpus: dict[str, list] = {}
    for key, value in samples(text).items():
        name, labels = split_key(key)
        if name in ("nv_gpu_memory_used_bytes", "nv_gpu_memory_total_bytes"):
            slot = gpus.setdefault(labels.get("gpu_uuid", "?"), [None, None])
            slot[0 if name.endswith("used_bytes") else 1] = value
        elif name == "nv_trt_llm_kv_cache_block_metrics":
            kind = labels.get("kv_cache_block_type")
            if kind == "used":
                facts.kv_blocks_used = (facts.kv_blocks_used or 0) + value
            elif kind == "max":
                facts.kv_blocks_max = (facts.kv_blocks_max or 0) + value
        elif name == "nv_trt_llm_request_metrics" and labels.get("request_type") == "active":
            facts.active_requests = (facts.active_requests or 0) + value
    facts.gpus = {k: (v[0], v[1]) for k, v in gpus.items()}
    return facts


def fetch_facts(metrics_url: str, timeout: float = 2.0) -> ServerFacts:
    """Read and parse `http://host:port/metrics`; an unreachable endpoint is an error line."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=timeout) as resp:
            text = resp.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:
        return ServerFacts(error=f"{metrics_url} unreachable ({exc})")
    return parse_metrics(text)
