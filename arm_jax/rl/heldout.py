"""Held-out judge accuracy during training: one greedy rubric per pair, then one greedy judgment
or `samples` sampled ones.

Each pair is shown in a random order fixed by (seed, index), so a judge that always answers
the same slot scores about 50%; each further sampled judgment of a pair draws the order again.
Averaging several sampled judgments per pair estimates the sampled judge's accuracy with less
noise than one: on the toy's 281 held-out pairs one judgment each gives a standard error of
about 2.5 points, and the same parameters measured 0.826 and 0.893 with two seeds. The full
benchmark evaluator (voting, position bias, tables) is arm_jax.evaluate; this is the cheap
number the training curves track after every round.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import numpy as np

from arm_jax.parsing import label_index, parse_verdict
from arm_jax.prompts import render_judge_prompt
from arm_jax.core import PreferencePair
from arm_jax.rl.phases import sample_rubrics
from arm_jax.rl.policy import Policy
from arm_jax.sampling import SamplingParams


def shown_order(pairs: Sequence[PreferencePair], seed: int,
                draw: int = 0) -> list[PreferencePair]:
  """The pairs, each swapped or not at random; `draw` > 0 gives further independent orders."""
  rng = np.random.default_rng((seed, 0x5EED) if draw == 0 else (seed, 0x5EED, draw))
  swaps = rng.random(len(pairs)) < 0.5
  return [p.swapped() if s else p for p, s in zip(pairs, swaps)]


def judge_accuracy(generator: Policy, judge: Policy, pairs: Sequence[PreferencePair], *,
                   seed: int, rubric_max_new_tokens: int, judge_max_new_tokens: int,
                   batch_size: int, judge_temperature: float = 0.0, samples: int = 1,
                   diagnose: Optional[Callable[[Sequence[PreferencePair], list[str], list[str]],
                                               dict[str, float]]] = None) -> dict[str, float]:
  """judge_accuracy (unparseable verdicts count as wrong), verdict_rate, pairs, judgments.

  Rubrics are greedy, one per pair (a rubric does not depend on the order). The judgment is
  greedy by default; judge_temperature > 0 samples `samples` judgments per pair (draw d shows
  the pair in order shown_order(..., draw=d) with key fold_in(key, d) for d > 0), measuring the
  sampled policy that GRPO trains; the figures average over all judgments. diagnose(pairs as
  shown, rubrics, judgments) adds its figures to the result (the toy's:
  arm_jax.toy.diagnostics), over every judgment.
  """
  if samples < 1 or (judge_temperature <= 0 and samples != 1):
    raise ValueError(f"samples={samples}: need 1 for a greedy judge, at least 1 when sampling")
  key = jax.random.key(seed)
  first = shown_order(pairs, seed)
  rubric_of = sample_rubrics(generator, first, SamplingParams(rubric_max_new_tokens, greedy=True),
                             key, batch_size)
  judge_params = (SamplingParams(judge_max_new_tokens, greedy=True) if judge_temperature <= 0
                  else SamplingParams(judge_max_new_tokens, temperature=judge_temperature))
  correct, parsed, shown, rubrics, judgments = 0, 0, [], [], []
  for draw in range(samples):
    order = first if draw == 0 else shown_order(pairs, seed, draw)
    draw_key = key if draw == 0 else jax.random.fold_in(key, draw)
    for start in range(0, len(order), batch_size):
      chunk = order[start:start + batch_size]
      chunk_rubrics = rubric_of[start:start + batch_size]
      prompts = judge.encode([
          render_judge_prompt(judge.template, p.instruction, r, p.response_a, p.response_b)
          for p, r in zip(chunk, chunk_rubrics)])
      _, texts = judge.generate(prompts, judge_params, jax.random.fold_in(draw_key, start))
      shown += chunk
      rubrics += chunk_rubrics
      judgments += texts
      for p, text in zip(chunk, texts):
        verdict = parse_verdict(text)
        parsed += verdict is not None
        correct += verdict is not None and label_index(verdict) == p.label
  n = max(len(shown), 1)
  result = dict(judge_accuracy=correct / n, verdict_rate=parsed / n, pairs=len(pairs),
                judgments=len(shown))
  if diagnose is not None:
    result.update(diagnose(shown, rubrics, judgments))
  return result
