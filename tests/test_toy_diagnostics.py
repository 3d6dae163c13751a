"""arm_jax.toy.diagnostics against hand-worked judgments, and the instruction / criterion parsers
it relies on against the world's own generator."""

import pytest

from arm_jax import toy
from arm_jax.core import PreferencePair
from arm_jax.toy import Constraint, diagnostics, world

AVOID, INCLUDE = Constraint("avoid", "silver"), Constraint("include", "candle")
# A uses silver (breaks "do not use silver"); both use candle: B meets 2, A meets 1.
PAIR = PreferencePair("Write about cloud. Do not use silver. Use candle.",
                      "silver candle moon", "candle moon", 1)
RUBRIC = toy.rubric_text([AVOID, INCLUDE])


def test_instruction_and_criterion_parsers_invert_the_world_texts():
  instances = toy.make_instances(500, seed=5)
  assert {c.kind for i in instances for c in i.constraints} == set(world.KINDS)
  for inst in instances:
    assert world.parse_instruction(inst.instruction) == (inst.topic, inst.constraints)
    for c in inst.constraints:
      assert world.parse_criterion(c.criterion) == c
  assert world.parse_criterion("The response likes candle") is None
  assert world.parse_criterion("The response uses") is None
  with pytest.raises(ValueError, match="not a toy instruction"):
    world.parse_instruction("Write about cloud. Sing loudly.")


def test_right_judgments_score_one_everywhere():
  instances = toy.make_instances(200, seed=6)
  pairs = [i.pair for i in instances]
  rubrics = [toy.rubric_text(i.constraints) for i in instances]
  judgments = [toy.judgment_text(i.constraints, i.response_a, i.response_b, i.label)
               for i in instances]
  out = diagnostics.reading(pairs, rubrics, judgments)
  assert out["rubric_exact"] == 1.0
  assert {k: v for k, v in out.items() if k.startswith("judge_")} == {
      "judge_restated": 1.0, "judge_evidence": 1.0, "judge_marks": 1.0,
      **{f"judge_marks_{k}": 1.0 for k in world.KINDS}}


def test_negation_slip_shows_in_the_avoid_marks_only():
  # Slipped marks: silver is seen in A, so A "yes", B "no" on criterion 1 (both wrong);
  # criterion 2 yes / yes (right). Evidence [A] and [both] stays right.
  slipped = toy.judgment_text([AVOID, INCLUDE], PAIR.response_a, PAIR.response_b, 0,
                              negation_slip=True)
  out = diagnostics.reading([PAIR], [RUBRIC], [slipped])
  assert out == dict(rubric_exact=1.0, judge_restated=1.0, judge_evidence=1.0, judge_marks=0.5,
                     judge_marks_avoid=0.0, judge_marks_include=1.0)


def test_swapped_evidence_and_inexact_rubric_and_unreadable_lines():
  # A position mix-up: silver's evidence [B] (wrong), candle's [both] (right); the avoid marks
  # follow the swapped evidence (A yes, B no: both wrong).
  swapped = toy.judgment_text([AVOID, INCLUDE], PAIR.response_a, PAIR.response_b, 0,
                              swapped=True)
  # A rubric without the avoid rule, judged faithfully: restated right, rubric not exact.
  partial_rubric = toy.rubric_text([INCLUDE])
  faithful = toy.judgment_text([INCLUDE], PAIR.response_a, PAIR.response_b, 0)
  # A judgment whose first line restates no criterion and whose second restates the wrong one.
  garbled = swapped.replace("Justification: does not use silver [B]: yes",
                            "Justification: likes silver [B]: yes", 1).replace(
      "Criterion 2 [Hard Rule]: Justification: uses candle", "Criterion 2 [Hard Rule]: "
      "Justification: does not use silver", 1)
  out = diagnostics.reading([PAIR, PAIR, PAIR], [RUBRIC, partial_rubric, RUBRIC],
                            [swapped, faithful, garbled])
  # Lines: swapped 4, faithful 2, garbled 4 (one unreadable) = 10.
  # Garbled A block: line 1 unreadable (wrong everywhere); line 2 restates criterion 1 under
  #   number 2 (wrong), its evidence [both] is wrong for silver ([A]), its "yes" wrong for A.
  # Garbled B block = swapped's B block: both restated right; evidence [B] wrong, [both] right;
  #   the avoid "no" wrong, the include "yes" right.
  assert out["rubric_exact"] == pytest.approx(2 / 3)
  assert out["judge_restated"] == pytest.approx((4 + 2 + 2) / 10)
  assert out["judge_evidence"] == pytest.approx((2 + 2 + 1) / 10)
  assert out["judge_marks"] == pytest.approx((2 + 2 + 1) / 10)
  assert out["judge_marks_avoid"] == pytest.approx(0 / 4)
  assert out["judge_marks_include"] == pytest.approx(5 / 5)


