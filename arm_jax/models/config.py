"""Decoder hyperparameters and their translation to and from Hugging Face config.json."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp

# HF architecture name -> our family flag. The families differ only in q/k/v bias and q/k norm.
ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
}
REMAT_POLICIES = ("none", "full", "dots", "dots_with_no_batch_dims")

_DTYPES = {"float64": jnp.float64, "float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def dtype_from_name(name: str | Any) -> Any:
  """Accepts 'float32'/'bfloat16'/'float16' (or a dtype) and returns the jnp dtype."""
  if not isinstance(name, str):
    return jnp.dtype(name).type
  if name not in _DTYPES:
    raise ValueError(f"unsupported dtype {name!r}; expected one of {sorted(_DTYPES)}")
  return _DTYPES[name]


LORA_TARGETS = ("q", "kv", "o", "gate_up", "down")  # the projections LoRA may adapt


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  """Everything that fixes a decoder's shapes and numerics.

  Llama, Qwen2/2.5 and Qwen3 are one family: Qwen2 adds bias to q/k/v, Qwen3 adds a per-head
  RMSNorm on q and k and has a head_dim that is not hidden_size // num_heads.
  """

  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  rope_theta: float = 10000.0
  rms_norm_eps: float = 1e-6
  tie_word_embeddings: bool = False
  qkv_bias: bool = False
  o_bias: bool = False  # Llama attention_bias=True also biases o_proj
  qk_norm: bool = False
  max_position_embeddings: int = 4096
  architecture: str = "llama"
  # Numerics: params are stored in param_dtype, matmuls run in dtype.
  param_dtype: str = "float32"
  dtype: str = "float32"
  # Scan over layers (compact HLO, fast compiles; training) or unroll them into separately
  # named layers_i (no per-step weight slicing; decoding on CPU). See unstack_layers.
  scan_layers: bool = True
  # Store projection weights output-major ([out..., in...], see decoder.out_major_params): a
  # runtime view for decoding on CPU, where a few rows times an [out, in] weight is about
  # 1.5-2x faster in XLA than times [in, out]. Checkpoints and training use the default.
  weights_out_major: bool = False
  # Causal self-attention without a cache (training, prefill) runs over query blocks of this
  # many tokens, each attending only to the keys up to its end: about half the work and memory
  # of the full [t, t] scores at long lengths. 0 = one block.
  attention_block: int = 128
  remat_policy: str = "none"
  bos_token_id: int | None = None
  eos_token_ids: tuple[int, ...] = ()
  pad_token_id: int | None = None
  # LoRA (Hu et al. 2021): with lora_rank > 0 each projection named in lora_targets gains
  # W + (lora_alpha / lora_rank) * A @ B, A [in..., rank] and B [rank, out...] (B starts at 0,
  # so the model starts as its base); training then updates only A and B (arm_jax.models.lora).
  lora_rank: int = 0
  lora_alpha: float = 16.0
  lora_targets: tuple[str, ...] = ("q", "kv", "o", "gate_up", "down")

  def __post_init__(self):
    if self.lora_rank < 0:
      raise ValueError(f"lora_rank={self.lora_rank} must be >= 0 (0 = no LoRA)")
    bad = [t for t in self.lora_targets if t not in LORA_TARGETS]
    if bad or (self.lora_rank and not self.lora_targets):
      raise ValueError(f"lora_targets={tuple(self.lora_targets)!r}; expected a non-empty subset "
                       f"of {LORA_TARGETS}")
    if self.o_bias and not (self.qkv_bias and self.architecture == "llama"):
      raise ValueError("o_bias exists only as Llama's attention_bias (q/k/v/o together)")
    if self.num_heads % self.num_kv_heads:
      raise ValueError(
          f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}")
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f"remat_policy={self.remat_policy!r}; expected one of {REMAT_POLICIES}")
    if self.architecture not in ARCHITECTURES.values():
      raise ValueError(f"architecture={self.architecture!r}; expected one of "
                       f"{sorted(ARCHITECTURES.values())}")
    if self.attention_block < 0:
      raise ValueError(f"attention_block={self.attention_block} must be >= 0 (0 = one block)")
    dtype_from_name(self.param_dtype)
    dtype_from_name(self.dtype)

  def replace(self, **kwargs) -> "DecoderConfig":
    return dataclasses.replace(self, **kwargs)

  @property
  def num_params(self) -> int:
    e, f, h, k, d = (self.hidden_size, self.intermediate_size, self.num_heads,
                     self.num_kv_heads, self.head_dim)
    per_layer = e * (h + 2 * k) * d + h * d * e + 3 * e * f + 2 * e
    if self.qkv_bias:
      per_layer += (h + 2 * k) * d
    if self.o_bias:
      per_layer += e
    if self.qk_norm:
      per_layer += 2 * d
    embed = self.vocab_size * e * (1 if self.tie_word_embeddings else 2)
    return self.num_layers * per_layer + embed + e

  # ---------------------------------------------------------------- Hugging Face config.json
  @classmethod
  def from_hf(cls, hf: Mapping[str, Any], **overrides) -> "DecoderConfig":
    """Builds a config from a transformers config.json dict; unsupported features raise."""
    archs = hf.get("architectures") or []
    family = None
    for name in archs:
      family = ARCHITECTURES.get(name)
      if family:
        break
    if family is None:
      family = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}.get(hf.get("model_type", ""))
    if family is None:
      raise ValueError(
          f"unsupported architecture {archs or hf.get('model_type')!r}; arm_jax supports "
          f"{sorted(ARCHITECTURES)}")
    _check_rope_scaling(hf)
    if hf.get("hidden_act", "silu") != "silu":
      raise ValueError(f"unsupported hidden_act {hf['hidden_act']!r}; only 'silu' (SwiGLU)")
    if hf.get("mlp_bias"):
      raise ValueError("unsupported mlp_bias=True")
    num_heads = hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or hf["hidden_size"] // num_heads
    if family == "llama":
      qkv_bias = o_bias = bool(hf.get("attention_bias", False))
    else:
      qkv_bias, o_bias = family == "qwen2", False
    if family == "qwen3" and hf.get("attention_bias"):
      raise ValueError("unsupported Qwen3 attention_bias=True")
    eos = hf.get("eos_token_id")
    eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else (() if eos is None else (eos,))
    kwargs = dict(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=num_heads,
        num_kv_heads=hf.get("num_key_value_heads") or num_heads,
        head_dim=head_dim,
        rope_theta=float(_rope_theta(hf)),
        rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        qkv_bias=qkv_bias,
        o_bias=o_bias,
        qk_norm=family == "qwen3",
        max_position_embeddings=int(hf.get("max_position_embeddings", 4096)),
        architecture=family,
        bos_token_id=hf.get("bos_token_id"),
        eos_token_ids=eos_ids,
        pad_token_id=hf.get("pad_token_id"),
    )
    kwargs.update(overrides)
    return cls(**kwargs)

  def to_hf(self) -> dict[str, Any]:
    """A config.json that transformers reads back to the same architecture."""
    arch = {v: k for k, v in ARCHITECTURES.items()}[self.architecture]
    eos = list(self.eos_token_ids)
    hf = {
        "architectures": [arch],
        "model_type": self.architecture,
        "vocab_size": self.vocab_size,
        "hidden_size": self.hidden_size,
        "intermediate_size": self.intermediate_size,
        "num_hidden_layers": self.num_layers,
        "num_attention_heads": self.num_heads,
        "num_key_value_heads": self.num_kv_heads,
        "head_dim": self.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": self.max_position_embeddings,
        "rms_norm_eps": self.rms_norm_eps,
        "rope_theta": self.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": self.rope_theta},
        "tie_word_embeddings": self.tie_word_embeddings,
        "torch_dtype": self.param_dtype,
        "bos_token_id": self.bos_token_id,
        "eos_token_id": eos[0] if len(eos) == 1 else (eos or None),
        "pad_token_id": self.pad_token_id,
        "use_cache": True,
    }
    if self.architecture == "llama":
      hf["attention_bias"] = self.qkv_bias
      hf["mlp_bias"] = False
    if self.architecture == "qwen3":
      hf["attention_bias"] = False
    if self.architecture in ("qwen2", "qwen3"):
      hf["use_sliding_window"] = False
    return hf


def _rope_theta(hf: Mapping[str, Any]) -> float:
  params = hf.get("rope_parameters")
  if isinstance(params, Mapping) and "rope_theta" in params:
    return params["rope_theta"]
  return hf.get("rope_theta", 10000.0)


def _check_rope_scaling(hf: Mapping[str, Any]) -> None:
  """Only plain RoPE is implemented; anything else would silently change the model."""
  for key in ("rope_scaling", "rope_parameters"):
    scaling = hf.get(key)
    if not scaling:
      continue
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in ("default", None):
      raise ValueError(
          f"unsupported {key} type {kind!r} in config.json; arm_jax implements plain RoPE "
          "only and will not approximate other scalings")
  if hf.get("use_sliding_window"):
    raise ValueError("unsupported use_sliding_window=True; arm_jax implements full attention")
