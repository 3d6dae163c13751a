"""One Flax Linen decoder for Llama (SmolLM2), Qwen2/2.5 and Qwen3.

Parameter layout (leading `layers` axis from the scan over blocks):
  embedding                  [vocab, embed]
  layers/attn_norm/scale     [layers, embed]
  layers/attn/q              [layers, embed, heads, head_dim]       (+ q_bias [heads, head_dim])
  layers/attn/kv             [layers, embed, 2, kv_heads, head_dim] (+ kv_bias)
  layers/attn/q_norm|k_norm  [layers, head_dim]                     (Qwen3 only)
  layers/attn/o              [layers, heads, head_dim, embed]       (+ o_bias [embed], Llama)
  layers/mlp_norm/scale      [layers, embed]
  layers/mlp/gate_up         [layers, embed, 2, mlp]
  layers/mlp/down            [layers, mlp, embed]
  final_norm/scale           [embed]
  lm_head                    [embed, vocab]                         (untied only)
k/v and gate/up are fused so that each costs one matmul: decoding on CPU is matmul-bound.

The KV cache is an explicit pytree the caller owns (see `KVCache`); the scan reads it and
returns only the new keys/values, so the caller writes them in place with one update.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from arm_jax.models.config import DecoderConfig, dtype_from_name

Array = jax.Array
_NEG_INF = -1e30  # finite, so fully masked rows (left padding) give uniform weights, not NaN

_REMAT = {
    "full": None,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_with_no_batch_dims": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


class KVCache(NamedTuple):
  """Keys/values of past tokens: k, v [layers, batch, slots, kv_heads, head_dim]; mask [batch, slots]
  is True where a slot holds a real (non-padding, already written) token."""

  k: Array
  v: Array
  mask: Array


def _param(module: nn.Module, name: str, init, shape, axes, dtype):
  return module.param(name, nn.with_logical_partitioning(init, axes), shape, dtype)


class RMSNorm(nn.Module):
  eps: float
  axis_name: str
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = _param(self, "scale", nn.initializers.ones, (x.shape[-1],), (self.axis_name,),
                   self.param_dtype)
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return y.astype(self.dtype) * scale.astype(self.dtype)


def rope(x: Array, positions: Array, theta: float) -> Array:
  """Rotary embedding, 'rotate half' convention of transformers; x [b, t, heads, d]."""
  d = x.shape[-1]
  # A trace-time constant from numpy: XLA's pow is less exact than libm's and the error
  # grows with position.
  inv_freq = (1.0 / (theta ** (np.arange(0, d, 2, dtype=np.float64) / d))).astype(np.float32)
  angles = positions.astype(jnp.float32)[:, :, None] * inv_freq  # [b, t, d/2]
  cos = jnp.cos(angles)[:, :, None, :]
  sin = jnp.sin(angles)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


class Attention(nn.Module):
  config: DecoderConfig
  mesh: Mesh | None = None
  rules: tuple = ()

  def _constrain(self, x, axes):
    return _constrain(x, axes, self.mesh, self.rules)

  @nn.compact
  def __call__(self, x, positions, token_mask, cache_k=None, cache_v=None, cache_mask=None):
    cfg = self.config
    dt, pdt = dtype_from_name(cfg.dtype), dtype_from_name(cfg.param_dtype)
    e, h, k, d = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    init = nn.initializers.normal(0.02)
    wq = _param(self, "q", init, (e, h, d), ("embed", "heads", "head_dim"), pdt)
    wkv = _param(self, "kv", init, (e, 2, k, d), ("embed", None, "kv_heads", "head_dim"), pdt)
    wo = _param(self, "o", init, (h, d, e), ("heads", "head_dim", "embed"), pdt)
    x = x.astype(dt)
    q = jnp.einsum("bte,ehd->bthd", x, wq.astype(dt))
    kv = jnp.einsum("bte,eckd->btckd", x, wkv.astype(dt))
    if cfg.qkv_bias:
      q = q + _param(self, "q_bias", nn.initializers.zeros, (h, d), ("heads", "head_dim"),
                     pdt).astype(dt)
      kv = kv + _param(self, "kv_bias", nn.initializers.zeros, (2, k, d),
                       (None, "kv_heads", "head_dim"), pdt).astype(dt)
    new_k, new_v = kv[:, :, 0], kv[:, :, 1]
    if cfg.qk_norm:
      q = RMSNorm(cfg.rms_norm_eps, "head_dim", dt, pdt, name="q_norm")(q)
      new_k = RMSNorm(cfg.rms_norm_eps, "head_dim", dt, pdt, name="k_norm")(new_k)
    q = self._constrain(rope(q, positions, cfg.rope_theta), ("batch", "length", "heads", "head_dim"))
    new_k = self._constrain(rope(new_k, positions, cfg.rope_theta),
                            ("batch", "length", "kv_heads", "head_dim"))
    new_v = self._constrain(new_v, ("batch", "length", "kv_heads", "head_dim"))

    b, t = x.shape[:2]
    g = h // k
    qg = q.reshape(b, t, k, g, d)  # query head i reads kv head i // g, as transformers' repeat_kv
    scale = d ** -0.5
    causal = jnp.tril(jnp.ones((t, t), bool))
    mask_new = causal[None] & token_mask[:, None, :]  # [b, t(query), t(key)]
    f32 = jnp.promote_types(dt, jnp.float32)
    scores = jnp.einsum("btkgd,bskd->bkgts", qg, new_k, preferred_element_type=f32)
    scores = jnp.where(mask_new[:, None, None], scores * scale, _NEG_INF)
    values = [new_v]
    if cache_k is not None:
      past = jnp.einsum("btkgd,bskd->bkgts", qg, cache_k.astype(dt),
                        preferred_element_type=f32)
      past = jnp.where(cache_mask[:, None, None, None, :], past * scale, _NEG_INF)
      scores = jnp.concatenate([past, scores], axis=-1)
      values = [cache_v.astype(dt), new_v]
    probs = jax.nn.softmax(scores, axis=-1).astype(dt)
    v_all = values[0] if len(values) == 1 else jnp.concatenate(values, axis=1)
    out = jnp.einsum("bkgts,bskd->btkgd", probs, v_all).reshape(b, t, h, d)
    out = jnp.einsum("bthd,hde->bte", out, wo.astype(dt))
    if cfg.o_bias:
      out = out + _param(self, "o_bias", nn.initializers.zeros, (e,), ("embed",), pdt).astype(dt)
    return out, new_k, new_v


class MLP(nn.Module):
  config: DecoderConfig

  @nn.compact
  def __call__(self, x):
    cfg = self.config
    dt, pdt = dtype_from_name(cfg.dtype), dtype_from_name(cfg.param_dtype)
    e, f = cfg.hidden_size, cfg.intermediate_size
    init = nn.initializers.normal(0.02)
    w_gu = _param(self, "gate_up", init, (e, 2, f), ("embed", None, "mlp"), pdt)
    w_down = _param(self, "down", init, (f, e), ("mlp", "embed"), pdt)
    gu = jnp.einsum("bte,ecf->btcf", x.astype(dt), w_gu.astype(dt))
    gate = gu[:, :, 0]
    # x / (1 + exp(-x)) rather than nn.silu: XLA's CPU logistic is the larger error source.
    hidden = gate / (1 + jnp.exp(-gate)) * gu[:, :, 1]
    return jnp.einsum("btf,fe->bte", hidden, w_down.astype(dt))


class Block(nn.Module):
  """Pre-norm transformer block; scanned, so it maps (carry, per-layer inputs) -> (carry, out)."""

  config: DecoderConfig
  mesh: Mesh | None = None
  rules: tuple = ()

  @nn.compact
  def __call__(self, x, positions, token_mask, cache_mask, cache_k, cache_v):
    cfg = self.config
    dt, pdt = dtype_from_name(cfg.dtype), dtype_from_name(cfg.param_dtype)
    h = RMSNorm(cfg.rms_norm_eps, "embed", dt, pdt, name="attn_norm")(x)
    attn, new_k, new_v = Attention(cfg, self.mesh, self.rules, name="attn")(
        h, positions, token_mask, cache_k, cache_v, cache_mask)
    x = x + attn
    h = RMSNorm(cfg.rms_norm_eps, "embed", dt, pdt, name="mlp_norm")(x)
    x = x + MLP(cfg, name="mlp")(h)
    x = _constrain(x, ("batch", "length", "act_embed"), self.mesh, self.rules)
    return x, (new_k, new_v)


class Decoder(nn.Module):
  """Causal LM. `apply({"params": p}, input_ids)` -> logits [batch, length, vocab] (float32).

  attention_mask [b, t] marks real tokens (left padding is False); positions default to the
  count of real tokens before each one, as transformers does for left-padded batches.
  With `cache`, the new tokens attend to the cached slots plus causally to each other, and the
  result is (logits, (k, v)) with this call's keys/values [layers, b, t, kv_heads, head_dim].
  `logits_at` [b] selects one position per row, so prefill never builds [b, t, vocab] logits.
  """

  config: DecoderConfig
  mesh: Mesh | None = None
  rules: tuple = ()

  @nn.compact
  def __call__(self, input_ids, *, attention_mask=None, positions=None, cache: KVCache | None = None,
               return_kv: bool = False, logits_at=None):
    cfg = self.config
    dt, pdt = dtype_from_name(cfg.dtype), dtype_from_name(cfg.param_dtype)
    b, t = input_ids.shape
    if attention_mask is None:
      attention_mask = jnp.ones((b, t), bool)
    attention_mask = attention_mask.astype(bool)
    if positions is None:
      positions = jnp.maximum(jnp.cumsum(attention_mask, axis=-1) - 1, 0)
    embedding = _param(self, "embedding", nn.initializers.normal(1.0), (cfg.vocab_size, cfg.hidden_size),
                       ("vocab", "embed"), pdt)
    x = jnp.take(embedding, input_ids, axis=0).astype(dt)
    x = _constrain(x, ("batch", "length", "act_embed"), self.mesh, self.rules)

    block = Block
    if cfg.remat_policy != "none":
      block = nn.remat(Block, policy=_REMAT[cfg.remat_policy], prevent_cse=False,
                       static_argnums=())
    cache = cache if cache is not None else KVCache(None, None, None)
    scanned = nn.scan(
        block,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=(nn.broadcast, nn.broadcast, nn.broadcast, 0, 0),
        length=cfg.num_layers,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )
    x, (new_k, new_v) = scanned(cfg, self.mesh, self.rules, name="layers")(
        x, positions, attention_mask, cache.mask, cache.k, cache.v)
    x = RMSNorm(cfg.rms_norm_eps, "embed", dt, pdt, name="final_norm")(x)
    if logits_at is not None:
      x = jnp.take_along_axis(x, logits_at[:, None, None].astype(jnp.int32), axis=1)[:, 0]
    if cfg.tie_word_embeddings:
      head = embedding.T
    else:
      head = _param(self, "lm_head", nn.initializers.normal(0.02), (cfg.hidden_size, cfg.vocab_size),
                    ("embed", "vocab"), pdt)
    logits = jnp.einsum("...e,ev->...v", x, head.astype(dt),
                        preferred_element_type=jnp.promote_types(dt, jnp.float32))
    if cache.k is not None or return_kv:
      return logits, (new_k, new_v)
    return logits


def _constrain(x: Array, axes: tuple, mesh: Mesh | None, rules: tuple) -> Array:
  if mesh is None or not rules:
    return x
  return nn.with_logical_constraint(x, axes, rules=rules, mesh=mesh)

