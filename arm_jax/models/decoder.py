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
With config.weights_out_major the projection weights (q, kv, o, gate_up, down, lm_head) hold
their output axes first; `out_major_params` converts, and the sampler uses it on CPU.

The KV cache is an explicit pytree the caller owns (see `KVCache`): a call with a cache
returns the updated cache.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from arm_jax.models.config import DecoderConfig, dtype_from_name
from arm_jax.sharding import constrain

Array = jax.Array
_NEG_INF = -1e30  # finite, so fully masked rows (left padding) give uniform weights, not NaN

_REMAT = {
    "full": None,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_with_no_batch_dims": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


class KVCache(NamedTuple):
  """Keys/values of past tokens and which slots hold real (non-padding, written) tokens.

  k, v: [layers, batch, kv_heads, slots, head_dim] for a scanned model, or a tuple of
  per-layer [batch, kv_heads, slots, head_dim] arrays for an unscanned one (separate buffers
  that a decode loop updates in place). mask: [batch, slots].
  """

  k: Array
  v: Array
  mask: Array


def _param(module: nn.Module, name: str, init, shape, axes, dtype):
  return module.param(name, nn.with_logical_partitioning(init, axes), shape, dtype)


# Projection weights: name -> (rank without the layers axis, number of leading input axes).
_PROJECTIONS = {"q": (3, 1), "kv": (4, 1), "o": (3, 2), "gate_up": (3, 1), "down": (2, 1),
                "lm_head": (2, 1)}


def _out_major_order(rank: int, n_in: int) -> tuple[int, ...]:
  return tuple(range(n_in, rank)) + tuple(range(n_in))


def _weight(module: nn.Module, name: str, shape, axes, dtype, out_major: bool):
  """A projection weight declared in [in..., out...] terms, stored output-major if asked."""
  init = nn.initializers.normal(0.02)
  if out_major:
    order = _out_major_order(*_PROJECTIONS[name])
    shape, axes = tuple(shape[i] for i in order), tuple(axes[i] for i in order)
  return _param(module, name, init, shape, axes, dtype)


def _lora(module: nn.Module, name: str, shape, axes, dtype):
  """The LoRA factors (A [in..., rank], B [rank, out...]) of projection `name` ([in..., out...]
  shape and axes, as _weight takes them), or None when config.lora_rank is 0 or `name` is not in
  config.lora_targets. A starts as PEFT's (uniform within 1/sqrt(fan_in)), B at zero."""
  cfg = module.config
  if not cfg.lora_rank or name not in cfg.lora_targets:
    return None
  n_in, r = _PROJECTIONS[name][1], cfg.lora_rank
  init_a = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform",
                                            in_axis=tuple(range(n_in)), out_axis=-1)
  a = _param(module, f"{name}_lora_a", init_a, tuple(shape[:n_in]) + (r,),
             tuple(axes[:n_in]) + ("lora",), dtype)
  b = _param(module, f"{name}_lora_b", nn.initializers.zeros, (r,) + tuple(shape[n_in:]),
             ("lora",) + tuple(axes[n_in:]), dtype)
  return a, b


def _lora_delta(lora, x: Array, down: str, up: str, cfg: DecoderConfig, dt, a_shape=None) -> Array:
  """(lora_alpha / lora_rank) * (x . A) . B: `down` contracts x with A (reshaped to `a_shape`
  if given) into [..., rank], `up` that with B."""
  a, b = lora
  a = a.astype(dt) if a_shape is None else a.astype(dt).reshape(a_shape)
  h = jnp.einsum(down, x, a)
  return jnp.einsum(up, h, b.astype(dt)) * jnp.asarray(cfg.lora_alpha / cfg.lora_rank, dt)


def _project(equation: str, x: Array, w: Array, out_major: bool, **kwargs) -> Array:
  """einsum(equation, x, w) where `equation` names w in its [in..., out...] layout.

  Output-major weights go first in the contraction (XLA:CPU's fast form for skinny x); the
  result is then transposed back to the equation's output order.
  """
  if not out_major:
    return jnp.einsum(equation, x, w, **kwargs)
  inputs, out = equation.split("->")
  xs, ws = inputs.split(",")
  kept = "".join(c for c in ws if c not in xs)
  contracted = "".join(c for c in ws if c in xs)
  rows = "".join(c for c in out if c not in kept)
  y = jnp.einsum(f"{kept + contracted},{xs}->{kept + rows}", w, x, **kwargs)
  return jnp.einsum(f"{kept + rows}->{out}", y)


