"""The evaluator, given a real (tiny) toy training run and the shipped configs/evaluate_toy.py,
reports what the run's own held-out eval measured, round by round.

One tiny toy run (warm start, one round of judge then generator GRPO) keeps its round-0 and
round-1 checkpoints. The evaluator's held-out benchmark is those pairs in the order the run's eval
showed them (Ord-1), its generation limits the run's own:
- greedy (judge.temperature 0): each row's Ord-1 accuracy and parse-failure rate equal the run's
  judge_accuracy_greedy and 1 - verdict_rate_greedy of that round, exactly;
- sampled (the shipped settings): the mean over Ord-1 and Ord-2 of the share of right judge
  samples estimates the same per-pair quantity as the run's sampled judge_accuracy (each of its
  judgments shows the pair in a fresh random order), so the two differ by sampling noise only:
  at most 4 standard errors, the Bernoulli bound sqrt(1/4 (1/(n k_run) + 1/(n k_eval))).
"""

import importlib.util
import json
import math
import os

import pytest

from arm_jax.evaluate import run_evaluate
from arm_jax.training import checkpoints
from arm_jax.training.loop import run_train
from test_train_resume import OVERRIDES, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A decoder and warm start big enough for the judge to write whole judgments (verdicts in about
# 97% of its sampled judgments) in about a minute; 75 held-out pairs, each judged 8 times by the
# run's eval; one round of 2 + 2 RL steps.
RUN = dict(OVERRIDES, **{
    "model.num_layers": 2, "model.hidden_size": 64, "model.num_heads": 2,
    "model.num_kv_heads": 2, "model.intermediate_size": 192,
    "data.num_instances": 600, "data.held_out_fraction": 0.1,
    "warmstart.steps": 150, "warmstart.generator_steps": 60, "warmstart.batch_size": 16,
    "warmstart.learning_rate": 3e-3, "warmstart.warmup_steps": 10,
    "eval.max_pairs": 0, "eval.samples": 8, "eval.batch_size": 32,
    "checkpoint.every_steps": 50, "checkpoint.max_to_keep": 1})
SFT = RUN["warmstart.steps"] + RUN["warmstart.generator_steps"]
PAIRS = 75  # held-out instructions of the 600 instances in configs/toy.py's world shape


def _evaluate_toy_config(workdir: str):
  spec = importlib.util.spec_from_file_location(
      "evaluate_toy", os.path.join(REPO, "configs", "evaluate_toy.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.trained.workdir = workdir
  return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """(workdir, eval records by round) of the tiny run."""
  workdir = str(tmp_path_factory.mktemp("toy_run"))
  run_train(tiny_config(RUN), workdir)
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    evals = {r["round"]: r for r in map(json.loads, f) if r["phase"] == "eval"}
  assert sorted(evals) == [0, 1]
  return workdir, evals


def test_rounds_are_kept_beside_the_newest_checkpoint(run):
  workdir, _ = run
  # max_to_keep 1 keeps only the newest; the warm start's end and round 1's stay.
  ckpt_steps = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints"))
                      if d.isdigit())
  assert ckpt_steps == [SFT, SFT + 4]
  assert checkpoints.resolve(workdir, "warm_start") == SFT
  assert checkpoints.resolve(workdir, "round:1") == SFT + 4
  assert checkpoints.resolve(workdir, "latest") == SFT + 4
  assert checkpoints.resolve(workdir, f"step:{SFT}") == SFT
  with pytest.raises(ValueError, match=r"trained.checkpoint='round:2': the run has 1 rounds"):
    checkpoints.resolve(workdir, "round:2")
  with pytest.raises(FileNotFoundError, match=rf"no step 50 \(kept: {SFT}, {SFT + 4}\)"):
    checkpoints.resolve(workdir, "step:50")
  with pytest.raises(ValueError, match=r"x.checkpoint='round1'; expected one of latest"):
    checkpoints.resolve(workdir, "round1", "x.checkpoint")


def test_greedy_rows_equal_the_runs_own_greedy_eval_of_each_round(run, tmp_path):
  workdir, evals = run
  config = _evaluate_toy_config(workdir)
  config.judge.temperature = 0.0
  config.system_specs.trained.votes = 1
  config.orders = ("ord1",)
  results = run_evaluate(config, str(tmp_path))
  limits = results["settings"]["limits"]
  assert (limits["rubric"]["max_new_tokens"], limits["judge"]["max_new_tokens"]) == (
      RUN["eval.rubric_max_new_tokens"], RUN["eval.judge_max_new_tokens"])
  assert limits["judge"]["source"] == "run" and results["settings"]["warnings"] == []
  for name, round_ in (("warm_start", 0), ("round_1", 1), ("trained", 1)):
    got = results["systems"][name]["benchmarks"]["held_out"]
    assert got["examples"] == evals[round_]["pairs"] == PAIRS
    ord1 = got["orders"]["ord1"]
    assert ord1["accuracy"] == evals[round_]["judge_accuracy_greedy"], name
    assert ord1["parse_failure_rate"] == pytest.approx(
        1 - evals[round_]["verdict_rate_greedy"]), name
  # The verdicts are not all missing, so the equalities above compare something.
  assert evals[1]["verdict_rate_greedy"] > 0.5


def test_sampled_rows_match_the_runs_sampled_eval_within_sampling_noise(run, tmp_path):
  workdir, evals = run
  config = _evaluate_toy_config(workdir)  # as shipped: temperature 1, trained voting@5
  results = run_evaluate(config, str(tmp_path))
  n, k_run = PAIRS, RUN["eval.samples"]
  for name, round_ in (("warm_start", 0), ("trained", 1)):
    got = results["systems"][name]["benchmarks"]["held_out"]["orders"]
    k_eval = 2 * results["systems"][name]["votes"]  # each pair in both orders
    bound = 4 * math.sqrt(0.25 * (1 / (n * k_run) + 1 / (n * k_eval)))
    accuracy = (got["ord1"]["judgment_accuracy"] + got["ord2"]["judgment_accuracy"]) / 2
    verdicts = 1 - (got["ord1"]["parse_failure_rate"] + got["ord2"]["parse_failure_rate"]) / 2
    assert abs(accuracy - evals[round_]["judge_accuracy"]) <= bound, (name, accuracy, bound)
    assert abs(verdicts - evals[round_]["verdict_rate"]) <= bound, (name, verdicts, bound)


def test_a_limit_below_the_runs_is_reported(run, tmp_path):
  workdir, _ = run
  config = _evaluate_toy_config(workdir)
  config.systems = ("trained",)
  config.system_specs.trained.votes = 1
  config.orders = ("ord1",)
  config.benchmark_specs.held_out.max_examples = 2
  config.judge.max_new_tokens = 96
  results = run_evaluate(config, str(tmp_path))
  warnings = results["settings"]["warnings"]
  assert len(warnings) == 1 and warnings[0].startswith(
      "judge.max_new_tokens=96 is below the training run's judge limit 144")
  assert results["settings"]["limits"]["judge"] == dict(max_new_tokens=96, source="config",
                                                        run_limit=144)
  with open(os.path.join(tmp_path, "results.md"), encoding="utf-8") as f:
    assert "- Warning: judge.max_new_tokens=96 is below" in f.read()