def test_misaligned_inputs_are_refused():
  for check in (diagnostics.reading, diagnostics.wrong_by, diagnostics.evaluate):
    with pytest.raises(ValueError, match="1 pairs, 2 rubrics, 1 judgments"):
      check([PAIR], [RUBRIC, RUBRIC], ["x"])


def test_criterion_lines_out_of_format_count_as_wrong_not_dropped():
  right = toy.judgment_text([AVOID, INCLUDE], PAIR.response_a, PAIR.response_b, 1)
  # Response B's first line loses its mark: still one of the 4 lines, wrong in every share.
  broken = right.replace("- Criterion 1 [Hard Rule]: Justification: does not use silver [A]: yes",
                         "- Criterion 1 [Hard Rule]: Justification: does not use silver [A]")
  assert broken != right
  out = diagnostics.reading([PAIR], [RUBRIC], [broken])
  assert out == dict(rubric_exact=1.0, judge_restated=0.75, judge_evidence=0.75,
                     judge_marks=0.75, judge_marks_avoid=1.0, judge_marks_include=1.0)


def test_wrong_judgments_are_charged_to_their_first_failing_step():
  # PAIR: B is preferred (A breaks "do not use silver"); right marks A 0+1, B 1+1.
  a, b = PAIR.response_a, PAIR.response_b
  right = toy.judgment_text([AVOID, INCLUDE], a, b, 1)
  slipped = toy.judgment_text([AVOID, INCLUDE], a, b, 0, negation_slip=True)  # A 2, B 1
  swapped = toy.judgment_text([AVOID, INCLUDE], a, b, 0, swapped=True)
  against_counts = toy.judgment_text([AVOID, INCLUDE], a, b, 0)  # A 1, B 2, "Winner: A"
  miscounted = against_counts.replace("A meets 1, B meets 2.", "A meets 2, B meets 1.")
  garbled = slipped.replace("uses candle [both]", "likes candle [both]", 1)
  # Judged faithfully, the rubric without the avoid rule ties (1, 1); a distractor rule that
  # neither response is asked for does not separate them either.
  partial = toy.rubric_text([INCLUDE])
  tie_partial = toy.judgment_text([INCLUDE], a, b, 0)
  cases = [(RUBRIC, right, None), (RUBRIC, slipped, "marks"), (RUBRIC, swapped, "evidence"),
           (RUBRIC, against_counts, "verdict"), (RUBRIC, miscounted, "count"),
           (RUBRIC, garbled, "format"), (partial, tie_partial, "rubric"),
           (RUBRIC, right.replace("Winner: Response B", "Winner: Response C"), "format")]
  rubrics, judgments = [c[0] for c in cases], [c[1] for c in cases]
  for rubric, judgment, cause in cases:
    out = diagnostics.wrong_by([PAIR], [rubric], [judgment])
    assert set(out) == {f"wrong_by_{s}" for s in diagnostics.WRONG_BY}
    assert out == {k: float(k == f"wrong_by_{cause}") for k in out}, (cause, judgment)
  both = diagnostics.evaluate([PAIR] * len(cases), rubrics, judgments)
  wrong = sum(v for k, v in both.items() if k.startswith("wrong_by_"))
  assert wrong == pytest.approx(7 / 8)  # = 1 - accuracy: only `right` names B
  assert both["wrong_by_format"] == pytest.approx(2 / 8)
  assert both["rubric_exact"] == pytest.approx(7 / 8)  # reading's shares ride along


def test_a_faithful_judgment_of_an_exact_rubric_is_wrong_only_on_a_tie():
  instances = toy.make_instances(300, seed=7)
  pairs = [i.pair for i in instances]
  rubrics = [toy.rubric_text(i.constraints) for i in instances]
  # Every judgment names A: right where A is preferred; the lines are right, so a wrong one
  # contradicts its own counts (B meets more), never ties (the preferred meets more).
  judgments = [toy.judgment_text(i.constraints, i.response_a, i.response_b, 0)
               for i in instances]
  out = diagnostics.wrong_by(pairs, rubrics, judgments)
  assert out["wrong_by_verdict"] == pytest.approx(sum(i.label for i in instances) / 300)
  assert sum(out.values()) == out["wrong_by_verdict"] > 0.3
