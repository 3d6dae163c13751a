"""The toy oracle for policies against hand-counted constraints."""

import pytest

from arm_jax.toy import policy_eval, world

# "Use moon. Do not use tiger. Start with stone." (3 constraints) and "Use at most 3 words." (1).
I1 = world.instruction_text("apple", (world.Constraint("include", "moon"),
                                      world.Constraint("avoid", "tiger"),
                                      world.Constraint("start", "stone")))
I2 = world.instruction_text("river", (world.Constraint("at_most", count=3),))


def test_constraint_share_counts_every_constraint():
  got = policy_eval.constraint_share([I1, I2, I1], ["stone moon", "a b c d", "tiger moon"])
  # I1 "stone moon": 3 of 3; I2 four words: 0 of 1; I1 "tiger moon": include only, 1 of 3.
  assert got == dict(constraint_share=4 / 7, all_met=1 / 3, constraints=7, responses=3)


def test_an_empty_response_meets_avoid_and_at_most_only():
  assert policy_eval.constraint_share([I1, I2], ["", ""])["constraint_share"] == 2 / 4


def test_oracle_win_rate_counts_ties_as_half():
  rate = policy_eval.oracle_win_rate([I1, I1, I2], ["stone moon", "moon", "a"],
                                     ["moon", "moon", "b"])
  assert rate == (1.0 + 0.5 + 0.5) / 3


def test_bad_input_is_named():
  with pytest.raises(ValueError, match="one response per instruction"):
    policy_eval.constraint_share([I1], [])
  with pytest.raises(ValueError, match="not a toy instruction"):
    policy_eval.constraint_share(["Write a poem"], ["x"])
  with pytest.raises(ValueError, match="one of each per instruction"):
    policy_eval.oracle_win_rate([I1], ["x"], [])