def out_major_params(params: Any) -> Any:
  """Standard params -> the config.weights_out_major layout (scanned or unrolled)."""
  def convert(path, leaf):
    name = getattr(path[-1], "key", None)
    if name not in _PROJECTIONS:
      return leaf
    rank, n_in = _PROJECTIONS[name]
    lead = leaf.ndim - rank
    order = tuple(range(lead)) + tuple(lead + i for i in _out_major_order(rank, n_in))
    return jnp.transpose(leaf, order)
  return jax.tree_util.tree_map_with_path(convert, params)


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
    return constrain(x, axes, self.mesh, self.rules)

  @nn.compact
  def __call__(self, x, positions, token_mask, cache_k=None, cache_v=None, cache_mask=None,
               cache_index=None):
    cfg = self.config
    dt, pdt = dtype_from_name(cfg.dtype), dtype_from_name(cfg.param_dtype)
    e, h, k, d = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    om = cfg.weights_out_major
    wq = _weight(self, "q", (e, h, d), ("embed", "heads", "head_dim"), pdt, om)
    wkv = _weight(self, "kv", (e, 2, k, d), ("embed", None, "kv_heads", "head_dim"), pdt, om)
    wo = _weight(self, "o", (h, d, e), ("heads", "head_dim", "embed"), pdt, om)
    lora_q = _lora(self, "q", (e, h, d), ("embed", "heads", "head_dim"), pdt)
    lora_kv = _lora(self, "kv", (e, 2, k, d), ("embed", None, "kv_heads", "head_dim"), pdt)
    lora_o = _lora(self, "o", (h, d, e), ("heads", "head_dim", "embed"), pdt)
    x = x.astype(dt)
    q = _project("bte,ehd->bthd", x, wq.astype(dt), om)
    kv = _project("bte,eckd->btckd", x, wkv.astype(dt), om)
    if lora_q is not None:
      q = q + _lora_delta(lora_q, x, "bte,er->btr", "btr,rhd->bthd", cfg, dt)
    if lora_kv is not None:
      kv = kv + _lora_delta(lora_kv, x, "bte,er->btr", "btr,rckd->btckd", cfg, dt)
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
    new_k = new_k.transpose(0, 2, 1, 3)  # [b, kv_heads, t, d]: the cache's layout
    new_v = new_v.transpose(0, 2, 1, 3)
    scale = d ** -0.5
    f32 = jnp.promote_types(dt, jnp.float32)
    if cache_k is None:
      out = _causal_attention(qg, new_k, new_v, token_mask, scale, cfg.attention_block, f32)
    else:
      # Write first, then attend over the whole cache: the buffer flows carry -> update ->
      # read, so XLA updates it in place inside a decode loop instead of copying it.
      cache_k = jax.lax.dynamic_update_slice(cache_k, new_k.astype(cache_k.dtype),
                                             (0, 0, cache_index, 0))
      cache_v = jax.lax.dynamic_update_slice(cache_v, new_v.astype(cache_v.dtype),
                                             (0, 0, cache_index, 0))
      slots = jnp.arange(cache_k.shape[2])
      visible = slots[None, :] <= cache_index + jnp.arange(t)[:, None]  # [t, slots]
      valid = cache_mask[:, None, :] & visible[None]  # cache_mask already holds this call's tokens
      new_k, new_v = cache_k, cache_v
      if t > 1:  # many queries (a shared prompt's completions): batched matmuls, as above
        out = _attend_cache(qg, cache_k.astype(dt), cache_v.astype(dt), valid, scale, f32)
    if cache_k is None or t > 1:
      # [b, kv_heads, group, t, d] straight into o: one contraction, no transpose back.
      wo = wo.reshape((e, k, g, d) if om else (k, g, d, e))
      heads_out = out.astype(dt)
      out = _project("bkgtd,kgde->bte", heads_out, wo.astype(dt), om)
      if lora_o is not None:
        out = out + _lora_delta(lora_o, heads_out, "bkgtd,kgdr->btr", "btr,re->bte", cfg, dt,
                                (k, g, d, cfg.lora_rank))
    else:  # decoding: one query per row
      scores = _cache_scores(qg, cache_k.astype(dt), f32)
      scores = jnp.where(valid[:, None, None], scores * scale, _NEG_INF)
      probs = jax.nn.softmax(scores, axis=-1).astype(dt)
      out = _cache_values(probs, cache_v.astype(dt))
      # Heads flattened on both sides: with separate (h, d) axes XLA:CPU picks a (d, h)
      # contraction order and copies the transposed o weight at every decode step.
      wo = wo.reshape((e, h * d) if om else (h * d, e))
      heads_out = out.reshape(b, t, h * d)
      out = _project("bti,ie->bte", heads_out, wo.astype(dt), om)
      if lora_o is not None:
        out = out + _lora_delta(lora_o, heads_out, "bti,ir->btr", "btr,re->bte", cfg, dt,
                                (h * d, cfg.lora_rank))
    if cfg.o_bias:
      out = out + _param(self, "o_bias", nn.initializers.zeros, (e,), ("embed",), pdt).astype(dt)
    return out, new_k, new_v


