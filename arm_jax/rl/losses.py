"""GRPO's token-level clipped surrogate with a k3 KL penalty, returned as (sum, denominator).

Per token: rho = exp(logp - old_logp);
  pg  = -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A)     (clip-higher, DAPO)
  kl  = exp(ref - logp) - (ref - logp) - 1                           (k3, >= 0)
  loss_token = pg + beta * kl.
Aggregations (a registry) say how tokens become one number. Each returns the loss *sum* over
the rows it was given and a denominator computed from the whole batch's masks, so splitting
a batch into micro-batches and adding their sums reproduces the un-split loss exactly:
  "seq_mean_token_mean"  mean over sequences of each sequence's token mean (the paper's)
  "token_mean"           mean over every completion token of the batch (DAPO)
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class TokenTerms(NamedTuple):
  loss: jax.Array  # [n, t] per-token loss (pg + beta * kl), 0 off the mask
  kl: jax.Array  # [n, t]
  clipped: jax.Array  # [n, t] 1 where the clipped branch is the active minimum


def token_terms(logp, old_logp, ref_logp, advantages, mask, *, eps_low: float, eps_high: float,
                beta: float) -> TokenTerms:
  """`advantages` [n] broadcast over tokens; `ref_logp` may be None when beta == 0."""
  mask = mask.astype(logp.dtype)
  adv = advantages[:, None].astype(logp.dtype)
  ratio = jnp.exp(logp - old_logp)
  unclipped = ratio * adv
  clipped_ratio = jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high)
  clipped = clipped_ratio * adv
  pg = -jnp.minimum(unclipped, clipped)
  if ref_logp is None:
    if beta:
      raise ValueError("beta > 0 needs reference log-probs")
    kl = jnp.zeros_like(logp)
  else:
    delta = ref_logp - logp
    kl = jnp.exp(delta) - delta - 1.0
  loss = (pg + beta * kl) * mask
  return TokenTerms(loss, kl * mask, (clipped < unclipped).astype(logp.dtype) * mask)


def seq_mean_token_mean(per_token: jax.Array, mask: jax.Array, total_sequences: jax.Array,
                        total_tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
  del total_tokens
  mask = mask.astype(per_token.dtype)
  per_seq = per_token.sum(axis=1) / jnp.maximum(mask.sum(axis=1), 1.0)
  return per_seq.sum(), total_sequences


def token_mean(per_token: jax.Array, mask: jax.Array, total_sequences: jax.Array,
               total_tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
  del mask, total_sequences
  return per_token.sum(), total_tokens


AGGREGATIONS: dict[str, Callable[..., tuple[jax.Array, jax.Array]]] = {
    "seq_mean_token_mean": seq_mean_token_mean,
    "token_mean": token_mean,
}


def aggregation(name: str):
  if name not in AGGREGATIONS:
    raise ValueError(f"loss_aggregation={name!r}; expected one of {sorted(AGGREGATIONS)}")
  return AGGREGATIONS[name]
