"""Stage I warm-start data written by a verifier: for prompts whose constraints a checker can
verify (IFEval-format rows, e.g. arm_jax.data.synthetic_if's), rubrics whose hard rules are the
prompt's constraints and judgments whose per-criterion checks are the checker's results, in the
project's rubric and judge formats (docs/method.md §2). This stands in for the paper's Stage I
data (rubrics and judgments distilled from a strong model, not available offline) where the
preference is verifiable.

  python -m arm_jax.data.verifier_sft --prompts data/synthetic_if/prompts.jsonl \\
      --pairs data/synthetic_if/pairs.jsonl --out data/synthetic_if/sft.jsonl

Per pair (canonical records from arm_jax.data.verified, whose prompts are in --prompts):
* one generator example: the rubric template (--rubric_template) filled with the instruction,
  target the rubric: "The response must follow this instruction: <constraint>" as a [Hard Rule]
  per constraint, described as IFEval's builder describes it with the row's arguments, then
  PRINCIPLES;
* two judge examples, the pair in each order (position balance): the judge template filled with
  the instruction, that rubric and the two responses, target a judgment whose gatekeeper is the
  first hard rule, whose lines say for each response and hard rule what the checker found, whose
  principle lines defer to the hard rules, and whose winner is the record's.
The lines are {"role", "prompt", "target"}, warmstart.path's format (arm_jax.data.pairs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, Optional, Sequence

from arm_jax.data import ifeval
from arm_jax.data.readers import read_rows
from arm_jax.data.schema import Skip, record_from_json
from arm_jax.prompts import load_template, render_judge_prompt, render_rubric_prompt

PRINCIPLES = (
    "The response should address every part of the request directly.",
    "The response should be accurate, clear and well organised.",
)


def describe(instruction_id: str, kwargs: dict[str, Any]) -> str:
  """The constraint as IFEval's builder words it for these arguments, on one line."""
  ifeval.load_checker()
  registry = sys.modules[f"{ifeval._PACKAGE}.instructions_registry"]  # pylint: disable=protected-access
  instruction = registry.INSTRUCTION_DICT[instruction_id](instruction_id)
  return re.sub(r"\s+", " ", instruction.build_description(**kwargs)).strip()


def rubric_text(descriptions: Sequence[str]) -> str:
  items = [f"The response must follow this instruction: {d} [Hard Rule]" for d in descriptions]
  items += [f"{p} [Principle]" for p in PRINCIPLES]
  return "\n".join(f"{i}. {text}" for i, text in enumerate(items, 1))


def _lines(follows: Sequence[bool], n_principles: int) -> list[str]:
  out = []
  for i, ok in enumerate(follows, 1):
    found = ("Met: the response follows this instruction." if ok else
             "Not met: the response does not follow this instruction.")
    out.append(f"- Criterion {i} [Hard Rule]: Justification: {found}")
  for j in range(n_principles):
    out.append(f"- Criterion {len(follows) + j + 1} [Principle]: Justification: Not decisive "
               "here; the hard rules decide.")
  return out


def judgment_text(descriptions: Sequence[str], follows_a: Sequence[bool],
                  follows_b: Sequence[bool], winner: str) -> str:
  """A judgment in the judge format: the checker's results per hard rule, `winner` ("A"/"B")."""
  loser = "B" if winner == "A" else "A"
  met = {"A": sum(follows_a), "B": sum(follows_b)}
  n = len(descriptions)
  parts = ["--- Compliance Check ---",
           f"Identified Gatekeeper Criterion: Criterion 1: The response must follow this "
           f"instruction: {descriptions[0]}", "", "--- Analysis ---", "**Response A:**",
           *_lines(follows_a, len(PRINCIPLES)), "", "**Response B:**",
           *_lines(follows_b, len(PRINCIPLES)), "", "--- Final Judgment ---",
           f"Justification: Response {winner} meets {met[winner]} of the {n} hard rules and "
           f"Response {loser} meets {met[loser]}, so Response {winner} is better.",
           f"Winner: Response {winner}"]
  return "\n".join(parts)


def examples(prompt_rows: Sequence[dict[str, Any]], records: Sequence[Any],
             rubric_template: str = "rubric_generator", judge_template: str = "judge"
             ) -> tuple[list[dict[str, str]], dict[str, int]]:
  """SFT lines for every record whose prompt is a row of `prompt_rows`, and the counts."""
  by_prompt = {r["prompt"]: r for r in prompt_rows}
  rubric_t, judge_t = load_template(rubric_template, "rubric"), load_template(judge_template,
                                                                              "judge")
  out: list[dict[str, str]] = []
  counts = {"pairs": 0, "not_in_prompts": 0, "tie_or_unlabelled": 0}
  for rec in records:
    row = by_prompt.get(rec.prompt)
    if row is None:
      counts["not_in_prompts"] += 1
      continue
    if rec.winner not in ("A", "B"):
      counts["tie_or_unlabelled"] += 1
      continue
    counts["pairs"] += 1
    inp = ifeval.example(row["prompt"], row["instruction_id_list"], row["kwargs"], row["key"])
    descriptions = [describe(i, k) for i, k in zip(row["instruction_id_list"], row["kwargs"])]
    rubric = rubric_text(descriptions)
    out.append({"role": "generator", "prompt": render_rubric_prompt(rubric_t, rec.prompt),
                "target": rubric})
    follows = {"A": ifeval.follow_list(inp, rec.response_a),
               "B": ifeval.follow_list(inp, rec.response_b)}
    texts = {"A": rec.response_a, "B": rec.response_b}
    for first, second in (("A", "B"), ("B", "A")):  # as stored, then swapped
      winner = "A" if rec.winner == first else "B"
      out.append({"role": "judge",
                  "prompt": render_judge_prompt(judge_t, rec.prompt, rubric, texts[first],
                                                texts[second]),
                  "target": judgment_text(descriptions, follows[first], follows[second],
                                          winner)})
  return out, counts


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(prog="python -m arm_jax.data.verifier_sft",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--prompts", required=True, help="IFEval-format prompts with their constraints")
  p.add_argument("--pairs", required=True, help="canonical pair records (JSONL)")
  p.add_argument("--out", required=True, help="the SFT JSONL (warmstart.path)")
  p.add_argument("--rubric_template", default="rubric_generator")
  p.add_argument("--judge_template", default="judge")
  args = p.parse_args(argv)
  with open(args.prompts, encoding="utf-8") as f:
    prompt_rows = [json.loads(line) for line in f if line.strip()]
  records, unreadable = [], 0
  for row in read_rows(args.pairs):
    if row.skip is not None:
      unreadable += 1
      continue
    record = record_from_json(row.row)
    if isinstance(record, Skip):
      unreadable += 1
      print(f"{args.pairs}:{row.line}: skipped ({record.reason}: {record.field})",
            file=sys.stderr)
      continue
    records.append(record)
  lines, counts = examples(prompt_rows, records, args.rubric_template, args.judge_template)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w", encoding="utf-8") as f:
    f.writelines(json.dumps(x, ensure_ascii=False) + "\n" for x in lines)
  counts.update(unreadable_rows=unreadable, generator_examples=sum(
      x["role"] == "generator" for x in lines), judge_examples=sum(x["role"] == "judge"
                                                                   for x in lines))
  print(json.dumps(counts, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