def _causal_attention(qg: Array, k: Array, v: Array, token_mask: Array, scale: float,
                      block: int, acc_dtype) -> Array:
  """Causal attention of t queries over their own t keys -> [b, kv_heads, group, t, head_dim].

  qg [b, t, kv_heads, group, d]; k, v [b, kv_heads, t, d]; token_mask [b, t] (False = left
  padding). The queries of one kv head are laid out as one [group * rows, d] matrix so that
  each product is a plain batched matmul over (b, kv_heads), and they run in blocks of `block`
  rows, each attending only to the keys up to its last row (skipping the masked upper
  triangle). A padding query (whose keys are all masked) gets uniform weights, as before;
  it is never read.
  """
  b, t, nk, g, d = qg.shape
  q = qg.transpose(0, 2, 3, 1, 4)  # [b, k, g, t, d]
  block = t if block <= 0 else min(block, t)
  outs = []
  for start in range(0, t, block):
    stop = min(start + block, t)
    rows = stop - start
    qb = q[:, :, :, start:stop].reshape(b, nk, g * rows, d)
    scores = jnp.einsum("bkid,bksd->bkis", qb, k[:, :, :stop],
                        preferred_element_type=acc_dtype).reshape(b, nk, g, rows, stop)
    visible = jnp.arange(stop)[None, :] <= jnp.arange(start, stop)[:, None]  # [rows, stop]
    valid = visible[None] & token_mask[:, None, :stop]  # [b, rows, stop]
    scores = jnp.where(valid[:, None, None], scores * scale, _NEG_INF)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype).reshape(b, nk, g * rows, stop)
    outs.append(jnp.einsum("bkis,bksd->bkid", probs, v[:, :, :stop]).reshape(b, nk, g, rows, d))
  return outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=3)


def _attend_cache(qg: Array, cache_k: Array, cache_v: Array, valid: Array, scale: float,
                  acc_dtype) -> Array:
  """t > 1 queries over the cache's slots -> [b, kv_heads, group, t, head_dim]: the queries of
  one kv head as one [group * t, d] matrix, as _causal_attention lays them out, so both
  products are plain batched matmuls (the decode layout of _cache_scores is about twice as slow
  here on XLA:CPU: docs/results.md, the shared-prompt GRPO update). valid [b, t, slots]."""
  b, t, nk, g, d = qg.shape
  q = qg.transpose(0, 2, 3, 1, 4).reshape(b, nk, g * t, d)
  slots = cache_k.shape[2]
  scores = jnp.einsum("bkid,bksd->bkis", q, cache_k,
                      preferred_element_type=acc_dtype).reshape(b, nk, g, t, slots)
  scores = jnp.where(valid[:, None, None], scores * scale, _NEG_INF)
  probs = jax.nn.softmax(scores, axis=-1).astype(cache_v.dtype).reshape(b, nk, g * t, slots)
  return jnp.einsum("bkis,bksd->bkid", probs, cache_v).reshape(b, nk, g, t, d)


def _cache_scores(qg: Array, cache_k: Array, acc_dtype) -> Array:
  """q . k over cached slots -> [b, kv_heads, group, t, slots]: one batched matmul per
  (b, kv head), which XLA:CPU hands to its matmul library (a multiply-and-reduce over
  head_dim measured 2.4x slower there when decoding)."""
  return jnp.einsum("btkgd,bksd->bkgts", qg, cache_k, preferred_element_type=acc_dtype)


def _cache_values(probs: Array, cache_v: Array) -> Array:
  """probs [b, kv_heads, group, t, slots] . v -> [b, t, kv_heads, group, head_dim].

  For one new token (decoding) the t axis is dropped first: with it, XLA:CPU lowers the
  contraction to its generic dot (4x slower than the library matmul it gets without).
  """
  if probs.shape[3] == 1:
    return jnp.einsum("bkgs,bksd->bkgd", probs[:, :, :, 0], cache_v)[:, None]
  return jnp.einsum("bkgts,bksd->btkgd", probs, cache_v)


