"""Teacher-forced probe of a trained judge: does it make the verifier's checks?

Feeds held-out verifier judgments (`python -m arm_jax.data.verifier_sft`: the rubric lists the
prompt's real constraints, the target holds IFEval's checker result for each) to the judge of a
training run's checkpoint and reads, at each decision token, which of the two choices it
prefers: " Met" vs " Not" on every hard-rule line, and " A" vs " B" after "Winner: Response".
Every earlier token is the verifier's, so a check's accuracy here is the judge's own reading of
the responses, with the oracle rubric and no sampling. The base model (the run's starting
weights, LoRA adapters at zero) is the reference row.

Judgments written with evidence (`verifier_sft --evidence`: "- Criterion 2 [Hard Rule]:
Justification: 0 placeholders in square brackets, so it is not met.") put the decision (" met"
/ " not") after the evidence; teacher-forced, that reads the decision given the verifier's
evidence. `--generate` scores what matters for a judge that writes its own: after the verifier's
judgment up to a hard-rule line's "Justification:", the judge writes the rest of the line
greedily and its result is compared with the checker's (`generated`; `evidence_exact` is the
share of lines whose evidence it wrote as the verifier did).

`--probe_rows` asks whether the information is there at all: a logistic regression on the
judge's final hidden state at each check's decision token (the state its " Met" / " Not" logits
are read from), fit on the checks of other pairs' rows (ones no checkpoint trained on) and
scored on --rows' checks, against each constraint kind's majority (a read-out that learnt only
which kinds are usually met scores that). `--probe_layers` fits the same read-out on the
residual stream after each chosen block, at the same tokens: whether the check is readable
anywhere in depth, not only where the head reads it.

  python -m arm_jax.data.verifier_sft --prompts runs/real_lm/prompts/reward_model.jsonl \\
      --pairs runs/real_lm/pairs/pairs_held_out.jsonl --out /tmp/held_out_sft.jsonl \\
      --rubric_template rubric_generator_compact --judge_template judge_compact
  python experiments/probe_judge_checks.py --train_workdir runs/real_lm/train \\
      --rows /tmp/held_out_sft.jsonl --checkpoints base,warm_start,latest --max_rows 48 \\
      [--generate] [--prompts runs/real_lm/prompts/reward_model.jsonl --probe_rows ROWS]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from arm_jax.core import SFTExample  # noqa: E402
from arm_jax.evaluation import systems  # noqa: E402
from arm_jax.models.decoder import Block, head_weight, unstack_layers  # noqa: E402
from arm_jax.rl.sft import tokenize_sft  # noqa: E402
from arm_jax.sampling import Sampler, SamplingParams, completions_text  # noqa: E402
from arm_jax.training import checkpoints  # noqa: E402
from arm_jax.training import setup as train_setup  # noqa: E402

CHECK = "Justification:"  # a hard-rule line: "... [Hard Rule]: Justification: Met: ..."
WINNER = "Winner: Response"
# A check's result: "Met: ..." / "Not met: ..." (verifier_sft's plain judgments) or, after the
# evidence read (verifier_sft --evidence), "..., so it is met." / "..., so it is not met.".
PLAIN = re.compile(r"^ (Met|Not met)\b")
AFTER_EVIDENCE = re.compile(r", so it is (met|not met)\.")


def read_check(text: str) -> tuple[Optional[str], Optional[int], str]:
  """(truth "Met"/"Not" or None, character offset of the decision's space, evidence) of the
  text after a hard-rule line's "Justification:"; evidence is '' in the plain format."""
  plain = PLAIN.match(text)
  if plain:
    return ("Met" if plain.group(1) == "Met" else "Not"), 0, ""
  found = AFTER_EVIDENCE.search(text)
  if found:
    return ("Met" if found.group(1) == "met" else "Not"), found.start(1) - 1, text[1:found.start()]
  return None, None, ""


def decisions(tokenizer, target: str) -> list[tuple[int, str, str, int]]:
  """(token offset in the target, kind, truth, character offset) of each decision: kind "check"
  (truth "Met" or "Not"; the token " Met"/" Not", or " met"/" not" after evidence) or "winner"
  (truth "A" or "B"). The token offset is the length of the target's prefix in tokens, checked to
  tokenize as a prefix of the whole target; the character offset is where the hard-rule line's
  text after "Justification:" begins (for a winner, its decision's)."""
  whole = list(tokenizer.encode(target, add_special_tokens=False))
  out, line_start = [], 0
  for line in target.split("\n"):
    begin, line_start = line_start, line_start + len(line) + 1
    if "[Hard Rule]: " + CHECK in line:
      after = begin + line.index(CHECK) + len(CHECK)
      truth, at, _ = read_check(target[after:begin + len(line)])
      if truth is None:
        raise ValueError(f"a hard-rule line without a result: {line!r}")
      kind, at, where = "check", after + at, after
    elif line.startswith(WINNER):
      at = where = begin + len(WINNER)
      kind, truth = "winner", line[len(WINNER):].strip()
    else:
      continue
    prefix = list(tokenizer.encode(target[:at], add_special_tokens=False))
    if whole[:len(prefix)] != prefix:
      raise ValueError(f"the prefix before a {kind} decision does not tokenize as a prefix of "
                       f"the target: {target[max(0, at - 40):at + 10]!r}")
    out.append((len(prefix), kind, truth, where))
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


class Tally:
  """Counts of decisions right, overall and per kind of check."""

  def __init__(self):
    self.counts = {k: [0, 0] for k in ("check_Met", "check_Not", "winner")}
    self.prefers_met = 0
    self.unparsed = 0
    self.per_kind: dict[str, list[int]] = {}  # kind: [checks right, checks, of which met]

  def add(self, kind: str, truth: str, guess: Optional[str], rule_kind: Optional[str]) -> None:
    name = f"check_{truth}" if kind == "check" else "winner"
    self.counts[name][0] += guess == truth
    self.counts[name][1] += 1
    self.prefers_met += kind == "check" and guess == "Met"
    self.unparsed += guess is None
    if kind == "check" and rule_kind is not None:
      t = self.per_kind.setdefault(rule_kind, [0, 0, 0])
      t[0] += guess == truth
      t[1] += 1
      t[2] += truth == "Met"

  def figures(self) -> dict:
    c = self.counts
    checks = c["check_Met"][1] + c["check_Not"][1]
    out = dict(check_accuracy=(c["check_Met"][0] + c["check_Not"][0]) / max(1, checks),
               checks=checks, accuracy_when_met=c["check_Met"][0] / max(1, c["check_Met"][1]),
               accuracy_when_not_met=c["check_Not"][0] / max(1, c["check_Not"][1]),
               met_share_truth=c["check_Met"][1] / max(1, checks),
               met_share_judge=self.prefers_met / max(1, checks))
    if c["winner"][1]:
      out["winner_accuracy"] = c["winner"][0] / c["winner"][1]
    if self.unparsed:
      out["unparsed"] = self.unparsed
    if self.per_kind:
      out["kinds"] = dict(sorted(self.per_kind.items()))
    return out


def _rule_kind(mark, n: int, row_kinds) -> Optional[str]:
  """The IFEval id of the hard rule that decision n of a judgment checks (None: no kinds)."""
  if row_kinds is None or mark[n][1] != "check":
    return None
  return row_kinds[sum(k == "check" for _, k, _, _ in mark[:n]) % len(row_kinds)]


def generated_checks(sampler, params, tokenizer, rows, encoded, marks, kinds,
                     max_new_tokens: int, batch_size: int) -> dict:
  """Each check written by the judge itself: the verifier's judgment up to a hard-rule line's
  "Justification:" is fed, the judge writes the rest of the line greedily, and its result
  ("Met"/"Not met", or after its own evidence ", so it is (not) met.") is compared with the
  checker's. `evidence_exact`: the share of checks whose evidence the judge wrote as the
  verifier did (evidence format only)."""
  items = []  # (context tokens, truth, oracle evidence, rule kind)
  for row, r, mark, row_kinds in zip(encoded, rows, marks, kinds):
    target = r["target"]
    for n, (_, kind, truth, where) in enumerate(mark):
      if kind != "check":
        continue
      context = list(row.tokens[:row.prompt_len]) + list(
          tokenizer.encode(target[:where], add_special_tokens=False))
      oracle = read_check(target[where:target.index("\n", where)])[2]
      items.append((context, truth, oracle, _rule_kind(mark, n, row_kinds)))
  order = sorted(range(len(items)), key=lambda i: len(items[i][0]))  # alike lengths together
  texts = [""] * len(items)
  sampling = SamplingParams(max_new_tokens=max_new_tokens, greedy=True)
  for begin in range(0, len(order), batch_size):
    chunk = order[begin:begin + batch_size]
    out = sampler(params, [items[i][0] for i in chunk], sampling, jax.random.PRNGKey(0))
    for i, text in zip(chunk, completions_text(tokenizer, out)):
      texts[i] = text.split("\n")[0]
  tally, exact, with_evidence = Tally(), 0, 0
  exact_kinds: dict[str, list[int]] = {}  # kind: [evidence written as the verifier's, checks]
  for (_, truth, oracle, rule_kind), text in zip(items, texts):
    guess, _, written = read_check(text)
    tally.add("check", truth, guess, rule_kind)
    if oracle:
      with_evidence += 1
      exact += written == oracle
      if rule_kind is not None:
        t = exact_kinds.setdefault(rule_kind, [0, 0])
        t[0] += written == oracle
        t[1] += 1
  out = tally.figures()
  out["unparsed"] = tally.unparsed
  if with_evidence:
    out["evidence_exact"] = exact / with_evidence
  if exact_kinds:
    out["evidence_exact_kinds"] = dict(sorted(exact_kinds.items()))
  out["examples"] = [dict(truth=t, oracle=o, written=w) for (_, t, o, _), w in
                     list(zip(items, texts))[:6]]
  return out


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, iterations: int = 50) -> np.ndarray:
  """L2-regularized logistic regression by Newton's method: weights [d + 1] (the last the bias,
  not penalized) minimizing mean log-loss + l2/2 |w|^2 over rows x [n, d], labels y in {0, 1}."""
  xb = np.concatenate([x, np.ones((len(x), 1))], axis=1).astype(np.float64)
  w = np.zeros(xb.shape[1])
  penalty = np.full(xb.shape[1], l2)
  penalty[-1] = 0.0
  for _ in range(iterations):
    p = 1.0 / (1.0 + np.exp(-(xb @ w)))
    grad = xb.T @ (p - y) / len(y) + penalty * w
    hess = (xb.T * (p * (1 - p))) @ xb / len(y) + np.diag(penalty) + 1e-9 * np.eye(len(w))
    step = np.linalg.solve(hess, grad)
    w -= step
    if np.max(np.abs(step)) < 1e-10:
      break
  return w


