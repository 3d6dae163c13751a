"""Reading model outputs: rubrics, judge verdicts and the judge's output format
(docs/method.md §2).

The parsers tolerate the surface noise that small and RL-trained models produce (markdown
emphasis and headings, "1)" numbering, preamble text, Qwen3 `<think>` blocks) but are strict
about the structure the rewards pay for, since a lenient format check is the first thing GRPO
learns to exploit.

Verdict rule, shared by `parse_verdict` and the judge format check: outside think blocks the
text must hold exactly one `Winner:` line (a line that starts with "Winner:" once emphasis is
removed; "the Winner: is unclear" in prose is not one), and it must name Response A or
Response B. Two Winner lines give no verdict even when they agree: the format demands exactly
one, and accepting repeats would let a judge hedge. So a well-formatted output always has a
verdict, and an output without a verdict is never well formatted.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from typing import Literal, Optional, Union, cast

HARD_RULE = "Hard Rule"
PRINCIPLE = "Principle"
VERDICTS = ("A", "B")
Verdict = Literal["A", "B"]

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.S)


def strip_think(text: str) -> str:
  """The answer without reasoning blocks, which are never graded.

  A lone `</think>` means the completion began inside a `<think>` the prompt opened, and a lone
  `<think>` means generation stopped mid-thought; both drop the reasoning side.
  """
  text = _THINK_BLOCK.sub("", text)
  return text.rsplit("</think>", 1)[-1].split("<think>", 1)[0]


def label_index(label: Union[int, str]) -> int:
  """0 when slot A wins, 1 when slot B wins, from either spelling of a label (docs/method.md
  §2)."""
  if isinstance(label, str) and label in VERDICTS:
    return VERDICTS.index(label)
  if isinstance(label, numbers.Integral) and not isinstance(label, bool) and label in (0, 1):
    return int(label)
  raise ValueError(f"label must be 0, 1, 'A' or 'B', got {label!r}")


# No criterion number, count or index in a model's output is longer than this; int() of a run of
# thousands of digits raises (Python's limit on int-from-str conversion), so longer ones are read
# as "no number" by `small_int` instead.
MAX_NUMBER_DIGITS = 9


def small_int(digits: str) -> int:
  """The value of a run of decimal digits matched in model text; -1 for one longer than
  MAX_NUMBER_DIGITS (a number no rubric, judgment or count uses; never an exception)."""
  return int(digits) if len(digits) <= MAX_NUMBER_DIGITS else -1


def _plain(line: str) -> str:
  """A line without emphasis, heading or quote marks, for matching structural labels only."""
  return line.replace("*", "").replace("_", "").strip().lstrip("#>").strip()


# --- rubrics -----------------------------------------------------------------------------------

_ITEM = re.compile(r"^\s*(?:[-•]\s*)?[*_]*\s*(\d+)\s*[*_]*\s*[.)](?!\d)[*_]*\s*(.*?)\s*$")
_TAG = re.compile(r"[*_]*\[\s*[*_]*\s*(hard\s+rules?|principles?)\s*[*_]*\s*\][*_]*", re.I)
_AFTER_LAST_TAG = re.compile(r"[\s*_.]*")
_STARTS_RIGHT = re.compile(r"The response\b")


@dataclasses.dataclass(frozen=True)
class Criterion:
  index: int  # the number the rubric gives the item; judge lines refer to it
  text: str  # the item without its number and tag
  tag: Optional[str]  # HARD_RULE or PRINCIPLE; None when the item carries no tag


@dataclasses.dataclass(frozen=True)
class Rubric:
  criteria: tuple[Criterion, ...]
  problems: tuple[str, ...] = ()  # why it breaks the docs/method.md §2 format; empty if not

  @property
  def well_formed(self) -> bool:
    return not self.problems

  def to_text(self) -> str:
    """The list alone (no preamble, no thinking), which is what the judge should be shown."""
    return "\n".join(f"{c.index}. {c.text}" + (f" [{c.tag}]" if c.tag else "")
                     for c in self.criteria)


def _canonical_tag(raw: str) -> str:
  return HARD_RULE if raw.lower().startswith("hard") else PRINCIPLE


def _split_items(text: str) -> list[tuple[int, str]]:
  """Numbered items with their bodies; an untagged item continues onto the lines right below it."""
  items: list[tuple[int, str]] = []
  open_item = False
  for line in strip_think(text).splitlines():
    match = _ITEM.match(line)
    if match:
      items.append((small_int(match.group(1)), match.group(2)))
      open_item = True
    elif not line.strip():
      open_item = False
    elif open_item and not _TAG.search(items[-1][1]):
      index, body = items[-1]
      items[-1] = (index, f"{body} {line.strip()}")
  return items


def _criterion(index: int, body: str) -> tuple[Criterion, list[str]]:
  tags = list(_TAG.finditer(body))
  problems = []
  if not tags:
    return Criterion(index, body.strip(), None), [f"item {index}: no [Hard Rule]/[Principle] tag"]
  last = tags[-1]
  if len(tags) > 1:
    problems.append(f"item {index}: more than one tag")
  if _AFTER_LAST_TAG.fullmatch(body, last.end()):
    text = body[:last.start()].strip()
  else:
    problems.append(f"item {index}: the tag is not at the end")
    text = (body[:last.start()] + body[last.end():]).strip()
  if not _STARTS_RIGHT.match(text.lstrip("*_ ")):
    problems.append(f"item {index}: does not start with 'The response'")
  return Criterion(index, text, _canonical_tag(last.group(1))), problems


def parse_rubric(text: str) -> Rubric:
  """Every numbered item of a generated rubric, and what keeps it from the docs/method.md §2
  format."""
  criteria, problems = [], []
  for index, body in _split_items(text):
    criterion, item_problems = _criterion(index, body)
    criteria.append(criterion)
    problems.extend(item_problems)
  if not criteria:
    return Rubric((), ("no numbered items",))
  numbers_seen = [c.index for c in criteria]
  if numbers_seen != list(range(1, len(criteria) + 1)):
    problems.append(f"numbering is not 1..{len(criteria)}: got {numbers_seen}")
  seen_principle = False
  for c in criteria:
    if c.tag == HARD_RULE and seen_principle:
      problems.append(f"item {c.index}: [Hard Rule] after a [Principle] (hard rules come first)")
    seen_principle = seen_principle or c.tag == PRINCIPLE
  return Rubric(tuple(criteria), tuple(problems))


def as_rubric(rubric: Union[Rubric, str]) -> Rubric:
  """Accepts either form wherever a rubric is an argument, parsing raw text once."""
  return rubric if isinstance(rubric, Rubric) else parse_rubric(rubric)


# --- verdicts ----------------------------------------------------------------------------------

_WINNER = re.compile(r"^(?:-\s*)?winner\s*:(.*)$", re.I)
_WINNER_VALUE = re.compile(r"response\s+([ab])\s*\.?", re.I)


def _winner_lines(lines: list[str]) -> list[tuple[int, str]]:
  """(line number, value) of every Winner line among plain lines."""
  return [(i, m.group(1).strip()) for i, line in enumerate(lines) if (m := _WINNER.match(line))]


def _winner_value(value: str) -> Optional[Verdict]:
  match = _WINNER_VALUE.fullmatch(value)
  return cast(Verdict, match.group(1).upper()) if match else None


def _plain_lines(text: str) -> list[str]:
  return [_plain(line) for line in strip_think(text).splitlines()]


def parse_verdict(text: str) -> Optional[Verdict]:
  """The verdict ("A" or "B") of the one Winner line; None for none, several or an invalid one."""
  winners = _winner_lines(_plain_lines(text))
  return _winner_value(winners[0][1]) if len(winners) == 1 else None


# --- judge output format -----------------------------------------------------------------------

_SECTIONS = {"compliance": "Compliance Check", "analysis": "Analysis", "final": "Final Judgment"}
_SECTION = re.compile(r"^-{2,}\s*(compliance\s+check|analysis|final\s+judge?ment)\s*-{2,}$", re.I)
_RESPONSE = re.compile(r"^(?:-\s*)?response\s+([ab])\s*:?$", re.I)
_GATEKEEPER = re.compile(r"^(?:-\s*)?identified\s+gatekeeper\s+criterion\s*:(.*)$", re.I)
_JUSTIFICATION = re.compile(r"^(?:-\s*)?justification\s*:\s*\S", re.I)
_CRITERION_LINE = re.compile(
    r"^(?:-\s*)?criterion\s+(\d+)\b\s*(?:\[\s*(hard\s+rules?|principles?)\s*\])?\s*:?(.*)$", re.I)
_HAS_JUSTIFICATION = re.compile(r"justification\s*:\s*\S", re.I)

Check = tuple[float, list[str]]  # (fraction of one requirement met, what is wrong)


def _anchors(lines: list[str]) -> dict[str, list[int]]:
  """Line numbers of each section header and of each response header."""
  found: dict[str, list[int]] = {k: [] for k in (*_SECTIONS, "A", "B")}
  for i, line in enumerate(lines):
    if m := _SECTION.match(line):
      found[m.group(1).split()[0].lower()].append(i)
    elif m := _RESPONSE.match(line):
      found[m.group(1).upper()].append(i)
  return found


class _Layout:
  """Where each part of a judge output sits. Regions run between whichever headers are there, so
  a lost header fails its own requirements without taking the later parts down with it."""

  def __init__(self, lines: list[str]):
    self.lines = lines
    self.anchors = _anchors(lines)
    self.first = {k: v[0] for k, v in self.anchors.items() if v}
    self._marks = sorted(self.first.values())

  def after(self, key: str) -> range:
    """From the line after `key`'s header to the next header of any kind."""
    start = self.first[key] + 1
    return range(start, next((m for m in self._marks if m >= start), len(self.lines)))

  def gatekeeper_region(self) -> range:
    if "compliance" in self.first:
      return self.after("compliance")
    return range(0, self._marks[0] if self._marks else len(self.lines))

  def final_region(self) -> range:
    if "final" in self.first:
      return self.after("final")
    return range(self._marks[-1] + 1 if self._marks else 0, len(self.lines))


