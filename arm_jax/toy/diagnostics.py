"""Does the toy judge read? Step-by-step correctness of held-out rubrics and judgments.

judge_accuracy alone cannot tell a judge that reads the rubric and checks each response from one
that guesses the winner from surface features: both can score 0.6-0.7. The toy's ground truth
is in the instruction's text (world.parse_instruction) and every judgment line is local
(warmstart.judgment_text), so each step can be checked on its own:

  rubric_exact      share of rubrics whose criteria are exactly the instruction's constraints
                    (as a set; a dropped constraint or an added distractor is inexact);
  judge_restated    share of judgment criterion lines that restate the rubric's criterion of
                    the same number;
  judge_evidence    share of lines whose [A] / [B] / [both] / [none] is right for the criterion
                    the line restates;
  judge_marks       share of lines whose yes / no is right, for that response, under the
                    criterion the line restates; judge_marks_<kind> per kind ("avoid" shows the
                    warm start's negation slip being unlearned).

Criterion lines that restate no toy criterion, or that break the toy line format, count as wrong
in every judge_ share. Written into the toy's
held-out eval records (arm_jax.rl.heldout's `diagnose` hook).
"""

from __future__ import annotations

import collections
import re
from typing import Sequence

from arm_jax.parsing import parse_rubric
from arm_jax.rl.phases import PreferencePair
from arm_jax.toy.warmstart import WHERE, evidence
from arm_jax.toy.world import parse_criterion, parse_instruction

_BLOCK = re.compile(r"^\*\*Response ([AB]):\*\*$", re.M)
_LINE = re.compile(r"- Criterion (\d+) \[Hard Rule\]: Justification: (.*?)"
                   r"( \[(?:none|A|B|both)\])?: (yes|no)")


def _lines(judgment: str):
  """(slot, criterion number, restated text, evidence tag or None, mark) per criterion line; a
  "- Criterion" line out of the toy format comes as (slot, 0, "", None, None)."""
  blocks = _BLOCK.split(judgment)
  for slot, body in zip(blocks[1::2], blocks[2::2]):
    for line in body.splitlines():
      if not line.startswith("- Criterion"):
        continue
      m = _LINE.fullmatch(line)
      if m is None:
        yield slot, 0, "", None, None
        continue
      number, restated, where, mark = m.groups()
      yield slot, int(number), restated, where or None, mark == "yes"


def reading(pairs: Sequence[PreferencePair], rubrics: Sequence[str],
            judgments: Sequence[str]) -> dict[str, float]:
  """The shares above over aligned (pair as shown, rubric, judgment) triples."""
  if not len(pairs) == len(rubrics) == len(judgments):
    raise ValueError(f"{len(pairs)} pairs, {len(rubrics)} rubrics, {len(judgments)} judgments")
  counts = collections.Counter()
  for pair, rubric, judgment in zip(pairs, rubrics, judgments):
    _, constraints = parse_instruction(pair.instruction)
    stated = [parse_criterion(c.text.rstrip(". ")) for c in parse_rubric(rubric).criteria]
    counts["rubric_exact"] += set(stated) == set(constraints)
    responses = {"A": pair.response_a.split(), "B": pair.response_b.split()}
    for slot, number, restated, where, mark in _lines(judgment):
      c = parse_criterion("The response " + restated)
      counts["lines"] += 1
      counts["restated"] += c is not None and number <= len(stated) and stated[number - 1] == c
      if c is None:
        continue
      truth = WHERE[evidence(c, responses["A"]), evidence(c, responses["B"])]
      counts["evidence"] += where == truth
      counts["marks"] += mark == c.holds(responses[slot])
      counts[f"lines_{c.kind}"] += 1
      counts[f"marks_{c.kind}"] += mark == c.holds(responses[slot])
  lines = max(counts["lines"], 1)
  out = dict(rubric_exact=counts["rubric_exact"] / max(len(pairs), 1),
             judge_restated=counts["restated"] / lines, judge_evidence=counts["evidence"] / lines,
             judge_marks=counts["marks"] / lines)
  for key in sorted(k for k in counts if k.startswith("lines_")):
    kind = key[len("lines_"):]
    out[f"judge_marks_{kind}"] = counts[f"marks_{kind}"] / counts[key]
  return out
