"""Stage I data for the toy world: imperfect synthetic rubrics and judgments in the project formats.

They stand in for the paper's API-distilled SFT data, and are imperfect on purpose so that the
warm-started policies leave room for alternating RL:
  rubrics: with probability `imperfect_rate` a rubric drops one of the instruction's constraints
    or adds a distractor rule the instruction never states (each half the time);
  judgments: with probability 1 - `judge_accuracy` a judgment is consistently wrong: the two
    responses' evidence and marks are exchanged and the other response wins, the kind of
    position mix-up a weak judge makes; independently, with probability `negation_slip` it
    reads "does not use" as "uses" and names the winner its own marks give (the evidence stays
    right). Otherwise it is right: true per-criterion evidence and marks for the rubric shown,
    the labelled winner. A judge that reads a faulty rubric faithfully can still be wrong, as
    in the real task.
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
from arm_jax.core import SFTExample
from arm_jax.toy.world import (CONSTRAINT_WORDS, KINDS, MAX_COUNT, MIN_COUNT, Constraint,
                               ToyInstance)

TAG = "[Hard Rule]"  # every toy criterion is an explicit requirement


def template_path(kind: str) -> str:
  """The toy templates' file paths ("rubric", "judge" or "direct", the no-rubric judge), for
  configs and `load_template`."""
  name = {"rubric": "rubric_generator_toy", "judge": "judge_toy",
          "direct": "judge_direct_toy"}[kind]
  return str(importlib.resources.files("arm_jax") / "templates" / f"{name}.txt")


def templates() -> tuple[Template, Template]:
  """(rubric generator, judge) templates, short enough for a few-hundred-token context."""
  return (load_template(template_path("rubric"), "rubric"),
          load_template(template_path("judge"), "judge"))


# --- rubrics -----------------------------------------------------------------------------------

def rubric_text(criteria: Sequence[Constraint]) -> str:
  """A rubric in the docs/method.md §2 format: numbered, "The response ...", hard rules only."""
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
  return Constraint(kind, str(rng.choice([w for w in CONSTRAINT_WORDS if w not in used])))


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

# Which responses show a criterion's evidence, written right after the criterion's restated
# word: the judge decides it at that word, by matching the word against the two responses.
WHERE = {(False, False): " [none]", (True, False): " [A]", (False, True): " [B]",
         (True, True): " [both]"}


def evidence(criterion: Constraint, words: Sequence[str]) -> bool:
  """What a criterion line points at in one response: the word occurring (for "uses" and "does
  not use" alike), the first word being it ("starts with"), the last ("ends with"), or the
  length rule holding."""
  if criterion.kind in ("include", "avoid"):
    return criterion.word in words
  return criterion.holds(words)


# Which criterion a judgment's `Identified Gatekeeper Criterion` line names. "separating": the
# first whose marks differ, an answer that needs both responses read, written before the
# analysis that reads them; a judge that samples a wrong one writes the evidence that fits it
# (docs/results.md). "rubric": the rubric's first criterion, named from the rubric alone, as
# the paper's "most important objective criterion" is (docs/method.md §2).
GATEKEEPERS = ("separating", "rubric")


def judgment_marks(criteria: Sequence[Constraint], response_a: str, response_b: str,
                   swapped: bool = False, negation_slip: bool = False):
  """(evidence, marks) a judgment writes: evidence[i] = (A shows it, B shows it) for criterion
  i, marks = {"A": [...], "B": [...]}. swapped=True exchanges A's and B's evidence (a position
  mix-up, with the marks it implies); negation_slip=True marks "does not use" criteria as if
  they were "uses" (a dropped negation)."""
  found = [(evidence(c, response_a.split()), evidence(c, response_b.split())) for c in criteria]
  if swapped:
    found = [(b, a) for a, b in found]

  def mark(c: Constraint, seen: bool) -> bool:
    return not seen if c.kind == "avoid" and not negation_slip else seen

  return found, {slot: [mark(c, f[i]) for c, f in zip(criteria, found)]
                 for i, slot in enumerate("AB")}


def judgment_text(criteria: Sequence[Constraint], response_a: str, response_b: str, winner: int,
                  swapped: bool = False, negation_slip: bool = False,
                  gatekeeper: str = "separating") -> str:
  """A judge output in the docs/method.md §2 format for these criteria and responses, naming
  `winner`, with the evidence and marks of `judgment_marks`.

  Each criterion line's justification restates the criterion, says which responses show its
  evidence ([A], [B], [both] or [none]) and ends with this response's yes/no: every step is
  local, which is what lets a small decoder learn to judge. The gatekeeper (`GATEKEEPERS`) is
  the first criterion that separates the responses or the rubric's first, and the final
  justification counts the yeses.
  """
  if gatekeeper not in GATEKEEPERS:
    raise ValueError(f"gatekeeper={gatekeeper!r}; expected one of {sorted(GATEKEEPERS)}")
  found, marks = judgment_marks(criteria, response_a, response_b, swapped, negation_slip)
  gate = 1 if gatekeeper == "rubric" else next(
      (i for i, (a, b) in enumerate(zip(marks["A"], marks["B"]), 1) if a != b), 1)
  lines = ["--- Compliance Check ---", f"Identified Gatekeeper Criterion: Criterion {gate}",
           "--- Analysis ---"]
  for slot in "AB":
    lines.append(f"**Response {slot}:**")
    for i, (c, f, m) in enumerate(zip(criteria, found, marks[slot]), 1):
      restated = c.criterion[len("The response"):]
      lines.append(f"- Criterion {i} {TAG}: Justification:{restated}{WHERE[f]}: "
                   f"{'yes' if m else 'no'}")
  lines += ["--- Final Judgment ---",
            f"Justification: A meets {sum(marks['A'])}, B meets {sum(marks['B'])}.",
            f"Winner: Response {'AB'[winner]}"]
  return "\n".join(lines)


def synthetic_judgment(instance: ToyInstance, criteria: Sequence[Constraint],
                       rng: np.random.Generator, accuracy: float = 0.65,
                       negation_slip: float = 0.0, gatekeeper: str = "separating") -> str:
  """With probability 1 - `accuracy` the evidence of A and B is exchanged and the unpreferred
  response named the winner; independently, with probability `negation_slip` the judgment
  drops the negation of "does not use" criteria and names the winner its own marks give; when
  they tie it names Response A (a judge without the label falls back on position). `gatekeeper`
  says which criterion the gatekeeper line names (GATEKEEPERS)."""
  slip = bool(negation_slip) and rng.random() < negation_slip
  a, b = instance.response_a, instance.response_b
  if rng.random() >= accuracy:
    return judgment_text(criteria, a, b, 1 - instance.label, swapped=True, gatekeeper=gatekeeper)
  if not slip or not any(c.kind == "avoid" for c in criteria):  # nothing to slip on
    return judgment_text(criteria, a, b, instance.label, gatekeeper=gatekeeper)
  _, marks = judgment_marks(criteria, a, b, negation_slip=True)
  met = sum(marks["A"]), sum(marks["B"])
  winner = 0 if met[0] == met[1] else int(met[1] > met[0])
  return judgment_text(criteria, a, b, winner, negation_slip=True, gatekeeper=gatekeeper)


# --- SFT examples ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class WarmStart:
  imperfect_rate: float = 0.3  # share of rubrics that drop a constraint or add a distractor
  judge_accuracy: float = 0.65  # share of judgments without a position mix-up
  negation_slip: float = 0.0  # share of judgments that read "does not use" as "uses"
  gatekeeper: str = "separating"  # which criterion the gatekeeper line names (GATEKEEPERS)
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
    examples.append(SFTExample(prompt, synthetic_judgment(inst, criteria, rng, cfg.judge_accuracy,
                                                          cfg.negation_slip, cfg.gatekeeper)))
  return examples
