"""The toy world's oracle for a policy (docs/method.md §6 on the toy): it knows the truth, so a
policy trained with the reward model is measured without the reward model.

- constraint_share: the share of all constraints of the instructions that the responses meet
  (world.satisfied, from the text alone; a response that is empty meets only "avoid" and
  "at_most");
- oracle_win_rate: how often a response meets more of its instruction's constraints than a
  rival response (e.g. the starting policy's), a tie counting one half.
Both read the instruction text (world.parse_instruction), so they take any toy prompt. `oracle`
gives both, the toy builder's policy_oracle (the policy job's eval.kind "oracle").
"""

from __future__ import annotations

from typing import Sequence

from arm_jax.toy import world


def _met(instruction: str, response: str) -> tuple[int, int]:
  _, constraints = world.parse_instruction(instruction)
  flags = world.satisfied(constraints, response)
  return sum(flags), len(flags)


def constraint_share(instructions: Sequence[str], responses: Sequence[str]) -> dict:
  """{"constraint_share", "all_met" (share of responses meeting every constraint),
  "constraints", "responses"}."""
  if len(instructions) != len(responses) or not instructions:
    raise ValueError(f"{len(instructions)} instructions and {len(responses)} responses: need "
                     "one response per instruction, at least one")
  met = [_met(i, r) for i, r in zip(instructions, responses)]
  total = sum(n for _, n in met)
  return dict(constraint_share=sum(m for m, _ in met) / total,
              all_met=sum(m == n for m, n in met) / len(met), constraints=total,
              responses=len(met))


def oracle_win_rate(instructions: Sequence[str], responses: Sequence[str],
                    rivals: Sequence[str]) -> float:
  """Share of instructions where the response meets more constraints than the rival's (ties
  count 1/2)."""
  if not len(instructions) == len(responses) == len(rivals) or not instructions:
    raise ValueError(f"{len(instructions)} instructions, {len(responses)} responses and "
                     f"{len(rivals)} rivals: need one of each per instruction")
  score = 0.0
  for i, r, o in zip(instructions, responses, rivals):
    mine, theirs = _met(i, r)[0], _met(i, o)[0]
    score += 1.0 if mine > theirs else 0.5 if mine == theirs else 0.0
  return score / len(instructions)


def oracle(instructions: Sequence[str], responses: Sequence[str],
           start_responses: Sequence[str]) -> dict:
  """constraint_share and all_met of the responses, and their win rate against the starting
  policy's responses to the same instructions."""
  return dict(constraint_share(instructions, responses),
              win_rate_vs_start=oracle_win_rate(instructions, responses, start_responses))