def predict_logistic(w: np.ndarray, x: np.ndarray) -> np.ndarray:
  return (x @ w[:-1] + w[-1]) > 0


def linear_probe(train_x, train_y, train_kinds, test_x, test_y, test_kinds,
                 l2_grid=(1e-4, 1e-3, 1e-2, 1e-1, 1.0), folds: int = 5, seed: int = 0) -> dict:
  """How well a linear read-out of the hidden states tells met from not met, against the
  constraint kind's own prior. Features are standardized by the training rows; l2 is chosen by
  `folds`-fold cross-validation on them. Returns held-out accuracies overall and per kind:
  `probe` (the read-out), `kind_prior` (each kind's majority in the training rows, the overall
  majority for a kind they lack) and `majority` (the overall one)."""
  train_x, test_x = np.asarray(train_x, np.float64), np.asarray(test_x, np.float64)
  train_y, test_y = np.asarray(train_y, np.float64), np.asarray(test_y, bool)
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  zx, zt = (train_x - mean) / std, (test_x - mean) / std
  fold = np.random.default_rng(seed).permutation(len(zx)) % folds
  cv = {}
  for l2 in l2_grid:
    right = 0
    for f in range(folds):
      w = fit_logistic(zx[fold != f], train_y[fold != f], l2)
      right += int(np.sum(predict_logistic(w, zx[fold == f]) == train_y[fold == f].astype(bool)))
    cv[l2] = right / len(zx)
  best = max(l2_grid, key=lambda l: (cv[l], l))  # ties: the stronger penalty
  guess = predict_logistic(fit_logistic(zx, train_y, best), zt)
  overall = bool(train_y.mean() >= 0.5)
  prior = {}
  for k in set(train_kinds):
    ys = [y for y, kk in zip(train_y, train_kinds) if kk == k]
    prior[k] = bool(np.mean(ys) >= 0.5)
  by_prior = np.array([prior.get(k, overall) for k in test_kinds])
  kinds = {}
  for k in sorted(set(test_kinds)):
    m = np.array([kk == k for kk in test_kinds])
    kinds[k] = dict(checks=int(m.sum()), met=int(test_y[m].sum()),
                    probe=float(np.mean(guess[m] == test_y[m])),
                    kind_prior=float(np.mean(by_prior[m] == test_y[m])))
  return dict(train_checks=len(zx), test_checks=len(zt), l2=best, cv_accuracy=cv,
              probe=float(np.mean(guess == test_y)),
              kind_prior=float(np.mean(by_prior == test_y)),
              majority=float(np.mean(test_y == overall)), kinds=kinds)


