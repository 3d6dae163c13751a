"""IFEval's instruction checker in the reward model's place: the oracle labeller of a policy's
pairs and rollouts on verifiable prompts (docs/method.md §6; the upper bound a rubric reward
model is compared with when prompts carry their constraints, as arm_jax.data.synthetic_if's do).

`CheckerLabeller.compare` has RewardModel.compare's signature and returns the same Comparisons,
so DPO labelling (dpo.label_pairs, reward_model.preference) and the online GRPO reward
(reward_model.online_reward) read them unchanged:
- the response that follows more of the prompt's instructions (strict IFEval) wins in both
  orders: verdicts ("A", "B") when it is response a, ("B", "A") when it is response b;
- a tie is the two orders disagreeing, ("A", "A"): DPO drops the pair as inconsistent and GRPO's
  reward is 0.5, as for a judge that cannot tell the two apart.
The Comparison's rubric lists the instruction ids; each judgment says how many each response
follows.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from arm_jax.data import ifeval
from arm_jax.downstream.reward_model import Comparison


class CheckerLabeller:
  """Compares responses by how many of their prompt's verifiable instructions they follow."""

  def __init__(self, examples: Sequence[Any]):
    """`examples`: IFEval InputExamples (ifeval.read_prompts of a prompts file in IFEval's
    format); a prompt is looked up by its text."""
    self.examples = {e.prompt: e for e in examples}
    if not self.examples:
      raise ValueError("the checker needs prompts with their instructions; got none")
    self.rubrics: dict[str, Any] = {}  # RewardModel's cache, which a job saves; the checker's is empty

  def followed(self, prompt: str, response: str) -> tuple[int, int]:
    """(instructions of `prompt` that `response` follows, instructions)."""
    example = self.examples.get(prompt)
    if example is None:
      raise ValueError(f"prompt {prompt[:80]!r} is not among the checker's {len(self.examples)} "
                       "prompts: it has no instructions to check")
    follows = ifeval.follow_list(example, response)
    return sum(follows), len(follows)

  def compare(self, prompts: Sequence[str], responses_a: Sequence[str],
              responses_b: Sequence[str], key: Optional[Any] = None) -> list[Comparison]:  # noqa: ARG002  deterministic
    if not len(prompts) == len(responses_a) == len(responses_b):
      raise ValueError(f"{len(prompts)} prompts, {len(responses_a)} responses a and "
                       f"{len(responses_b)} responses b: one of each per comparison")
    out = []
    for p, a, b in zip(prompts, responses_a, responses_b):
      (fa, n), (fb, _) = self.followed(p, a), self.followed(p, b)
      first, second = ("A", "B") if fa > fb else ("B", "A") if fb > fa else ("A", "A")
      rubric = "\n".join(self.examples[p].instruction_id_list)
      text = f"response a follows {fa} of {n} instructions, response b {fb}"
      out.append(Comparison(p, a, b, rubric, first, second, (text, text)))
    return out
