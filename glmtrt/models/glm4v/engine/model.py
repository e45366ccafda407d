"""Glm4vForCausalLM: the GLM-4.1V / AutoGLM-Phone-9B text decoder for TensorRT-LLM 1.2.x (Python model API).

Loaded by trtllm-build --model_cls_file; runs only where tensorrt_llm is installed (GPU container).
It follows these TensorRT-LLM 1.2.x classes (read in NVIDIA/TensorRT-LLM, facts only):
- tensorrt_llm/models/qwen/model.py `QWenDecoderLayer` / `QWenModel` / `QWenForCausalLM`: a decoder
  layer built from layers.Attention + RmsNorm, `mrope_params` threaded from the model forward through
  DecoderLayerList to Attention (the Qwen2-VL engine path), `Embedding(input_ids, *ptuning_args)`,
  which trtllm-build swaps for PromptTuningEmbedding when --max_prompt_embedding_table_size > 0.
- tensorrt_llm/models/gemma/model.py (Gemma2 branch of `GemmaDecoderLayer`): sandwich norms,
  `post_attention_layernorm` after attention and `pre_feedforward_layernorm` /
  `post_feedforward_layernorm` around the MLP.
- tensorrt_llm/models/chatglm/model.py: fused qkv with bias, MLP(hidden_act='swiglu') whose fc is
  [up; gate], dense without bias.
- tensorrt_llm/builder.py build(): only the Qwen2-VL architecture names get
  prepare_input_args['mrope_rotary_cos_sin_size'] = max_position_embeddings * rotary_embedding_dim;
  our `prepare_inputs` sets it itself, so the engine has the mrope_rotary_cos_sin and
  mrope_position_deltas inputs.
The q/k rows were permuted by `glmtrt convert` so the attention plugin's NeoX-style M-RoPE on the
first rotary_embedding_dim (= head_size * rotary_pct) dims equals GLM-4.1V's interleaved rotary.
"""
from tensorrt_llm._utils import pad_vocab_size
from tensorrt_llm.functional import PositionEmbeddingType, Tensor
from tensorrt_llm.layers import MLP, Attention, AttentionMaskType, ColumnLinear, Embedding, RmsNorm
from tensorrt_llm.models.modeling_utils import DecoderLayerList, DecoderModelForCausalLM, PretrainedConfig
from tensorrt_llm.module import Module


