"""experiments/probe_judge_checks.py: the decision tokens it reads in a verifier judgment."""

import os
import sys

import pytest

from arm_jax import assets
from arm_jax.data.verifier_sft import judgment_text
from arm_jax.tokenizer import load_tokenizer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "experiments"))
from probe_judge_checks import decisions  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope="module")
def tokenizer():
  return load_tokenizer(assets.smollm2_gguf())


@pytest.mark.parametrize("follows_a, follows_b, winner", [
    ((True, False, True), (False, False, True), "A"),
    ((False,), (True,), "B"),
])
def test_each_hard_rule_check_and_the_winner_are_found_at_their_token(tokenizer, follows_a,
                                                                      follows_b, winner):
  descriptions = [f"Constraint number {i}, with: punctuation." for i in range(len(follows_a))]
  target = judgment_text(descriptions, follows_a, follows_b, winner)
  found = decisions(tokenizer, target)
  # One check per hard rule and response (principles are not decisions), then the winner.
  truths = ["Met" if ok else "Not" for ok in (*follows_a, *follows_b)] + [winner]
  assert [t for _, _, t in found] == truths
  assert [k for _, k, _ in found] == ["check"] * (len(truths) - 1) + ["winner"]
  ids = tokenizer.encode(target, add_special_tokens=False)
  assert [tokenizer.decode([ids[o]]) for o, _, _ in found] == [f" {t}" for t in truths]
