"""arm_jax.rl.heldout.judge_accuracy with scripted policies: what each judgment is shown, with
which key, and how several sampled judgments per pair are averaged."""

import jax
import numpy as np
import pytest

from arm_jax.rl import heldout
from arm_jax.core import PreferencePair
from arm_jax.toy import warmstart

RUBRIC_T, JUDGE_T = warmstart.templates()
PAIRS = [PreferencePair(f"Write about item{i}.", f"first{i}", f"second{i}", i % 2)
         for i in range(10)]


class Scripted:
  """encode/generate like a Policy; generate answers with `answer(prompt)` and logs its calls."""

  def __init__(self, template, answer):
    self.template, self.answer, self.calls = template, answer, []

  def encode(self, texts):
    return list(texts)

  def generate(self, prompts, params, key):
    self.calls.append((list(prompts), params, key))
    return None, [self.answer(p) for p in prompts]


def _always_a(prompt):
  return "--- Final Judgment ---\nJustification: A.\nWinner: Response A"


def _run(samples, temperature=1.0, batch_size=4, diagnose=None):
  gen = Scripted(RUBRIC_T, lambda p: "1. The response is short. [Hard Rule]")
  judge = Scripted(JUDGE_T, _always_a)
  result = heldout.judge_accuracy(gen, judge, PAIRS, seed=3, rubric_max_new_tokens=8,
                                  judge_max_new_tokens=8, batch_size=batch_size,
                                  judge_temperature=temperature, samples=samples,
                                  diagnose=diagnose)
  return result, gen, judge


def _slot_a_preferred(order):
  return sum(p.label == 0 for p in order)


def test_one_judgment_per_pair_is_unchanged_and_shows_each_pair_in_a_random_order():
  result, gen, judge = _run(samples=1)
  # the order: a seeded coin per pair, independent of the pair's content
  swaps = np.random.default_rng((3, 0x5EED)).random(len(PAIRS)) < 0.5
  shown = [p.swapped() if s else p for p, s in zip(PAIRS, swaps)]
  assert heldout.shown_order(PAIRS, 3) == shown
  # a judge that always names A is right exactly where the preferred response is shown first
  assert result["judge_accuracy"] == _slot_a_preferred(shown) / len(PAIRS)
  assert result["pairs"] == result["judgments"] == len(PAIRS) and result["verdict_rate"] == 1.0
  assert len(gen.calls) == 3 and len(judge.calls) == 3  # 10 pairs in batches of 4
  key = jax.random.key(3)
  for start, (prompts, params, k) in zip((0, 4, 8), judge.calls):
    assert np.array_equal(jax.random.key_data(k),
                          jax.random.key_data(jax.random.fold_in(key, start)))
    assert params.temperature == 1.0 and not params.greedy
    for p, prompt in zip(shown[start:start + 4], prompts):
      assert f"Response A: {p.response_a}\n" in prompt and f"Response B: {p.response_b}" in prompt


def test_several_judgments_per_pair_redraw_order_and_key_and_average_them():
  seen = []
  result, gen, judge = _run(samples=3, diagnose=lambda s, r, j: seen.append((s, r, j)) or {})
  orders = [heldout.shown_order(PAIRS, 3, draw=d) for d in range(3)]
  assert orders[0] == heldout.shown_order(PAIRS, 3)
  assert orders[1] != orders[0] and orders[2] != orders[1]  # 10 coins each: distinct here
  for order in orders:  # every draw shows every pair once
    assert sorted(p.instruction for p in order) == sorted(p.instruction for p in PAIRS)
  expected = sum(_slot_a_preferred(o) for o in orders) / (3 * len(PAIRS))
  assert result["judge_accuracy"] == pytest.approx(expected)
  assert result["pairs"] == len(PAIRS) and result["judgments"] == 3 * len(PAIRS)
  # rubrics once per pair (they do not depend on the order); judgments 3 x 3 batches
  assert sum(len(c[0]) for c in gen.calls) == len(PAIRS) and len(judge.calls) == 9
  keys = {tuple(np.asarray(jax.random.key_data(c[2])).ravel()) for c in judge.calls}
  assert len(keys) == 9
  shown, rubrics, judgments = seen[0]
  assert shown == orders[0] + orders[1] + orders[2]
  assert len(rubrics) == len(judgments) == 3 * len(PAIRS)


def test_greedy_judging_takes_one_judgment_per_pair():
  result, _, judge = _run(samples=1, temperature=0.0)
  assert all(c[1].greedy for c in judge.calls)
  assert result["judgments"] == len(PAIRS)
  with pytest.raises(ValueError, match="samples=2"):
    _run(samples=2, temperature=0.0)
  with pytest.raises(ValueError, match="samples=0"):
    _run(samples=0)
