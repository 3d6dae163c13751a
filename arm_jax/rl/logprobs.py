"""Per-token log-probs and entropies of a sequence batch, without [batch, length, vocab] logits.

The training forward (GRPO's ratio, the KL reference, SFT's loss) needs log p(token) at every
completion position. Materialising all logits costs batch * length * vocab floats (SmolLM2 at
8 x 512: 0.8 GB, Qwen3 at paper scale: tens of GB), twice with their gradient. Instead the
decoder returns hidden states and the head runs over time chunks with a hand-written VJP, so
only one chunk of logits is alive at a time, in the forward and in the backward pass, and the
backward recomputes each chunk's logits once.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from arm_jax.models.decoder import Decoder, KVCache, head_weight


@flax.struct.dataclass
class SequenceBatch:
  """Token sequences (prompt then completion, left-padded) for a training forward.

  tokens [n, t] int32; attention [n, t] bool (real tokens); loss_mask [n, t] bool marks the
  tokens that are scored (completion tokens, never position 0). score_from (static) is the
  first column that may be scored: rollouts put every completion after a prompt bucket of
  fixed width, so the head runs only over columns >= score_from and the prompt's logits are
  never computed. loss_mask must be False before it.

  score_width (static) > 0 scores only that many columns of each row: a window that starts at
  the row's first loss_mask column (moved left where it would run past the last column). SFT
  rows are right-padded with prompts of different lengths, so no one score_from skips their
  prompts; the window does, when every row's loss_mask columns lie inside it (pad_rows checks
  this). Log-probs outside the window are 0.
  """
  tokens: jax.Array
  attention: jax.Array
  loss_mask: jax.Array
  score_from: int = flax.struct.field(pytree_node=False, default=1)
  score_width: int = flax.struct.field(pytree_node=False, default=0)


def _forward_chunk(h, w):
  """One chunk: h [r, e], w [vocab, e] -> (logits [vocab, r], lse [r]).

  Logits are laid out vocab-major: the product then has the weight's rows as its rows (the
  fast GEMM form on CPU, 170-190 GFLOP/s vs 70-110 for [r, vocab] at SmolLM2's head) and the
  vocab reductions run down columns.
  """
  f32 = jnp.promote_types(h.dtype, jnp.float32)
  logits = jnp.einsum("ve,re->vr", w.astype(h.dtype), h, preferred_element_type=f32)
  top = jax.lax.stop_gradient(jnp.max(logits, axis=0))
  return logits, top + jnp.log(jnp.sum(jnp.exp(logits - top), axis=0))


def _picked(logits, targets):
  return jnp.take_along_axis(logits, targets[None, :], axis=0)[0]


def _head_fwd_chunk(h, w, targets, with_entropy):
  logits, lse = _forward_chunk(h, w)
  logp = _picked(logits, targets) - lse
  if not with_entropy:
    return logp, jnp.zeros_like(lse), lse
  probs = jnp.exp(logits - lse)
  return logp, lse - jnp.sum(probs * logits, axis=0), lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _head_logprobs(h, w, targets, with_entropy):
  """h [chunks, r, e], w [vocab, e], targets [chunks, r] -> (logp, entropy) [chunks, r].

  A hand-written VJP: the forward keeps only each row's log-sum-exp; the backward recomputes
  one chunk of logits at a time and turns them into d logits = (onehot - softmax) * g in one
  pass. The entropy output carries no gradient (a metric).
  """
  (logp, entropy), _ = _head_fwd(h, w, targets, with_entropy)
  return logp, entropy


def _head_fwd(h, w, targets, with_entropy):
  def one(xs):
    hc, tc = xs
    return _head_fwd_chunk(hc, w, tc, with_entropy)
  logp, entropy, lse = jax.lax.map(one, (h, targets))
  return (logp, entropy), (h, w, targets, lse)


def _head_bwd(with_entropy, residuals, cotangents):
  del with_entropy
  h, w, targets, lse = residuals
  g_logp, _ = cotangents  # entropy is a metric: its cotangent is dropped
  f32 = jnp.promote_types(h.dtype, jnp.float32)
  vocab = w.shape[0]

  def step(dw, xs):
    hc, tc, lc, gc = xs
    logits = jnp.einsum("ve,re->vr", w.astype(hc.dtype), hc, preferred_element_type=f32)
    onehot = jnp.arange(vocab)[:, None] == tc[None, :]
    dlogits = (onehot.astype(f32) - jnp.exp(logits - lc)) * gc.astype(f32)
    dlogits = dlogits.astype(hc.dtype)
    dh = jnp.einsum("vr,ve->re", dlogits, w.astype(hc.dtype), preferred_element_type=f32)
    dw = dw + jnp.einsum("vr,re->ve", dlogits, hc, preferred_element_type=f32)
    return dw, dh.astype(hc.dtype)

  dw, dh = jax.lax.scan(step, jnp.zeros(w.shape, f32), (h, targets, lse, g_logp))
  return dh, dw.astype(w.dtype), None


_head_logprobs.defvjp(_head_fwd, _head_bwd)


def _scored_hidden_shared(model: Decoder, params: Any, batch: SequenceBatch,
                          group: int) -> jax.Array:
  """hidden[:, score_from - 1:-1] of token_logprobs when every `group` consecutive rows share
  their first score_from columns (a GRPO group: one prompt, left-padded to one bucket, then G
  completions). The prompt runs once per group, its keys and values are repeated to the group's
  rows as a KV cache, and the completions attend to it: the same sums in another order (equal
  to float rounding), and the prompt's forward and backward cost 1/group of the full pass's.
  The gradient reaches the prompt's keys and values through the cache."""
  tokens, attention, first = batch.tokens, batch.attention, batch.score_from
  n, t = tokens.shape
  prompt_attn = attention[::group, :first]
  prompt_pos = jnp.maximum(jnp.cumsum(prompt_attn, axis=-1) - 1, 0)
  hidden, (k, v) = model.apply({"params": params}, tokens[::group, :first],
                               attention_mask=prompt_attn, positions=prompt_pos,
                               return_hidden=True, return_kv=True)
  new = t - first

  def to_rows(x):  # [..., m, kv_heads, first, d] -> [..., n, kv_heads, first + new, d]
    x = jnp.repeat(x, group, axis=x.ndim - 4)
    pad = [(0, 0)] * x.ndim
    pad[-2] = (0, new)
    return jnp.pad(x, pad)

  mask = jnp.concatenate([jnp.repeat(prompt_attn, group, axis=0),
                          jnp.zeros((n, new), bool)], axis=1)
  cache = KVCache(jax.tree.map(to_rows, k), jax.tree.map(to_rows, v), mask)
  real = jnp.repeat(prompt_attn.sum(axis=-1), group)[:, None]  # real prompt tokens per row
  positions = jnp.maximum(real + jnp.cumsum(attention[:, first:], axis=-1) - 1, 0)
  completion = model.apply({"params": params}, tokens[:, first:],
                           attention_mask=attention[:, first:], positions=positions,
                           cache=cache, cache_index=first, return_hidden=True)
  last_prompt = jnp.repeat(hidden[:, -1:], group, axis=0)  # predicts the first completion token
  return jnp.concatenate([last_prompt, completion[:, :-1]], axis=1)


