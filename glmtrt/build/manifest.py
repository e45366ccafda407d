"""`manifest.json` of an engine dir (docs/INTERFACES.md section 4).

Written by `glmtrt build` next to trtllm-build's `rank{N}.engine` and `config.json`; read by the
Triton repository generator (max_* limits, tp/pp, paged KV, gather logits, toolchain/container).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from glmtrt import __version__
from glmtrt.errors import GlmtrtError

KIND = "trtllm-engine"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class EngineBuild:
    """The engine's build settings (what trtllm-build was asked for)."""

    max_batch_size: int
    max_input_len: int
    max_seq_len: int
    max_num_tokens: int
    max_beam_width: int
    tp_size: int
    pp_size: int
    dtype: str                       # float16 | bfloat16 | float32 (model / plugin dtype)
    precision: str                   # fp16 | bf16 | fp32 | int8-wo | int4-wo | int8-sq | fp8
    kv_cache_dtype: str              # auto | int8 | fp8
    quant: Mapping[str, Any]         # {"quant_algo", "kv_cache_quant_algo"} from the checkpoint
    paged_kv_cache: bool
    tokens_per_block: int
    remove_input_padding: bool
    context_fmha: bool
    use_paged_context_fmha: bool
    gather_context_logits: bool
    gather_generation_logits: bool
    max_prompt_embedding_table_size: int = 0


@dataclass(frozen=True)
class EngineManifest:
    """Everything downstream stages need to know about an engine dir."""

    profile: str
    gpu: str
    toolchain: Mapping[str, str]        # {"tensorrt_llm", "triton_container"}
    checkpoint: Mapping[str, str]       # {"dir", "manifest_sha256"}
    build: EngineBuild
    plan: Mapping[str, Any]             # planner numbers: kv_tokens, kv_bytes_per_token, fraction...
    command: tuple[str, ...]
    model: Mapping[str, Any] = field(default_factory=dict)   # copied from the checkpoint manifest
    files: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # {name: {sha256, bytes}}
    kind: str = KIND
    glmtrt_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["command"] = list(self.command)
        order = ["kind", "glmtrt_version", "profile", "gpu", "toolchain", "checkpoint", "build", "plan",
                 "command", "model", "files"]
        return {k: d[k] for k in order}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EngineManifest":
        if d.get("kind") != KIND:
            raise GlmtrtError(f"manifest kind {d.get('kind')!r}", expected=f"'{KIND}'")
        try:
            names = {f.name for f in fields(EngineBuild)}
            build = EngineBuild(**{k: v for k, v in d["build"].items() if k in names})
            return cls(profile=d["profile"], gpu=d.get("gpu", ""), toolchain=dict(d["toolchain"]),
                       checkpoint=dict(d["checkpoint"]), build=build, plan=dict(d.get("plan", {})),
                       command=tuple(d["command"]), model=dict(d.get("model", {})),
                       files=dict(d.get("files", {})), glmtrt_version=d.get("glmtrt_version", ""))
        except (KeyError, TypeError) as exc:
            raise GlmtrtError(f"engine manifest is incomplete ({exc})",
                              expected="the schema of docs/INTERFACES.md section 4",
                              fix="rebuild the engine with `glmtrt build`") from exc


def write_engine_manifest(engine_dir: str | Path, manifest: EngineManifest) -> Path:
    """Write `<engine_dir>/manifest.json` (UTF-8, readable)."""
    path = Path(engine_dir) / MANIFEST
    path.write_text(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_engine_manifest(engine_dir: str | Path) -> EngineManifest:
    """Parse `<engine_dir>/manifest.json` with clear errors."""
    path = Path(engine_dir) / MANIFEST
    if not path.is_file():
        raise GlmtrtError(f"{engine_dir} has no {MANIFEST}", expected="an engine dir written by `glmtrt build`",
                          fix="build the engine with `glmtrt build` / `make engine`")
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GlmtrtError(f"{path} is not valid JSON ({exc})") from exc
    return EngineManifest.from_dict(body)
