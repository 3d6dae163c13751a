"""A policy on IFEval (docs/method.md §7, the downstream benchmark): greedy responses to the 541
prompts, scored by the offline checker (arm_jax.data.ifeval) the four ways the paper reports.

- prompt-level strict / loose: the share of prompts whose every instruction is followed;
- instruction-level strict / loose: the share of all instructions followed;
- average: the mean of those four (the paper's IFEval "avg");
- by kind: instruction-level strict and loose per instruction id (e.g. "punctuation:no_comma");
- per prompt: the strict and loose verdict of each of its instructions, in input order;
- intervals: a percentile bootstrap over prompts for each of the five figures (`bootstrap`), and
  for the difference between two policies scored on the same prompts (`paired_bootstrap`).
  Resampling prompts, not instructions, keeps a prompt's instructions together (they share one
  response), so instruction-level intervals are ratios of resampled sums.
Strict checks the response as written; loose also accepts it without its first line, its last
line, both, or its asterisks. The checker's tokenizers are offline stand-ins (see
arm_jax.data.ifeval), so rare sentence-count edge cases can differ from the official scores.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional, Sequence

import jax
import numpy as np

from arm_jax.data import ifeval
from arm_jax.evaluation.runner import generate_in_batches
from arm_jax.rl.policy import Policy
from arm_jax.sampling import SamplingParams


@dataclasses.dataclass(frozen=True)
class Response:
  text: str
  tokens: int  # emitted, the stop token included
  truncated: bool  # reached max_new_tokens (a stop token exactly at the limit counts too)


def score(inputs: Sequence[Any], responses: Sequence[str]) -> dict:
  """The four IFEval accuracies, their average and per-kind instruction accuracies."""
  if len(inputs) != len(responses):
    raise ValueError(f"{len(inputs)} IFEval prompts but {len(responses)} responses")
  if not inputs:
    raise ValueError("no IFEval prompts to score")
  prompts = {"strict": [], "loose": []}
  instructions = {"strict": [], "loose": []}
  kinds: dict[str, dict[str, list[bool]]] = {}
  per_prompt = []
  for inp, response in zip(inputs, responses):
    per_prompt.append({})
    for mode, follow in (("strict", ifeval.follow_list), ("loose", ifeval.follow_list_loose)):
      followed = follow(inp, response)
      per_prompt[-1][mode] = followed
      prompts[mode].append(all(followed))
      instructions[mode] += followed
      for kind, ok in zip(inp.instruction_id_list, followed):
        kinds.setdefault(kind, {"strict": [], "loose": []})[mode].append(ok)
  mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
  out = dict(prompt_strict=mean(prompts["strict"]), prompt_loose=mean(prompts["loose"]),
             instruction_strict=mean(instructions["strict"]),
             instruction_loose=mean(instructions["loose"]),
             prompts=len(inputs), instructions=len(instructions["strict"]),
             empty_responses=sum(not r.strip() for r in responses))
  out["average"] = (out["prompt_strict"] + out["prompt_loose"] + out["instruction_strict"] +
                    out["instruction_loose"]) / 4
  out["by_kind"] = {k: dict(n=len(v["strict"]), strict=mean(v["strict"]),
                            loose=mean(v["loose"])) for k, v in sorted(kinds.items())}
  out["per_prompt"] = per_prompt
  out["ci"] = bootstrap(per_prompt)
  return out


FIGURES = ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose", "average")


def _counts(per_prompt: Sequence[dict]) -> np.ndarray:
  """[prompts, 6]: prompt strict/loose (0/1), instructions followed strict/loose, instructions,
  and 1 (the prompt itself); any resample's figures are ratios of these columns' sums."""
  if not per_prompt:
    raise ValueError("no scored prompts to bootstrap")
  rows = []
  for i, p in enumerate(per_prompt):
    if not p["strict"] or len(p["strict"]) != len(p["loose"]):
      raise ValueError(f"per_prompt[{i}] has {len(p['strict'])} strict and {len(p['loose'])} "
                       "loose verdicts; expected the same number, at least one")
    rows.append((all(p["strict"]), all(p["loose"]), sum(p["strict"]), sum(p["loose"]),
                 len(p["strict"]), 1))
  return np.asarray(rows, np.float64)


def _figures(sums: np.ndarray) -> np.ndarray:
  """[..., 6] column sums -> [..., 5] FIGURES."""
  ps, pl = sums[..., 0] / sums[..., 5], sums[..., 1] / sums[..., 5]
  is_, il = sums[..., 2] / sums[..., 4], sums[..., 3] / sums[..., 4]
  return np.stack([ps, pl, is_, il, (ps + pl + is_ + il) / 4], axis=-1)


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
  """[resamples, n] prompt indices drawn with replacement (numpy's PCG64 from `seed`)."""
  return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _interval(stats: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
  tail = 100 * (1 - level) / 2
  return np.percentile(stats, tail, axis=0), np.percentile(stats, 100 - tail, axis=0)


def bootstrap(per_prompt: Sequence[dict], *, resamples: int = 1000, level: float = 0.95,
              seed: int = 0) -> dict:
  """{figure: [low, high]}: percentile intervals of each figure over prompts resampled with
  replacement, plus the settings used."""
  counts = _counts(per_prompt)
  idx = resample_indices(len(counts), resamples, seed)
  low, high = _interval(_figures(counts[idx].sum(axis=1)), level)
  out = {f: [float(lo), float(hi)] for f, lo, hi in zip(FIGURES, low, high)}
  return dict(out, level=level, resamples=resamples, seed=seed, unit="prompt")


def paired_bootstrap(per_prompt: Sequence[dict], baseline: Sequence[dict], *,
                     resamples: int = 1000, level: float = 0.95, seed: int = 0,
                     keys: Optional[tuple[Sequence[Any], Sequence[Any]]] = None) -> dict:
  """{figure: {"difference", "low", "high"}}: `per_prompt` minus `baseline` (two policies on the
  same prompts, in the same order; `keys`, when given, must agree) with a percentile interval
  from resampling prompts jointly, so that the prompts' shared difficulty cancels."""
  if len(per_prompt) != len(baseline):
    raise ValueError(f"paired bootstrap: {len(per_prompt)} prompts against {len(baseline)}; "
                     "the two policies must be scored on the same prompts")
  if keys is not None and list(keys[0]) != list(keys[1]):
    bad = next(i for i, (a, b) in enumerate(zip(*keys)) if a != b) if (
        len(keys[0]) == len(keys[1])) else min(len(keys[0]), len(keys[1]))
    raise ValueError(f"paired bootstrap: the prompts differ first at position {bad}")
  a, b = _counts(per_prompt), _counts(baseline)
  if not np.array_equal(a[:, 4], b[:, 4]):
    bad = int(np.flatnonzero(a[:, 4] != b[:, 4])[0])
    raise ValueError(f"paired bootstrap: prompt {bad} has {int(a[bad, 4])} instructions in one "
                     f"result and {int(b[bad, 4])} in the other; not the same prompts")
  idx = resample_indices(len(a), resamples, seed)
  diffs = _figures(a[idx].sum(axis=1)) - _figures(b[idx].sum(axis=1))
  low, high = _interval(diffs, level)
  point = _figures(a.sum(axis=0)) - _figures(b.sum(axis=0))
  out = {f: dict(difference=float(d), low=float(lo), high=float(hi))
         for f, d, lo, hi in zip(FIGURES, point, low, high)}
  return dict(out, level=level, resamples=resamples, seed=seed, unit="prompt")


def generate(policy: Policy, prompts: Sequence[str], *, max_new_tokens: int,
             batch_size: int, seed: int = 0) -> tuple[list[Response], float]:
  """Greedy responses, each prompt one user turn of the policy's chat template; and seconds."""
  start = time.perf_counter()
  greedy = SamplingParams(max_new_tokens=max_new_tokens, greedy=True)
  out = generate_in_batches(policy, policy.encode(prompts), greedy, jax.random.key(seed),
                            batch_size, 1)
  responses = [Response(g.text, g.tokens, truncated=g.tokens >= max_new_tokens) for (g,) in out]
  return responses, time.perf_counter() - start


def table(result: dict) -> str:
  """The paper's IFEval columns as a Markdown table (percentages; with the result's bootstrap
  intervals, a second row gives them)."""
  head = "| " + " | ".join(["prompt strict", "prompt loose", "instruction strict",
                            "instruction loose", "average"]) + " |"
  rows = [head, "|" + "---|" * len(FIGURES),
          "| " + " | ".join(f"{100 * result[c]:.1f}" for c in FIGURES) + " |"]
  if result.get("ci"):
    ci = result["ci"]
    rows.append("| " + " | ".join(f"[{100 * ci[c][0]:.1f}, {100 * ci[c][1]:.1f}]"
                                  for c in FIGURES) + " |")
  return "\n".join(rows)