def _scored_logprobs(h: jax.Array, targets: jax.Array, head: jax.Array, chunk: int,
                     with_entropy: bool) -> tuple[jax.Array, jax.Array]:
  """h [n, s, e] (the hidden states that predict targets [n, s]) -> (logp, entropy) [n, s],
  the head run over time chunks of at most `chunk` columns (_head_logprobs)."""
  n, scored = targets.shape
  size = min(chunk, scored)
  pad = (-scored) % size  # whole chunks
  h = jnp.pad(h, ((0, 0), (0, pad), (0, 0)))
  targets = jnp.pad(targets, ((0, 0), (0, pad)))
  chunks = (scored + pad) // size
  h = h.reshape(n, chunks, size, -1).swapaxes(0, 1).reshape(chunks, n * size, -1)
  targets = targets.reshape(n, chunks, size).swapaxes(0, 1).reshape(chunks, n * size)
  logp, entropy = _head_logprobs(h, head, targets, with_entropy)
  logp = logp.reshape(chunks, n, size).swapaxes(0, 1).reshape(n, -1)[:, :scored]
  entropy = entropy.reshape(chunks, n, size).swapaxes(0, 1).reshape(n, -1)[:, :scored]
  return logp, jax.lax.stop_gradient(entropy)


def token_logprobs(model: Decoder, params: Any, batch: SequenceBatch, *, chunk: int = 128,
                   with_entropy: bool = True, shared_prefix: int = 1
                   ) -> tuple[jax.Array, jax.Array]:
  """log p(tokens[:, i] | tokens[:, :i]) and the entropy of that distribution, [n, t] each.

  Positions before batch.score_from (always position 0, which has no prediction) get 0, as do
  those outside each row's window when batch.score_width > 0. Entropy is returned without
  gradient (a metric). shared_prefix G > 1: every G consecutive rows have the same first
  score_from columns (tokens and attention), which then run once per group
  (_scored_hidden_shared); n must be a multiple of G.
  """
  n, t = batch.tokens.shape
  first, width = batch.score_from, batch.score_width
  if not 1 <= first < t:
    raise ValueError(f"score_from={first} outside [1, {t}) for sequences of length {t}")
  if width and not 0 < width <= t - first:
    raise ValueError(f"score_width={width} outside [1, {t - first}] for sequences of length {t} "
                     f"scored from column {first}")
  head = head_weight(params, model.config, vocab_major=True)
  if shared_prefix > 1:
    if n % shared_prefix:
      raise ValueError(f"shared_prefix={shared_prefix} does not divide the batch's {n} rows")
    if width:
      raise ValueError("score_width windows rows one by one; shared_prefix needs score_from")
    h = _scored_hidden_shared(model, params, batch, shared_prefix)
  else:
    positions = jnp.maximum(jnp.cumsum(batch.attention, axis=-1) - 1, 0)
    hidden = model.apply({"params": params}, batch.tokens, attention_mask=batch.attention,
                         positions=positions, return_hidden=True)
    if width:
      # Each row's window [start, start + width): from its first loss column, kept within the
      # sequence. hidden[:, i - 1] predicts tokens[:, i].
      start = jnp.clip(jnp.argmax(batch.loss_mask, axis=1), first, t - width)
      cols = start[:, None] + jnp.arange(width)[None, :]
      rows = jnp.arange(n)[:, None]
      logp_w, entropy_w = _scored_logprobs(hidden[rows, cols - 1], batch.tokens[rows, cols],
                                           head, chunk, with_entropy)
      zero = jnp.zeros((n, t), logp_w.dtype)
      return zero.at[rows, cols].set(logp_w), zero.at[rows, cols].set(entropy_w)
    h = hidden[:, first - 1:-1]  # hidden[:, i] predicts tokens[:, i + 1]
  # Only columns >= score_from are scored.
  logp, entropy = _scored_logprobs(h, batch.tokens[:, first:], head, chunk, with_entropy)
  zero = jnp.zeros((n, first), logp.dtype)
  return jnp.concatenate([zero, logp], axis=1), jnp.concatenate([zero, entropy], axis=1)
