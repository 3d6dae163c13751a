"""IFEval's checker as the labeller of a policy's pairs (arm_jax.downstream.checker): verdicts
from hand-checked responses, read by DPO's labelling and GRPO's reward as a judge's would be."""

import pytest

from arm_jax.data import ifeval
from arm_jax.downstream import dpo
from arm_jax.downstream.checker import CheckerLabeller
from arm_jax.downstream.reward_model import online_reward

pytest.importorskip("langdetect")

PROMPT = "Describe a lake. Use only lowercase letters and no commas."


@pytest.fixture(scope="module")
def labeller():
  return CheckerLabeller([ifeval.example(PROMPT, ["punctuation:no_comma",
                                                  "change_case:english_lowercase"], [{}, {}])])


def test_more_instructions_followed_wins_in_both_orders_and_a_tie_is_dropped(labeller):
  both = "the lake is calm and blue under the morning sky"  # follows 2 of 2
  one = "the lake is calm, blue and wide"  # lowercase, a comma: 1 of 2
  other = "The Lake is calm and blue"  # no comma, capitals: 1 of 2
  assert labeller.followed(PROMPT, both) == (2, 2)
  assert labeller.followed(PROMPT, one) == labeller.followed(PROMPT, other) == (1, 2)
  comparisons = labeller.compare([PROMPT] * 4, [both, one, one, one], [one, both, other, one])
  assert [(c.first, c.second) for c in comparisons] == [("A", "B"), ("B", "A"), ("A", "A"),
                                                         ("A", "A")]
  pairs = dpo.labeled(comparisons)
  assert (pairs.chosen, pairs.rejected) == ([both, both], [one, one])
  assert pairs.counts == {"kept": 2, "identical": 1, "unparseable": 0, "inconsistent": 1}
  assert [online_reward(c) for c in comparisons[:3]] == [1.0, 0.0, 0.5]
  assert comparisons[0].judgments[0] == "response a follows 2 of 2 instructions, response b 1"


def test_a_prompt_without_instructions_is_named(labeller):
  with pytest.raises(ValueError, match=r"prompt 'Another prompt' is not among the checker's 1"):
    labeller.compare(["Another prompt"], ["a"], ["b"])
  with pytest.raises(ValueError, match=r"1 prompts, 2 responses a"):
    labeller.compare([PROMPT], ["a", "b"], ["c"])
  with pytest.raises(ValueError, match=r"needs prompts"):
    CheckerLabeller([])
