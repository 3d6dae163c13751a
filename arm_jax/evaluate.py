"""Reward-model evaluation of (rubric generator, judge) pairs: docs/method.md §7's table.

  python -m arm_jax.evaluate --config configs/evaluate_smollm2.py --workdir DIR
  python main.py --config configs/evaluate_smollm2.py --workdir DIR   (config.job = "evaluate")

The config names the rows (`systems`: trained or base weights, with or without a rubric, voting;
arm_jax.evaluation.systems), the columns (`benchmarks`: built datasets, canonical JSONL files or
a training run's held-out pairs; arm_jax.evaluation.benchmarks) and the decoding settings: one
greedy rubric per prompt (`rubric.max_new_tokens`), judgments sampled at `judge.temperature`
(docs/method.md §5: 1.0; 0 = greedy), `orders` among mixed / ord1 / ord2. Scoring rules are in
arm_jax.evaluation.metrics. Outputs in DIR: results.md, results.csv, results.json,
predictions.jsonl, results.png (arm_jax.evaluation.report), and generations.jsonl: every
sampled batch as it finishes, so that the same command after a kill samples only what is
missing and writes the tables an uninterrupted run would (arm_jax.evaluation.journal).

Generation limits (`rubric.max_new_tokens`, `judge.max_new_tokens`): 0 takes the training run's
own (its held-out eval's, `eval.rubric_max_new_tokens` / `eval.judge_max_new_tokens`), or the
paper's inference limits (1024 / 4096) without a training run. A limit below what the run
generated with in training (the larger of its RL and eval limits) can cut rubrics or judgments
before their end (a judgment cut before its `Winner:` line is a parse failure): it is logged as
a warning and listed in results.json's settings.warnings.

Everything that can be checked without a model (benchmark paths, names, the training run's
checkpoint) is checked before any model loads, with an error that names the problem.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
import zlib
from typing import Callable, Optional

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from arm_jax.evaluation import benchmarks as benchmarks_lib
from arm_jax.evaluation import report
from arm_jax.evaluation import journal as journal_lib
from arm_jax.evaluation.metrics import ORDERS
from arm_jax.evaluation.runner import evaluate_examples, policy_judge_fn, policy_rubric_fn
from arm_jax.evaluation.systems import build_models, system_specs
from arm_jax import config_sections, multihost, xla_options
from arm_jax.generate import sampling_from_flags


def benchmark_names(config: ml_collections.ConfigDict) -> list[str]:
  """The selected benchmarks, each defined and checked (paths exist) before models load."""
  names = list(config.benchmarks)
  if not names:
    raise ValueError("config.benchmarks is empty: name at least one of "
                     f"{sorted(config.benchmark_specs)}")
  for name in names:
    if name not in config.benchmark_specs:
      raise ValueError(f"unknown benchmark {name!r} in config.benchmarks: not defined in "
                       f"config.benchmark_specs (defined: "
                       f"{', '.join(sorted(config.benchmark_specs))})")
    benchmarks_lib.check_spec(name, config.benchmark_specs[name], bool(config.trained.workdir))
  if len(set(names)) != len(names):
    raise ValueError(f"config.benchmarks names a benchmark twice: {names}")
  return names


def _orders(config: ml_collections.ConfigDict) -> list[str]:
  orders = list(config.orders)
  bad = [o for o in orders if o not in ORDERS]
  if not orders or bad or len(set(orders)) != len(orders):
    raise ValueError(f"config.orders={orders}: expected distinct names from {ORDERS}")
  return orders


PAPER_LIMITS = {"rubric": 1024, "judge": 4096}  # greedy rubrics, sampled judgments (inference)


def generation_limits(config: ml_collections.ConfigDict,
                      train_config: Optional[ml_collections.ConfigDict]) -> dict:
  """{"rubric": {...}, "judge": {...}, "warnings": [...]}: per kind the max_new_tokens used, where
  it comes from ("config", "run" or "paper") and the run's training limit (None without a
  run)."""
  out: dict = {"warnings": []}
  for kind, policy in (("rubric", "generator"), ("judge", "judge")):
    value = int(config[kind].max_new_tokens)
    run_eval = run_limit = None
    if train_config is not None:
      run_eval = int(train_config.eval[f"{kind}_max_new_tokens"])
      run_limit = max(run_eval, int(train_config[policy].max_new_tokens))
    source = "config" if value else "run" if run_eval is not None else "paper"
    value = value or (run_eval if run_eval is not None else PAPER_LIMITS[kind])
    out[kind] = dict(max_new_tokens=value, source=source, run_limit=run_limit)
    if run_limit is not None and value < run_limit:
      out["warnings"].append(
          f"{kind}.max_new_tokens={value} is below the training run's {kind} limit {run_limit} "
          f"({policy}.max_new_tokens={train_config[policy].max_new_tokens}, "
          f"eval.{kind}_max_new_tokens={run_eval}): {kind}s longer than {value} tokens are cut"
          + (" before their Winner line and count as parse failures" if kind == "judge" else "")
          + f"; set {kind}.max_new_tokens=0 to use the run's own")
  return out


def _key(seed: int, *names: str) -> jax.Array:
  """A sampling key per (system, benchmark), independent of which others run."""
  key = jax.random.key(seed)
  for name in names:
    key = jax.random.fold_in(key, zlib.crc32(name.encode("utf-8")))
  return key


def run_evaluate(config: ml_collections.ConfigDict, workdir: str,
                 train_config: Optional[ml_collections.ConfigDict] = None,
                 should_stop: Optional[Callable[[], bool]] = None) -> Optional[dict]:
  """Evaluates every configured system on every configured benchmark; writes the outputs into
  `workdir` and returns results.json's content. `train_config` replaces loading the training
  run's config from `trained.config` (for notebooks and tests).

  Stopped early, it returns None without tables: after SIGTERM (or once `should_stop` says so)
  it finishes the batch it is sampling, writes it to the journal and returns; the same command
  then resumes after it (arm_jax.evaluation.journal)."""
  with journal_lib.stop_on_sigterm(lambda m: logging.warning("%s", m)) as sigterm:
    stop = sigterm if should_stop is None else (lambda: sigterm() or should_stop())
    try:
      return _evaluate(config, workdir, train_config, stop)
    except journal_lib.Stopped as stopped:
      logging.warning("%s", stopped)
      return None


def _evaluate(config: ml_collections.ConfigDict, workdir: str,
              train_config: Optional[ml_collections.ConfigDict],
              should_stop: Callable[[], bool]) -> dict:
  if config.get("job") != "evaluate":
    raise ValueError(f"config.job={config.get('job')!r}: the evaluator takes an evaluation "
                     "config (job 'evaluate'), e.g. configs/evaluate_smollm2.py")
  config = config_sections.validate(config)
  specs = system_specs(config)
  names = benchmark_names(config)
  orders = _orders(config)
  if config.batch_size < 1:
    raise ValueError(f"config.batch_size={config.batch_size}; expected 1 or more")
  for kind in ("rubric", "judge"):
    if config[kind].max_new_tokens < 0:
      raise ValueError(f"config.{kind}.max_new_tokens={config[kind].max_new_tokens}; expected "
                       "0 (the training run's own, else the paper's) or more")
  j = config.judge
  # Checked now; the length limit is known once the training run's config is read.
  sampling = sampling_from_flags(1, j.temperature, j.top_p, j.top_k)
  voting = [s.name for s in specs if s.votes > 1]
  if sampling.greedy and voting:
    raise ValueError(f"systems {voting} vote over several judge samples, but judge.temperature "
                     "is 0 (greedy samples are identical); set judge.temperature > 0")
  start = time.perf_counter()
  specs_of = {n: config.benchmark_specs[n] for n in names}
  held_out = [n for n in names if specs_of[n].kind == "held_out"]
  # Records are read (and a bad one reported) before any model loads; held-out pairs come
  # with the training run's models.
  examples = {n: benchmarks_lib.load_examples(n, specs_of[n]) for n in names
              if n not in held_out}
  models = build_models(config, specs, train_config)
  limits = generation_limits(config, models.train_config)
  for warning in limits["warnings"]:
    logging.warning("%s", warning)
  sampling = dataclasses.replace(sampling, max_new_tokens=limits["judge"]["max_new_tokens"])
  for n in held_out:
    examples[n] = benchmarks_lib.load_examples(n, specs_of[n], models.held_out)
    if not examples[n]:
      raise ValueError(f"benchmark {n!r}: the training run has no held-out pairs"
                       + (f" in subset {specs_of[n].subset!r}" if specs_of[n].subset
                          else ""))
  results: dict = dict(
      settings=dict(seed=int(config.seed), orders=orders, batch_size=config.batch_size,
                    rubric_max_new_tokens=limits["rubric"]["max_new_tokens"],
                    judge=dict(max_new_tokens=limits["judge"]["max_new_tokens"],
                               temperature=j.temperature, top_p=j.top_p, top_k=j.top_k),
                    limits={k: limits[k] for k in ("rubric", "judge")},
                    warnings=limits["warnings"]),
      models=models.info,
      benchmarks={n: dict(column=benchmarks_lib.column_label(n), **specs_of[n].to_dict(),
                          examples=len(examples[n]),
                          best_of_n=sum(e.best_of_n for e in examples[n])) for n in names},
      systems={})
  # Every sampled batch is kept in WORKDIR/generations.jsonl: a rerun after a kill samples only
  # what was missing (arm_jax.evaluation.journal). Its fingerprint: the models and templates.
  journal = journal_lib.open_journal(os.path.join(workdir, journal_lib.FILENAME),
                                     journal_lib.fingerprint(models.info),
                                     log=lambda m: logging.info("%s", m), should_stop=should_stop)
  predictions: list[dict] = []
  rubric_caches: dict[str, dict] = {}  # one rubric per prompt and generator, shared by rows
  for spec in specs:
    judge = models.judge(spec)
    weights = {r: models.weights(spec, r) for r in ("generator", "judge") if getattr(spec, r) in
               ("trained", "base")}
    system = dict(generator=spec.generator, judge=spec.judge, votes=spec.votes,
                  weights=weights, judge_template=judge.template.source, benchmarks={})
    for n in names:
      key = _key(int(config.seed), spec.name, n)
      kind = {"generator": "generator", "judge": "direct" if spec.direct else "judge"}
      scope = {r: None if journal is None else journal.scoped(f"{kind[r]}|{weights.get(r)}")
               for r in kind}
      rubric_fn = None if spec.direct else policy_rubric_fn(
          models.generator(spec), limits["rubric"]["max_new_tokens"], config.batch_size,
          jax.random.fold_in(key, 0), scope["generator"])
      run = evaluate_examples(
          examples[n], judge_fn=policy_judge_fn(judge, sampling, config.batch_size,
                                                jax.random.fold_in(key, 1), scope["judge"]),
          rubric_fn=rubric_fn, orders=orders, votes=spec.votes, seed=int(config.seed),
          rubric_cache=rubric_caches.setdefault(weights.get("generator", ""), {}))
      system["benchmarks"][n] = run.metrics
      predictions.extend(dict(system=spec.name, **p) for p in run.predictions)
      table = run.metrics["orders"][report.table_order(orders)]
      logging.info("%s on %s: accuracy %.3f over %d examples, parse failures %.3f, %.1fs",
                   spec.name, n, table["accuracy"], run.metrics["examples"],
                   table["parse_failure_rate"], run.metrics["seconds"])
    results["systems"][spec.name] = system
  results["seconds_total"] = time.perf_counter() - start
  if journal is not None:
    results["journal"] = journal.stats()
    logging.info("generation journal: %d batches reused, %d sampled", journal.reused,
                 journal.written)
  results["table"] = report.table_section(results, names, orders)
  if jax.process_index() == 0:
    paths = report.write_outputs(workdir, results, predictions, names, orders)
    with open(paths["markdown"], encoding="utf-8") as f:
      print(f.read())
    print(f"outputs in {workdir}: {', '.join(report.FILES.values())}")
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  xla_options.configure_process()
  multihost.initialize()
  if run_evaluate(flags.FLAGS.config, flags.FLAGS.workdir) is None:
    return 128 + signal.SIGTERM  # stopped, no tables written: the status a SIGTERM would give
  return 0


if __name__ == "__main__":
  config_flags.DEFINE_config_file("config", None, "evaluation config (configs/evaluate_*.py)",
                                  lock_config=True)
  flags.DEFINE_string("workdir", "eval", "where the tables, predictions and plot go")
  flags.mark_flags_as_required(["config"])
  app.run(main)
