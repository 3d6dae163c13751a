"""A policy's IFEval scores (arm_jax.evaluation.ifeval_policy) against hand-counted ones, on
hand-made prompts whose instructions the offline checker decides without ambiguity."""

import pytest

from arm_jax.data import ifeval
from arm_jax.evaluation import ifeval_policy

LOWER = "change_case:english_lowercase"
NO_COMMA = "punctuation:no_comma"
LOWER_TEXT = ("this answer is written entirely in lowercase letters and it explains the plan "
              "for the garden in plain english")


@pytest.fixture(scope="module")
def scored():
  inputs = [ifeval.example("p1", [NO_COMMA, LOWER], [{}, {}], key=1),
            ifeval.example("p2", [NO_COMMA], [{}], key=2),
            ifeval.example("p3", [NO_COMMA], [{}], key=3),
            ifeval.example("p4", [LOWER, NO_COMMA], [{}, {}], key=4)]
  responses = [LOWER_TEXT,  # both followed
               "Sure, here it is",  # the comma stays in every loose variant
               "Intro, then\nthe garden plan has no commas at all\nBye, now",  # loose only
               LOWER_TEXT + ", with a comma"]  # lowercase yes, no comma no
  return ifeval_policy.score(inputs, responses)


def test_prompt_and_instruction_levels_strict_and_loose(scored):
  # Prompts: strict p1 only; loose p1 and p3. Instructions (6): strict p1 x2 + p4's lowercase;
  # loose adds p3's.
  assert (scored["prompt_strict"], scored["prompt_loose"]) == (0.25, 0.5)
  assert scored["instruction_strict"] == pytest.approx(3 / 6)
  assert scored["instruction_loose"] == pytest.approx(4 / 6)
  assert scored["average"] == pytest.approx((0.25 + 0.5 + 3 / 6 + 4 / 6) / 4)
  assert (scored["prompts"], scored["instructions"], scored["empty_responses"]) == (4, 6, 0)


def test_accuracy_by_instruction_kind(scored):
  assert scored["by_kind"] == {
      LOWER: dict(n=2, strict=1.0, loose=1.0),
      NO_COMMA: dict(n=4, strict=0.25, loose=0.5)}


def test_mismatched_counts_are_an_error():
  with pytest.raises(ValueError, match="1 IFEval prompts but 0 responses"):
    ifeval_policy.score([ifeval.example("p", [NO_COMMA], [{}])], [])


def test_table_has_the_papers_columns(scored):
  lines = ifeval_policy.table(scored).splitlines()
  assert lines[0] == ("| prompt strict | prompt loose | instruction strict | instruction loose "
                      "| average |")
  assert lines[2] == "| 25.0 | 50.0 | 50.0 | 66.7 | 47.9 |"
