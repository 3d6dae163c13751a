"""How fast a toy warm start teaches reading: one policy's SFT with a teacher-forced probe.

The toy default's time goes mostly to the judge's warm start, and what it must teach there is
the evidence tags ([A] / [B] / [both] / [none]: which response shows a criterion's word), which a
from-scratch decoder learns late and at a seed-dependent step (docs/results.md). Every --every
steps this script scores the policy on held-out rows with correct targets (exact rubrics, no
position mix-up, no negation slip): for each kind of decision token (evidence tags, yes/no
marks, the Winner line) the share where the argmax is the target token and the mean probability
the model gives it (a sampled judgment is about as right as that probability, not the argmax),
and the share of rows whose every target token is the argmax. One forward pass per probe, no
generation, so a setting's learning curve costs little more than its SFT steps. With --sample K
(judge only) each probe also samples a judgment at temperature 1 for K held-out pairs shown with
their exact rubric in a random order, and reports what arm_jax.toy.diagnostics reads in them
(s_evidence, s_marks, s_restated) and their accuracy (s_accuracy): the confidence RL starts from;
--greedy adds the same figures for greedy judgments of those pairs (g_*), how often the greedy
gatekeeper line is right and the evidence written after a right and a wrong one
(g_gatekeeper, g_evidence_gate_right / _wrong), and the figures of greedy judgments given the
right first three lines (f_*: the gatekeeper line written for them).

  python experiments/toy_warmstart_probe.py --seed 2 --steps 800 [--role judge|generator]
      [--learning_rate 2e-3] [--schedule cosine] [--batch_size 32] [--sample 128 --greedy]
      [--from_generator 300] [--length_groups 16 --pad_multiple 32]
      [--set 'data.kinds=("include","avoid")' model.hidden_size=64 ...] [--out curve.jsonl]

--set overrides fields of configs/toy.py (the model, the data, warmstart.* data settings);
the optimizer, batch and padding are this script's flags. Prints one JSON line per probe.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from arm_jax import notebook  # noqa: E402
from arm_jax.models.decoder import head_weight  # noqa: E402
from arm_jax.parsing import label_index, parse_verdict  # noqa: E402
from arm_jax.prompts import render_judge_prompt  # noqa: E402
from arm_jax.rl.heldout import shown_order  # noqa: E402
from arm_jax.rl.optim import OptimizerConfig  # noqa: E402
from arm_jax.rl.sft import pad_rows, run_sft, tokenize_sft  # noqa: E402
from arm_jax.sampling import SamplingParams, completions_text  # noqa: E402
from arm_jax.toy import diagnostics, warmstart, world  # noqa: E402
from arm_jax.toy.setup import world_shape  # noqa: E402
from arm_jax.training import setup as train_setup  # noqa: E402
from configs import toy  # noqa: E402

PROBE_ROWS = 256


def set_field(config, assignment: str) -> None:
  """KEY=VALUE on the config; VALUE is a Python literal (strings may go unquoted)."""
  key, _, text = assignment.partition("=")
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  try:
    notebook.override(config, {key: tuple(value) if isinstance(value, list) else value})
  except KeyError as e:
    raise KeyError(f"--set {assignment!r}: configs/toy.py has no field {key!r}") from e


def decision_tokens(tokenizer) -> dict[str, list[int]]:
  def first(text):
    return tokenizer.encode(text, add_special_tokens=False)[-1]
  return {"evidence": [first(t) for t in warmstart.WHERE.values()],
          "marks": [first(" yes"), first(" no")],
          "winner": [first("Winner: Response A"), first("Winner: Response B")]}


def make_probe(policy, rows):
  batch = pad_rows(rows, multiple=16)
  tokens, attention = jnp.asarray(batch.tokens), jnp.asarray(batch.attention)
  targets, mask = np.asarray(batch.tokens)[:, 1:], np.asarray(batch.loss_mask)[:, 1:]
  kinds = decision_tokens(policy.tokenizer)
  model = policy.model

  @jax.jit
  def predict(params):
    positions = jnp.maximum(jnp.cumsum(attention, -1) - 1, 0)
    hidden = model.apply({"params": params}, tokens, attention_mask=attention,
                         positions=positions, return_hidden=True)
    logits = jnp.einsum("ntd,vd->ntv", hidden, head_weight(params, model.config,
                                                           vocab_major=True))[:, :-1]
    logp = jax.nn.log_softmax(logits, -1)
    return jnp.argmax(logits, -1), jnp.exp(jnp.take_along_axis(
        logp, tokens[:, 1:, None], -1)[..., 0])

  def probe(params) -> dict[str, float]:
    argmax, prob = (np.asarray(x) for x in predict(params))
    out = {}
    for name, ids in kinds.items():
      sel = mask & np.isin(targets, ids)
      if sel.any():
        out[name] = round(float((argmax[sel] == targets[sel]).mean()), 3)
        out[f"{name}_p"] = round(float(prob[sel].mean()), 3)
    out["rows_exact"] = round(float(((argmax == targets) | ~mask).all(1).mean()), 3)
    return out

  return probe


def sampled_figures(shown, rubrics, texts, prefix: str = "s_") -> dict[str, float]:
  """diagnostics.reading's judge shares (s_restated, s_evidence, s_marks, s_marks_<kind>) and the
  verdicts' accuracy (s_accuracy; an unparseable verdict is wrong) of judgments `texts` of the
  pairs as shown with these rubrics."""
  read = diagnostics.reading(shown, rubrics, texts)
  right = [parse_verdict(t) is not None and label_index(parse_verdict(t)) == p.label
           for p, t in zip(shown, texts)]
  return {prefix + k.removeprefix("judge_"): round(v, 3) for k, v in read.items()
          if k != "rubric_exact"} | {prefix + "accuracy": round(float(np.mean(right)), 3)}


def gatekeeper_split(shown, rubrics, texts, headers) -> dict[str, float]:
  """How the gatekeeper line a judge writes before reading steers the evidence it then writes:
  g_gatekeeper, the share of judgments `texts` whose gatekeeper line is the one in `headers`
  (each pair's correct judgment's first three lines); g_evidence_gate_right / _wrong, the
  evidence share (diagnostics.reading) of those that named it and of those that did not."""
  named = [t.split("\n")[1:2] == h.split("\n")[1:2] for t, h in zip(texts, headers)]
  out = {"g_gatekeeper": round(float(np.mean(named)), 3)}
  for suffix, want in (("right", True), ("wrong", False)):
    idx = [i for i, n in enumerate(named) if n == want]
    if idx:
      out[f"g_evidence_gate_{suffix}"] = round(diagnostics.reading(
          [shown[i] for i in idx], [rubrics[i] for i in idx],
          [texts[i] for i in idx])["judge_evidence"], 3)
  return out


def make_sampled_probe(policy, pairs, max_new_tokens: int, seed: int, greedy: bool = False,
                       gatekeeper: str = "separating"):
  """probe(params, step): sampled_figures of one judgment per pair sampled at temperature 1,
  each pair shown in a random order (rl.heldout.shown_order) with its exact rubric; greedy=True
  adds the same figures of greedy judgments of those prompts (prefix g_), gatekeeper_split of
  them, and the figures of greedy judgments that continue the correct first three lines (the
  `gatekeeper` rule's gatekeeper given; prefix f_)."""
  shown = shown_order(pairs, seed)
  criteria = [world.parse_instruction(p.instruction)[1] for p in shown]
  rubrics = [warmstart.rubric_text(c) for c in criteria]
  prompts = policy.encode([render_judge_prompt(policy.template, p.instruction, r, p.response_a,
                                               p.response_b) for p, r in zip(shown, rubrics)])
  if greedy:  # each pair's correct first three lines, and its prompt continued by them
    headers = ["\n".join(warmstart.judgment_text(c, p.response_a, p.response_b, p.label,
                                                 gatekeeper=gatekeeper).split("\n")[:3]) + "\n"
               for c, p in zip(criteria, shown)]
    forced = [ids + policy.tokenizer.encode(h, add_special_tokens=False)
              for ids, h in zip(prompts, headers)]
  sampling = SamplingParams(max_new_tokens, temperature=1.0)

  def probe(params, step: int) -> dict[str, float]:
    texts = completions_text(policy.tokenizer, policy.sampler(
        params, prompts, sampling, jax.random.key(seed * 100003 + step)))
    figures = sampled_figures(shown, rubrics, texts)
    if greedy:
      argmax = SamplingParams(max_new_tokens, greedy=True)
      texts = completions_text(policy.tokenizer, policy.sampler(params, prompts, argmax,
                                                                jax.random.key(0)))
      figures |= sampled_figures(shown, rubrics, texts, prefix="g_")
      figures |= gatekeeper_split(shown, rubrics, texts, headers)
      texts = completions_text(policy.tokenizer, policy.sampler(params, forced, argmax,
                                                                jax.random.key(0)))
      figures |= sampled_figures(shown, rubrics, [h + t for h, t in zip(headers, texts)],
                                 prefix="f_")
    return figures

  return probe


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--role", default="judge", choices=("judge", "generator"))
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--steps", type=int, default=800)
  p.add_argument("--every", type=int, default=100)
  p.add_argument("--batch_size", type=int, default=32)
  p.add_argument("--learning_rate", type=float, default=1e-3)
  p.add_argument("--warmup_steps", type=int, default=30)
  p.add_argument("--schedule", default="constant", choices=("constant", "cosine"))
  p.add_argument("--pad_multiple", type=int, default=16)
  p.add_argument("--length_groups", type=int, default=0)
  p.add_argument("--sample", type=int, default=0,
                 help="judge only: sample this many held-out judgments at each probe")
  p.add_argument("--greedy", action="store_true",
                 help="with --sample: also score greedy judgments of the same pairs (g_*)")
  p.add_argument("--from_generator", type=int, default=0, metavar="N",
                 help="judge only: start from the generator's weights after N of its warm-start "
                      "steps (at --generator_learning_rate) instead of the shared random init")
  p.add_argument("--generator_learning_rate", type=float, default=1e-3)
  p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
  p.add_argument("--out", default="")
  args = p.parse_args()
  for flag, given in (("--sample", args.sample), ("--from_generator", args.from_generator)):
    if given and args.role != "judge":
      p.error(f"{flag} is about the judge: use it with --role judge")

  config = toy.get_config()
  config.seed = config.data.seed = args.seed
  for assignment in args.set:
    set_field(config, assignment)
  train_setup._import_plugins(config)  # pylint: disable=protected-access
  built = train_setup.build(config)
  policy = getattr(built, args.role)
  d, w = config.data, config.warmstart
  _, held_out = world.split(world.make_instances(d.num_instances, seed=d.seed,
                                                 kinds=tuple(d.kinds) or world.KINDS,
                                                 shape=world_shape(d)),
                            d.held_out_fraction, seed=d.seed)
  exact = warmstart.WarmStart(imperfect_rate=0.0, judge_accuracy=1.0, negation_slip=0.0,
                              gatekeeper=w.gatekeeper)
  make = warmstart.judge_examples if args.role == "judge" else warmstart.rubric_examples
  examples = built.sft_examples[args.role]
  probe_examples = make(held_out[:PROBE_ROWS], exact)
  rows, _ = tokenize_sft(policy.tokenizer, probe_examples,
                         max_length=w.max_length)
  probe = make_probe(policy, rows)
  sampled = (make_sampled_probe(policy, [i.pair for i in held_out[:args.sample]],
                                  config.judge.max_new_tokens, args.seed, args.greedy,
                                  w.gatekeeper)
             if args.sample else None)
  out = open(args.out, "w", encoding="utf-8") if args.out else None  # noqa: SIM115
  start = time.perf_counter()
  sft_seconds = [0.0]

  def on_step(step, params, opt_state, metrics):  # noqa: ARG001
    sft_seconds[0] += metrics["seconds"]
    if (step + 1) % args.every == 0:
      record = dict(step=step + 1, sft_seconds=round(sft_seconds[0], 1),
                    seconds=round(time.perf_counter() - start, 1),
                    nll=round(metrics["nll_per_token"], 4), **probe(params))
      if sampled is not None:
        record.update(sampled(params, step + 1))
      print(json.dumps(record), flush=True)
      if out:
        out.write(json.dumps(record) + "\n")
        out.flush()
    return False

  def sft(role_policy, params, examples, learning_rate, steps, **extra):
    optimizer = OptimizerConfig(learning_rate=learning_rate, max_grad_norm=w.max_grad_norm,
                                warmup_steps=args.warmup_steps, schedule=args.schedule,
                                total_steps=steps)
    return run_sft(role_policy.model, params, role_policy.tokenizer, examples,
                   optimizer_config=optimizer, sft_config=built.sft_config,
                   batch_size=args.batch_size, max_length=w.max_length,
                   pad_multiple=args.pad_multiple, steps=steps, seed=args.seed,
                   log_fn=lambda _: None, length_groups=args.length_groups, **extra)[0]

  params = jax.tree.map(jnp.copy, policy.params)
  if args.from_generator:
    gen = built.generator
    params = sft(gen, jax.tree.map(jnp.copy, gen.params), built.sft_examples["generator"],
                 args.generator_learning_rate, args.from_generator)
    start = time.perf_counter()
  sft(policy, params, examples, args.learning_rate, args.steps, on_step=on_step)
  if out:
    out.close()


if __name__ == "__main__":
  main()
