"""Stage I data for the toy world: imperfect synthetic rubrics and judgments in the project formats.

They stand in for the paper's API-distilled SFT data, and are imperfect on purpose so that the
warm-started policies leave room for alternating RL:
  rubrics: with probability `imperfect_rate` a rubric drops one of the instruction's constraints
    or adds a distractor rule the instruction never states (each half the time);
  judgments: with probability `accuracy` a judgment is right (true per-criterion marks for the
    rubric shown, the labelled winner); otherwise it is consistently wrong: the two responses'
    marks are exchanged and the other response wins, the kind of position mix-up a weak judge
    makes. A judge that reads a faulty rubric faithfully can still be wrong, as in the real task.
Texts are built from `Constraint` values, never parsed back, so their correctness is by
construction; tests check them with arm_jax.parsing.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from typing import Optional, Sequence

import numpy as np

from arm_jax.parsing import parse_rubric
from arm_jax.prompts import Template, load_template, render_judge_prompt, render_rubric_prompt
from arm_jax.rl.sft import SFTExample
from arm_jax.toy.world import KINDS, LEXICON, MAX_COUNT, MIN_COUNT, Constraint, ToyInstance

TAG = "[Hard Rule]"  # every toy criterion is an explicit requirement


def template_path(kind: str) -> str:
  """The toy templates' file paths ("rubric" or "judge"), for configs and `load_template`."""
  name = {"rubric": "rubric_generator_toy", "judge": "judge_toy"}[kind]
  return str(importlib.resources.files("arm_jax") / "templates" / f"{name}.txt")


def templates() -> tuple[Template, Template]:
  """(rubric generator, judge) templates, short enough for a few-hundred-token context."""
  return (load_template(template_path("rubric"), "rubric"),
          load_template(template_path("judge"), "judge"))


# --- rubrics -----------------------------------------------------------------------------------

def rubric_text(criteria: Sequence[Constraint]) -> str:
  """A rubric in the §2 format: numbered, "The response ...", hard rules only."""
  return "\n".join(f"{i}. {c.criterion} {TAG}" for i, c in enumerate(criteria, 1))


def _distractor(instance: ToyInstance, rng: np.random.Generator) -> Constraint:
  """A plausible rule the instruction does not state: often about its topic, else random."""
  used = {c.word for c in instance.constraints} | {instance.topic}
  kind = str(rng.choice(KINDS))
  if kind in ("at_most", "at_least"):
    stated = {c.count for c in instance.constraints if c.kind == kind}
    return Constraint(kind, count=int(rng.choice([n for n in range(MIN_COUNT, MAX_COUNT + 1)
                                                  if n not in stated])))
  if kind == "include" and rng.random() < 0.5:
    return Constraint(kind, instance.topic)
  return Constraint(kind, str(rng.choice([w for w in LEXICON if w not in used])))


def synthetic_rubric(instance: ToyInstance, rng: np.random.Generator,
                     imperfect_rate: float = 0.3) -> tuple[Constraint, ...]:
  """The instruction's constraints in order; with probability imperfect_rate one is dropped or a
  distractor is inserted at a random place."""
  criteria = list(instance.constraints)
  if rng.random() >= imperfect_rate:
    return tuple(criteria)
  if rng.random() < 0.5:
    del criteria[int(rng.integers(len(criteria)))]
  else:
    criteria.insert(int(rng.integers(len(criteria) + 1)), _distractor(instance, rng))
  return tuple(criteria)


def rubric_coverage(instance: ToyInstance, rubric: str) -> tuple[float, float]:
  """(recall, precision) of a generated rubric's criteria against the instruction's constraints,
  by exact criterion text: a diagnostic of rubric quality that needs no judge."""
  wanted = {c.criterion for c in instance.constraints}
  got = {c.text.rstrip(". ") for c in parse_rubric(rubric).criteria}
  hits = len(wanted & got)
  return hits / len(wanted), (hits / len(got) if got else 0.0)


# --- judgments ---------------------------------------------------------------------------------

def judgment_text(marks_a: Sequence[bool], marks_b: Sequence[bool], winner: int) -> str:
  """A judge output in the §2 format: the first criterion that separates the responses is the
  gatekeeper, each criterion gets a yes/no line per response, and the final justification
  counts the yeses before the Winner line."""
  if len(marks_a) != len(marks_b):
    raise ValueError(f"{len(marks_a)} marks for A, {len(marks_b)} for B")
  gate = next((i for i, (a, b) in enumerate(zip(marks_a, marks_b), 1) if a != b), 1)
  lines = ["--- Compliance Check ---", f"Identified Gatekeeper Criterion: Criterion {gate}",
           "--- Analysis ---"]
  for slot, marks in (("A", marks_a), ("B", marks_b)):
    lines.append(f"**Response {slot}:**")
    lines += [f"- Criterion {i} {TAG}: Justification: {'yes' if m else 'no'}"
              for i, m in enumerate(marks, 1)]
  lines += ["--- Final Judgment ---",
            f"Justification: A meets {sum(marks_a)}, B meets {sum(marks_b)}.",
            f"Winner: Response {'AB'[winner]}"]
  return "\n".join(lines)


def synthetic_judgment(instance: ToyInstance, criteria: Sequence[Constraint],
                       rng: np.random.Generator, accuracy: float = 0.65) -> str:
  """Right with probability `accuracy`; otherwise marks exchanged between A and B and the
  unpreferred response named the winner."""
  words_a, words_b = instance.response_a.split(), instance.response_b.split()
  marks_a = [c.holds(words_a) for c in criteria]
  marks_b = [c.holds(words_b) for c in criteria]
  if rng.random() < accuracy:
    return judgment_text(marks_a, marks_b, instance.label)
  return judgment_text(marks_b, marks_a, 1 - instance.label)


# --- SFT examples ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class WarmStart:
  imperfect_rate: float = 0.3  # share of rubrics that drop a constraint or add a distractor
  judge_accuracy: float = 0.65  # share of judgments that are right
  seed: int = 0


def rubric_examples(instances: Sequence[ToyInstance], cfg: WarmStart = WarmStart(),
                    template: Optional[Template] = None) -> list[SFTExample]:
  """Rubric generator SFT: rendered request -> synthetic rubric."""
  template = template or templates()[0]
  rng = np.random.default_rng((cfg.seed, 0))
  return [SFTExample(render_rubric_prompt(template, inst.instruction),
                     rubric_text(synthetic_rubric(inst, rng, cfg.imperfect_rate)))
          for inst in instances]


def judge_examples(instances: Sequence[ToyInstance], cfg: WarmStart = WarmStart(),
                   template: Optional[Template] = None) -> list[SFTExample]:
  """Judge SFT: rendered (request, synthetic rubric, A, B) -> synthetic judgment. The rubrics come
  from the same imperfect distribution the warm-started generator learns, so the judge is
  trained on what it will be shown."""
  template = template or templates()[1]
  rng = np.random.default_rng((cfg.seed, 1))
  examples = []
  for inst in instances:
    criteria = synthetic_rubric(inst, rng, cfg.imperfect_rate)
    prompt = render_judge_prompt(template, inst.instruction, rubric_text(criteria),
                                 inst.response_a, inst.response_b)
    examples.append(SFTExample(prompt, synthetic_judgment(inst, criteria, rng,
                                                          cfg.judge_accuracy)))
  return examples
