"""`glmtrt repo --check`: validate a model repository without starting a server.

Every config.pbtxt must parse into Triton's ModelConfig protobuf (tritonclient's
model_config_pb2, the same schema the server uses); the protobuf parser does not see semantic
errors, so we check those ourselves (shared/TRITON_CPU.md "Validating config.pbtxt"):
leftover `${...}`, empty dims, backends, ensemble wiring (tensor exists, data types and dims
match), the tensor contract of this glmtrt version, decoupled consistency, parameter values,
and consistency with glmtrt_repo.json and the engine (or checkpoint) manifest.
Each problem names the file, the field and the fix.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmtrt.errors import GlmtrtError

REPO_MANIFEST = "glmtrt_repo.json"
MODELS = ("ensemble", "preprocessing", "tensorrt_llm", "postprocessing", "tensorrt_llm_bls")
_PLACEHOLDER = re.compile(r"\$\{[^}\n]*\}?")
_BOOL_PARAMS = {"tensorrt_llm": ("exclude_input_in_output", "enable_chunked_context", "enable_kv_cache_reuse"),
                "tensorrt_llm_bls": ("accumulate_tokens", "add_special_tokens", "skip_special_tokens"), "preprocessing": ("add_special_tokens",),
                "postprocessing": ("skip_special_tokens",)}


@dataclass(frozen=True)
class Problem:
    """One defect: `file` (relative to the repository), `field`, what is wrong, how to fix it."""

    file: str
    field: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message} (fix: {self.fix})"


def format_problems(problems: list[Problem]) -> str:
    """One line per problem."""
    return "\n".join(f"  - {p}" for p in problems)


def _pb():
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise GlmtrtError(f"cannot validate configs: {exc}", fix="pip install 'glmtrt[triton]' (tritonclient)") from None
    return text_format, model_config_pb2


def parse_config(text: str):
    """Parse config.pbtxt text into a ModelConfig; raises google.protobuf ParseError."""
    text_format, model_config_pb2 = _pb()
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _dtype(cfg_dtype: int) -> str:
    _, model_config_pb2 = _pb()
    return model_config_pb2.DataType.Name(cfg_dtype)


def _tensors(cfg) -> tuple[dict[str, tuple[str, tuple[int, ...], bool]], dict[str, tuple[str, tuple[int, ...], bool]]]:
    ins = {t.name: (_dtype(t.data_type), tuple(t.dims), bool(t.optional)) for t in cfg.input}
    outs = {t.name: (_dtype(t.data_type), tuple(t.dims), False) for t in cfg.output}
    return ins, outs


def _dims_ok(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return len(a) == len(b) and all(x == y or x == -1 or y == -1 for x, y in zip(a, b))


def _params(cfg) -> dict[str, str]:
    return {k: v.string_value for k, v in cfg.parameters.items()}


class _Checker:
    def __init__(self, repo: Path, engine_dir: Path | None):
        self.repo = repo
        self.engine_dir = engine_dir
        self.problems: list[Problem] = []
        self.cfgs: dict[str, Any] = {}
        self.manifest: dict[str, Any] = {}

    def add(self, file: str, field: str, message: str, fix: str) -> None:
        self.problems.append(Problem(file, field, message, fix))

    # ---- per file ------------------------------------------------------------------
    def load_manifest(self) -> None:
        path = self.repo / REPO_MANIFEST
        if not path.is_file():
            self.add(REPO_MANIFEST, "(file)", "missing", "regenerate the repository with glmtrt repo")
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            self.add(REPO_MANIFEST, "(file)", f"not valid JSON: {exc}", "regenerate the repository with glmtrt repo")
            return
        for key in ("glmtrt_version", "engine", "tokenizer", "limits", "decoupled"):
            if key not in data:
                self.add(REPO_MANIFEST, key, "missing", "regenerate the repository with glmtrt repo")
        self.manifest = data if isinstance(data, dict) else {}

    def load_config(self, model: str) -> None:
        rel = f"{model}/config.pbtxt"
        path = self.repo / rel
        if not path.is_file():
            self.add(rel, "(file)", "missing", f"regenerate the repository; every repository needs the {model} model")
            return
        text = path.read_text(encoding="utf-8")
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            for m in _PLACEHOLDER.finditer(line):
                field = _field_of_line(text.splitlines(), lineno)
                self.add(rel, f"line {lineno} {field}", f"unfilled placeholder {m.group(0)!r}",
                         "regenerate with glmtrt repo (templates are strict) or put the value in by hand")
        if "${" in text:
            return  # the parse error would only repeat the placeholder problem
        try:
            cfg = parse_config(text)
        except Exception as exc:  # google.protobuf.text_format.ParseError
            self.add(rel, "(syntax)", f"does not parse as Triton ModelConfig: {exc}",
                     "correct the field named at that line:column (see Triton model_config.proto)")
            return
        self.cfgs[model] = cfg
        if cfg.name and cfg.name != model:
            self.add(rel, "name", f"is {cfg.name!r} but the directory is {model!r}", f'set name: "{model}"')
        for kind, tensors in (("input", cfg.input), ("output", cfg.output)):
            seen = set()
            for t in tensors:
                f = f'{kind}["{t.name}"]'
                if t.name in seen:
                    self.add(rel, f, "declared twice", "remove the duplicate")
                seen.add(t.name)
                if not t.dims:
                    self.add(rel, f"{f}.dims", "empty", "declare dims, e.g. dims: [ 1 ] or [ -1 ]")
                elif any(d == 0 or d < -1 for d in t.dims):
                    self.add(rel, f"{f}.dims", f"{list(t.dims)} has a dim that is 0 or below -1",
                             "use -1 for variable dims and positive sizes otherwise")
                if t.data_type == 0:
                    self.add(rel, f"{f}.data_type", "missing (TYPE_INVALID)", "set data_type")
        if cfg.max_batch_size <= 0 and model != "vision_encoder":  # one image per request, no batch dim
            self.add(rel, "max_batch_size", f"is {cfg.max_batch_size}", "set it to the repository's max batch size (> 0)")
        for i, g in enumerate(cfg.instance_group):
            if g.count < 1:
                self.add(rel, f"instance_group[{i}].count", f"is {g.count}", "use a count >= 1")
        self.check_backend(model, rel, cfg)

    def check_backend(self, model: str, rel: str, cfg) -> None:
        kind = (self.manifest.get("engine") or {}).get("kind", "gpu")
        if model == "ensemble" or (model == "vision_encoder" and kind == "gpu"):
            want = "ensemble" if model == "ensemble" else "tensorrt_plan"
            if cfg.platform != want:
                self.add(rel, "platform", f"is {cfg.platform!r}", f'set platform: "{want}"')
            if want == "tensorrt_plan" and not (self.repo / model / "1" / "model.plan").is_symlink():
                self.add(f"{model}/1/model.plan", "(file)", "missing (a link to <engine dir>/vision/encoder.plan)",
                         "regenerate the repository")
            return
        want = "tensorrtllm" if model == "tensorrt_llm" and kind == "gpu" else "python"
        if cfg.backend != want:
            self.add(rel, "backend", f"is {cfg.backend!r}", f'set backend: "{want}" (engine kind {kind})')
        if want == "python" and not (self.repo / model / "1" / "model.py").is_file():
            self.add(f"{model}/1/model.py", "(file)", "missing", "regenerate the repository (python model shim)")

    # ---- across files --------------------------------------------------------------
    def check_batch_and_decoupled(self) -> None:
        limits = self.manifest.get("limits") or {}
        want = limits.get("max_batch_size")
        for model, cfg in self.cfgs.items():
            if want is not None and cfg.max_batch_size > 0 and cfg.max_batch_size != want:
                self.add(f"{model}/config.pbtxt", "max_batch_size",
                         f"is {cfg.max_batch_size} but {REPO_MANIFEST} limits.max_batch_size is {want}",
                         f"set max_batch_size: {want} in every model (they must agree)")
        decoupled = self.manifest.get("decoupled")
        for model in ("tensorrt_llm", "tensorrt_llm_bls"):
            cfg = self.cfgs.get(model)
            if cfg is None:
                continue
            got = cfg.model_transaction_policy.decoupled
            if decoupled is not None and got != decoupled:
                streams = " while the ensemble/BLS stream (repository is decoupled)" if decoupled else ""
                self.add(f"{model}/config.pbtxt", "model_transaction_policy.decoupled",
                         f"is {str(got).lower()}{streams}; {REPO_MANIFEST} says decoupled={str(decoupled).lower()}",
                         f"set decoupled: {str(decoupled).lower()} (or regenerate with --{'' if got else 'no-'}decoupled)")

    def check_ensemble(self) -> None:
        ens = self.cfgs.get("ensemble")
        if ens is None:
            return
        rel = "ensemble/config.pbtxt"
        e_in, e_out = _tensors(ens)
        avail = {n: (t[0], t[1], f'input["{n}"]') for n, t in e_in.items()}
        used, produced = set(), set()
        if not ens.ensemble_scheduling.step:
            self.add(rel, "ensemble_scheduling.step", "empty", "regenerate the repository")
        for i, step in enumerate(ens.ensemble_scheduling.step):
            sf = f"ensemble_scheduling.step[{i}]"
            cfg = self.cfgs.get(step.model_name)
            if cfg is None:
                self.add(rel, f"{sf}.model_name", f"{step.model_name!r} is not a valid model of this repository",
                         f"use one of {', '.join(m for m in self.cfgs if m != 'ensemble')}")
                continue
            m_in, m_out = _tensors(cfg)
            for key, src in step.input_map.items():
                f = f'{sf}.input_map["{key}"]'
                if key not in m_in:
                    self.add(rel, f, f"{step.model_name} has no input {key!r}",
                             f"map an input declared in {step.model_name}/config.pbtxt")
                    continue
                if src not in avail:
                    self.add(rel, f, f"tensor {src!r} is neither an ensemble input nor an earlier step's output",
                             "declare it as an ensemble input or map it from a previous step's output_map")
                    continue
                used.add(src)
                sdt, sdims, origin = avail[src]
                ddt, ddims, _ = m_in[key]
                if sdt != ddt:
                    self.add(rel, f, f"{src!r} ({origin}) is {sdt} but {step.model_name} input {key!r} is {ddt}",
                             f"make both data types {ddt} (the tensor contract of {step.model_name})")
                elif not _dims_ok(sdims, ddims):
                    self.add(rel, f, f"{src!r} dims {list(sdims)} do not fit {step.model_name} input {key!r} dims {list(ddims)}",
                             "make the dims agree (-1 matches any size)")
            for key, (_, _, optional) in m_in.items():
                if not optional and key not in step.input_map:
                    self.add(rel, f"{sf}.input_map", f"required input {key!r} of {step.model_name} is not mapped",
                             f'add input_map {{ key: "{key}" value: ... }}')
            for key, dst in step.output_map.items():
                f = f'{sf}.output_map["{key}"]'
                if key not in m_out:
                    self.add(rel, f, f"{step.model_name} has no output {key!r}",
                             f"map an output declared in {step.model_name}/config.pbtxt")
                    continue
                dt, dims, _ = m_out[key]
                avail[dst] = (dt, dims, f"{step.model_name} output {key}")
                produced.add(dst)
                if dst in e_out and (e_out[dst][0] != dt or not _dims_ok(e_out[dst][1], dims)):
                    self.add(rel, f'output["{dst}"]',
                             f"is {e_out[dst][0]} {list(e_out[dst][1])} but {step.model_name} output {key!r} is {dt} {list(dims)}",
                             f"make the ensemble output {dt} with dims {list(dims)}")
        for name in e_out:
            if name not in produced:
                self.add(rel, f'output["{name}"]', "no step produces it", "add an output_map producing it or remove the output")
        for name in e_in:
            if name not in used:
                self.add(rel, f'input["{name}"]', "no step consumes it", "map it into a step or remove the input")

    def check_contract(self) -> None:
        """Tensors of every model equal the contract this glmtrt renders for the same settings."""
        from glmtrt import __version__
        from glmtrt.triton import generator

        if self.manifest.get("glmtrt_version") != __version__ or "settings" not in self.manifest:
            return
        try:
            facts = _facts_from_manifest(self.manifest)
            expected = generator.render_configs(self.manifest["settings"], facts, "x")
        except Exception:  # a hand-edited manifest: the other checks still run
            return
        for model, text in expected.items():
            cfg = self.cfgs.get(model)
            if cfg is None:
                continue
            want_in, want_out = _tensors(parse_config(text))
            got_in, got_out = _tensors(cfg)
            for kind, want, got in (("input", want_in, got_in), ("output", want_out, got_out)):
                for name, (dt, dims, opt) in want.items():
                    f = f'{kind}["{name}"]'
                    if name not in got:
                        self.add(f"{model}/config.pbtxt", f, "missing from the tensor contract",
                                 f"declare {kind} {name} {dt} dims {list(dims)} (or regenerate)")
                    elif got[name][0] != dt:
                        self.add(f"{model}/config.pbtxt", f"{f}.data_type", f"is {got[name][0]}",
                                 f"set data_type: {dt} (TensorRT-LLM tensor contract)")
                    elif got[name][1] != dims:
                        self.add(f"{model}/config.pbtxt", f"{f}.dims", f"is {list(got[name][1])}",
                                 f"set dims: {list(dims)} (TensorRT-LLM tensor contract)")
                for name in got:
                    if name not in want:
                        self.add(f"{model}/config.pbtxt", f'{kind}["{name}"]', "not part of the tensor contract",
                                 "remove it (the python models and the engine do not know it)")

    def check_parameters(self) -> None:
        from glmtrt.triton.generator import BATCHING_STRATEGIES, SCHEDULER_POLICIES

        kind = (self.manifest.get("engine") or {}).get("kind", "gpu")
        for model, cfg in self.cfgs.items():
            rel = f"{model}/config.pbtxt"
            params = _params(cfg)
            for key in _BOOL_PARAMS.get(model, ()):
                if key in params and params[key] not in ("true", "false"):
                    self.add(rel, f'parameters["{key}"]', f"is {params[key]!r}", 'use "true" or "false"')
            engine_model = model == "tensorrt_llm" and kind == "gpu"  # the C++ backend ignores tokenizer_dir
            if ("tokenizer_dir" in params and not engine_model) or model in ("preprocessing", "postprocessing"):
                tdir = self._resolve(params.get("tokenizer_dir", ""))
                if tdir is None or not (tdir / "tokenizer.model").is_file():
                    self.add(rel, 'parameters["tokenizer_dir"]',
                             f"{params.get('tokenizer_dir', '')!r} holds no tokenizer.model (relative paths are "
                             "resolved against the repository root)", 'set it to "preprocessing/tokenizer" and keep the tokenizer files there')
        trt = self.cfgs.get("tensorrt_llm")
        if trt is None:
            return
        rel, p = "tensorrt_llm/config.pbtxt", _params(trt)
        limits = self.manifest.get("limits") or {}
        beam = p.get("max_beam_width", "1")
        if not beam.isdigit() or int(beam) < 1:
            self.add(rel, 'parameters["max_beam_width"]', f"is {beam!r}", "use a positive integer")
        elif limits.get("max_beam_width") and int(beam) > limits["max_beam_width"]:
            self.add(rel, 'parameters["max_beam_width"]', f"is {beam} but the engine allows {limits['max_beam_width']}",
                     f'set "{limits["max_beam_width"]}" or rebuild the engine with a larger --max_beam_width')
        if kind == "reference":
            cdir = self._resolve(p.get("checkpoint_dir", ""))
            if cdir is not None and (cdir / "llm").is_dir():  # a GLM-4.1V conversion: llm/ + vision/
                cdir = cdir / "llm"
            if cdir is None or not (cdir / "config.json").is_file():
                self.add(rel, 'parameters["checkpoint_dir"]', f"{p.get('checkpoint_dir', '')!r} is not a checkpoint dir",
                         "regenerate with glmtrt repo --engine reference (or --copy-checkpoint)")
            return
        from glmtrt.triton.check_engine import check_backend_parameters

        check_backend_parameters(self, trt)
        for key, allowed in (("gpt_model_type", BATCHING_STRATEGIES), ("batch_scheduler_policy", SCHEDULER_POLICIES)):
            if p.get(key) not in allowed:
                self.add(rel, f'parameters["{key}"]', f"is {p.get(key)!r}", f"use one of {', '.join(allowed)}")
        try:
            frac = float(p.get("kv_cache_free_gpu_mem_fraction", "0.9"))
            ok = 0.0 < frac <= 1.0
        except ValueError:
            ok = False
        if not ok:
            self.add(rel, 'parameters["kv_cache_free_gpu_mem_fraction"]', f"is {p.get('kv_cache_free_gpu_mem_fraction')!r}",
                     "use a fraction in (0, 1], e.g. 0.9")
        edir = p.get("gpt_model_path", "")
        local = self.engine_dir or Path(edir)
        if not edir:
            self.add(rel, 'parameters["gpt_model_path"]', "missing", "set it to the engine dir as the server sees it")
        elif not (local / "config.json").is_file() or not (local / "rank0.engine").is_file():
            self.add(rel, 'parameters["gpt_model_path"]', f"{edir!r} is not an engine dir (no config.json / rank0.engine here)",
                     "point it at the glmtrt build output, or run --check where the engine is mounted "
                     "(--engine-dir to name the local copy)")
        else:
            self.check_engine(local)

    def check_engine(self, engine_dir: Path) -> None:
        """Repository limits against the engine manifest (glmtrt.triton.check_engine)."""
        from glmtrt.triton.check_engine import check_engine

        check_engine(self, engine_dir)

    def _resolve(self, value: str) -> Path | None:
        if not value:
            return None
        p = Path(value)
        return p if p.is_absolute() else self.repo / p


def _field_of_line(lines: list[str], lineno: int) -> str:
    """The field a (1-based) line sets, e.g. 'max_batch_size' or 'string_value'."""
    m = re.search(r"([A-Za-z_]+)\s*:\s*[^:]*\$\{", lines[lineno - 1])
    return f"({m.group(1)})" if m else ""


def _facts_from_manifest(man: dict[str, Any]):
    from glmtrt.triton.generator import EngineFacts

    e, lim = man["engine"], man["limits"]
    return EngineFacts(kind=e["kind"], dir=Path(e["dir"]), manifest_sha256="", toolchain=e.get("toolchain", ""),
                       profile=None, max_batch_size=lim["engine_max_batch_size"], max_input_len=lim["max_input_len"],
                       max_seq_len=lim["max_seq_len"], max_beam_width=lim["max_beam_width"], world_size=1, tp_size=1,
                       pp_size=1, logits_dtype="float32", gather_context_logits=False, gather_generation_logits=False,
                       paged_context_fmha=False)


def _check_multimodal(c: _Checker) -> None:
    """The files the multimodal python models read: multimodal.json (both preprocessing and BLS name it)
    and, for the CPU stand-in, the vision encoder's ONNX file."""
    for model in ("preprocessing", "tensorrt_llm_bls"):
        cfg = c.cfgs.get(model)
        value = _params(cfg).get("multimodal_config", "") if cfg is not None else ""
        path = c._resolve(value)
        if cfg is not None and (path is None or not path.is_file()):
            c.add(f"{model}/config.pbtxt", 'parameters["multimodal_config"]', f"{value!r} is not a file",
                  'set it to "preprocessing/multimodal.json" (written by glmtrt repo) or regenerate')
    vision = c.cfgs.get("vision_encoder")
    if vision is not None and vision.backend == "python":
        onnx = c._resolve(_params(vision).get("onnx_path", ""))
        if onnx is None or not onnx.is_file():
            c.add("vision_encoder/config.pbtxt", 'parameters["onnx_path"]', f"{_params(vision).get('onnx_path')!r} "
                  "is not a file", "point it at vision/encoder.onnx of the converted dir (glmtrt convert)")