class MLP(nn.Module):
  config: DecoderConfig

  @nn.compact
  def __call__(self, x):
    cfg = self.config
    dt, pdt = dtype_from_name(cfg.dtype), dtype_from_name(cfg.param_dtype)
    e, f = cfg.hidden_size, cfg.intermediate_size
    om = cfg.weights_out_major
    w_gu = _weight(self, "gate_up", (e, 2, f), ("embed", None, "mlp"), pdt, om)
    w_down = _weight(self, "down", (f, e), ("mlp", "embed"), pdt, om)
    lora_gu = _lora(self, "gate_up", (e, 2, f), ("embed", None, "mlp"), pdt)
    lora_down = _lora(self, "down", (f, e), ("mlp", "embed"), pdt)
    x = x.astype(dt)
    gu = _project("bte,ecf->btcf", x, w_gu.astype(dt), om)
    if lora_gu is not None:
      gu = gu + _lora_delta(lora_gu, x, "bte,er->btr", "btr,rcf->btcf", cfg, dt)
    act = swiglu(gu)
    out = _project("btf,fe->bte", act, w_down.astype(dt), om)
    if lora_down is not None:
      out = out + _lora_delta(lora_down, act, "btf,fr->btr", "btr,re->bte", cfg, dt)
    return out


@jax.custom_vjp
def swiglu(gu: Array) -> Array:
  """silu(gu[..., 0, :]) * gu[..., 1, :] for the fused gate/up projection's output.

  A custom VJP because differentiating the two slices makes XLA build the fused cotangent as
  two zero-padded activations plus their sum; the backward here writes it in one stack.
  """
  gate, up = gu[..., 0, :], gu[..., 1, :]
  # x / (1 + exp(-x)) rather than nn.silu: XLA's CPU logistic is the larger error source.
  return gate / (1 + jnp.exp(-gate)) * up


def _swiglu_fwd(gu: Array):
  return swiglu(gu), gu


def _swiglu_bwd(gu: Array, ct: Array):
  gate, up = gu[..., 0, :], gu[..., 1, :]
  sig = 1 / (1 + jnp.exp(-gate))
  silu = gate * sig
  d_gate = ct * up * (sig * (1 + gate * (1 - sig)))
  return (jnp.stack([d_gate, ct * silu], axis=-2).astype(gu.dtype),)


swiglu.defvjp(_swiglu_fwd, _swiglu_bwd)


class Block(nn.Module):
  """Pre-norm transformer block; scanned, so it maps (carry, per-layer inputs) -> (carry, out)."""

  config: DecoderConfig
  mesh: Mesh | None = None
  rules: tuple = ()

  @nn.compact
  def __call__(self, x, positions, token_mask, cache_mask, cache_index, cache_k, cache_v):
    cfg = self.config
    dt, pdt = dtype_from_name(cfg.dtype), dtype_from_name(cfg.param_dtype)
    h = RMSNorm(cfg.rms_norm_eps, "embed", dt, pdt, name="attn_norm")(x)
    attn, new_k, new_v = Attention(cfg, self.mesh, self.rules, name="attn")(
        h, positions, token_mask, cache_k, cache_v, cache_mask, cache_index)
    x = x + attn
    h = RMSNorm(cfg.rms_norm_eps, "embed", dt, pdt, name="mlp_norm")(x)
    x = x + MLP(cfg, name="mlp")(h)
    x = constrain(x, ("batch", "length", "act_embed"), self.mesh, self.rules)
    return x, (new_k, new_v)


