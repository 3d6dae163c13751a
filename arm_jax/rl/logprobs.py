"""Per-token log-probs and entropies of a sequence batch, without [batch, length, vocab] logits.

The training forward (GRPO's ratio, the KL reference, SFT's loss) needs log p(token) at every
completion position. Materialising all logits costs batch * length * vocab floats (SmolLM2 at
8 x 512: 0.8 GB, Qwen3 at paper scale: tens of GB), twice with their gradient. Instead the
decoder returns hidden states and the head runs over time chunks under `jax.checkpoint`, so
only one chunk of logits is alive at a time, in the forward and in the backward pass.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from arm_jax.models.decoder import Decoder, head_weight


class SequenceBatch(NamedTuple):
  """Token sequences (prompt then completion, left-padded) for a training forward.

  tokens [n, t] int32; attention [n, t] bool (real tokens); loss_mask [n, t] bool marks the
  tokens that are scored (completion tokens, never position 0).
  """
  tokens: jax.Array
  attention: jax.Array
  loss_mask: jax.Array


def _chunk_stats(hidden, head, targets, f32, with_entropy):
  logits = jnp.einsum("bte,ev->btv", hidden, head.astype(hidden.dtype),
                      preferred_element_type=f32)
  lse = jax.nn.logsumexp(logits, axis=-1)
  picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  if not with_entropy:
    return picked - lse, jnp.zeros_like(lse)
  probs = jnp.exp(logits - lse[..., None])
  entropy = lse - jnp.sum(probs * logits, axis=-1)
  return picked - lse, entropy


def token_logprobs(model: Decoder, params: Any, batch: SequenceBatch, *, chunk: int = 128,
                   with_entropy: bool = True) -> tuple[jax.Array, jax.Array]:
  """log p(tokens[:, i] | tokens[:, :i]) and the entropy of that distribution, [n, t] each.

  Position 0 has no prediction and gets 0. Entropy is returned without gradient (a metric).
  """
  n, t = batch.tokens.shape
  positions = jnp.maximum(jnp.cumsum(batch.attention, axis=-1) - 1, 0)
  hidden = model.apply({"params": params}, batch.tokens, attention_mask=batch.attention,
                       positions=positions, return_hidden=True)
  head = head_weight(params, model.config)
  f32 = jnp.promote_types(hidden.dtype, jnp.float32)
  # hidden[:, i] predicts tokens[:, i + 1]; pad the time axis to whole chunks.
  h = hidden[:, :-1]
  targets = batch.tokens[:, 1:]
  size = min(chunk, t - 1)
  pad = (-(t - 1)) % size
  h = jnp.pad(h, ((0, 0), (0, pad), (0, 0)))
  targets = jnp.pad(targets, ((0, 0), (0, pad)))
  chunks = (t - 1 + pad) // size
  h = h.reshape(n, chunks, size, -1).swapaxes(0, 1)
  targets = targets.reshape(n, chunks, size).swapaxes(0, 1)
  stats = jax.checkpoint(lambda hc, tc: _chunk_stats(hc, head, tc, f32, with_entropy))
  logp, entropy = jax.lax.map(lambda xs: stats(*xs), (h, targets))
  logp = logp.swapaxes(0, 1).reshape(n, -1)[:, :t - 1]
  entropy = entropy.swapaxes(0, 1).reshape(n, -1)[:, :t - 1]
  zero = jnp.zeros((n, 1), logp.dtype)
  logp = jnp.concatenate([zero, logp], axis=1)
  entropy = jnp.concatenate([zero, jax.lax.stop_gradient(entropy)], axis=1)
  return logp, entropy
