"""Judge and generator rewards against hand-computed values (docs/method.md §4)."""

import numpy as np
import pytest

from arm_jax.parsing import parse_rubric
from arm_jax.rewards import (GeneratorReward, JudgeReward, generator_reward, generator_rewards,
                             judge_reward, judge_rewards)
from test_parsing import BREAKS, PERFECT, RUBRIC, mirror

NO_WINNER = BREAKS["missing winner"][0](PERFECT)  # verdict None; 10 of 11 format requirements
ONE_LINE_SHORT = BREAKS["missing criterion line"][0](PERFECT)  # verdict A; 10 + 2/3 of 11
TWO_WINNERS = BREAKS["two winners"][0](PERFECT)


def _rubric(n_hard, n_principle):
  items = ([f"The response must meet hard rule {i}. [Hard Rule]" for i in range(n_hard)]
           + [f"The response should meet principle {i}. [Principle]" for i in range(n_principle)])
  return "\n".join(f"{i + 1}. {item}" for i, item in enumerate(items))


@pytest.mark.parametrize("text, label, format_reward, weight, expected", [
    (PERFECT, "A", "binary", 1.0, JudgeReward(1.0, 1.0, 2.0, "A")),
    (PERFECT, 0, "graded", 1.0, JudgeReward(1.0, 1.0, 2.0, "A")),
    (PERFECT, "B", "binary", 1.0, JudgeReward(0.0, 1.0, 1.0, "A")),
    (PERFECT, 0, "none", 1.0, JudgeReward(1.0, 0.0, 1.0, "A")),
    (PERFECT, 0, "binary", 0.5, JudgeReward(1.0, 1.0, 1.5, "A")),
    (mirror(PERFECT), 1, "binary", 1.0, JudgeReward(1.0, 1.0, 2.0, "B")),
    (NO_WINNER, "A", "binary", 1.0, JudgeReward(0.0, 0.0, 0.0, None)),
    (NO_WINNER, "B", "graded", 1.0, JudgeReward(0.0, 10 / 11, 10 / 11, None)),
    (NO_WINNER, "B", "graded", 0.5, JudgeReward(0.0, 10 / 11, 5 / 11, None)),
    (ONE_LINE_SHORT, "A", "binary", 1.0, JudgeReward(1.0, 0.0, 1.0, "A")),
    (ONE_LINE_SHORT, "A", "graded", 1.0, JudgeReward(1.0, 32 / 33, 1 + 32 / 33, "A")),
    (TWO_WINNERS, "A", "graded", 1.0, JudgeReward(0.0, 10 / 11, 10 / 11, None)),
    ("", 1, "graded", 1.0, JudgeReward(0.0, 0.0, 0.0, None)),
    ("<think>Winner: Response A</think>\nWinner: Response B", "A", "binary", 1.0,
     JudgeReward(0.0, 0.0, 0.0, "B")),
])
def test_judge_reward_matches_hand_computed_values(text, label, format_reward, weight, expected):
  got = judge_reward(text, RUBRIC, label, format_reward=format_reward, format_weight=weight)
  assert got.verdict == expected.verdict
  assert (got.accuracy, got.format, got.total) == pytest.approx(
      (expected.accuracy, expected.format, expected.total))


def test_judge_reward_takes_a_parsed_rubric():
  assert (judge_reward(ONE_LINE_SHORT, parse_rubric(RUBRIC), 0, format_reward="graded")
          == judge_reward(ONE_LINE_SHORT, RUBRIC, 0, format_reward="graded"))


def test_judge_format_is_checked_against_the_rubric_shown():
  four_items = RUBRIC + "\n4. The response should be polite. [Principle]"
  assert judge_reward(PERFECT, four_items, "A").total == 1.0


def test_judge_reward_rejects_bad_options_and_labels():
  with pytest.raises(ValueError, match="format_reward"):
    judge_reward(PERFECT, RUBRIC, 0, format_reward="soft")
  with pytest.raises(ValueError, match="label"):
    judge_reward("", RUBRIC, "tie")  # checked even when there is no verdict


