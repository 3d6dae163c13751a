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
  principle lines defer to the hard rules, and whose winner is the record's. With --evidence
  each hard-rule line first says what the checker reads in the response, quoted or counted
  (evidence(): "2 placeholders in square brackets: "[name]", "[city]", so it is met."), so the
  result follows from text a judge can copy or count instead of from a silent reading.
The lines are {"role", "prompt", "target"}, warmstart.path's format (arm_jax.data.pairs).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
from typing import Any, Optional, Sequence

from arm_jax.data import ifeval
from arm_jax.data.readers import read_rows
from arm_jax.data.schema import Skip, record_from_json
from arm_jax.prompts import load_template, render_judge_prompt, render_rubric_prompt

QUOTE_WORDS = 8  # a quote's length in words: enough to locate it, short enough to copy

PRINCIPLES = (
    "The response should address every part of the request directly.",
    "The response should be accurate, clear and well organised.",
)


def describe(instruction_id: str, kwargs: dict[str, Any]) -> str:
  """The constraint as IFEval's builder words it for these arguments, on one line."""
  registry = ifeval.checker_module("instructions_registry")
  instruction = registry.INSTRUCTION_DICT[instruction_id](instruction_id)
  return re.sub(r"\s+", " ", instruction.build_description(**kwargs)).strip()


def rubric_text(descriptions: Sequence[str]) -> str:
  items = [f"The response must follow this instruction: {d} [Hard Rule]" for d in descriptions]
  items += [f"{p} [Principle]" for p in PRINCIPLES]
  return "\n".join(f"{i}. {text}" for i, text in enumerate(items, 1))


def _quote(words: Sequence[str], limit: int = QUOTE_WORDS) -> str:
  text = " ".join(words[:limit]) + (" ..." if len(words) > limit else "")
  return '"' + text.replace('"', "'") + '"'


def _start(text: str) -> str:
  return _quote(text.split())


def _end(text: str) -> str:
  words = text.split()
  tail = words[-QUOTE_WORDS:]
  return '"' + ("... " if len(words) > len(tail) else "") + " ".join(tail).replace('"', "'") + '"'


def _listed(items: Sequence[str], limit: int = 3) -> str:
  shown = ", ".join(_quote(i.split(), 4) for i in items[:limit])
  return shown + (", ..." if len(items) > limit else "")


def _count(n: int, noun: str) -> str:
  return f"{n} {noun if n == 1 else noun + 's'}"


def _word_with(words: Sequence[str], test) -> Optional[str]:
  return next((w for w in words if test(w)), None)