def repository_models(manifest: dict[str, Any]) -> tuple[str, ...]:
    """The models a repository must hold: the five text models, plus vision_encoder when multimodal."""
    return (*MODELS, "vision_encoder") if manifest.get("multimodal") else MODELS


def check_repository(repo: str | Path, *, engine_dir: str | Path | None = None) -> list[Problem]:
    """All problems of the repository at `repo` (empty list: valid). `engine_dir` names a local
    copy of the engine when `gpt_model_path` is the path inside the serving container."""
    repo = Path(repo)
    if not repo.is_dir():
        raise GlmtrtError(f"repository {repo} not found", fix="pass the -o dir of glmtrt repo")
    c = _Checker(repo, Path(engine_dir) if engine_dir else None)
    c.load_manifest()
    models = repository_models(c.manifest)
    for model in models:
        c.load_config(model)
    for extra in sorted(p.name for p in repo.iterdir() if p.is_dir() and p.name not in models):
        c.add(f"{extra}/", "(directory)", "Triton treats every root dir as a model and fails to load without its "
              "config.pbtxt (hidden dirs too)", "move it inside a model dir (next to 1/) or out of the repository")
    c.check_batch_and_decoupled()
    c.check_ensemble()
    c.check_contract()
    c.check_parameters()
    from glmtrt.triton.check_engine import check_instances

    check_instances(c)
    if c.manifest.get("multimodal"):
        _check_multimodal(c)
    tdir = (c.manifest.get("tokenizer") or {}).get("dir") or "preprocessing/tokenizer"
    if not (repo / tdir / "tokenizer.model").is_file():
        c.add(f"{tdir}/tokenizer.model", "(file)", "missing", "regenerate the repository (tokenizer files are copied in)")
    return c.problems


def check_or_raise(repo: str | Path, *, engine_dir: str | Path | None = None) -> None:
    """Raise GlmtrtError listing every problem, if any."""
    problems = check_repository(repo, engine_dir=engine_dir)
    if problems:
        raise GlmtrtError(f"repository {repo}: {len(problems)} problem(s)\n" + format_problems(problems),
                          fix="apply the fixes above, or regenerate with glmtrt repo")
