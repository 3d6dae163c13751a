"""experiments/probe_judge_checks.py: the decision tokens it reads in a verifier judgment."""

import os
import sys

import pytest

from arm_jax import assets
from arm_jax.data.verifier_sft import judgment_text
from arm_jax.tokenizer import load_tokenizer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "experiments"))
from probe_judge_checks import (  # noqa: E402  pylint: disable=wrong-import-position
    decisions, read_check)


@pytest.fixture(scope="module")
def tokenizer():
  return load_tokenizer(assets.smollm2_gguf())


@pytest.mark.parametrize("follows_a, follows_b, winner", [
    ((True, False, True), (False, False, True), "A"),
    ((False,), (True,), "B"),
])
@pytest.mark.parametrize("with_evidence", [False, True])
def test_each_hard_rule_check_and_the_winner_are_found_at_their_token(tokenizer, follows_a,
                                                                      follows_b, winner,
                                                                      with_evidence):
  descriptions = [f"Constraint number {i}, with: punctuation." for i in range(len(follows_a))]
  found_a = [f'{i + 2} words in capitals: "OK", so "met"' for i in range(len(follows_a))]
  found_b = ['it ends with "... it is not met, so it is met"'] * len(follows_b)
  target = judgment_text(descriptions, follows_a, follows_b, winner,
                         *((found_a, found_b) if with_evidence else (None, None)))
  found = decisions(tokenizer, target)
  # One check per hard rule and response (principles are not decisions), then the winner.
  truths = ["Met" if ok else "Not" for ok in (*follows_a, *follows_b)] + [winner]
  assert [t for _, _, t, _ in found] == truths
  assert [k for _, k, _, _ in found] == ["check"] * (len(truths) - 1) + ["winner"]
  ids = tokenizer.encode(target, add_special_tokens=False)
  words = [t.lower() if with_evidence and t in ("Met", "Not") else t for t in truths]
  assert [tokenizer.decode([ids[o]]) for o, _, _, _ in found] == [f" {w}" for w in words]
  # The generation probe feeds the target up to each check's "Justification:".
  for _, kind, _, where in found[:-1]:
    assert kind == "check" and target[:where].endswith("[Hard Rule]: Justification:")


@pytest.mark.parametrize("text, expected", [
    (" Met: the response follows this instruction.", ("Met", 0, "")),
    (" Not met: the response does not follow this instruction.", ("Not", 0, "")),
    (' 3 sections marked SECTION X, so it is met.', ("Met", 38, "3 sections marked SECTION X")),
    (' A comma in "a, so it is met", so it is not met.',
     ("Not", 39, 'A comma in "a, so it is met"')),
    (" The response is fine.", (None, None, "")),
    (" Metropolis", (None, None, "")),
])
def test_a_written_check_line_is_read_for_its_result_and_evidence(text, expected):
  assert read_check(text) == expected
