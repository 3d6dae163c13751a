"""Evaluation scoring rules against hand-computed values, with fake judges and no model.

Fixture: four pairs and one best-of-4 set (one preferred, three rejected). The preferred
response always contains "good", so a fake judge can find it in whatever slot it is shown.
"""

import math

import pytest

from arm_jax.evaluation import metrics
from arm_jax.evaluation.benchmarks import Example, in_subsets
from arm_jax.evaluation.runner import Generation, evaluate_examples

EXAMPLES = [
    Example("p1", "fx", "s1", "shared prompt", ("good one", "bad one"), 0, False),
    Example("p2", "fx", "s1", "shared prompt", ("bad two", "good two"), 1, False),
    Example("p3", "fx", "s2", "prompt three", ("good three", "bad three"), 0, False),
    Example("p4", "fx", "s2", "prompt four", ("good four", "bad four"), 0, False),
    Example("b1", "fx", "bon", "prompt five", ("bad x", "good x", "bad y", "bad z"), 1, True),
]
ORDERS = ("mixed", "ord1", "ord2")


def winner(slot):
  return f"--- Final Judgment ---\nJustification: ok.\nWinner: Response {slot}"


def always_a(requests, k):
  """A judge with total position bias."""
  return [[Generation(winner("A"), 5)] * k for _ in requests]


# Per example (by its preferred text), the k = 3 samples: the good response's slot, the bad one's,
# or an unparseable judgment (two Winner lines are no verdict).
SCRIPT = {"good one": ("good", "good", "bad"), "good two": ("bad", "good", "good"),
          "good three": ("good", None, "bad"), "good four": (None, None, None),
          "good x": (None, None, "good")}


def scripted(requests, k):
  out = []
  for r in requests:
    good = "A" if "good" in r.response_a else "B"
    bad = "B" if good == "A" else "A"
    key = r.response_a if "good" in r.response_a else r.response_b
    texts = {"good": winner(good), "bad": winner(bad),
             None: winner("A") + "\n" + winner("B")}
    out.append([Generation(texts[s], 7) for s in SCRIPT[key][:k]])
  return out


def test_coins_of_mixed_order_are_pinned():
  """Mixed flips by a hash of (seed, id, rival): these values fix the hand computations below."""
  coins = [metrics.flip_coin(0, i, r) for i, r in
           [("p1", 1), ("p2", 0), ("p3", 1), ("p4", 1), ("b1", 0), ("b1", 2), ("b1", 3)]]
  assert coins == [True, True, True, False, True, False, True]


def test_shown_pairs_per_order():
  assert metrics.shown_pairs("p1", 2, 0, "ord1", 0) == [(0, 1)]
  assert metrics.shown_pairs("p1", 2, 0, "ord2", 0) == [(1, 0)]
  assert metrics.shown_pairs("b1", 4, 1, "ord1", 0) == [(0, 1), (1, 2), (1, 3)]
  assert metrics.shown_pairs("b1", 4, 1, "ord2", 0) == [(1, 0), (2, 1), (3, 1)]
  assert metrics.shown_pairs("b1", 4, 1, "mixed", 0) == [(1, 0), (1, 2), (3, 1)]
  with pytest.raises(ValueError, match="order 'ord3'"):
    metrics.shown_pairs("p1", 2, 0, "ord3", 0)


def test_majority_ties_and_abstentions():
  assert metrics.majority(["A", "A", "B"]) == "A"
  assert metrics.majority(["B", None, None]) == "B"  # unparseable samples abstain
  assert metrics.majority(["A", "B", None]) == metrics.TIE
  assert metrics.majority([None, None]) == metrics.TIE
  assert metrics.majority([]) == metrics.TIE


def test_position_biased_judge_accuracy_per_order_and_best_of_4():
  run = evaluate_examples(EXAMPLES, judge_fn=always_a, orders=ORDERS)
  o = run.metrics["orders"]
  # Ord-1 labels: p1 A, p2 B, p3 A, p4 A; b1 vs rivals 0, 2, 3: B, A, A -> wins 2 of 3: wrong.
  assert o["ord1"]["accuracy"] == pytest.approx(3 / 5)
  assert o["ord1"]["comparison_accuracy"] == pytest.approx(5 / 7)
  # Ord-2 flips every label: p2 only; b1 wins rival 0 only.
  assert o["ord2"]["accuracy"] == pytest.approx(1 / 5)
  assert o["ord2"]["comparison_accuracy"] == pytest.approx(2 / 7)
  # Mixed (coins above): p1 B, p2 A, p3 B, p4 A; b1: A, A, B -> wrong.
  assert o["mixed"]["accuracy"] == pytest.approx(2 / 5)
  assert o["mixed"]["comparison_accuracy"] == pytest.approx(4 / 7)
  assert run.metrics["position_bias"] == {"accuracy": pytest.approx(2 / 5)}
  assert o["ord1"]["subsets"] == {"bon": {"examples": 1, "accuracy": 0.0},
                                  "s1": {"examples": 2, "accuracy": 0.5},
                                  "s2": {"examples": 2, "accuracy": 1.0}}
  assert all(o[x]["parse_failure_rate"] == 0 for x in ORDERS)
  assert "voting_accuracy" not in o["mixed"]  # k = 1
  # A presentation is judged once: Mixed reuses Ord-1 / Ord-2 judgments (2 x 7 comparisons).
  assert run.metrics["presentations"] == 14 and run.metrics["judge_samples"] == 14
  assert run.metrics["best_of_n"] == 1 and run.metrics["examples"] == 5


