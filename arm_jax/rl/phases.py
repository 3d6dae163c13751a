"""One GRPO step of each phase of Rubric-ARM's alternating RL (docs/method.md §4).

Judge step: the judge samples G trajectories per (pair, cached rubric) and is rewarded with
R_acc + R_fmt. Generator step: the generator samples G rubrics per pair; the frozen judge reads
each one once, greedily, and the rubric is rewarded with the correctness of that verdict.
Text stays at the edges: sampling returns ids and text, rewards are floats, and the update
sees only arrays.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from arm_jax import multihost
from arm_jax import sharding as sharding_lib
from arm_jax.core import PreferencePair
from arm_jax.prompts import render_judge_prompt, render_rubric_prompt
from arm_jax.rewards import generator_rewards, judge_rewards
from arm_jax.rl.grpo import GRPOConfig, sequence_logprobs
from arm_jax.rl.policy import Policy
from arm_jax.rl.rollout import rollout_batch, sampler_logprobs, sequence_batch
from arm_jax.sampling import SamplingParams


@dataclasses.dataclass(frozen=True)
class PhaseConfig:
  grpo: GRPOConfig
  sampling: SamplingParams
  prompts_per_step: int
  old_logprobs: str = "sampler"  # "sampler" (stored at rollout) or "recompute" (training forward)

  def __post_init__(self):
    if self.old_logprobs not in ("sampler", "recompute"):
      raise ValueError(f"old_logprobs={self.old_logprobs!r}; expected 'sampler' or 'recompute'")


@dataclasses.dataclass(frozen=True)
class RewardConfig:
  format_reward: str = "binary"  # binary | graded | none
  format_weight: float = 1.0
  validity_weight: float = 0.0
  brevity_weight: float = 0.0
  brevity_target: int = 8


_logprob_fns: dict[Any, Callable] = {}


def _logprobs(policy: Policy, params, seq, chunk: int, shared_prefix: int = 1):
  """Old-policy / reference log-probs, one compiled function per (model, chunk, sharing)."""
  key = (policy.model, chunk, shared_prefix)
  if key not in _logprob_fns:
    _logprob_fns[key] = sequence_logprobs(policy.model, chunk, shared_prefix)
  return _logprob_fns[key](params, seq)


def train_on_rollout(policy: Policy, cfg: PhaseConfig, update: Callable, prompts, out,
                     rewards: np.ndarray) -> dict[str, float]:
  """Assemble the batch, get old/reference log-probs, run the jitted update in place."""
  g = cfg.grpo
  seq = sequence_batch(prompts, out, g.group_size, policy.sampler.buckets, policy.pad_id)
  if cfg.old_logprobs == "sampler":
    old = sampler_logprobs(seq, out)
  else:
    old = _logprobs(policy, policy.params, seq, g.logprob_chunk, g.prefix_rows)
  ref = (_logprobs(policy, policy.ref_params, seq, g.logprob_chunk, g.prefix_rows) if g.beta
         else None)
  if g.beta and policy.ref_params is None:
    raise ValueError(f"{policy.name}: beta={g.beta} needs reference params")
  batch = rollout_batch(seq, old, ref, rewards)
  mesh, rules = policy.model.mesh, policy.model.rules
  if mesh is not None:
    batch = jax.tree.map(lambda x: jax.device_put(x, sharding_lib.data_sharding(mesh, rules,
                                                                                x.ndim)), batch)
  policy.params, policy.opt_state, metrics = update(policy.params, policy.opt_state, batch)
  metrics = multihost.host_tree(metrics)
  # Per-inner-step arrays [mu]: report the first step (on-policy) and the mean.
  flat = {}
  for k, v in metrics.items():
    v = np.asarray(v)
    flat[k] = float(v.mean())
    if v.ndim and v.shape[0] > 1:
      flat[f"{k}_first"] = float(v[0])
  return flat


def judge_step(judge: Policy, cfg: PhaseConfig, update: Callable, pairs: Sequence[PreferencePair],
               rubrics: Sequence[str], key: jax.Array, rewards_cfg: RewardConfig) -> dict:
  g = cfg.grpo.group_size
  t0 = time.perf_counter()
  texts = [render_judge_prompt(judge.template, p.instruction, r, p.response_a, p.response_b)
           for p, r in zip(pairs, rubrics)]
  prompts = judge.encode(texts)
  out, completions = judge.generate(prompts, cfg.sampling, key, num_samples=g)
  t1 = time.perf_counter()
  rep = lambda xs: [x for x in xs for _ in range(g)]  # noqa: E731  prompt-major, as sampled
  r = judge_rewards(completions, rep(rubrics), rep([p.label for p in pairs]),
                    format_reward=rewards_cfg.format_reward,
                    format_weight=rewards_cfg.format_weight)
  t2 = time.perf_counter()
  metrics = train_on_rollout(judge, cfg, update, prompts, out, r["total"])
  t3 = time.perf_counter()
  metrics.update(accuracy=float(r["accuracy"].mean()), format_rate=float(r["format_ok"].mean()),
                 verdict_rate=float((r["verdict"] >= 0).mean()),
                 **_lengths(out, cfg.sampling.max_new_tokens),
                 seconds_generation=t1 - t0, seconds_reward=t2 - t1, seconds_update=t3 - t2)
  return metrics


def generator_step(generator: Policy, judge: Policy, cfg: PhaseConfig, judge_max_new_tokens: int,
                   update: Callable, pairs: Sequence[PreferencePair], key: jax.Array,
                   rewards_cfg: RewardConfig) -> dict:
  g = cfg.grpo.group_size
  t0 = time.perf_counter()
  prompts = generator.encode([render_rubric_prompt(generator.template, p.instruction)
                              for p in pairs])
  out, rubrics = generator.generate(prompts, cfg.sampling, key, num_samples=g)
  rep_pairs = [p for p in pairs for _ in range(g)]
  judge_prompts = judge.encode([
      render_judge_prompt(judge.template, p.instruction, r, p.response_a, p.response_b)
      for p, r in zip(rep_pairs, rubrics)])
  greedy = SamplingParams(max_new_tokens=judge_max_new_tokens, greedy=True)
  _, verdict_texts = judge.generate(judge_prompts, greedy, key)
  t1 = time.perf_counter()
  r = generator_rewards(verdict_texts, [p.label for p in rep_pairs], rubrics=rubrics,
                        validity_weight=rewards_cfg.validity_weight,
                        brevity_weight=rewards_cfg.brevity_weight,
                        brevity_target=rewards_cfg.brevity_target)
  t2 = time.perf_counter()
  metrics = train_on_rollout(generator, cfg, update, prompts, out, r["total"])
  t3 = time.perf_counter()
  metrics.update(accuracy=float(r["correctness"].mean()),
                 format_rate=float(r["validity"].mean()),  # well-formed rubrics
                 verdict_rate=float((r["verdict"] >= 0).mean()),
                 **_lengths(out, cfg.sampling.max_new_tokens),
                 seconds_generation=t1 - t0, seconds_reward=t2 - t1, seconds_update=t3 - t2)
  return metrics


def _lengths(out, max_new: int) -> dict[str, float]:
  return dict(completion_length_mean=float(out.lengths.mean()),
              completion_length_max=float(out.lengths.max()),
              truncated_rate=float((out.lengths >= max_new).mean()))


def sample_rubrics(generator: Policy, pairs: Sequence[PreferencePair], sampling: SamplingParams,
                   key: jax.Array, batch_size: int) -> list[str]:
  """One rubric per pair from the current generator: the judge phase's fixed rubrics."""
  rubrics: list[str] = []
  for start in range(0, len(pairs), batch_size):
    chunk = pairs[start:start + batch_size]
    prompts = generator.encode([render_rubric_prompt(generator.template, p.instruction)
                                for p in chunk])
    _, texts = generator.generate(prompts, sampling, jax.random.fold_in(key, start))
    rubrics.extend(texts)
  return rubrics
