"""The alternating schedule: disjoint parts, phase order, deterministic resumable batches."""

import numpy as np
import pytest

from arm_jax.rl import schedule
from arm_jax.rl.schedule import ScheduleConfig


def test_parts_are_disjoint_and_cover_everything():
  parts = schedule.split_parts(10, 3, seed=0)
  flat = np.concatenate(parts)
  assert sorted(flat.tolist()) == list(range(10))
  assert [len(p) for p in parts] == [4, 3, 3]
  with pytest.raises(ValueError, match="non-overlapping"):
    schedule.split_parts(2, 3, seed=0)


def test_zero_rounds_plan_no_phase_and_negative_rounds_are_refused():
  assert schedule.plan(12, ScheduleConfig(rounds=0), {"judge": 2, "generator": 3}) == []
  with pytest.raises(ValueError, match="rounds must be >= 0"):
    ScheduleConfig(rounds=-1)


@pytest.mark.parametrize("order,roles", [("judge_first", ["judge", "generator"] * 3),
                                         ("generator_first", ["generator", "judge"] * 3)])
def test_plan_alternates_in_the_chosen_order(order, roles):
  phases = schedule.plan(12, ScheduleConfig(rounds=3, order=order), {"judge": 2, "generator": 3})
  assert [p.role for p in phases] == roles
  assert [p.round for p in phases] == [0, 0, 1, 1, 2, 2]
  # One epoch per phase by default: ceil(4 examples / prompts per step).
  assert [p.steps for p in phases] == ([2, 2] * 3 if order == "judge_first" else [2, 2] * 3)
  assert phases[0].part == phases[1].part and set(phases[0].part).isdisjoint(phases[2].part)
  fixed = schedule.plan(12, ScheduleConfig(rounds=3, steps_per_phase=5), {"judge": 2,
                                                                          "generator": 3})
  assert {p.steps for p in fixed} == {5}


def test_step_batches_cover_the_part_each_epoch_and_are_reproducible():
  phase = schedule.plan(12, ScheduleConfig(rounds=2), {"judge": 3, "generator": 3})[0]
  epoch = [i for s in range(2) for i in schedule.step_indices(phase, s, 3, seed=0)]
  assert sorted(epoch) == sorted(phase.part)  # 6 examples, 2 steps of 3
  assert schedule.step_indices(phase, 1, 3, seed=0) == schedule.step_indices(phase, 1, 3, seed=0)
  assert schedule.step_indices(phase, 2, 3, seed=0) != schedule.step_indices(phase, 3, 3, seed=0)


def test_swaps_are_roughly_half_and_fixed_per_phase():
  phase = schedule.plan(1000, ScheduleConfig(rounds=1), {"judge": 8, "generator": 8})[0]
  m = schedule.swap_mask(phase, 1000, seed=0)
  assert 400 < m.sum() < 600
  np.testing.assert_array_equal(m, schedule.swap_mask(phase, 1000, seed=0))
