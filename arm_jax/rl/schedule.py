"""The alternating schedule as data: which policy trains, on which examples, for how long.

R rounds over R non-overlapping parts of the (seed-shuffled) training pairs; each round is a
judge phase then a generator phase (or the reverse, the paper's "switch opt" ablation). R = 0
plans no phase: a run that stops after its warm start (whose models others can `init_from`). Every
batch is a pure function of (phase, step, seed), so a run resumes from (phase index, step)
without replaying anything.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

ORDERS = {"judge_first": ("judge", "generator"), "generator_first": ("generator", "judge")}


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
  rounds: int = 3
  order: str = "judge_first"
  steps_per_phase: int = 0  # > 0 overrides epochs_per_phase
  epochs_per_phase: float = 1.0
  seed: int = 0

  def __post_init__(self):
    if self.order not in ORDERS:
      raise ValueError(f"order={self.order!r}; expected one of {sorted(ORDERS)}")
    if self.rounds < 0:
      raise ValueError(f"rounds must be >= 0 (0 = no RL), got {self.rounds}")
    if self.steps_per_phase <= 0 and self.epochs_per_phase <= 0:
      raise ValueError("set steps_per_phase > 0 or epochs_per_phase > 0")


@dataclasses.dataclass(frozen=True)
class Phase:
  index: int
  round: int
  role: str
  part: tuple[int, ...]  # example indices of this round's part
  steps: int


def split_parts(num_examples: int, rounds: int, seed: int) -> list[np.ndarray]:
  """R disjoint parts covering every example once (sizes differ by at most one); none for R=0."""
  if rounds == 0:
    return []
  if num_examples < rounds:
    raise ValueError(f"{num_examples} examples cannot fill {rounds} non-overlapping parts")
  order = np.random.default_rng(seed).permutation(num_examples)
  return np.array_split(order, rounds)


def plan(num_examples: int, cfg: ScheduleConfig, prompts_per_step: dict[str, int]) -> list[Phase]:
  parts = split_parts(num_examples, cfg.rounds, cfg.seed)
  phases = []
  for r, part in enumerate(parts):
    for role in ORDERS[cfg.order]:
      steps = cfg.steps_per_phase or math.ceil(cfg.epochs_per_phase * len(part) /
                                               prompts_per_step[role])
      phases.append(Phase(len(phases), r, role, tuple(int(i) for i in part), steps))
  return phases


def step_indices(phase: Phase, step: int, prompts_per_step: int, seed: int) -> list[int]:
  """Examples of one step: consecutive slices of a per-epoch reshuffle of the phase's part."""
  n = len(phase.part)
  out = []
  for j in range(step * prompts_per_step, (step + 1) * prompts_per_step):
    epoch, pos = divmod(j, n)
    perm = np.random.default_rng([seed, phase.index, epoch]).permutation(n)
    out.append(phase.part[perm[pos]])
  return out


def swap_mask(phase: Phase, num_examples: int, seed: int) -> np.ndarray:
  """Per-instance response-order swaps for a phase (removes position bias), fixed per phase."""
  return np.random.default_rng([seed, phase.index, 7]).random(num_examples) < 0.5
