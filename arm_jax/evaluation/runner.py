"""One system on one benchmark: rubrics once, judge every needed presentation, score every order.

The model calls are two callables, so the same loop runs a real (generator, judge) pair and the
fake judges of the tests:
  rubric_fn(instructions) -> one Generation per instruction (greedy, docs/method.md §5);
  judge_fn(requests, k) -> k Generations per JudgeRequest (request.rubric None: no rubric).
Each distinct instruction gets one rubric, kept in a cache that the caller may share across
benchmarks; every sample and both orders of its comparisons read that same rubric. A
presentation (example, slot A, slot B) is judged once even when several orders show it: Mixed
reuses the Ord-1 or Ord-2 judgment of each comparison when those orders run too, which is the
same distribution at no extra cost.

`policy_rubric_fn` / `policy_judge_fn` build the callables from arm_jax.rl.policy.Policy: prompts
rendered with the policy's template, sorted by length and cut into near-equal batches (fewer
compiled shapes, less padding), generated with the project's jitted sampler.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Optional, Sequence

import jax
import numpy as np

from arm_jax.evaluation import metrics
from arm_jax.evaluation.benchmarks import Example
from arm_jax.evaluation.journal import Entry, ScopedJournal
from arm_jax.parsing import parse_verdict
from arm_jax.prompts import render_direct_judge_prompt, render_judge_prompt, render_rubric_prompt
from arm_jax.rl.policy import Policy
from arm_jax.sampling import SamplingParams


@dataclasses.dataclass(frozen=True)
class Generation:
  text: str
  tokens: int  # emitted tokens, the stop token included
  seconds: float = 0.0  # this generation's share of its batch's wall time


@dataclasses.dataclass(frozen=True)
class JudgeRequest:
  instruction: str
  rubric: Optional[str]  # None: the direct judge, no rubric
  response_a: str
  response_b: str


RubricFn = Callable[[Sequence[str]], list[Generation]]
JudgeFn = Callable[[Sequence[JudgeRequest], int], list[list[Generation]]]


@dataclasses.dataclass
class BenchmarkRun:
  metrics: dict  # see evaluate_examples
  predictions: list[dict]  # one per (example, order), see evaluate_examples


def evaluate_examples(examples: Sequence[Example], *, judge_fn: JudgeFn,
                      rubric_fn: Optional[RubricFn] = None, orders: Sequence[str] = ("mixed",),
                      votes: int = 1, seed: int = 0,
                      rubric_cache: Optional[dict[str, Generation]] = None) -> BenchmarkRun:
  """Judges `examples` in each order and scores them (rules in arm_jax.evaluation.metrics).

  metrics: examples, best_of_n (how many), orders {order: metrics.summarize(...)},
  position_bias, rubric_tokens_mean (over this benchmark's instructions), judgment_tokens_mean,
  presentations (distinct (example, A, B) judged), judge_samples, seconds (this benchmark's
  rubric shares plus judge wall time, compilation included), seconds_per_100.
  predictions: id, benchmark, subset, order, instruction, candidates (the texts), preferred
  (its index), rubric (None for a direct judge), shown ([A, B] candidate indices per
  comparison), label, judgments, verdicts (per comparison, k each), votes, correct,
  voted_correct (None when k = 1). Self-contained, so that arm_jax.evaluation.view can show
  them without the data.
  """
  if votes < 1:
    raise ValueError(f"votes must be >= 1, got {votes}")
  if not examples:
    raise ValueError("no examples to evaluate")
  cache = {} if rubric_cache is None else rubric_cache
  rubric_seconds = 0.0
  rubrics: dict[str, Optional[Generation]] = {}
  if rubric_fn is not None:
    instructions = list(dict.fromkeys(e.instruction for e in examples))
    missing = [i for i in instructions if i not in cache]
    if missing:
      cache.update(zip(missing, rubric_fn(missing)))
    rubrics = {i: cache[i] for i in instructions}
    rubric_seconds = sum(g.seconds for g in rubrics.values())

  shown = {order: [metrics.shown_pairs(e.id, len(e.candidates), e.preferred, order, seed)
                   for e in examples] for order in orders}
  keys = list(dict.fromkeys((i, pair) for order in orders
                            for i, pairs in enumerate(shown[order]) for pair in pairs))
  requests = []
  for i, (a, b) in keys:
    e = examples[i]
    rubric = rubrics[e.instruction].text if rubric_fn is not None else None
    requests.append(JudgeRequest(e.instruction, rubric, e.candidates[a], e.candidates[b]))
  start = time.perf_counter()
  outputs = judge_fn(requests, votes)
  judge_seconds = time.perf_counter() - start
  if len(outputs) != len(requests) or any(len(o) != votes for o in outputs):
    raise ValueError(f"judge_fn returned {[len(o) for o in outputs]} samples for "
                     f"{len(requests)} requests x {votes}")
  judged = dict(zip(keys, outputs))

  by_order, predictions = {}, []
  for order in orders:
    scores = []
    for i, e in enumerate(examples):
      pairs = shown[order][i]
      gens = [judged[(i, pair)] for pair in pairs]
      score = metrics.ExampleScore(
          e.subset, tuple(metrics.slot_label(p, e.preferred) for p in pairs),
          tuple(tuple(parse_verdict(g.text) for g in sample) for sample in gens))
      scores.append(score)
      rubric = rubrics.get(e.instruction)
      predictions.append(dict(
          id=e.id, benchmark=e.benchmark, subset=e.subset, order=order,
          instruction=e.instruction, candidates=list(e.candidates), preferred=e.preferred,
          rubric=None if rubric is None else rubric.text, shown=[list(p) for p in pairs],
          label=list(score.labels), judgments=[[g.text for g in s] for s in gens],
          verdicts=[list(v) for v in score.verdicts], votes=list(score.votes),
          correct=score.correct, voted_correct=score.voted_correct if votes > 1 else None))
    by_order[order] = metrics.summarize(scores, votes)

  judgment_tokens = [g.tokens for o in outputs for g in o]
  seconds = rubric_seconds + judge_seconds
  return BenchmarkRun(dict(
      examples=len(examples), best_of_n=sum(e.best_of_n for e in examples), orders=by_order,
      position_bias=metrics.position_bias(by_order),
      rubric_tokens_mean=(float(np.mean([g.tokens for g in rubrics.values()]))
                          if rubrics else None),
      judgment_tokens_mean=float(np.mean(judgment_tokens)),
      presentations=len(requests), judge_samples=len(judgment_tokens),
      seconds=seconds, seconds_per_100=100 * seconds / len(examples)), predictions)


# --- callables backed by policies -----------------------------------------------------------------

def _even_batches(order: Sequence[int], batch_size: int) -> list[list[int]]:
  """`order` cut into ceil(n / batch_size) consecutive batches whose sizes differ by at most one."""
  n = len(order)
  size = math.ceil(n / math.ceil(n / batch_size))
  return [list(order[i:i + size]) for i in range(0, n, size)]


def generate_in_batches(policy: Policy, prompts: Sequence[Sequence[int]],
                        sampling: SamplingParams, key: jax.Array, batch_size: int,
                        num_samples: int,
                        journal: Optional[ScopedJournal] = None) -> list[list[Generation]]:
  """num_samples Generations per prompt (token ids), in the prompts' order: sorted by length and
  cut into near-equal batches, each padded to one size with a repeated prompt (its outputs
  dropped) so that each length bucket compiles once. With a journal (arm_jax.evaluation.journal)
  a batch it holds is read instead of sampled (its recorded seconds kept) and each sampled batch
  is added to it."""
  by_length = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
  batches = _even_batches(by_length, batch_size)
  size = len(batches[0])
  out: list[list[Generation]] = [[] for _ in prompts]
  for b, batch in enumerate(batches):
    rows = [prompts[i] for i in batch] + [prompts[batch[0]]] * (size - len(batch))
    batch_key = jax.random.fold_in(key, b)
    name = None if journal is None else journal.key(rows, sampling, batch_key, num_samples)
    entry = None if journal is None else journal.get(name)
    if entry is None:
      start = time.perf_counter()
      sample, texts = policy.generate(rows, sampling, batch_key, num_samples)
      entry = Entry(list(texts), [int(x) for x in sample.lengths], time.perf_counter() - start)
      if journal is not None:
        journal.put(name, entry)
    share = entry.seconds / (len(batch) * num_samples)
    for j, i in enumerate(batch):
      for s in range(j * num_samples, (j + 1) * num_samples):
        out[i].append(Generation(entry.texts[s], entry.lengths[s], share))
  return out


def policy_rubric_fn(generator: Policy, max_new_tokens: int, batch_size: int,
                     key: jax.Array, journal: Optional[ScopedJournal] = None) -> RubricFn:
  """Greedy rubrics from the generator's template (docs/method.md §5); `journal`: see
  generate_in_batches."""
  greedy = SamplingParams(max_new_tokens=max_new_tokens, greedy=True)

  def rubric_fn(instructions: Sequence[str]) -> list[Generation]:
    prompts = generator.encode([render_rubric_prompt(generator.template, i)
                                for i in instructions])
    return [g[0] for g in generate_in_batches(generator, prompts, greedy, key, batch_size, 1,
                                              journal)]

  return rubric_fn


def policy_judge_fn(judge: Policy, sampling: SamplingParams, batch_size: int,
                    key: jax.Array, journal: Optional[ScopedJournal] = None) -> JudgeFn:
  """Judgments from the judge's template: the rubric judge, or the direct judge when its
  template is of kind "direct" (requests then carry no rubric). `journal`: see
  generate_in_batches."""

  def render(r: JudgeRequest) -> str:
    if r.rubric is None:
      return render_direct_judge_prompt(judge.template, r.instruction, r.response_a,
                                        r.response_b)
    return render_judge_prompt(judge.template, r.instruction, r.rubric, r.response_a,
                               r.response_b)

  def judge_fn(requests: Sequence[JudgeRequest], k: int) -> list[list[Generation]]:
    if k > 1 and sampling.greedy:
      raise ValueError(f"voting over {k} judge samples needs sampling: greedy samples are "
                       "identical; set judge.temperature > 0")
    prompts = judge.encode([render(r) for r in requests])
    return generate_in_batches(judge, prompts, sampling, key, batch_size, k, journal)

  return judge_fn