def evidence(instruction_id: str, kwargs: dict[str, Any], response: str) -> str:
  """What IFEval's check of `instruction_id` (with `kwargs`) reads in `response`, as a short
  phrase that quotes or counts it: "3 placeholders in square brackets: "[name]", ...", "it ends
  with "... can help with?"", "a comma in "Paris, France"". It mirrors the checker's own
  measurement (the same regular expressions and counters) so that the judgment's decision
  follows from text the judge can copy or count; the decision itself stays the checker's."""
  registry = ifeval.checker_module("instructions_registry")
  if instruction_id not in registry.INSTRUCTION_DICT:
    raise ValueError(f"{instruction_id!r} is not an IFEval instruction: no evidence to read")
  util = ifeval.checker_module("instructions_util")
  text, k = response, kwargs
  words = text.split()
  if not text.strip():
    return "the response is empty"
  kind = instruction_id.split(":", 1)[1]
  if kind == "english_lowercase":
    w = _word_with(words, lambda x: x != x.lower())
    return f"a capital letter in {_quote([w])}" if w else "every letter is lowercase"
  if kind == "english_capital":
    w = _word_with(words, lambda x: x != x.upper())
    return f"a lowercase letter in {_quote([w])}" if w else "every letter is a capital"
  if kind == "capital_word_frequency":
    caps = [w for w in util.nltk.word_tokenize(text) if w.isupper()]
    return _count(len(caps), "word") + " in capitals" + (f": {_listed(caps)}" if caps else "")
  if kind == "repeat_prompt":
    return f"it starts with {_start(text)}"
  if kind == "two_responses":
    parts = [p for p in text.split("******") if p.strip()]
    return _count(len(parts), "response") + " separated by ******"
  if kind == "number_placeholders":
    found = re.findall(r"\[.*?\]", text)
    return _count(len(found), "placeholder") + " in square brackets" + (
        f": {_listed(found)}" if found else "")
  if kind == "postscript":
    marker = k["postscript_marker"]
    pattern = {"P.P.S": r"\s*p\.\s?p\.\s?s.*$", "P.S.": r"\s*p\.\s?s\..*$"}.get(
        marker, r"\s*" + re.escape(marker.lower()) + r".*$")
    line = next((ln for ln in text.split("\n") if re.match(pattern, ln.lower())), None)
    return f"a postscript line {_start(line)}" if line else f"no line starts with {marker}"
  if kind == "constrained_response":
    options = ("My answer is yes.", "My answer is no.", "My answer is maybe.")
    hit = next((o for o in options if o in text), None)
    return f"it says {_quote(hit.split())}" if hit else f"none of the options; it starts with " \
        f"{_start(text)}"
  if kind == "json_format":
    body = text.strip().removeprefix("```json").removeprefix("```Json").removeprefix(
        "```JSON").removeprefix("```").removesuffix("```").strip()
    try:
      json.loads(body)
      return "the whole response parses as JSON"
    except ValueError:
      return f"it is not JSON: it starts with {_start(body)}"
  if kind == "multiple_sections":
    split = k["section_spliter"]
    n = len(re.split(r"\s?" + split + r"\s?\d+\s?", text)) - 1
    return _count(n, "section") + f" marked {split} X"
  if kind == "number_bullet_lists":
    n = len(re.findall(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE)) + len(
        re.findall(r"^\s*-.*$", text, flags=re.MULTILINE))
    return _count(n, "bullet point")
  if kind == "number_highlighted_sections":
    found = [h for h in re.findall(r"\*[^\n\*]*\*", text) if h.strip("*").strip()]
    return _count(len(found), "highlighted section") + (f": {_listed(found)}" if found else "")
  if kind == "title":
    found = [t for t in re.findall(r"<<[^\n]+>>", text) if t.lstrip("<").rstrip(">").strip()]
    return f"the title {_quote(found[0].split())}" if found else "no title in <<double " \
        "angular brackets>>"
  if kind == "existence":
    return "; ".join(f'"{w}" ' + ("appears" if re.search(w, text, flags=re.IGNORECASE) else
                                  "is missing") for w in k["keywords"])
  if kind == "forbidden_words":
    hits = [w for w in k["forbidden_words"] if re.search(r"\b" + w + r"\b", text,
                                                         flags=re.IGNORECASE)]
    return ("; ".join(f'"{w}" appears' for w in hits) if hits else
            "none of the forbidden words appears")
  if kind == "frequency":
    n = len(re.findall(k["keyword"], text, flags=re.IGNORECASE))
    return f'"{k["keyword"]}" appears ' + _count(n, "time")
  if kind == "letter_frequency":
    n = collections.Counter(text.lower())[k["letter"].lower()]
    return f'the letter "{k["letter"]}" appears ' + _count(n, "time")
  if kind == "response_language":
    import langdetect  # pylint: disable=import-outside-toplevel
    try:
      code = langdetect.detect(text)
    except langdetect.LangDetectException:
      return "its language cannot be told"
    names = ifeval.checker_module("instructions")._LANGUAGES  # pylint: disable=protected-access
    return f"it is written in {names.get(code, code)}"
  if kind == "nth_paragraph_first_word":
    paragraphs = [p for p in re.split(r"\n\n", text) if p.strip()]
    nth = k["nth_paragraph"]
    first = (f"; paragraph {nth} starts with {_quote(paragraphs[nth - 1].split()[:1])}"
             if nth <= len(paragraphs) else "")
    return _count(len(paragraphs), "paragraph") + " separated by blank lines" + first
  if kind == "number_paragraphs":
    parts = re.split(r"\s?\*\*\*\s?", text)
    return _count(len([p for p in parts if p.strip()]), "paragraph") + " separated by ***"
  if kind == "number_sentences":
    return _count(util.count_sentences(text), "sentence")
  if kind == "number_words":
    return _count(util.count_words(text), "word")
  if kind == "no_comma":
    at = text.find(",")
    if at < 0:
      return "no comma"
    before, after = text[:at].split()[-3:], text[at + 1:].split()[:2]
    return f"a comma in {_quote([' '.join(before) + ',', *after])}"
  if kind == "end_checker":
    return f"it ends with {_end(text)}"
  if kind == "quotation":
    stripped = text.strip()
    return f"it starts with {stripped[:1]!r} and ends with {stripped[-1:]!r}"
  raise ValueError(f"no evidence writer for IFEval instruction {instruction_id!r}")