class Decoder(nn.Module):
  """Causal LM. `apply({"params": p}, input_ids)` -> logits [batch, length, vocab] (float32).

  attention_mask [b, t] marks real tokens (left padding is False); positions default to the
  count of real tokens before each one, as transformers does for left-padded batches.
  `return_kv` also returns this call's keys/values in the cache layout, ([layers, b, kv_heads,
  t, head_dim] or per-layer tuples when config.scan_layers is False): prefill builds a cache
  from them. With `cache` and `cache_index`, the tokens are written into the cache at slots
  [cache_index, cache_index + t) and attend to every earlier real slot; the result is
  (logits, updated KVCache). Decoding uses unscanned layers so each per-layer buffer is
  updated in place. `logits_at` [b] selects one position per row, so prefill never builds
  [b, t, vocab] logits. `return_hidden` returns the final-normed hidden states [b, t, embed]
  instead of logits, for losses that apply the head (`head_weight`) chunk by chunk; with
  `return_kv` and no cache, (hidden, (k, v)).
  """

  config: DecoderConfig
  mesh: Mesh | None = None
  rules: tuple = ()

  @nn.compact
  def __call__(self, input_ids, *, attention_mask=None, positions=None, cache: KVCache | None = None,
               cache_index=None, return_kv: bool = False, logits_at=None,
               return_hidden: bool = False):
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
    x = constrain(x, ("batch", "length", "act_embed"), self.mesh, self.rules)

    block = Block
    if cfg.remat_policy != "none":
      block = nn.remat(Block, policy=_REMAT[cfg.remat_policy], prevent_cse=not cfg.scan_layers)
    cache_mask = None
    if cache is not None:
      if cache_index is None:
        raise ValueError("cache_index is required with a cache")
      cache_mask = jax.lax.dynamic_update_slice(cache.mask, attention_mask, (0, cache_index))
    cache = cache if cache is not None else KVCache(None, None, None)
    if cfg.scan_layers:
      scanned = nn.scan(
          block,
          variable_axes={"params": 0},
          split_rngs={"params": True},
          in_axes=(nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast, 0, 0),
          length=cfg.num_layers,
          metadata_params={nn.PARTITION_NAME: "layers"},
      )
      x, (new_k, new_v) = scanned(cfg, self.mesh, self.rules, name="layers")(
          x, positions, attention_mask, cache_mask, cache_index, cache.k, cache.v)
    else:
      new_k, new_v = [], []
      for i in range(cfg.num_layers):
        layer_k = None if cache.k is None else cache.k[i]
        layer_v = None if cache.v is None else cache.v[i]
        x, (k_i, v_i) = block(cfg, self.mesh, self.rules, name=f"layers_{i}")(
            x, positions, attention_mask, cache_mask, cache_index, layer_k, layer_v)
        new_k.append(k_i)
        new_v.append(v_i)
      new_k, new_v = tuple(new_k), tuple(new_v)
    x = RMSNorm(cfg.rms_norm_eps, "embed", dt, pdt, name="final_norm")(x)
    if return_hidden:
      if not cfg.tie_word_embeddings:
        # Declare lm_head so init still creates it; the caller applies it (see head_weight).
        _weight(self, "lm_head", (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"), pdt,
                cfg.weights_out_major)
      # With return_kv (no cache): the keys and values too, a prefix shared by later calls.
      return (x, (new_k, new_v)) if return_kv and cache.k is None else x
    if logits_at is not None:
      x = jnp.take_along_axis(x, logits_at[:, None, None].astype(jnp.int32), axis=1)[:, 0]
    om = cfg.weights_out_major
    if cfg.tie_word_embeddings:
      head = embedding if om else embedding.T  # [vocab, embed] is already output-major
    else:
      head = _weight(self, "lm_head", (cfg.hidden_size, cfg.vocab_size), ("embed", "vocab"), pdt,
                     om)
    lead = "bt"[:x.ndim - 1]
    logits = _project(f"{lead}e,ev->{lead}v", x, head.astype(dt), om,
                      preferred_element_type=jnp.promote_types(dt, jnp.float32))
    if cache.k is not None:
      return logits, KVCache(new_k, new_v, cache_mask)
    if return_kv:
      return logits, (new_k, new_v)
    return logits



def head_weight(params: Any, config: DecoderConfig, vocab_major: bool = False) -> Array:
  """The output projection, [embed, vocab] (or [vocab, embed] with vocab_major)."""
  if config.tie_word_embeddings:
    w = params["embedding"]  # [vocab, embed]
  else:
    w = params["lm_head"] if config.weights_out_major else params["lm_head"].T
  return w if vocab_major else w.T


def unstack_layers(params: Any) -> Any:
  """Scanned params ({"layers": [L, ...]}) -> unscanned ({"layers_0": ..., ...}).

  Inside a jitted decode this costs one copy of the weights per call instead of a per-layer
  slice of the stacked weights at every step of the loop.
  """
  if "layers" not in params:
    return params
  out = {k: v for k, v in params.items() if k != "layers"}
  n = jax.tree.leaves(params["layers"])[0].shape[0]
  for i in range(n):
    out[f"layers_{i}"] = jax.tree.map(lambda a, i=i: a[i], params["layers"])
  return out
