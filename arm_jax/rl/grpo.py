"""One jitted GRPO update, shared by the rubric generator and the judge.

`make_update(model, cfg, optimizer)` returns `update(params, opt_state, batch) -> (params,
opt_state, metrics)`. Inside one compiled call: group advantages from the rewards, then `mu`
optimizer steps on the same rollout batch against its stored old log-probs, each step
accumulating exact gradients over `micro_batches` slices (loss sums over a whole-batch
denominator, see losses.py) before global-norm clipping and AdamW. Which policy is trained is
just which (params, opt_state) the schedule passes in.

Gradient variance (the paper's generator-vs-judge claim): every micro-batch gradient g_m is
normalised by its own denominator, and the step reports
  Var = M/(M-1) * (mean_m |g_m|^2 - |g|^2) / |g|^2,   g = mean_m g_m,
the unbiased trace of the micro-batch gradient covariance relative to the squared mean
gradient (NaN with a single micro-batch). Only squared norms are kept, no gradient copies.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from arm_jax.models.decoder import Decoder
from arm_jax.rl import advantages as adv_lib
from arm_jax.rl import losses, optim
from arm_jax.rl.logprobs import SequenceBatch, token_logprobs
from arm_jax.xla_options import jit_training


@dataclasses.dataclass(frozen=True)
class GRPOConfig:
  group_size: int
  advantage: str = "grpo"  # see advantages.ADVANTAGES
  advantage_eps: float = 1e-6
  eps_low: float = 0.2
  eps_high: float = 0.28
  beta: float = 0.001  # 0 keeps no reference model at all
  mu: int = 2  # optimizer steps per rollout batch
  loss_aggregation: str = "seq_mean_token_mean"  # see losses.AGGREGATIONS
  micro_batches: int = 1
  logprob_chunk: int = 128
  # Each group's prompt runs once in the update's forward and backward, its keys and values
  # shared by the group's completions (logprobs.token_logprobs' shared_prefix): the same
  # gradient to float rounding, for a fraction of the cost when prompts are long.
  shared_prefix: bool = False

  @property
  def prefix_rows(self) -> int:
    """token_logprobs' shared_prefix: the rows that share one prompt (1: none shared)."""
    return self.group_size if self.shared_prefix else 1

  def __post_init__(self):
    if self.advantage not in adv_lib.ADVANTAGES:
      raise ValueError(f"advantage={self.advantage!r}; expected one of "
                       f"{sorted(adv_lib.ADVANTAGES)}")
    losses.aggregation(self.loss_aggregation)
    if self.mu < 1 or self.micro_batches < 1 or self.group_size < 1:
      raise ValueError("mu, micro_batches and group_size must be >= 1")


class RolloutBatch(NamedTuple):
  """What the update consumes; every array has the rollout's n rows first."""
  seq: SequenceBatch
  old_logp: jax.Array  # [n, t] log-probs of the sampling policy (stored, not recomputed)
  ref_logp: jax.Array | None  # [n, t] frozen reference; None when beta == 0
  rewards: jax.Array  # [n], groups of group_size consecutive rows


