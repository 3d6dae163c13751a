"""Prompt templates for the rubric generator and the judge, rendered to user-message text.

Templates are data (docs/method.md §2): a shipped name ("rubric_generator", "judge", and the
"_compact" variants for ~135M models with short context) or the path of a user file, so the
exact prompts of released checkpoints drop in unchanged. A third kind, "direct", is the
evaluation baseline that judges without a rubric ("judge_direct"): same `Winner:` line, so the
same verdict parser reads it.

Template syntax is the named-field subset of `str.format`, which is what released Rubric-RM
prompts use: `{instruction}` is a field, `{{` and `}}` are literal braces. Rendering is one
regex pass that inserts each value verbatim, so braces inside instructions, rubrics or
responses (code, JSON, `{{x}}`) are never re-read as fields. A template must hold exactly the
fields of its kind; a missing or unknown one is an error that names it. A file's trailing
newlines are dropped. Chat formatting is left to the tokenizer's `apply_chat_template`
(Qwen3 with `enable_thinking=False`); `as_chat` builds the messages it takes.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import re
from typing import Optional, Union

from arm_jax.parsing import label_index

FIELDS = {
    "rubric": frozenset({"instruction"}),
    "judge": frozenset({"instruction", "rubric", "response_a", "response_b"}),
    "direct": frozenset({"instruction", "response_a", "response_b"}),
}
SHIPPED = ("rubric_generator", "rubric_generator_compact", "judge", "judge_compact",
           "judge_direct")

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_]\w*)\}")


@dataclasses.dataclass(frozen=True)
class Template:
  text: str
  source: str = "<string>"  # shipped name or file path, quoted in errors

  @property
  def fields(self) -> frozenset[str]:
    return frozenset(m.group(1) for m in _TOKEN.finditer(self.text) if m.group(1))


def _check_fields(template: Template, kind: str) -> None:
  want, have = FIELDS[kind], template.fields
  missing, unknown = sorted(want - have), sorted(have - want)
  if missing or unknown:
    parts = [f"missing placeholder(s) {', '.join('{%s}' % f for f in missing)}"] if missing else []
    if unknown:
      parts.append(f"unknown placeholder(s) {', '.join('{%s}' % f for f in unknown)}")
    raise ValueError(f"{kind} template {template.source}: {'; '.join(parts)} "
                     f"(a {kind} template takes {', '.join(sorted(want))})")


def _shipped_kind(name: str) -> str:
  if name.startswith("rubric"):
    return "rubric"
  return "direct" if name.startswith("judge_direct") else "judge"


def load_template(name_or_path: str, kind: Optional[str] = None) -> Template:
  """A shipped template by name (names win over same-named files), or a user file. `kind`
  ("rubric", "judge" or "direct") checks the fields now rather than at the first render;
  shipped names imply their kind."""
  if kind is not None and kind not in FIELDS:
    raise ValueError(f"kind must be one of {sorted(FIELDS)}, got {kind!r}")
  if name_or_path in SHIPPED:
    resource = importlib.resources.files("arm_jax") / "templates" / f"{name_or_path}.txt"
    template = Template(resource.read_text(encoding="utf-8").rstrip("\n"), name_or_path)
    kind = kind or _shipped_kind(name_or_path)
  elif os.path.isfile(name_or_path):
    with open(name_or_path, encoding="utf-8") as f:
      template = Template(f.read().rstrip("\n"), name_or_path)
  else:
    raise FileNotFoundError(f"template {name_or_path!r}: no such file, and not a shipped "
                            f"template ({', '.join(SHIPPED)})")
  if kind is not None:
    _check_fields(template, kind)
  elif unknown := template.fields - FIELDS["judge"] - FIELDS["rubric"]:
    raise ValueError(f"template {template.source}: unknown placeholder(s) "
                     f"{', '.join('{%s}' % f for f in sorted(unknown))}")
  return template


def _render(template: Template, kind: str, values: dict[str, str]) -> str:
  _check_fields(template, kind)

  def substitute(match: re.Match) -> str:
    return values[match.group(1)] if match.group(1) else match.group(0)[0]

  return _TOKEN.sub(substitute, template.text)


def render_rubric_prompt(template: Template, instruction: str) -> str:
  """The rubric generator's user message: the rubric is written from the request alone."""
  return _render(template, "rubric", {"instruction": instruction})


def render_judge_prompt(template: Template, instruction: str, rubric: str, response_a: str,
                        response_b: str) -> str:
  """The judge's user message; response_a is shown in slot A (label 0), response_b in slot B."""
  return _render(template, "judge", {"instruction": instruction, "rubric": rubric,
                                     "response_a": response_a, "response_b": response_b})


def render_direct_judge_prompt(template: Template, instruction: str, response_a: str,
                               response_b: str) -> str:
  """The no-rubric judge's user message (an evaluation baseline); slots as in the judge's."""
  return _render(template, "direct", {"instruction": instruction, "response_a": response_a,
                                      "response_b": response_b})


def as_chat(text: str, system: Optional[str] = None) -> list[dict[str, str]]:
  """Messages for `tokenizer.apply_chat_template`: an optional system turn, then the prompt."""
  messages = [{"role": "system", "content": system}] if system is not None else []
  return messages + [{"role": "user", "content": text}]


def swap_pair(response_a: str, response_b: str,
              winner: Union[int, str]) -> tuple[str, str, int]:
  """The pair in the other order and its label (0 = slot A wins), so that random swaps remove
  position bias without losing the preference (docs/method.md §4)."""
  return response_b, response_a, 1 - label_index(winner)
