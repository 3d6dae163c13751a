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
in every judge_ share.

`wrong_by` says why wrong judgments are wrong: each one is charged to the first step that
fails, in the order a judgment is written, as a share of all judgments (so the shares sum to
1 - judge_accuracy):

  wrong_by_format    a criterion line out of the toy format or restating no toy criterion, no
                     "A meets m, B meets n" line, or no verdict;
  wrong_by_evidence  an evidence tag is wrong;
  wrong_by_marks     evidence right, a yes / no wrong (the warm start's negation slip);
  wrong_by_count     the lines are right but m, n are not their yes counts;
  wrong_by_verdict   the counts differ and the verdict names the other response;
  wrong_by_rubric    a faithful judgment of an inexact rubric (the counts tie, or favour the
                     wrong response, because the rubric left out or added a rule);
  wrong_by_tie       the rest: a faithful judgment of an exact rubric whose counts tie.

Both are written into the toy's held-out eval records (`evaluate`, arm_jax.rl.heldout's
`diagnose` hook).
"""

from __future__ import annotations

import collections
import re
from typing import Sequence

from arm_jax.parsing import label_index, parse_rubric, parse_verdict, small_int
from arm_jax.core import PreferencePair
from arm_jax.toy.warmstart import WHERE, evidence
from arm_jax.toy.world import parse_criterion, parse_instruction

_COUNTS = re.compile(r"A meets (\d+), B meets (\d+)\.")
WRONG_BY = ("format", "evidence", "marks", "count", "verdict", "rubric", "tie")
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
      yield slot, small_int(number), restated, where or None, mark == "yes"


def _aligned(pairs: Sequence[PreferencePair], rubrics: Sequence[str], judgments: Sequence[str]):
  """(pair as shown, rubric, judgment) triples; misaligned inputs are refused, never cut."""
  if not len(pairs) == len(rubrics) == len(judgments):
    raise ValueError(f"{len(pairs)} pairs, {len(rubrics)} rubrics, {len(judgments)} judgments")
  return zip(pairs, rubrics, judgments)


def reading(pairs: Sequence[PreferencePair], rubrics: Sequence[str],
            judgments: Sequence[str]) -> dict[str, float]:
  """The shares above over aligned (pair as shown, rubric, judgment) triples."""
  counts = collections.Counter()
  for pair, rubric, judgment in _aligned(pairs, rubrics, judgments):
    _, constraints = parse_instruction(pair.instruction)
    stated = [parse_criterion(c.text.rstrip(". ")) for c in parse_rubric(rubric).criteria]
    counts["rubric_exact"] += set(stated) == set(constraints)
    responses = {"A": pair.response_a.split(), "B": pair.response_b.split()}
    for slot, number, restated, where, mark in _lines(judgment):
      c = parse_criterion("The response " + restated)
      counts["lines"] += 1
      counts["restated"] += (c is not None and 1 <= number <= len(stated)
                             and stated[number - 1] == c)
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


def _first_failure(pair: PreferencePair, rubric: str, judgment: str) -> str:
  """The first failing step (WRONG_BY) of a judgment whose verdict is wrong or missing."""
  _, constraints = parse_instruction(pair.instruction)
  verdict, counts = parse_verdict(judgment), _COUNTS.search(judgment)
  responses = {"A": pair.response_a.split(), "B": pair.response_b.split()}
  checks, yes = [], collections.Counter()
  for slot, _, restated, where, mark in _lines(judgment):
    c = parse_criterion("The response " + restated) if where is not None else None
    if c is None:
      return "format"
    checks.append((where == WHERE[evidence(c, responses["A"]), evidence(c, responses["B"])],
                   mark == c.holds(responses[slot])))
    yes[slot] += mark
  if verdict is None or counts is None or not checks:
    return "format"
  if not all(e for e, _ in checks):
    return "evidence"
  if not all(m for _, m in checks):
    return "marks"
  met = small_int(counts.group(1)), small_int(counts.group(2))
  if met != (yes["A"], yes["B"]):
    return "count"
  if met[0] != met[1] and "AB"[int(met[1] > met[0])] != verdict:
    return "verdict"
  stated = [parse_criterion(c.text.rstrip(". ")) for c in parse_rubric(rubric).criteria]
  return "rubric" if set(stated) != set(constraints) else "tie"


def wrong_by(pairs: Sequence[PreferencePair], rubrics: Sequence[str],
             judgments: Sequence[str]) -> dict[str, float]:
  """wrong_by_<step> for every step of WRONG_BY, as shares of all judgments."""
  counts = collections.Counter()
  for pair, rubric, judgment in _aligned(pairs, rubrics, judgments):
    verdict = parse_verdict(judgment)
    if verdict is None or label_index(verdict) != pair.label:
      counts[_first_failure(pair, rubric, judgment)] += 1
  return {f"wrong_by_{step}": counts[step] / max(len(pairs), 1) for step in WRONG_BY}


def evaluate(pairs: Sequence[PreferencePair], rubrics: Sequence[str],
             judgments: Sequence[str]) -> dict[str, float]:
  """`reading` and `wrong_by` together: the held-out eval hook."""
  return {**reading(pairs, rubrics, judgments), **wrong_by(pairs, rubrics, judgments)}