class Glm4vDecoderLayer(Module):
    """x += post_attention_layernorm(attn(input_layernorm(x)));
    x += post_feedforward_layernorm(mlp(pre_feedforward_layernorm(x)))."""

    def __init__(self, config: PretrainedConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        dtype, eps, h = config.dtype, config.norm_epsilon, config.hidden_size
        tp_group, tp_size = config.mapping.tp_group, config.mapping.tp_size
        local = layer_idx - config.mapping.pp_layers(config.num_hidden_layers)[0]
        self.input_layernorm = RmsNorm(normalized_shape=h, eps=eps, dtype=dtype)
        self.attention = Attention(
            local_layer_idx=local, hidden_size=h, attention_head_size=config.head_size,
            num_attention_heads=config.num_attention_heads, num_kv_heads=config.num_key_value_heads,
            max_position_embeddings=config.max_position_embeddings, dtype=dtype,
            attention_mask_type=AttentionMaskType.causal, bias=True, dense_bias=False,
            position_embedding_type=PositionEmbeddingType.mrope, rotary_embedding_base=config.rotary_base,
            rotary_embedding_percentage=config.rotary_pct, tp_group=tp_group, tp_size=tp_size,
            quant_mode=config.quant_mode)
        self.post_attention_layernorm = RmsNorm(normalized_shape=h, eps=eps, dtype=dtype)
        self.pre_feedforward_layernorm = RmsNorm(normalized_shape=h, eps=eps, dtype=dtype)
        self.mlp = MLP(hidden_size=h, ffn_hidden_size=config.intermediate_size, hidden_act="swiglu", dtype=dtype,
                       bias=False, tp_group=tp_group, tp_size=tp_size, quant_mode=config.quant_mode)
        self.post_feedforward_layernorm = RmsNorm(normalized_shape=h, eps=eps, dtype=dtype)

    def forward(self, hidden_states: Tensor, attention_mask=None, use_cache=False, spec_decoding_params=None,
                kv_cache_params=None, attention_params=None, lora_layer_params=None, mrope_params=None):
        residual = hidden_states
        attn = self.attention(self.input_layernorm(hidden_states), attention_mask=attention_mask,
                              use_cache=use_cache, spec_decoding_params=spec_decoding_params,
                              kv_cache_params=kv_cache_params, attention_params=attention_params,
                              lora_layer_params=lora_layer_params, mrope_params=mrope_params)
        if use_cache:
            attn, presents = attn
        hidden_states = residual + self.post_attention_layernorm(attn)
        residual = hidden_states
        mlp = self.mlp(self.pre_feedforward_layernorm(hidden_states), lora_layer_params=lora_layer_params)
        hidden_states = residual + self.post_feedforward_layernorm(mlp)
        return (hidden_states, presents) if use_cache else hidden_states


class Glm4vModel(Module):
    """Embedding (prompt-tuning capable) -> decoder layers -> ln_f (pp_size 1)."""

    def __init__(self, config: PretrainedConfig):
        super().__init__()
        self.vocab_embedding = Embedding(config.vocab_size, config.hidden_size, dtype=config.dtype)
        self.layers = DecoderLayerList(Glm4vDecoderLayer, config)
        self.ln_f = RmsNorm(normalized_shape=config.hidden_size, eps=config.norm_epsilon, dtype=config.dtype)

    def forward(self, input_ids: Tensor, position_ids=None, use_cache=False, attention_mask=None,
                spec_decoding_params=None, kv_cache_params=None, attention_params=None, mrope_params=None,
                hidden_states=None, prompt_embedding_table=None, prompt_tasks=None, prompt_vocab_size=None,
                lora_params=None):
        ptuning = [prompt_embedding_table, prompt_tasks, prompt_vocab_size] if prompt_embedding_table is not None else []
        hidden_states = self.vocab_embedding(input_ids, *ptuning)
        hidden_states = self.layers.forward(hidden_states, use_cache=use_cache, attention_mask=attention_mask,
                                            kv_cache_params=kv_cache_params, attention_params=attention_params,
                                            lora_params=lora_params, spec_decoding_params=spec_decoding_params,
                                            mrope_params=mrope_params)
        if use_cache:
            hidden_states, presents = hidden_states
        hidden_states = self.ln_f(hidden_states)
        return (hidden_states, tuple(presents)) if use_cache else hidden_states


class Glm4vForCausalLM(DecoderModelForCausalLM):
    """The engine model class named in llm/config.json ('architecture': 'Glm4vForCausalLM')."""

    config_class = PretrainedConfig

    def __init__(self, config: PretrainedConfig):
        if config.mapping.pp_size != 1:
            raise ValueError("Glm4vForCausalLM is built with pp_size 1 (glmtrt converts TP only)")
        transformer = Glm4vModel(config)
        lm_head = ColumnLinear(config.hidden_size, pad_vocab_size(config.vocab_size, config.mapping.tp_size),
                               bias=False, dtype=config.dtype, tp_group=config.mapping.tp_group,
                               tp_size=config.mapping.tp_size, gather_output=True)
        super().__init__(config, transformer, lm_head)

    def prepare_inputs(self, *args, **kwargs):
        """The base inputs plus mrope_rotary_cos_sin [batch, max_position_embeddings * rotary_dim] and
        mrope_position_deltas [batch, 1] (builder.py adds them only for Qwen2-VL names)."""
        kwargs["mrope_rotary_cos_sin_size"] = self.config.max_position_embeddings * self.config.rotary_embedding_dim
        return super().prepare_inputs(*args, **kwargs)