@pytest.mark.parametrize("text, label, options, expected", [
    (PERFECT, "A", {}, GeneratorReward(1.0, 0.0, 0.0, 1.0, "A")),
    (PERFECT, 1, {}, GeneratorReward(0.0, 0.0, 0.0, 0.0, "A")),
    (NO_WINNER, 0, {}, GeneratorReward(0.0, 0.0, 0.0, 0.0, None)),
    (PERFECT, 0, {"rubric": RUBRIC}, GeneratorReward(1.0, 1.0, 0.0, 1.0, "A")),
    (PERFECT, 0, {"rubric": RUBRIC, "validity_weight": 0.5},
     GeneratorReward(1.0, 1.0, 0.0, 1.5, "A")),
    (PERFECT, 0, {"rubric": RUBRIC.replace(" [Principle]", ""), "validity_weight": 0.5},
     GeneratorReward(1.0, 0.0, 0.0, 1.0, "A")),
    (PERFECT, 0, {"rubric": _rubric(4, 6), "brevity_weight": 0.1, "brevity_target": 8},
     GeneratorReward(1.0, 1.0, -2.0, 0.8, "A")),
    (PERFECT, 0, {"rubric": _rubric(3, 5), "brevity_weight": 0.1, "brevity_target": 8},
     GeneratorReward(1.0, 1.0, 0.0, 1.0, "A")),
    (PERFECT, 1, {"rubric": _rubric(6, 6), "brevity_weight": 0.25, "validity_weight": 1.0},
     GeneratorReward(0.0, 1.0, -4.0, 0.0, "A")),
])
def test_generator_reward_matches_hand_computed_values(text, label, options, expected):
  got = generator_reward(text, label, **options)
  assert got.verdict == expected.verdict
  assert (got.correctness, got.validity, got.brevity, got.total) == pytest.approx(
      (expected.correctness, expected.validity, expected.brevity, expected.total))


def test_generator_shaping_needs_the_rubric():
  for weights in ({"validity_weight": 1.0}, {"brevity_weight": 0.1}):
    with pytest.raises(ValueError, match="rubric"):
      generator_reward(PERFECT, 0, **weights)


def test_judge_rewards_batch():
  texts = [PERFECT, mirror(PERFECT), "", TWO_WINNERS, NO_WINNER]
  out = judge_rewards(texts, [RUBRIC] * 5, ["A", 1, 0, "B", "A"], format_reward="graded")
  np.testing.assert_allclose(out["accuracy"], [1, 1, 0, 0, 0])
  np.testing.assert_allclose(out["format"], [1, 1, 0, 10 / 11, 10 / 11], rtol=1e-6)
  np.testing.assert_allclose(out["total"], [2, 2, 0, 10 / 11, 10 / 11], rtol=1e-6)
  np.testing.assert_array_equal(out["verdict"], [0, 1, -1, -1, -1])
  np.testing.assert_array_equal(out["format_ok"], [1, 1, 0, 0, 0])
  assert {k: v.dtype for k, v in out.items()} == {
      "accuracy": np.float32, "format": np.float32, "total": np.float32,
      "format_ok": np.float32, "verdict": np.int8}


def test_format_ok_is_reported_when_the_format_reward_is_off():
  """The no-format-reward ablation pays nothing for format but still logs the format rate."""
  texts = [PERFECT, ONE_LINE_SHORT, NO_WINNER]
  off = judge_rewards(texts, [RUBRIC] * 3, ["A"] * 3, format_reward="none")
  np.testing.assert_array_equal(off["format"], [0, 0, 0])
  np.testing.assert_array_equal(off["total"], [1, 1, 0])
  np.testing.assert_array_equal(off["format_ok"], [1, 0, 0])
  binary = judge_rewards(texts, [RUBRIC] * 3, ["A"] * 3, format_reward="binary")
  np.testing.assert_array_equal(binary["format_ok"], binary["format"])


def test_generator_rewards_batch():
  out = generator_rewards([PERFECT, mirror(PERFECT), NO_WINNER], [0, "A", 0])
  np.testing.assert_allclose(out["correctness"], [1, 0, 0])
  np.testing.assert_allclose(out["total"], [1, 0, 0])
  np.testing.assert_array_equal(out["verdict"], [0, 1, -1])
  shaped = generator_rewards([PERFECT, PERFECT], [0, 0], rubrics=[_rubric(5, 5), "no list"],
                             validity_weight=0.5, brevity_weight=0.1, brevity_target=8)
  np.testing.assert_allclose(shaped["validity"], [1, 0])
  np.testing.assert_allclose(shaped["brevity"], [-2, 0])
  np.testing.assert_allclose(shaped["total"], [1.3, 1.0], rtol=1e-6)


def test_batch_lengths_must_agree():
  with pytest.raises(ValueError, match="lengths differ"):
    judge_rewards([PERFECT], [RUBRIC, RUBRIC], [0])
  with pytest.raises(ValueError, match="lengths differ"):
    generator_rewards([PERFECT], [0], rubrics=[])
