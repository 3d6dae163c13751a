"""Rewards from generated text (docs/method.md §4); only these floats enter the jitted update.

Judge: `R_j = R_acc + format_weight * R_fmt`, with R_acc = 1 when the parsed verdict matches
the label (no verdict counts as wrong) and R_fmt the format reward: "binary" (the paper's
default here, 1 for a valid trajectory), "graded" (`judge_format_score`, the share of format
requirements met) or "none" (the ablation that costs the paper 2.2 points).

Generator: `R_r = 1[verdict == label]` from the frozen judge's greedy output. Two shaping terms
are available and off by default, since the paper uses neither:
  validity = 1 if the rubric is well formed (parsing.parse_rubric) else 0, weighted by
    `validity_weight`;
  brevity = -max(0, n_criteria - brevity_target), weighted by `brevity_weight`: a penalty of
    `brevity_weight` per criterion beyond the target, none at or under it, because shorter
    rubrics are preferred only while the judge stays accurate.
Both terms are computed whenever a rubric is given (for logging) and only need one when their
weight is non-zero.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Union

import numpy as np

from arm_jax.parsing import (Rubric, as_rubric, judge_format_ok, judge_format_score,
                             label_index, parse_verdict)

FORMAT_REWARDS = ("binary", "graded", "none")
Label = Union[int, str]
RubricLike = Union[Rubric, str]


@dataclasses.dataclass(frozen=True)
class JudgeReward:
  accuracy: float  # R_acc
  format: float  # R_fmt, before weighting
  total: float  # accuracy + format_weight * format
  verdict: Optional[str]  # "A", "B" or None


@dataclasses.dataclass(frozen=True)
class GeneratorReward:
  correctness: float  # 1[verdict == label]
  validity: float  # 1 if the rubric is well formed; 0 without a rubric
  brevity: float  # -(criteria beyond brevity_target); 0 without a rubric
  total: float  # correctness + validity_weight * validity + brevity_weight * brevity
  verdict: Optional[str]


def _correct(verdict: Optional[str], label: Label) -> float:
  target = label_index(label)  # validated even when there is no verdict to compare
  return float(verdict is not None and label_index(verdict) == target)


def _format_term(text: str, rubric: Rubric, format_reward: str) -> float:
  if format_reward == "binary":
    return float(judge_format_ok(text, rubric))
  if format_reward == "graded":
    return judge_format_score(text, rubric)
  if format_reward == "none":
    return 0.0
  raise ValueError(f"format_reward must be one of {FORMAT_REWARDS}, got {format_reward!r}")


def judge_reward(text: str, rubric: RubricLike, label: Label, *, format_reward: str = "binary",
                 format_weight: float = 1.0) -> JudgeReward:
  """R_j for one judge completion; `rubric` is the one the judge was shown."""
  verdict = parse_verdict(text)
  accuracy = _correct(verdict, label)
  fmt = _format_term(text, as_rubric(rubric), format_reward)
  return JudgeReward(accuracy, fmt, accuracy + format_weight * fmt, verdict)


def generator_reward(judge_text: str, label: Label, *, rubric: Optional[RubricLike] = None,
                     validity_weight: float = 0.0, brevity_weight: float = 0.0,
                     brevity_target: int = 8) -> GeneratorReward:
  """R_r for one sampled rubric, from the frozen judge's output on it."""
  verdict = parse_verdict(judge_text)
  correctness = _correct(verdict, label)
  validity = brevity = 0.0
  if rubric is not None:
    parsed = as_rubric(rubric)
    validity = float(parsed.well_formed)
    brevity = -float(max(0, len(parsed.criteria) - brevity_target))
  elif validity_weight or brevity_weight:
    raise ValueError("validity_weight and brevity_weight need the rubric")
  total = correctness + validity_weight * validity + brevity_weight * brevity
  return GeneratorReward(correctness, validity, brevity, total, verdict)


def _check_lengths(**sequences: Sequence) -> None:
  lengths = {name: len(seq) for name, seq in sequences.items()}
  if len(set(lengths.values())) > 1:
    raise ValueError(f"batch lengths differ: {lengths}")


def _verdict_codes(verdicts: Sequence[Optional[str]]) -> np.ndarray:
  """0 = A, 1 = B, -1 = no verdict: position-bias and parse-rate metrics read these."""
  return np.array([-1 if v is None else label_index(v) for v in verdicts], np.int8)


def judge_rewards(texts: Sequence[str], rubrics: Sequence[RubricLike], labels: Sequence[Label],
                  **options) -> dict[str, np.ndarray]:
  """`judge_reward` over a batch (options as there): float32 accuracy, format and total, float32
  format_ok (1 = the full judge format, `judge_format_ok`, whatever format_reward pays: the
  format rate the logs report, also when the ablation turns the format reward off), and int8
  verdict codes (0 = A, 1 = B, -1 = none)."""
  _check_lengths(texts=texts, rubrics=rubrics, labels=labels)
  rubrics = [as_rubric(r) for r in rubrics]
  rewards = [judge_reward(t, r, y, **options) for t, r, y in zip(texts, rubrics, labels)]
  arrays = {k: np.array([getattr(r, k) for r in rewards], np.float32)
            for k in ("accuracy", "format", "total")}
  format_ok = np.array([judge_format_ok(t, r) for t, r in zip(texts, rubrics)], np.float32)
  return {**arrays, "format_ok": format_ok,
          "verdict": _verdict_codes([r.verdict for r in rewards])}


def generator_rewards(judge_texts: Sequence[str], labels: Sequence[Label], *,
                      rubrics: Optional[Sequence[RubricLike]] = None,
                      **options) -> dict[str, np.ndarray]:
  """`generator_reward` over a batch (options as there): float32 correctness, validity, brevity
  and total, and int8 verdict codes."""
  rubrics = [None] * len(judge_texts) if rubrics is None else rubrics
  _check_lengths(judge_texts=judge_texts, labels=labels, rubrics=rubrics)
  rewards = [generator_reward(t, y, rubric=r, **options)
             for t, y, r in zip(judge_texts, labels, rubrics)]
  arrays = {k: np.array([getattr(r, k) for r in rewards], np.float32)
            for k in ("correctness", "validity", "brevity", "total")}
  return {**arrays, "verdict": _verdict_codes([r.verdict for r in rewards])}