def _section_checks(layout: _Layout) -> list[Check]:
  checks = []
  for key, title in _SECTIONS.items():
    n = len(layout.anchors[key])
    problem = f"'--- {title} ---' section: " + ("missing" if n == 0 else f"appears {n} times")
    checks.append((1.0, []) if n == 1 else (0.0, [problem]))
  positions = [layout.anchors[k] for k in _SECTIONS]
  ordered = all(len(p) == 1 for p in positions) and positions == sorted(positions)
  order = "section order: need Compliance Check, Analysis, Final Judgment, once each"
  checks.append((1.0, []) if ordered else (0.0, [order]))
  return checks


def _gatekeeper_check(layout: _Layout) -> Check:
  values = [m.group(1).strip() for i in layout.gatekeeper_region()
            if (m := _GATEKEEPER.match(layout.lines[i]))]
  name = "'Identified Gatekeeper Criterion:' line"
  if len(values) != 1:
    return 0.0, [f"{name}: {len(values)} in the Compliance Check section, need exactly one"]
  return (1.0, []) if values[0] else (0.0, [f"{name}: empty"])


def _block_header_check(layout: _Layout, slot: str) -> Check:
  name = f"'**Response {slot}:**' block"
  n = len(layout.anchors[slot])
  if n != 1:
    return 0.0, [f"{name}: " + ("missing" if n == 0 else f"appears {n} times")]
  at, first = layout.first[slot], layout.first
  before = [first[k] for k in ("analysis", "A") if k in first and k != slot]
  after = [first[k] for k in ("B", "final") if k in first and k != slot]
  if not max(before, default=-1) < at < min(after, default=len(layout.lines)):
    return 0.0, [f"{name}: out of place (Analysis section, Response A before Response B)"]
  return 1.0, []


