"""The reward model as a component: a (rubric generator, judge) pair that compares responses.

`RewardModel.compare(prompts, responses_a, responses_b)` writes one greedy rubric per distinct
prompt (cached across calls, as the evaluator does), judges every pair in both orders under that
rubric with the project's sampler, and returns per pair the two verdicts in the paper's slot
convention: `first` judges (a in slot A, b in slot B), `second` judges (b in slot A, a in slot
B); each is "A", "B" or None (unparseable). Everything runs on the policies' own mesh, through
the jitted sampler; there is no reward server.

Two readings of a comparison (docs/method.md §6):
- `preference` (offline DPO labels): the pair is kept only when both orders name the same
  response; otherwise it is dropped with its reason: identical responses, an unparseable
  verdict, or order-inconsistent verdicts.
- `online_reward` (online GRPO, a rollout y against the greedy reference a0 with y as response
  a): 1/2 (1[y wins in slot A] + 1[y wins in slot B]), in {0, 0.5, 1}; an unparseable verdict
  wins nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import jax

from arm_jax.evaluation.journal import GenerationJournal, ScopedJournal
from arm_jax.evaluation.runner import Generation, JudgeRequest, policy_judge_fn, policy_rubric_fn
from arm_jax.parsing import parse_verdict
from arm_jax.rl.policy import Policy
from arm_jax.sampling import SamplingParams

KEPT, IDENTICAL, UNPARSEABLE, INCONSISTENT = "kept", "identical", "unparseable", "inconsistent"
OUTCOMES = (KEPT, IDENTICAL, UNPARSEABLE, INCONSISTENT)


@dataclasses.dataclass(frozen=True)
class Comparison:
  """One pair judged in both orders under one rubric."""
  prompt: str
  response_a: str
  response_b: str
  rubric: str
  first: Optional[str]  # verdict with a in slot A
  second: Optional[str]  # verdict with b in slot A
  judgments: tuple[str, str]  # the judge's texts, first and second order


def preference(c: Comparison) -> tuple[Optional[int], str]:
  """(0 when a is preferred, 1 when b is, or None; the outcome, one of OUTCOMES)."""
  if c.response_a == c.response_b:
    return None, IDENTICAL
  if c.first is None or c.second is None:
    return None, UNPARSEABLE
  a_first = c.first == "A"  # a is in slot A in the first order
  a_second = c.second == "B"  # and in slot B in the second
  if a_first != a_second:
    return None, INCONSISTENT
  return (0 if a_first else 1), KEPT


def online_reward(c: Comparison) -> float:
  """Response a's reward against response b (the reference): the share of the two orders it
  wins."""
  return 0.5 * ((c.first == "A") + (c.second == "B"))


class RewardModel:
  """A rubric generator and a judge (rl.policy.Policy each) used as a reward."""

  def __init__(self, generator: Policy, judge: Policy, *, rubric_max_new_tokens: int,
               judge_sampling: SamplingParams, batch_size: int, seed: int = 0):
    self.generator, self.judge = generator, judge
    self.rubric_max_new_tokens = rubric_max_new_tokens
    self.judge_sampling = judge_sampling
    self.batch_size = batch_size
    self._key = jax.random.key(seed)
    self._calls = 0
    self.rubrics: dict[str, Generation] = {}  # by prompt, for the model's lifetime
    # A job's generation journal (arm_jax.evaluation.journal): its sampled batches are kept
    # and a rerun reads them. The model's weights never change, so one scope per role.
    self.journal: Optional[GenerationJournal] = None

  def _scope(self, role: str) -> Optional[ScopedJournal]:
    return None if self.journal is None else self.journal.scoped(f"reward_model.{role}")

  def compare(self, prompts: Sequence[str], responses_a: Sequence[str],
              responses_b: Sequence[str], key: Optional[jax.Array] = None) -> list[Comparison]:
    """Both orders of every (prompt, a, b), one rubric per distinct prompt. The sampling key is
    `key`, or one drawn from the model's seed and a call counter (a resumable job passes its
    own, so a call's judgments do not depend on how many calls came before)."""
    if not len(prompts) == len(responses_a) == len(responses_b):
      raise ValueError(f"{len(prompts)} prompts, {len(responses_a)} responses a and "
                       f"{len(responses_b)} responses b: one of each per comparison")
    if not prompts:
      return []
    if key is None:
      key = jax.random.fold_in(self._key, self._calls)
      self._calls += 1
    missing = [p for p in dict.fromkeys(prompts) if p not in self.rubrics]
    if missing:
      rubric_fn = policy_rubric_fn(self.generator, self.rubric_max_new_tokens, self.batch_size,
                                   jax.random.fold_in(key, 0), self._scope("generator"))
      self.rubrics.update(zip(missing, rubric_fn(missing)))
    requests = []
    for p, a, b in zip(prompts, responses_a, responses_b):
      rubric = self.rubrics[p].text
      requests += [JudgeRequest(p, rubric, a, b), JudgeRequest(p, rubric, b, a)]
    judge_fn = policy_judge_fn(self.judge, self.judge_sampling, self.batch_size,
                               jax.random.fold_in(key, 1), self._scope("judge"))
    outputs = judge_fn(requests, 1)
    out = []
    for i, (p, a, b) in enumerate(zip(prompts, responses_a, responses_b)):
      first, second = outputs[2 * i][0].text, outputs[2 * i + 1][0].text
      out.append(Comparison(p, a, b, self.rubrics[p].text, parse_verdict(first),
                            parse_verdict(second), (first, second)))
    return out