def _split(x, m):
  return None if x is None else x.reshape((m, x.shape[0] // m) + x.shape[1:])


def _sq_norm(tree) -> jax.Array:
  return sum(jnp.vdot(x, x).real for x in jax.tree.leaves(tree))


def grpo_loss(model: Decoder, cfg: GRPOConfig, params: Any, micro: RolloutBatch,
              advantages: jax.Array, totals: tuple[jax.Array, jax.Array]):
  """(loss sum, aux) for one micro-batch; aux carries the micro denominator and statistics."""
  aggregate = losses.aggregation(cfg.loss_aggregation)
  logp, entropy = token_logprobs(model, params, micro.seq, chunk=cfg.logprob_chunk,
                                 shared_prefix=cfg.prefix_rows)
  mask = micro.seq.loss_mask
  terms = losses.token_terms(logp, micro.old_logp, micro.ref_logp, advantages, mask,
                             eps_low=cfg.eps_low, eps_high=cfg.eps_high, beta=cfg.beta)
  loss_sum, _ = aggregate(terms.loss, mask, *totals)
  own_sequences = jnp.float32(mask.shape[0])
  own_tokens = jnp.maximum(mask.sum().astype(jnp.float32), 1.0)
  _, own_denom = aggregate(terms.loss, mask, own_sequences, own_tokens)
  fmask = mask.astype(jnp.float32)
  aux = dict(denom=own_denom, kl=terms.kl.sum(), clipped=terms.clipped.sum(),
             entropy=(entropy * fmask).sum(), tokens=fmask.sum(),
             ratio_dev=(jnp.abs(jnp.exp(logp - micro.old_logp) - 1.0) * fmask).sum())
  return loss_sum, aux


def make_update(model: Decoder, cfg: GRPOConfig, optimizer: optax.GradientTransformation, *,
                shardings: tuple[Any, Any] | None = None, donate: bool = True):
  """Jitted `update(params, opt_state, batch)`; `shardings` = (params, opt_state) shardings."""

  def one_step(params, opt_state, batch: RolloutBatch, advantages, totals):
    m = cfg.micro_batches
    micro = jax.tree.map(lambda x: _split(x, m), batch)
    micro_adv = _split(advantages, m)
    grad_fn, train, _ = optim.value_and_grad(
        lambda p, mb, a: grpo_loss(model, cfg, p, mb, a, totals), params)
    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), train)

    def body(carry, xs):
      acc, sum_g, sq = carry
      mb, a = xs
      (loss_sum, aux), g = grad_fn(train, mb, a)
      aux = dict(aux, loss_sum=loss_sum)
      g = jax.tree.map(lambda x: x.astype(jnp.float32), g)
      acc = jax.tree.map(jnp.add, acc, g)
      g_own = jax.tree.map(lambda x: x / aux["denom"], g)
      sum_g = jax.tree.map(jnp.add, sum_g, g_own)
      return (acc, sum_g, sq + _sq_norm(g_own)), aux

    (acc, sum_g, sq), aux = jax.lax.scan(body, (zeros, zeros, jnp.float32(0)), (micro, micro_adv))
    # Micro sums over the whole batch's denominator: exactly the un-split gradient.
    denom = totals[0] if cfg.loss_aggregation == "seq_mean_token_mean" else totals[1]
    grads = jax.tree.map(lambda x: x / denom, acc)
    mean_sq = _sq_norm(jax.tree.map(lambda x: x / m, sum_g))
    variance = (jnp.float32(m) / (m - 1) * (sq / m - mean_sq) / mean_sq if m > 1
                else jnp.float32(jnp.nan))
    grad_norm = optax.global_norm(grads)
    loss = aux["loss_sum"].sum() / denom
    finite = optim.finite_step(loss, grad_norm)
    count = optim.update_count(opt_state)  # the schedule's step for this update
    params, opt_state = optim.apply_gradients(optimizer, grads, opt_state, params, finite)
    tokens = jnp.maximum(aux["tokens"].sum(), 1.0)
    metrics = dict(loss=loss, grad_norm=grad_norm, grad_variance=variance,
                   skipped_nonfinite=1.0 - finite.astype(jnp.float32),
                   kl=aux["kl"].sum() / tokens, clip_fraction=aux["clipped"].sum() / tokens,
                   entropy=aux["entropy"].sum() / tokens,
                   ratio_deviation=aux["ratio_dev"].sum() / tokens)
    if count is not None:
      metrics["update_count"] = count
    return params, opt_state, metrics

  def update(params, opt_state, batch: RolloutBatch):
    n = batch.rewards.shape[0]
    if n % cfg.micro_batches:
      raise ValueError(f"batch of {n} rows does not split into {cfg.micro_batches} micro-batches")
    if (n // cfg.micro_batches) % cfg.prefix_rows:
      raise ValueError(f"shared_prefix: a micro-batch of {n // cfg.micro_batches} rows does not "
                       f"hold whole groups of {cfg.group_size} (micro_batches="
                       f"{cfg.micro_batches})")
    if (batch.ref_logp is None) != (cfg.beta == 0):
      raise ValueError("pass ref_logp exactly when beta > 0")
    advantages = adv_lib.compute(cfg.advantage, batch.rewards, cfg.group_size, cfg.advantage_eps)
    mask = batch.seq.loss_mask
    totals = (jnp.float32(n), jnp.maximum(mask.sum().astype(jnp.float32), 1.0))

    def inner(carry, _):
      p, s = carry
      p, s, metrics = one_step(p, s, batch, advantages, totals)
      return (p, s), metrics

    (params, opt_state), per_step = jax.lax.scan(inner, (params, opt_state), None, length=cfg.mu)
    rewards = batch.rewards.astype(jnp.float32)
    metrics = dict(per_step, reward_mean=rewards.mean(), reward_std=rewards.std(),
                   advantage_abs_mean=jnp.abs(advantages).mean(),
                   zero_std_groups=adv_lib.zero_std_fraction(rewards, cfg.group_size),
                   completion_tokens=mask.sum(axis=1).astype(jnp.float32).mean())
    return params, opt_state, metrics

  return optim.jit_update(update, shardings, donate)


def sequence_logprobs(model: Decoder, chunk: int = 128, shared_prefix: int = 1):
  """Jitted log-probs of a SequenceBatch under some params: old-policy and reference passes
  (shared_prefix as token_logprobs')."""
  return jit_training(lambda params, seq: token_logprobs(model, params, seq, chunk=chunk,
                                                        with_entropy=False,
                                                        shared_prefix=shared_prefix)[0])