def _criteria_check(layout: _Layout, slot: str, rubric: Rubric) -> Check:
  """Share of rubric criteria with exactly one correct line in the block; extra lines dilute it."""
  where = f"Response {slot}"
  if slot not in layout.first:
    return (0.0, [f"{where}: no block, so no criterion lines"]) if rubric.criteria else (1.0, [])
  lines_by_index: dict[int, list[tuple[Optional[str], str]]] = {}
  for i in layout.after(slot):
    if m := _CRITERION_LINE.match(layout.lines[i]):
      tag = _canonical_tag(m.group(2)) if m.group(2) else None
      lines_by_index.setdefault(small_int(m.group(1)), []).append((tag, m.group(3)))
  expected = {c.index: c.tag for c in rubric.criteria}
  extras = sorted(set(lines_by_index) - set(expected))
  problems = [f"{where}: extra line for Criterion {i}, not in the rubric" for i in extras]
  correct = 0
  for index, want in expected.items():
    found = lines_by_index.get(index, [])
    name = f"{where}: Criterion {index}"
    if len(found) != 1:
      problems.append(f"{name}: " + ("missing line" if not found else f"{len(found)} lines"))
      continue
    tag, rest = found[0]
    ok = True
    if want and tag != want:
      problems.append(f"{name}: tag [{tag}] should be [{want}]" if tag else
                      f"{name}: no [Hard Rule]/[Principle] tag")
      ok = False
    if not _HAS_JUSTIFICATION.search(rest):
      problems.append(f"{name}: no 'Justification:' text")
      ok = False
    correct += ok
  total = len(expected) + len(extras)
  return (correct / total if total else 1.0), problems


