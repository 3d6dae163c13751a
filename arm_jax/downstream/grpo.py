"""Online GRPO of a policy with the reward model (docs/method.md §6; the paper's Eqs. 14-16).

One step on a batch of prompts: the policy's greedy response a0 per prompt (the reference the
rollouts are judged against), K sampled rollouts per prompt, each judged against a0 in both
orders under one rubric (reward_model.compare with the rollout as response a), reward = the
share of the two orders the rollout wins (reward_model.online_reward: 0, 0.5 or 1), and the
project's GRPO update (group-normalised advantages, clip-higher, k3 KL against the policy at the
start) on the rollouts: the same update, rollout batch and log-prob code as the reward model's
own phases (arm_jax.rl.phases.train_on_rollout).
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import jax
import numpy as np

from arm_jax.downstream.reward_model import RewardModel, online_reward
from arm_jax.evaluation.runner import generate_in_batches
from arm_jax.rl.phases import PhaseConfig, train_on_rollout
from arm_jax.rl.policy import Policy
from arm_jax.sampling import SamplingParams


def grpo_step(policy: Policy, reward_model: RewardModel, cfg: PhaseConfig, update: Callable,
              prompts: Sequence[str], key: jax.Array, batch_size: int = 64) -> dict:
  """One online GRPO step in place (policy.params, policy.opt_state); returns its figures."""
  k = cfg.grpo.group_size
  t0 = time.perf_counter()
  ids = policy.encode(prompts)
  greedy = SamplingParams(max_new_tokens=cfg.sampling.max_new_tokens, greedy=True)
  a0 = [g[0].text for g in generate_in_batches(policy, ids, greedy, jax.random.fold_in(key, 0),
                                               batch_size, 1)]
  out, rollouts = policy.generate(ids, cfg.sampling, jax.random.fold_in(key, 1), num_samples=k)
  t1 = time.perf_counter()
  rep = lambda xs: [x for x in xs for _ in range(k)]  # noqa: E731  prompt-major, as sampled
  comparisons = reward_model.compare(rep(prompts), rollouts, rep(a0),
                                     key=jax.random.fold_in(key, 2))
  rewards = np.array([online_reward(c) for c in comparisons], np.float32)
  t2 = time.perf_counter()
  metrics = train_on_rollout(policy, cfg, update, ids, out, rewards)
  groups = rewards.reshape(-1, k)
  metrics.update(reward_mean=float(rewards.mean()),
                 reward_tie_rate=float((rewards == 0.5).mean()),
                 flat_groups=float((groups.max(1) == groups.min(1)).mean()),
                 consistency_rate=float(np.mean([(c.first == "A") == (c.second == "B")
                                                 for c in comparisons])),
                 seconds_generation=t1 - t0, seconds_reward=t2 - t1,
                 seconds_update=time.perf_counter() - t2)
  return metrics
