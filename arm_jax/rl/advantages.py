"""Group baselines for GRPO: rewards [n] in groups of G consecutive samples -> advantages [n].

A registry, so a config names the variant:
  "grpo"  (R - mean_G) / (std_G + eps)           the paper's (population std, as in TRL)
  "drgrpo" R - mean_G                            Dr. GRPO: no std division (no difficulty bias)
  "rloo"  R - mean of the other G-1 samples      leave-one-out baseline (RLOO)
A group whose rewards are all equal gets zero advantage under every variant.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def _groups(rewards: jax.Array, group_size: int) -> jax.Array:
  if rewards.shape[0] % group_size:
    raise ValueError(f"{rewards.shape[0]} rewards do not split into groups of {group_size}")
  return rewards.reshape(-1, group_size).astype(jnp.float32)


def grpo(rewards: jax.Array, group_size: int, eps: float = 1e-6) -> jax.Array:
  r = _groups(rewards, group_size)
  centred = r - r.mean(axis=1, keepdims=True)
  return (centred / (r.std(axis=1, keepdims=True) + eps)).reshape(-1)


def drgrpo(rewards: jax.Array, group_size: int, eps: float = 1e-6) -> jax.Array:
  del eps
  r = _groups(rewards, group_size)
  return (r - r.mean(axis=1, keepdims=True)).reshape(-1)


def rloo(rewards: jax.Array, group_size: int, eps: float = 1e-6) -> jax.Array:
  del eps
  if group_size < 2:
    raise ValueError("rloo needs groups of at least 2 samples")
  r = _groups(rewards, group_size)
  others = (r.sum(axis=1, keepdims=True) - r) / (group_size - 1)
  return (r - others).reshape(-1)


ADVANTAGES: dict[str, Callable[..., jax.Array]] = {"grpo": grpo, "drgrpo": drgrpo, "rloo": rloo}


def zero_std_fraction(rewards: jax.Array, group_size: int) -> jax.Array:
  """Share of groups whose rewards are all equal: their advantages are zero under every
  variant, so they give the policy gradient nothing (TRL logs it as frac_reward_zero_std;
  DAPO's dynamic sampling drops such groups)."""
  r = _groups(rewards, group_size)
  return (r.max(axis=1) == r.min(axis=1)).astype(jnp.float32).mean()


def compute(kind: str, rewards: jax.Array, group_size: int, eps: float = 1e-6) -> jax.Array:
  if kind not in ADVANTAGES:
    raise ValueError(f"advantage={kind!r}; expected one of {sorted(ADVANTAGES)}")
  return ADVANTAGES[kind](rewards, group_size, eps)
