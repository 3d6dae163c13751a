"""Held-out judge accuracy during training: one greedy rubric, one greedy judgment per pair.

Each pair is shown in a random order fixed by (seed, index), so a judge that always answers
the same slot scores about 50%. The full benchmark evaluator (voting, position bias, tables) is
arm_jax.evaluate; this is the cheap number the training curves track after every round.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import numpy as np

from arm_jax.parsing import label_index, parse_verdict
from arm_jax.prompts import render_judge_prompt
from arm_jax.rl.phases import PreferencePair, sample_rubrics
from arm_jax.rl.policy import Policy
from arm_jax.sampling import SamplingParams


def shown_order(pairs: Sequence[PreferencePair], seed: int) -> list[PreferencePair]:
  swaps = np.random.default_rng((seed, 0x5EED)).random(len(pairs)) < 0.5
  return [p.swapped() if s else p for p, s in zip(pairs, swaps)]


def judge_accuracy(generator: Policy, judge: Policy, pairs: Sequence[PreferencePair], *,
                   seed: int, rubric_max_new_tokens: int, judge_max_new_tokens: int,
                   batch_size: int, judge_temperature: float = 0.0,
                   diagnose: Optional[Callable[[Sequence[PreferencePair], list[str], list[str]],
                                               dict[str, float]]] = None) -> dict[str, float]:
  """judge_accuracy (unparseable verdicts count as wrong), verdict_rate, pairs.

  Rubrics are greedy. The judgment is greedy by default; judge_temperature > 0 samples it
  (key fixed by seed), measuring the sampled policy that GRPO trains. diagnose(pairs as shown,
  rubrics, judgments) adds its figures to the result (the toy's: arm_jax.toy.diagnostics).
  """
  shown = shown_order(pairs, seed)
  key = jax.random.key(seed)
  rubrics = sample_rubrics(generator, shown, SamplingParams(rubric_max_new_tokens, greedy=True),
                           key, batch_size)
  greedy = (SamplingParams(judge_max_new_tokens, greedy=True) if judge_temperature <= 0 else
            SamplingParams(judge_max_new_tokens, temperature=judge_temperature))
  correct, parsed, judgments = 0, 0, []
  for start in range(0, len(shown), batch_size):
    chunk = shown[start:start + batch_size]
    prompts = judge.encode([
        render_judge_prompt(judge.template, p.instruction, r, p.response_a, p.response_b)
        for p, r in zip(chunk, rubrics[start:start + batch_size])])
    _, texts = judge.generate(prompts, greedy, jax.random.fold_in(key, start))
    judgments += texts
    for p, text in zip(chunk, texts):
      verdict = parse_verdict(text)
      parsed += verdict is not None
      correct += verdict is not None and label_index(verdict) == p.label
  n = max(len(shown), 1)
  result = dict(judge_accuracy=correct / n, verdict_rate=parsed / n, pairs=len(shown))
  if diagnose is not None:
    result.update(diagnose(shown, rubrics, judgments))
  return result