def _justification_check(layout: _Layout) -> Check:
  if any(_JUSTIFICATION.match(layout.lines[i]) for i in layout.final_region()):
    return 1.0, []
  return 0.0, ["overall 'Justification:' line: missing from the Final Judgment section"]


def _winner_check(layout: _Layout) -> Check:
  winners = _winner_lines(layout.lines)
  name = "'Winner:' line"
  if len(winners) != 1:
    return 0.0, [f"{name}: " + ("missing" if not winners else f"{len(winners)} lines, need one")]
  at, value = winners[0]
  if _winner_value(value) is None:
    return 0.0, [f"{name}: {value!r} is not 'Response A' or 'Response B'"]
  if at < layout.first.get("final", -1):
    return 0.0, [f"{name}: before the Final Judgment section"]
  return 1.0, []


def _judge_checks(text: str, rubric: Union[Rubric, str]) -> list[Check]:
  rubric = as_rubric(rubric)
  layout = _Layout(_plain_lines(text))
  return [*_section_checks(layout), _gatekeeper_check(layout),
          _block_header_check(layout, "A"), _block_header_check(layout, "B"),
          _criteria_check(layout, "A", rubric), _criteria_check(layout, "B", rubric),
          _justification_check(layout), _winner_check(layout)]


def judge_format_problems(text: str, rubric: Union[Rubric, str]) -> list[str]:
  """Every way the output departs from the docs/method.md §2 judge format, each naming the
  requirement."""
  return [p for _, problems in _judge_checks(text, rubric) for p in problems]


def judge_format_score(text: str, rubric: Union[Rubric, str]) -> float:
  """Mean over the 11 requirements of the share met, a denser signal than pass/fail.

  The requirements: each of the three sections once; the sections in order; one non-empty
  gatekeeper line; the Response A header; the Response B header; the criterion lines of A and of
  B (each the share of rubric criteria with exactly one line, right tag and a justification, over
  criteria plus extra lines); an overall justification; one valid Winner line in the final
  section. Optional lines of the released variant (`Gatekeeper Reasoning:`, `Aggregation
  Summary:`) and other free text are neither required nor penalised.
  """
  checks = _judge_checks(text, rubric)
  return sum(score for score, _ in checks) / len(checks)


def judge_format_ok(text: str, rubric: Union[Rubric, str]) -> bool:
  """True when every requirement of `judge_format_score` is fully met."""
  return not judge_format_problems(text, rubric)
