"""Alternating RL (Stage II): rounds of judge and generator phases over one shared update.

The trainer owns no model code: it walks `schedule.plan`, samples the judge phase's rubrics
once at phase start from the current generator, swaps response order per instance, and calls
phases.judge_step / generator_step. The idle policy's optimizer state waits in host memory.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import jax
from jax.sharding import NamedSharding, PartitionSpec

from arm_jax.core import PreferencePair
from arm_jax.rl import optim, phases, schedule
from arm_jax.rl.grpo import make_update
from arm_jax.rl.policy import Policy
from arm_jax.sampling import SamplingParams


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
  schedule: schedule.ScheduleConfig
  judge: phases.PhaseConfig
  generator: phases.PhaseConfig
  judge_optimizer: optim.OptimizerConfig = optim.OptimizerConfig()
  generator_optimizer: optim.OptimizerConfig = optim.OptimizerConfig()
  rewards: phases.RewardConfig = phases.RewardConfig()
  rubric_sampling: SamplingParams = SamplingParams(max_new_tokens=512)  # judge-phase rubrics
  rubric_batch: int = 32
  judge_greedy_max_new_tokens: int = 1024  # the frozen judge inside the generator's reward
  offload_idle_optimizer: bool = True


def init_opt_state(optimizer, policy: Policy) -> Any:
  """Fresh optimizer state laid out like the params (scalars replicated over the mesh)."""
  mesh = policy.model.mesh
  init = lambda p: optim.init_state(optimizer, p)  # noqa: E731
  if mesh is None:
    return jax.jit(init)(policy.params)
  shardings = optim.opt_state_shardings(
      optimizer, policy.params, jax.tree.map(lambda x: x.sharding, policy.params),
      NamedSharding(mesh, PartitionSpec()))
  return jax.jit(init, out_shardings=shardings)(policy.params)


# (model, GRPO settings, optimizer settings) -> jitted update; optimizers are pure functions of
# their settings, so equal keys compute the same update.
_UPDATES: dict[Any, Callable] = {}


class AlternatingTrainer:
  def __init__(self, generator: Policy, judge: Policy, cfg: TrainerConfig,
               log_fn: Callable[[dict], None] | None = None):
    self.policies = {"generator": generator, "judge": judge}
    self.cfg = cfg
    self.log_fn = log_fn or (lambda m: None)
    self._optimizers = {"generator": optim.make_optimizer(cfg.generator_optimizer),
                        "judge": optim.make_optimizer(cfg.judge_optimizer)}
    self._opt_shardings: dict[str, Any] = {}
    self.rubric_cache: dict[int, str] | None = None  # example index -> this phase's rubric
    for role, policy in self.policies.items():
      if policy.opt_state is None:
        policy.opt_state = init_opt_state(self._optimizers[role], policy)

  def _phase_cfg(self, role: str) -> phases.PhaseConfig:
    return self.cfg.judge if role == "judge" else self.cfg.generator

  def update_fn(self, role: str) -> Callable:
    """One jitted update per distinct (model, GRPO settings, optimizer): equal -> shared, also
    across trainers in one process (a resumed run reuses the compilation)."""
    policy = self.policies[role]
    opt_cfg = self.cfg.judge_optimizer if role == "judge" else self.cfg.generator_optimizer
    key = (policy.model, self._phase_cfg(role).grpo, opt_cfg)
    if key not in _UPDATES:
      shardings = None
      if policy.model.mesh is not None:
        shardings = (jax.tree.map(lambda x: x.sharding, policy.params),
                     jax.tree.map(lambda x: x.sharding, policy.opt_state))
      _UPDATES[key] = make_update(policy.model, self._phase_cfg(role).grpo,
                                  self._optimizers[role], shardings=shardings)
    return _UPDATES[key]

  def _activate(self, role: str) -> None:
    if not self.cfg.offload_idle_optimizer:
      return
    for r, policy in self.policies.items():
      if r == role and r in self._opt_shardings:
        policy.opt_state = optim.onload(policy.opt_state, self._opt_shardings.pop(r))
      elif r != role and r not in self._opt_shardings:
        self._opt_shardings[r] = jax.tree.map(lambda x: x.sharding, policy.opt_state)
        policy.opt_state = optim.offload(policy.opt_state)

  def run(self, pairs: Sequence[PreferencePair], key: jax.Array, *,
          start_phase: int = 0, start_step: int = 0,
          on_step: Callable[[schedule.Phase, int], bool] | None = None,
          on_phase_end: Callable[[schedule.Phase], None] | None = None) -> list[dict]:
    """Walks the plan from (start_phase, start_step); returns the per-step metrics.

    on_step(phase, step) runs after each step (checkpointing); returning True stops the run
    there (preemption). on_phase_end(phase) runs after a phase's last step (round evals). A
    resumed judge phase keeps the restored rubric_cache instead of sampling it again.
    """
    cfg = self.cfg
    per_step = {"judge": cfg.judge.prompts_per_step, "generator": cfg.generator.prompts_per_step}
    history = []
    for phase in schedule.plan(len(pairs), cfg.schedule, per_step)[start_phase:]:
      self._activate(phase.role)
      self.update_fn(phase.role)  # shardings are read while the state is on device
      swaps = schedule.swap_mask(phase, len(pairs), cfg.schedule.seed)
      shown = [p.swapped() if s else p for p, s in zip(pairs, swaps)]
      phase_key = jax.random.fold_in(key, phase.index)
      first = start_step if phase.index == start_phase else 0
      if phase.role == "judge" and (self.rubric_cache is None or first == 0):
        t0 = time.perf_counter()
        # One rubric per instance this phase will show, from the generator at phase start.
        needed = sorted({i for s in range(phase.steps) for i in schedule.step_indices(
            phase, s, per_step[phase.role], cfg.schedule.seed)})
        rubrics = phases.sample_rubrics(self.policies["generator"], [shown[i] for i in needed],
                                        cfg.rubric_sampling,
                                        jax.random.fold_in(phase_key, 1 << 30), cfg.rubric_batch)
        self.rubric_cache = dict(zip(needed, rubrics))
        self.log_fn(dict(event="rubrics_sampled", phase=phase.index, count=len(rubrics),
                         seconds=time.perf_counter() - t0))
      for step in range(first, phase.steps):
        idx = schedule.step_indices(phase, step, per_step[phase.role], cfg.schedule.seed)
        batch = [shown[i] for i in idx]
        step_key = jax.random.fold_in(phase_key, step)
        if phase.role == "judge":
          metrics = phases.judge_step(self.policies["judge"], cfg.judge, self.update_fn("judge"),
                                      batch, [self.rubric_cache[i] for i in idx], step_key,
                                      cfg.rewards)
        else:
          metrics = phases.generator_step(self.policies["generator"], self.policies["judge"],
                                          cfg.generator, cfg.judge_greedy_max_new_tokens,
                                          self.update_fn("generator"), batch, step_key,
                                          cfg.rewards)
        # The rate of the step's (first) update, as the SFT and DPO records have it.
        metrics = optim.with_learning_rate(metrics, self.cfg.judge_optimizer if phase.role ==
                                           "judge" else self.cfg.generator_optimizer)
        metrics.update(phase=phase.index, round=phase.round, role=phase.role, step=step)
        self.log_fn(metrics)
        history.append(metrics)
        if on_step is not None and on_step(phase, step):
          return history
      if on_phase_end is not None:
        on_phase_end(phase)
    return history