def _lines(follows: Sequence[bool], n_principles: int,
           found: Optional[Sequence[str]] = None) -> list[str]:
  """The judge's criterion lines: the checker's result per hard rule, after the evidence it
  read when `found` gives it ("<evidence>, so it is met.")."""
  out = []
  for i, ok in enumerate(follows, 1):
    if found is not None:
      line = f"{found[i - 1][:1].upper()}{found[i - 1][1:]}, so it is {'met' if ok else 'not met'}."
    else:
      line = ("Met: the response follows this instruction." if ok else
              "Not met: the response does not follow this instruction.")
    out.append(f"- Criterion {i} [Hard Rule]: Justification: {line}")
  for j in range(n_principles):
    out.append(f"- Criterion {len(follows) + j + 1} [Principle]: Justification: Not decisive "
               "here; the hard rules decide.")
  return out


def judgment_text(descriptions: Sequence[str], follows_a: Sequence[bool],
                  follows_b: Sequence[bool], winner: str,
                  found_a: Optional[Sequence[str]] = None,
                  found_b: Optional[Sequence[str]] = None) -> str:
  """A judgment in the judge format: the checker's results per hard rule, `winner` ("A"/"B");
  with found_a / found_b (evidence() per hard rule) each result follows what was read."""
  loser = "B" if winner == "A" else "A"
  met = {"A": sum(follows_a), "B": sum(follows_b)}
  n = len(descriptions)
  parts = ["--- Compliance Check ---",
           f"Identified Gatekeeper Criterion: Criterion 1: The response must follow this "
           f"instruction: {descriptions[0]}", "", "--- Analysis ---", "**Response A:**",
           *_lines(follows_a, len(PRINCIPLES), found_a), "", "**Response B:**",
           *_lines(follows_b, len(PRINCIPLES), found_b), "", "--- Final Judgment ---",
           f"Justification: Response {winner} meets {met[winner]} of the {n} hard rules and "
           f"Response {loser} meets {met[loser]}, so Response {winner} is better.",
           f"Winner: Response {winner}"]
  return "\n".join(parts)


def examples(prompt_rows: Sequence[dict[str, Any]], records: Sequence[Any],
             rubric_template: str = "rubric_generator", judge_template: str = "judge",
             with_evidence: bool = False) -> tuple[list[dict[str, str]], dict[str, int]]:
  """SFT lines for every record whose prompt is a row of `prompt_rows`, and the counts; with
  `with_evidence` each check of a judgment states what the checker read first (evidence())."""
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
    found = {side: [evidence(i, k, texts[side]) for i, k in zip(row["instruction_id_list"],
                                                                   row["kwargs"])]
             for side in "AB"} if with_evidence else {"A": None, "B": None}
    for first, second in (("A", "B"), ("B", "A")):  # as stored, then swapped
      winner = "A" if rec.winner == first else "B"
      out.append({"role": "judge",
                  "prompt": render_judge_prompt(judge_t, rec.prompt, rubric, texts[first],
                                                texts[second]),
                  "target": judgment_text(descriptions, follows[first], follows[second],
                                          winner, found[first], found[second])})
  return out, counts


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(prog="python -m arm_jax.data.verifier_sft",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--prompts", required=True, help="IFEval-format prompts with their constraints")
  p.add_argument("--pairs", required=True, help="canonical pair records (JSONL)")
  p.add_argument("--out", required=True, help="the SFT JSONL (warmstart.path)")
  p.add_argument("--rubric_template", default="rubric_generator")
  p.add_argument("--judge_template", default="judge")
  p.add_argument("--evidence", action="store_true",
                 help="each check quotes or counts what the checker read before its result")
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
  lines, counts = examples(prompt_rows, records, args.rubric_template, args.judge_template,
                           args.evidence)
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
