"""Offline DPO and IterDPO with the reward model (docs/method.md §6).

One iteration on a set of prompts:
1. sample two responses per prompt from the current policy (temperature 1);
2. label each pair with the reward model in both orders (reward_model.compare); keep only
   order-consistent verdicts and count what is dropped (identical, unparseable, inconsistent);
3. train DPO (arm_jax.rl.dpo) on the kept pairs for `epochs` passes, against a frozen reference.
IterDPO repeats this `iterations` times, each sampling from the previous iterate; the reference
of iteration k is the policy at the start of iteration k (the previous iterate; iteration 1's is
the starting policy), the usual choice of iterative DPO. The policy job
(arm_jax.downstream.job) runs these pieces resumably: sample_pairs, label_pairs, tokenized, then
train_step on pair_batch for every step of the iteration.

The policy's prompt is the instruction as one user turn of its chat template, and a pair's
completions are tokenized as warm-start targets are (arm_jax.rl.sft.tokenize_sft: the text
plus the token that ends an assistant turn), so the scored tokens are what the policy emits.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from arm_jax import multihost
from arm_jax.core import SFTExample
from arm_jax.downstream.reward_model import OUTCOMES, Comparison, RewardModel, preference
from arm_jax.evaluation.journal import ScopedJournal
from arm_jax.evaluation.runner import generate_in_batches
from arm_jax.rl import optim
from arm_jax.rl.dpo import DPOConfig, make_dpo_update, sequence_logprobs
from arm_jax.rl.policy import Policy
from arm_jax.rl.sft import pad_rows, tokenize_sft
from arm_jax.sampling import SamplingParams
from arm_jax.sharding import data_sharding


@dataclasses.dataclass(frozen=True)
class LabeledPairs:
  """Preference pairs the reward model agreed on in both orders, and what it dropped."""
  prompts: list[str]
  chosen: list[str]
  rejected: list[str]
  counts: dict[str, int]  # by reward_model.OUTCOMES
  comparisons: list[Comparison]

  @property
  def consistency_rate(self) -> float:
    """Share of parseable, non-identical pairs whose two orders agree."""
    judged = self.counts["kept"] + self.counts["inconsistent"]
    return self.counts["kept"] / judged if judged else float("nan")


def labeled(comparisons: Sequence[Comparison]) -> LabeledPairs:
  """The kept pairs of judged comparisons (reward_model.preference) and the dropped counts."""
  counts = dict.fromkeys(OUTCOMES, 0)
  kept_p, chosen, rejected = [], [], []
  for c in comparisons:
    label, outcome = preference(c)
    counts[outcome] += 1
    if label is not None:
      kept_p.append(c.prompt)
      chosen.append(c.response_a if label == 0 else c.response_b)
      rejected.append(c.response_b if label == 0 else c.response_a)
  return LabeledPairs(kept_p, chosen, rejected, counts, list(comparisons))


def label_pairs(reward_model: RewardModel, prompts: Sequence[str], responses_a: Sequence[str],
                responses_b: Sequence[str], key: jax.Array | None = None) -> LabeledPairs:
  kwargs = {} if key is None else {"key": key}
  return labeled(reward_model.compare(prompts, responses_a, responses_b, **kwargs))


def sample_pairs(policy: Policy, prompts: Sequence[str], sampling: SamplingParams,
                 key: jax.Array, batch_size: int,
                 journal: ScopedJournal | None = None) -> tuple[list[str], list[str]]:
  """Two sampled responses per prompt (`journal`: runner.generate_in_batches)."""
  out = generate_in_batches(policy, policy.encode(prompts), sampling, key, batch_size, 2,
                            journal)
  return [g[0].text for g in out], [g[1].text for g in out]


@dataclasses.dataclass(frozen=True)
class IterationConfig:
  dpo: DPOConfig = DPOConfig()
  optimizer: optim.OptimizerConfig = optim.OptimizerConfig(learning_rate=8e-7)
  sampling: SamplingParams = SamplingParams(max_new_tokens=512)
  batch_size: int = 8  # pairs per DPO step
  epochs: int = 1
  generate_batch: int = 64
  max_length: int = 1024
  pad_multiple: int = 16
  seed: int = 0


def tokenized(policy: Policy, pairs: LabeledPairs, max_length: int):
  """Rows of the pairs whose chosen and rejected sides both fit, and how many did not."""
  chosen, rep_c = tokenize_sft(policy.tokenizer, [SFTExample(p, c) for p, c in
                                                  zip(pairs.prompts, pairs.chosen)],
                               max_length=max_length, truncate="skip")
  rejected, rep_r = tokenize_sft(policy.tokenizer, [SFTExample(p, r) for p, r in
                                                    zip(pairs.prompts, pairs.rejected)],
                                 max_length=max_length, truncate="skip")
  by_c, by_r = dict(zip(rep_c.kept, chosen)), dict(zip(rep_r.kept, rejected))
  both = [i for i in range(len(pairs.prompts)) if i in by_c and i in by_r]
  return [by_c[i] for i in both], [by_r[i] for i in both], len(pairs.prompts) - len(both)


# (model, DPO settings, optimizer settings) -> (jitted update, jitted reference log-probs),
# shared by the iterations of a run: each iteration would otherwise compile both again.
_COMPILED: dict[Any, tuple[Callable, Callable]] = {}


def _compiled(model, cfg: IterationConfig) -> tuple[Callable, Callable]:
  key = (model, cfg.dpo, cfg.optimizer)
  if key not in _COMPILED:
    update = make_dpo_update(model, cfg.dpo, optim.make_optimizer(cfg.optimizer))
    chunk = cfg.dpo.logprob_chunk
    ref_logps = jax.jit(lambda p, batch: sequence_logprobs(model, p, batch, chunk))
    _COMPILED[key] = (update, ref_logps)
  return _COMPILED[key]


def pair_batch(chosen: Sequence, rejected: Sequence, batch_size: int, seed: int, iteration: int,
               step: int, pad_multiple: int = 16):
  """(chosen, rejected) SequenceBatches of optimizer step `step` of an iteration: each epoch
  walks the pairs in a permutation of (seed, iteration, epoch) and drops its incomplete last
  batch, so a step's batch is a function of its number (a resumed run sees the same ones)."""
  per_epoch = len(chosen) // batch_size
  epoch, k = divmod(step, per_epoch)
  order = np.random.default_rng((seed, iteration, epoch)).permutation(len(chosen))
  idx = order[k * batch_size:(k + 1) * batch_size]
  c = pad_rows([chosen[i] for i in idx], multiple=pad_multiple)
  r = pad_rows([rejected[i] for i in idx], multiple=pad_multiple)
  return c, r


def train_step(policy: Policy, cfg: IterationConfig, ref_params: Any, chosen, rejected) -> dict:
  """One DPO update of policy.params / policy.opt_state in place against `ref_params`; returns
  the step's figures. Batches are placed over the policy's mesh when it has one."""
  update, ref_logps = _compiled(policy.model, cfg)
  batch = jax.tree.map(jnp.asarray, (chosen, rejected))
  mesh, rules = policy.model.mesh, policy.model.rules
  if mesh is not None:
    batch = jax.tree.map(lambda x: jax.device_put(x, data_sharding(mesh, rules, x.ndim)), batch)
  c, r = batch
  policy.params, policy.opt_state, m = update(
      policy.params, policy.opt_state, (c, r, ref_logps(ref_params, c), ref_logps(ref_params, r)))
  return {k: float(v) for k, v in multihost.host_tree(m).items()}
