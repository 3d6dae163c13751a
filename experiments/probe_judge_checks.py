"""Teacher-forced probe of a trained judge: does it make the verifier's checks?

Feeds held-out verifier judgments (`python -m arm_jax.data.verifier_sft`: the rubric lists the
prompt's real constraints, the target holds IFEval's checker result for each) to the judge of a
training run's checkpoint and reads, at each decision token, which of the two choices it
prefers: " Met" vs " Not" on every hard-rule line, and " A" vs " B" after "Winner: Response".
Every earlier token is the verifier's, so a check's accuracy here is the judge's own reading of
the responses, with the oracle rubric and no sampling. The base model (the run's starting
weights, LoRA adapters at zero) is the reference row.

  python -m arm_jax.data.verifier_sft --prompts runs/real_lm/prompts/reward_model.jsonl \\
      --pairs runs/real_lm/pairs/pairs_held_out.jsonl --out /tmp/held_out_sft.jsonl \\
      --rubric_template rubric_generator_compact --judge_template judge_compact
  python experiments/probe_judge_checks.py --train_workdir runs/real_lm/train \\
      --rows /tmp/held_out_sft.jsonl --checkpoints base,warm_start,latest --max_rows 48
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from arm_jax.core import SFTExample  # noqa: E402
from arm_jax.evaluation import systems  # noqa: E402
from arm_jax.models.decoder import head_weight  # noqa: E402
from arm_jax.rl.sft import tokenize_sft  # noqa: E402
from arm_jax.training import checkpoints  # noqa: E402
from arm_jax.training import setup as train_setup  # noqa: E402

CHECK = "Justification: "  # a hard-rule line: "... [Hard Rule]: Justification: Met: ..."
WINNER = "Winner: Response"


def decisions(tokenizer, target: str) -> list[tuple[int, str, str]]:
  """(token offset in the target, kind, truth) of each decision: kind "check" (truth "Met" or
  "Not") or "winner" (truth "A" or "B"). The offset is the length of the target's prefix in
  tokens, checked to tokenize as a prefix of the whole target."""
  whole = list(tokenizer.encode(target, add_special_tokens=False))
  out, line_start = [], 0
  for line in target.split("\n"):
    begin, line_start = line_start, line_start + len(line) + 1
    if "[Hard Rule]: " + CHECK in line:
      after = line.index(CHECK) + len(CHECK)
      at = begin + after - 1  # the space goes with the decision token (" Met", " Not")
      kind, truth = "check", "Not" if line[after:].startswith("Not met") else "Met"
    elif line.startswith(WINNER):
      at = begin + len(WINNER)
      kind, truth = "winner", line[len(WINNER):].strip()
    else:
      continue
    prefix = list(tokenizer.encode(target[:at], add_special_tokens=False))
    if whole[:len(prefix)] != prefix:
      raise ValueError(f"the prefix before a {kind} decision does not tokenize as a prefix of "
                       f"the target: {target[max(0, at - 40):at + 10]!r}")
    out.append((len(prefix), kind, truth))
  return out


def _kind_of(prompts_path: str) -> dict[str, str]:
  """Each constraint's rubric wording (arm_jax.data.verifier_sft.describe) -> its IFEval id."""
  from arm_jax.data.verifier_sft import describe  # noqa: PLC0415
  out = {}
  with open(prompts_path, encoding="utf-8") as f:
    for line in f:
      if line.strip():
        row = json.loads(line)
        for iid, kwargs in zip(row["instruction_id_list"], row["kwargs"]):
          out[describe(iid, kwargs)] = iid
  return out


