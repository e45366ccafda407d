"""GLM-4.1V / AutoGLM-Phone-9B (`Glm4vForConditionalGeneration`) spec: one frozen dataclass.

Every default and field name below is checked against transformers 5.x
`transformers/models/glm4v/configuration_glm4v.py` (`Glm4vTextConfig`, `Glm4vVisionConfig`,
`Glm4vConfig`):
- text: vocab 151552, hidden 4096, 40 layers, 32 heads, 2 kv heads, MLP 13696, rms_norm_eps 1e-5,
  head_dim = hidden // heads (`Glm4vTextAttention.__init__`), q/k/v bias, no o bias,
  rope_parameters {rope_theta, partial_rotary_factor 0.5, mrope_section [8, 12, 12]}.
- vision: depth 24, hidden 1536, 12 heads, patch 14, temporal patch 2, spatial merge 2,
  image_size 336 (a 24x24 learned position table), out_hidden 4096, intermediate 13696.
- tokens: image 151343, image start 151339, image end 151340, video 151344.
transformers 4.x checkpoints (the published GLM-4.1V config.json) keep `rope_theta`,
`partial_rotary_factor` at the top of text_config and `mrope_section` under `rope_scaling`; both
spellings are read.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from glmtrt.errors import GlmtrtError
from glmtrt.models.sizes import AttentionSizes

ARCHITECTURE = "Glm4vForConditionalGeneration"


@dataclass(frozen=True)
class VisionSpec:
    """The vision tower (`Glm4vVisionModel`)."""

    depth: int
    hidden_size: int
    num_heads: int
    patch_size: int
    temporal_patch_size: int
    spatial_merge_size: int
    image_size: int
    out_hidden_size: int
    intermediate_size: int
    in_channels: int
    rms_norm_eps: float
    rope_theta: float
    attention_bias: bool

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def patch_dim(self) -> int:
        """Length of one flattened patch: C * temporal_patch * patch * patch (1176 for GLM-4.1V)."""
        return self.in_channels * self.temporal_patch_size * self.patch_size ** 2

    def num_params(self) -> int:
        h, o, i = self.hidden_size, self.out_hidden_size, self.intermediate_size
        m = self.spatial_merge_size
        block = 3 * h * h + (3 * h if self.attention_bias else 0) + h * h + 3 * h * o + 2 * h
        return (self.patch_dim * h + h + (self.image_size // self.patch_size) ** 2 * h + 2 * h
                + self.depth * block + h * o * m * m + o + o * o + 2 * o + 3 * o * i)


@dataclass(frozen=True)
class Glm4vSpec(AttentionSizes):
    """Architecture facts of a Glm4v checkpoint (text decoder + vision tower + token ids)."""

    hf_architecture: str
    source_format: str              # "glm4v"
    text_prefix: str                # "model.language_model" (transformers >= 4.54) or "model"
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_size: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    rope_theta: float
    partial_rotary_factor: float
    mrope_section: tuple[int, ...]
    norm_eps: float
    tie_word_embeddings: bool
    eos_token_ids: tuple[int, ...]
    pad_token_id: int | None
    torch_dtype: str | None
    image_token_id: int
    image_start_token_id: int
    image_end_token_id: int
    vision: VisionSpec
    family: str = "glm4v"
    chatglm_version: str = "glm4v"    # what the shared manifest/log fields print
    add_qkv_bias: bool = True
    add_bias_linear: bool = False

    @property
    def rotary_dim(self) -> int:
        return int(self.head_size * self.partial_rotary_factor)

    @property
    def rotary_base(self) -> float:
        return self.rope_theta

    def text_params(self) -> int:
        h, i, v = self.hidden_size, self.intermediate_size, self.vocab_size
        per_layer = self.qkv_rows * h + self.qkv_rows + self.q_size * h + 3 * i * h + 4 * h
        return v * h + self.num_layers * per_layer + h + (0 if self.tie_word_embeddings else v * h)

    def num_params(self) -> int:
        """Text decoder + vision tower weights."""
        return self.text_params() + self.vision.num_params()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _eos(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),)


def _need(cfg: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in cfg:
        raise GlmtrtError(f"config.json {where} has no '{key}'",
                          expected=f"a Glm4vForConditionalGeneration config.json with {where}.{key}",
                          fix="use the config.json that ships with the checkpoint")
    return cfg[key]


def _rope(text: Mapping[str, Any]) -> tuple[float, float, tuple[int, ...]]:
    rp = dict(text.get("rope_parameters") or {})
    rs = dict(text.get("rope_scaling") or {})
    theta = float(text.get("rope_theta", rp.get("rope_theta", 10000.0)))
    factor = float(text.get("partial_rotary_factor", rp.get("partial_rotary_factor", 0.5)))
    section = tuple(int(s) for s in (rp.get("mrope_section") or rs.get("mrope_section") or (8, 12, 12)))
    return theta, factor, section


def spec_from_glm4v_config(cfg: Mapping[str, Any], chatglm_version: str | None = None) -> Glm4vSpec:
    """Spec from a Glm4vForConditionalGeneration config.json (`chatglm_version` must be None)."""
    if chatglm_version not in (None, "glm4v"):
        raise GlmtrtError(f"--chatglm-version {chatglm_version} does not apply to {ARCHITECTURE}",
                          expected="no --chatglm-version for GLM-4.1V / AutoGLM checkpoints")
    text = _need(cfg, "text_config", "")
    if "vision_config" not in cfg or not cfg["vision_config"]:
        raise GlmtrtError("config.json has no vision_config",
                          expected=f"a {ARCHITECTURE} config with text_config and vision_config",
                          fix="this checkpoint lacks its vision tower; use the full GLM-4.1V / AutoGLM download")
    vis = cfg["vision_config"]
    hidden = int(_need(text, "hidden_size", "text_config"))
    heads = int(_need(text, "num_attention_heads", "text_config"))
    theta, factor, section = _rope(text)
    head = hidden // heads
    if sum(section) * 2 != int(head * factor):
        raise GlmtrtError(f"mrope_section {list(section)} covers {2 * sum(section)} rotary dims",
                          expected=f"sections summing to head_dim * partial_rotary_factor / 2 = {int(head * factor) // 2}")
    vrope = dict(vis.get("rope_parameters") or {})
    vision = VisionSpec(
        depth=int(vis.get("depth", vis.get("num_hidden_layers", 24))),
        hidden_size=int(vis.get("hidden_size", 1536)),
        num_heads=int(vis.get("num_heads", vis.get("num_attention_heads", 12))),
        patch_size=int(vis.get("patch_size", 14)),
        temporal_patch_size=int(vis.get("temporal_patch_size", 2)),
        spatial_merge_size=int(vis.get("spatial_merge_size", 2)),
        image_size=int(vis.get("image_size", 336)),
        out_hidden_size=int(vis.get("out_hidden_size", 4096)),
        intermediate_size=int(vis.get("intermediate_size", 13696)),
        in_channels=int(vis.get("in_channels", 3)),
        rms_norm_eps=float(vis.get("rms_norm_eps", 1e-5)),
        rope_theta=float(vrope.get("rope_theta", 10000.0)),
        attention_bias=bool(vis.get("attention_bias", False)),
    )
    if vision.out_hidden_size != hidden:
        raise GlmtrtError(f"vision out_hidden_size {vision.out_hidden_size} != text hidden_size {hidden}",
                          expected="image features of the decoder's width")
    eos = _eos(text.get("eos_token_id", cfg.get("eos_token_id")))
    return Glm4vSpec(
        hf_architecture=ARCHITECTURE,
        source_format="glm4v",
        text_prefix="model.language_model",
        num_layers=int(_need(text, "num_hidden_layers", "text_config")),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=int(text.get("num_key_value_heads") or heads),
        head_size=head,
        intermediate_size=int(_need(text, "intermediate_size", "text_config")),
        vocab_size=int(_need(text, "vocab_size", "text_config")),
        max_position_embeddings=int(text.get("max_position_embeddings", 32768)),
        rope_theta=theta,
        partial_rotary_factor=factor,
        mrope_section=section,
        norm_eps=float(text.get("rms_norm_eps", 1e-5)),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", text.get("tie_word_embeddings", False))),
        eos_token_ids=eos,
        pad_token_id=text.get("pad_token_id", cfg.get("pad_token_id")),
        torch_dtype=text.get("dtype") or text.get("torch_dtype") or cfg.get("dtype") or cfg.get("torch_dtype"),
        image_token_id=int(cfg.get("image_token_id", 151343)),
        image_start_token_id=int(cfg.get("image_start_token_id", 151339)),
        image_end_token_id=int(cfg.get("image_end_token_id", 151340)),
        vision=vision,
    )


def with_text_prefix(spec: Glm4vSpec, names) -> Glm4vSpec:
    """The spec with `text_prefix` set from the checkpoint's tensor names (4.x vs 5.x layout)."""
    names = set(names)
    for prefix in ("model.language_model", "model"):
        if f"{prefix}.embed_tokens.weight" in names:
            return dataclasses.replace(spec, text_prefix=prefix)
    return spec
