"""Direct preference optimisation with an SFT term: the offline half of using the reward model
for a policy (docs/method.md §6).

Per pair (prompt x, chosen y_w, rejected y_l) with summed completion log-probs under the policy
(pi) and a frozen reference (ref):
  chosen_reward = beta (log pi(y_w|x) - log ref(y_w|x)),  rejected_reward likewise,
  margin = chosen_reward - rejected_reward,
  loss = -log sigmoid(margin) + sft_weight * NLL(y_w),
NLL being the chosen completion's mean per-token negative log-likelihood under the policy (the
paper's "SFT mixing weight", 0.2; TRL's rpo_alpha). The batch loss is the mean over pairs.

The update mirrors sft.py: micro-batches (optim.split_micro_batches) accumulate f32 gradients of
loss sums and divide by the number of pairs, so any micro-batch split gives the un-split
gradient. Reference log-probs are computed once per batch outside the update
(`sequence_logprobs`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from arm_jax.models.decoder import Decoder
from arm_jax.rl import optim
from arm_jax.rl.logprobs import SequenceBatch, token_logprobs


@dataclasses.dataclass(frozen=True)
class DPOConfig:
  beta: float = 0.1  # the paper's DPO beta
  sft_weight: float = 0.2  # the paper's SFT mixing weight: NLL of the chosen response
  micro_batches: int = 1
  logprob_chunk: int = 128

  def __post_init__(self):
    if not self.beta > 0:
      raise ValueError(f"beta={self.beta} must be > 0")
    if not self.sft_weight >= 0:
      raise ValueError(f"sft_weight={self.sft_weight} must be >= 0")
    if self.micro_batches < 1:
      raise ValueError(f"micro_batches={self.micro_batches} must be >= 1")


def dpo_terms(chosen_logp: jax.Array, rejected_logp: jax.Array, ref_chosen_logp: jax.Array,
              ref_rejected_logp: jax.Array, chosen_tokens: jax.Array, *, beta: float,
              sft_weight: float) -> dict[str, jax.Array]:
  """Per-pair loss terms [n] from summed completion log-probs and the chosen token counts."""
  chosen_reward = beta * (chosen_logp - ref_chosen_logp)
  rejected_reward = beta * (rejected_logp - ref_rejected_logp)
  margin = chosen_reward - rejected_reward
  dpo = -jax.nn.log_sigmoid(margin)
  nll = -chosen_logp / jnp.maximum(chosen_tokens, 1.0)
  return dict(loss=dpo + sft_weight * nll, dpo_loss=dpo, nll=nll, margin=margin,
              accuracy=(margin > 0).astype(jnp.float32), chosen_reward=chosen_reward,
              rejected_reward=rejected_reward)


def sequence_logprobs(model: Decoder, params: Any, batch: SequenceBatch,
                      chunk: int = 128) -> jax.Array:
  """Summed log-probs of each row's scored (completion) tokens, [n]."""
  logp, _ = token_logprobs(model, params, batch, chunk=chunk, with_entropy=False)
  return jnp.where(batch.loss_mask, logp, 0.0).sum(axis=1)


def make_dpo_update(model: Decoder, cfg: DPOConfig, optimizer: optax.GradientTransformation, *,
                    shardings: tuple[Any, Any] | None = None, donate: bool = True):
  """Jitted `update(params, opt_state, batch)` with batch = (chosen, rejected, ref_chosen,
  ref_rejected): chosen and rejected are SequenceBatches of the same n prompts (row i of each is
  pair i), ref_* the reference's summed log-probs [n]. Returns (params, opt_state, metrics:
  batch means of dpo_terms, and grad_norm)."""

  def pair_terms(params, chosen, rejected, ref_c, ref_r):
    pc = sequence_logprobs(model, params, chosen, cfg.logprob_chunk)
    pr = sequence_logprobs(model, params, rejected, cfg.logprob_chunk)
    return dpo_terms(pc, pr, ref_c, ref_r, chosen.loss_mask.sum(axis=1).astype(jnp.float32),
                     beta=cfg.beta, sft_weight=cfg.sft_weight)

  def update(params, opt_state, batch):
    chosen, rejected, _, _ = batch
    n, m = chosen.tokens.shape[0], cfg.micro_batches
    if n % m or rejected.tokens.shape[0] != n:
      raise ValueError(f"{n} chosen and {rejected.tokens.shape[0]} rejected rows: need equal "
                       f"counts that split into {m} micro-batches")

    def loss_sum(p, mb):
      terms = pair_terms(p, *mb)
      return terms["loss"].sum(), {k: v.sum() for k, v in terms.items()}

    grad_fn, train, _ = optim.value_and_grad(loss_sum, params)

    def body(acc, mb):
      (_, sums), g = grad_fn(train, mb)
      return jax.tree.map(lambda a, x: a + x.astype(jnp.float32), acc, g), sums

    micro = jax.tree.map(lambda x: optim.split_micro_batches(x, m), batch)
    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), train)
    acc, sums = jax.lax.scan(body, zeros, micro)
    grads = jax.tree.map(lambda x: x / n, acc)
    grad_norm = optax.global_norm(grads)
    metrics = {k: v.sum() / n for k, v in sums.items()}
    finite = optim.finite_step(metrics["loss"], grad_norm)
    params, opt_state = optim.apply_gradients(optimizer, grads, opt_state, params, finite)
    metrics.update(grad_norm=grad_norm, skipped_nonfinite=1.0 - finite.astype(jnp.float32))
    return params, opt_state, metrics

  return optim.jit_update(update, shardings, donate)