def layer_states(model, params, tokens):
  """Each block's output (the residual stream after layer i, before the final norm), stacked
  [layers, b, t, embed], for a model in any layout: it is run with unrolled, un-rematted layers
  and flax's captured intermediates. Positions count every token (no padding)."""
  cfg = model.config.replace(scan_layers=False, remat_policy="none")
  unrolled = model.clone(config=cfg)
  params = unstack_layers(params) if model.config.scan_layers else params
  _, state = unrolled.apply(
      {"params": params}, tokens, attention_mask=jnp.ones_like(tokens, bool),
      positions=jnp.broadcast_to(jnp.arange(tokens.shape[1])[None], tokens.shape),
      return_hidden=True, mutable=["intermediates"],
      capture_intermediates=lambda module, method: isinstance(module, Block))
  found = state["intermediates"]
  # a block returns (x, (k, v)); flax keeps each call's output in a tuple
  return jnp.stack([found[f"layers_{i}"]["__call__"][0][0] for i in range(cfg.num_layers)])


def parse_layers(text: str, num_layers: int) -> list[int]:
  """--probe_layers: "all" or comma-separated block indices (0-based; negative from the end)
  -> sorted distinct indices in [0, num_layers)."""
  if text == "all":
    return list(range(num_layers))
  out = set()
  for part in text.split(","):
    try:
      i = int(part)
    except ValueError:
      raise ValueError(f"--probe_layers: {part!r} is not a layer index (or 'all')") from None
    if not -num_layers <= i < num_layers:
      raise ValueError(f"--probe_layers: layer {i} is outside the model's {num_layers} layers")
    out.add(i % num_layers)
  return sorted(out)


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
  p.add_argument("--generate", action="store_true",
                 help="also let the judge write each check line itself (greedy) after the "
                      "verifier's judgment up to it, and score the result it writes")
  p.add_argument("--generate_tokens", type=int, default=48,
                 help="new tokens per check line (the line's end stops it sooner)")
  p.add_argument("--batch_size", type=int, default=8, help="check lines per generation call")
  p.add_argument("--probe_rows", default="",
                 help="verifier SFT rows of other pairs (ones no checkpoint trained on, e.g. "
                      "the RL split's): a logistic regression on the judge's hidden state at "
                      "each check's decision token is fit on these and scored on --rows "
                      "(needs --prompts, for the kind-prior baseline)")
  p.add_argument("--probe_max_rows", type=int, default=256)
  p.add_argument("--probe_layers", default="",
                 help="also probe the residual stream after these blocks ('all' or indices "
                      "such as 4,14,-1), at the same decision tokens: where in depth, if "
                      "anywhere, the check is linearly readable")
  p.add_argument("--out", default="", help="write the figures as JSON here too")
  a = p.parse_args(argv)
  if a.probe_rows and not a.prompts:
    p.error("--probe_rows needs --prompts (each check's constraint kind)")
  if a.probe_layers and not a.probe_rows:
    p.error("--probe_layers needs --probe_rows")

  config = systems.load_train_config("", (), a.train_workdir)
  setup = train_setup.build(config)
  judge = setup.judge
  model, tokenizer = judge.model, judge.tokenizer
  kind_of = _kind_of(a.prompts) if a.prompts else None

  def read_rows(path, limit):
    with open(path, encoding="utf-8") as f:
      rows = [json.loads(line) for line in f if line.strip()]
    rows = [r for r in rows if r["role"] == "judge"][:limit]
    if not rows:
      raise ValueError(f"{path}: no judge rows")
    encoded, report = tokenize_sft(tokenizer, [SFTExample(r["prompt"], r["target"])
                                               for r in rows],
                                   max_length=int(config.warmstart.max_length))
    if report.skipped or report.truncated:
      raise ValueError(f"{path}: rows do not fit max_length: {report.summary()}")
    marks = [decisions(tokenizer, r["target"]) for r in rows]
    kinds = ([hard_rule_kinds(r["prompt"], kind_of) for r in rows] if kind_of
             else [None] * len(rows))
    return rows, encoded, marks, kinds

  rows, encoded, marks, kinds = read_rows(a.rows, a.max_rows)
  probe_set = read_rows(a.probe_rows, a.probe_max_rows)[1:] if a.probe_rows else None
  words = ("Met", "Not", "met", "not", "A", "B")
  choice = {w: tokenizer.encode(" " + w, add_special_tokens=False)[0] for w in words}
  if len(set(choice.values())) < len(words):
    raise ValueError(f"the choices share a first token: {choice}")
  columns = jnp.asarray([choice[w] for w in words])

  def forward(params, tokens):
    positions = jnp.arange(tokens.shape[1])[None]
    hidden = model.apply({"params": params}, tokens, attention_mask=jnp.ones_like(tokens, bool),
                         positions=positions, return_hidden=True)
    head = head_weight(params, model.config, vocab_major=True)[columns]  # the choices' rows
    return hidden[0] @ head.T, hidden[0]  # [t, 6]: logits of each of `words`; [t, embed]

  def teacher_forced(params, encoded, marks, kinds, deep=False):
    """The judge's choice at each decision, tallied; and each check's (hidden state that
    predicts its decision token, truth is met, rule kind, and with `deep` the residual stream
    after each of `layers` there [len(layers), embed])."""
    tally, features = Tally(), []
    for i, (row, mark, row_kinds) in enumerate(zip(encoded, marks, kinds)):
      if i and i % 64 == 0:
        print(f"[probe] {i} of {len(encoded)} rows read", file=sys.stderr, flush=True)
      length = -(-len(row.tokens) // 128) * 128  # one compile per 128 tokens of length
      tokens = np.zeros((1, length), np.int32)
      tokens[0, :len(row.tokens)] = row.tokens
      logits, hidden = (np.asarray(x) for x in forward(params, jnp.asarray(tokens)))
      stream = np.asarray(deep_states(params, jnp.asarray(tokens))) if deep else None
      for n, (offset, kind, truth, _) in enumerate(mark):
        at = row.prompt_len + offset  # the decision token's column; logits[at - 1] predict it
        token = tokenizer.decode([row.tokens[at]]).strip()
        pair = ("A", "B") if kind == "winner" else (("Met", "Not") if token in ("Met", "Not")
                                                     else ("met", "not"))
        first, second = (logits[at - 1, words.index(w)] for w in pair)
        guess = pair[int(second > first)].capitalize()
        rule_kind = _rule_kind(mark, n, row_kinds)
        tally.add(kind, truth, guess, rule_kind)
        if kind == "check":
          # copies: a view would keep the row's whole [t, ...] arrays alive
          features.append((hidden[at - 1].copy(), truth == "Met", rule_kind,
                           None if stream is None else stream[:, at - 1].copy()))
    return tally, features

  forward = jax.jit(forward)
  layers = parse_layers(a.probe_layers, model.config.num_layers) if a.probe_layers else []
  deep_states = jax.jit(lambda params, tokens: layer_states(model, params, tokens)[
      jnp.asarray(layers, jnp.int32), 0])  # [len(layers), t, embed]
  # Free generation stops at the end of a line: every token whose text holds a newline.
  newline_ids = [i for i in range(len(tokenizer)) if "\n" in tokenizer.decode([i])]
  line_sampler = Sampler(model, stop_ids=newline_ids + list(model.config.eos_token_ids),
                         pad_id=judge.pad_id)
  start = {"generator": setup.generator.params, "judge": judge.params}
  results = {}
  for selector in a.checkpoints.split(","):
    if selector == "base":
      params, step = judge.params, None
    else:
      step = checkpoints.resolve(a.train_workdir, selector, "--checkpoints")
      params = checkpoints.restore_policies(a.train_workdir, start, step)[0]["judge"]
    t0 = time.perf_counter()
    deep = bool(layers)  # --probe_layers requires --probe_rows
    tally, features = teacher_forced(params, encoded, marks, kinds, deep)
    results[selector] = dict(step=step, rows=len(encoded), **tally.figures(),
                             seconds=time.perf_counter() - t0)
    if probe_set is not None:
      t0 = time.perf_counter()
      train = teacher_forced(params, *probe_set, deep)[1]
      labels = ([f[1] for f in train], [f[2] for f in train])
      tests = ([f[1] for f in features], [f[2] for f in features])
      results[selector]["linear_probe"] = linear_probe(
          [f[0] for f in train], *labels, [f[0] for f in features], *tests)
      if deep:  # one read-out per layer, on the same checks and folds
        results[selector]["linear_probe"]["layers"] = {
            str(layer): {k: v for k, v in linear_probe(
                [f[3][j] for f in train], *labels, [f[3][j] for f in features], *tests).items()
                         if k in ("probe", "l2", "cv_accuracy", "kinds")}
            for j, layer in enumerate(layers)}
      results[selector]["linear_probe"]["seconds"] = time.perf_counter() - t0
    if a.generate:
      t0 = time.perf_counter()
      results[selector]["generated"] = generated_checks(
          line_sampler, params, tokenizer, rows, encoded, marks, kinds, a.generate_tokens,
          a.batch_size)
      results[selector]["generated"]["seconds"] = time.perf_counter() - t0
    print(json.dumps({selector: results[selector]}), flush=True)
  if a.out:
    with open(a.out, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