def test_voting_ties_and_parse_failures():
  run = evaluate_examples(EXAMPLES, judge_fn=scripted, orders=("ord1",), votes=3)
  o = run.metrics["orders"]["ord1"]
  # First samples: p1 right, p2 wrong, p3 right, p4 unparseable, b1 unparseable (3 comparisons).
  assert o["accuracy"] == pytest.approx(2 / 5)
  assert o["comparison_accuracy"] == pytest.approx(2 / 7)
  # Votes: p1 2-1 right, p2 2-1 right, p3 1-1 tie (wrong), p4 nothing parsed (tie, wrong),
  # b1 1-0 on every comparison (right).
  assert o["voting_accuracy"] == pytest.approx(3 / 5)
  assert (o["vote_ties"], o["vote_no_parsed"]) == (2, 1)
  # 7 comparisons x 3 samples; unparseable: p3 1, p4 3, b1 2 x 3.
  assert (o["judgments"], o["parse_failures"]) == (21, 10)
  assert o["parse_failure_rate"] == pytest.approx(10 / 21)
  # Every sample that names the preferred slot: p1 2, p2 2, p3 1, p4 0, b1 1 on each of 3.
  assert o["judgment_accuracy"] == pytest.approx(8 / 21)
  assert o["subsets"] == {
      "bon": {"examples": 1, "accuracy": 0.0, "voting_accuracy": 1.0},
      "s1": {"examples": 2, "accuracy": 0.5, "voting_accuracy": 1.0},
      "s2": {"examples": 2, "accuracy": 0.5, "voting_accuracy": 0.0}}
  assert run.metrics["position_bias"] is None  # needs Ord-1 and Ord-2
  p3 = next(p for p in run.predictions if p["id"] == "p3")
  assert p3["verdicts"] == [["A", None, "B"]] and p3["votes"] == ["tie"]
  assert (p3["label"], p3["correct"], p3["voted_correct"]) == (["A"], True, False)


def test_content_judge_has_no_position_bias():
  run = evaluate_examples(EXAMPLES, judge_fn=scripted, orders=ORDERS, votes=3)
  accs = {o: run.metrics["orders"][o]["voting_accuracy"] for o in ORDERS}
  assert accs == {o: pytest.approx(3 / 5) for o in ORDERS}
  assert run.metrics["position_bias"] == {"accuracy": 0.0, "voting_accuracy": 0.0}


def test_one_rubric_per_prompt_shared_by_samples_orders_and_calls():
  calls = []

  def rubric_fn(instructions):
    calls.append(list(instructions))
    return [Generation(f"1. The response answers {i}. [Hard Rule]", 3, 0.5) for i in instructions]

  seen = []

  def judge(requests, k):
    seen.extend(requests)
    return always_a(requests, k)

  cache = {}
  run = evaluate_examples(EXAMPLES, judge_fn=judge, rubric_fn=rubric_fn, orders=ORDERS,
                          rubric_cache=cache)
  assert calls == [["shared prompt", "prompt three", "prompt four", "prompt five"]]
  assert all(r.rubric == f"1. The response answers {r.instruction}. [Hard Rule]" for r in seen)
  assert run.metrics["rubric_tokens_mean"] == 3
  assert run.metrics["seconds"] >= 4 * 0.5  # the rubrics' shares count towards the time
  evaluate_examples(EXAMPLES[:2], judge_fn=judge, rubric_fn=rubric_fn, rubric_cache=cache)
  assert len(calls) == 1  # cached
  direct = evaluate_examples(EXAMPLES, judge_fn=judge)
  assert seen[-1].rubric is None and direct.metrics["rubric_tokens_mean"] is None


def test_predictions_hold_everything_needed_to_recompute_accuracy():
  run = evaluate_examples(EXAMPLES, judge_fn=scripted, orders=ORDERS, votes=3)
  assert len(run.predictions) == len(EXAMPLES) * len(ORDERS)
  for order in ORDERS:
    rows = [p for p in run.predictions if p["order"] == order]
    recomputed = [all(v[0] == label for v, label in zip(p["verdicts"], p["label"]))
                  for p in rows]
    assert [p["correct"] for p in rows] == recomputed
    assert sum(recomputed) / len(rows) == pytest.approx(run.metrics["orders"][order]["accuracy"])
  b1 = next(p for p in run.predictions if p["id"] == "b1" and p["order"] == "ord2")
  assert b1["shown"] == [[1, 0], [2, 1], [3, 1]] and b1["label"] == ["A", "B", "B"]
  assert len(b1["judgments"]) == 3 and all(len(j) == 3 for j in b1["judgments"])


def test_empty_subset_accuracy_is_nan_not_an_error():
  assert math.isnan(metrics.summarize([], votes=1)["accuracy"])


def test_subset_filter_matches_names_and_sections():
  assert in_subsets("Chat/alpacaeval-easy", "Chat")
  assert not in_subsets("Chat-Hard/llmbar-natural", "Chat")
  assert in_subsets("Precise IF", "Focus, Precise IF")
  assert in_subsets("anything", "")


def test_bad_judge_output_count_is_an_error():
  with pytest.raises(ValueError, match="judge_fn returned"):
    evaluate_examples(EXAMPLES, judge_fn=lambda requests, k: [], votes=1)
  with pytest.raises(ValueError, match="votes must be"):
    evaluate_examples(EXAMPLES, judge_fn=always_a, votes=0)
