"""Sections shared by the training configs (configs/*.py), so a config states only its choices.

Imports nothing but ml_collections: a config file stays cheap to load.
"""

from __future__ import annotations

import ml_collections

# RUBRIC_ARM.md §3's GRPO settings; weight decay 0 and clipping at norm 1 are not given by the
# paper (the usual GRPO defaults).
_POLICY = dict(
    group_size=4, advantage="grpo", eps_low=0.2, eps_high=0.28, beta=0.001, mu=2,
    loss_aggregation="seq_mean_token_mean", micro_batches=1, prompts_per_step=8,
    max_new_tokens=512, temperature=1.0, top_p=1.0, top_k=0, learning_rate=1e-6,
    weight_decay=0.0, max_grad_norm=1.0)


def policy(**fields) -> ml_collections.ConfigDict:
  """One policy's GRPO, sampling and optimizer settings: the paper's, updated by `fields`."""
  unknown = set(fields) - set(_POLICY)
  if unknown:
    raise ValueError(f"unknown policy fields {sorted(unknown)}; known: {sorted(_POLICY)}")
  return ml_collections.ConfigDict({**_POLICY, **fields})


def train_base() -> ml_collections.ConfigDict:
  """job, seed, a data-parallel mesh over every device, default rules, rewards, logging."""
  c = ml_collections.ConfigDict()
  c.job = "train"
  c.seed = 0
  c.mesh_shape = (-1, 1, 1)
  c.mesh_axes = ("data", "fsdp", "tensor")
  c.rules = ml_collections.FieldReference(None, field_type=tuple)  # None = arm_jax defaults
  c.offload_idle_optimizer = True
  c.rewards = ml_collections.ConfigDict(dict(format_reward="binary", format_weight=1.0,
                                             validity_weight=0.0, brevity_weight=0.0))
  c.log = ml_collections.ConfigDict(dict(tensorboard=True))
  return c
