"""A policy on IFEval (docs/method.md §7, the downstream benchmark): greedy responses to the 541
prompts, scored by the offline checker (arm_jax.data.ifeval) the four ways the paper reports.

- prompt-level strict / loose: the share of prompts whose every instruction is followed;
- instruction-level strict / loose: the share of all instructions followed;
- average: the mean of those four (the paper's IFEval "avg");
- by kind: instruction-level strict and loose per instruction id (e.g. "punctuation:no_comma");
- per prompt: the strict and loose verdict of each of its instructions, in input order.
Strict checks the response as written; loose also accepts it without its first line, its last
line, both, or its asterisks. The checker's tokenizers are offline stand-ins (see
arm_jax.data.ifeval), so rare sentence-count edge cases can differ from the official scores.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

import jax

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
  return out


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
  """The paper's IFEval columns as a Markdown table (percentages)."""
  cols = ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose", "average")
  head = "| " + " | ".join(["prompt strict", "prompt loose", "instruction strict",
                            "instruction loose", "average"]) + " |"
  row = "| " + " | ".join(f"{100 * result[c]:.1f}" for c in cols) + " |"
  return "\n".join([head, "|" + "---|" * len(cols), row])