def hard_rule_kinds(prompt: str, kind_of: dict[str, str]) -> list[str]:
  """The IFEval id of each hard rule of the rubric in a judge prompt, in rubric order."""
  found = re.findall(r"The response must follow this instruction: (.*) \[Hard Rule\]", prompt)
  missing = [d for d in found if d not in kind_of]
  if missing or not found:
    raise ValueError(f"hard rules not among the prompts' constraints: {missing or prompt[:200]}")
  return [kind_of[d] for d in found]


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  p.add_argument("--train_workdir", required=True)
  p.add_argument("--rows", required=True, help="verifier SFT rows (.jsonl); judge rows are read")
  p.add_argument("--checkpoints", default="base,warm_start,latest",
                 help="'base' (the run's starting weights) or checkpoint selectors")
  p.add_argument("--max_rows", type=int, default=48)
  p.add_argument("--prompts", default="",
                 help="the Synthetic-IF prompt rows (IFEval format): checks counted per "
                      "constraint kind too")
  p.add_argument("--out", default="", help="write the figures as JSON here too")
  a = p.parse_args(argv)

  config = systems.load_train_config("", (), a.train_workdir)
  setup = train_setup.build(config)
  judge = setup.judge
  model, tokenizer = judge.model, judge.tokenizer
  with open(a.rows, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  rows = [r for r in rows if r["role"] == "judge"][:a.max_rows]
  if not rows:
    raise ValueError(f"{a.rows}: no judge rows")
  encoded, report = tokenize_sft(tokenizer, [SFTExample(r["prompt"], r["target"]) for r in rows],
                                 max_length=int(config.warmstart.max_length))
  if report.skipped or report.truncated:
    raise ValueError(f"{a.rows}: rows do not fit max_length: {report.summary()}")
  choice = {}
  for word in ("Met", "Not", "A", "B"):
    ids = tokenizer.encode(" " + word, add_special_tokens=False)
    choice[word] = ids[0]
  if len({choice["Met"], choice["Not"]}) < 2 or len({choice["A"], choice["B"]}) < 2:
    raise ValueError(f"the choices share a first token: {choice}")
  marks = [decisions(tokenizer, r["target"]) for r in rows]
  kinds = [None] * len(rows)
  if a.prompts:
    kind_of = _kind_of(a.prompts)
    kinds = [hard_rule_kinds(r["prompt"], kind_of) for r in rows]

  words = tuple(choice)  # Met, Not, A, B
  columns = jnp.asarray([choice[w] for w in words])

  def forward(params, tokens):
    positions = jnp.arange(tokens.shape[1])[None]
    hidden = model.apply({"params": params}, tokens, attention_mask=jnp.ones_like(tokens, bool),
                         positions=positions, return_hidden=True)
    head = head_weight(params, model.config, vocab_major=True)[columns]  # the 4 choices' rows
    return hidden[0] @ head.T  # [t, 4]: logits of Met, Not, A, B

  forward = jax.jit(forward)
  start = {"generator": setup.generator.params, "judge": judge.params}
  results = {}
  for selector in a.checkpoints.split(","):
    if selector == "base":
      params, step = judge.params, None
    else:
      step = checkpoints.resolve(a.train_workdir, selector, "--checkpoints")
      params = checkpoints.restore_policies(a.train_workdir, start, step)[0]["judge"]
    t0 = time.perf_counter()
    tally = {k: [0, 0] for k in ("check_Met", "check_Not", "winner")}
    prefers_met = 0
    per_kind: dict[str, list[int]] = {}
    for row, mark, row_kinds in zip(encoded, marks, kinds):
      length = -(-len(row.tokens) // 128) * 128  # one compile per 128 tokens of length
      tokens = np.zeros((1, length), np.int32)
      tokens[0, :len(row.tokens)] = row.tokens
      logits = np.asarray(forward(params, jnp.asarray(tokens)))
      for offset, kind, truth in mark:
        at = row.prompt_len + offset  # the decision token's column; logits[at - 1] predict it
        pair = ("Met", "Not") if kind == "check" else ("A", "B")
        first, second = (logits[at - 1, words.index(w)] for w in pair)
        guess = pair[int(second > first)]
        name = f"check_{truth}" if kind == "check" else "winner"
        tally[name][0] += guess == truth
        tally[name][1] += 1
        prefers_met += kind == "check" and guess == "Met"
        if kind == "check" and row_kinds is not None:
          rule = sum(k == "check" for o, k, _ in mark if o < offset) % len(row_kinds)
          t = per_kind.setdefault(row_kinds[rule], [0, 0, 0])
          t[0] += guess == truth
          t[1] += 1
          t[2] += truth == "Met"
    checks = tally["check_Met"][1] + tally["check_Not"][1]
    results[selector] = dict(
        step=step, rows=len(encoded),
        check_accuracy=(tally["check_Met"][0] + tally["check_Not"][0]) / checks,
        checks=checks, accuracy_when_met=tally["check_Met"][0] / max(1, tally["check_Met"][1]),
        accuracy_when_not_met=tally["check_Not"][0] / max(1, tally["check_Not"][1]),
        met_share_truth=tally["check_Met"][1] / checks, met_share_judge=prefers_met / checks,
        winner_accuracy=tally["winner"][0] / max(1, tally["winner"][1]),
        seconds=time.perf_counter() - t0)
    if per_kind:  # kind: [checks right, checks, of which met]
      results[selector]["kinds"] = dict(sorted(per_kind.items()))
    print(json.dumps({selector: results[selector]}), flush=True)
  if a.out:
    with open(a.out, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
