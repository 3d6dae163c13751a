"""arm_jax.evaluate end to end on a tiny toy training workdir, and its errors for bad input.

The workdir is made without training (seconds instead of minutes): the toy run's models are built
as arm_jax.training builds them, moved away from their starting weights, and saved by the training
run's own checkpointer as a mid-run checkpoint (optimizer state included, which the evaluator
must skip). Benchmarks: the run's held-out pairs and a canonical JSONL fixture with pairs and a
best-of-4 set, in toy vocabulary.
"""

import csv
import importlib.util
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest

from arm_jax import jobs
from arm_jax.data.schema import Record, record_to_json
from arm_jax.evaluate import run_evaluate
from arm_jax.evaluation import systems
from arm_jax.evaluation.benchmarks import PAPER_COLUMNS
from arm_jax.models import Decoder
from arm_jax.models.checkpoint import abstract_params
from arm_jax.parsing import parse_verdict
from arm_jax.toy import model as toy_model
from arm_jax.toy import world
from arm_jax.toy.tokenizer import build_tokenizer
from arm_jax.training import checkpoints
from arm_jax.training.checkpoints import TrainCheckpointer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = os.path.join(REPO, "configs", "toy.py")
TINY = ("model.num_layers=1", "model.hidden_size=32", "model.num_heads=2",
        "model.num_kv_heads=2", "model.intermediate_size=64", "data.num_instances=40",
        "data.held_out_fraction=0.2", "log.tensorboard=False")
ORDERS = ("mixed", "ord1", "ord2")


def _eval_config(workdir: str, fixture: str):
  spec = importlib.util.spec_from_file_location(
      "evaluate_toy", os.path.join(REPO, "configs", "evaluate_toy.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.trained.workdir, c.trained.config, c.trained.overrides = workdir, TOY, TINY
  c.benchmark_specs.held_out.max_examples = 4
  c.benchmark_specs.fixture = dict(kind="dataset", path=fixture, subset="", max_examples=0)
  c.benchmarks = ("held_out", "fixture")
  c.systems = ("trained", "prompted", "direct")  # this fixture checkpoint has no rounds
  for name in c.systems:  # voting@2 rows; equal votes also share the compiled decode loops
    c.system_specs[name].votes = 2
  c.rubric.max_new_tokens, c.judge.max_new_tokens, c.batch_size = 8, 12, 8
  return c


@pytest.fixture(scope="module")
def toy_workdir(tmp_path_factory):
  """(workdir, the saved policy params) of a toy run checkpointed mid RL phase. The parameters
  have the run's decoder's shapes (TINY) and random host values (jitting an init would compile
  for seconds); the evaluator restores them into the run's 8-device shardings."""
  workdir = str(tmp_path_factory.mktemp("toy_run"))
  cfg = toy_model.decoder_config(build_tokenizer(), num_layers=1, hidden_size=32, num_heads=2,
                                 num_kv_heads=2, intermediate_size=64)
  shapes = nn.unbox(abstract_params(Decoder(cfg)))
  rng = np.random.default_rng(5)
  trained = {role: jax.tree.map(lambda s: rng.normal(0, 0.1, s.shape).astype(s.dtype), shapes)
             for role in ("generator", "judge")}
  state = dict(trained, judge_opt={"mu": jax.tree.map(np.zeros_like, trained["judge"])})
  ckpt = TrainCheckpointer(os.path.join(workdir, "checkpoints"))
  ckpt.save(7, state, dict(stage="rl", phase=0, step=1, global_step=7, metrics_offset=0,
                           rubric_cache=None, evals=[0], seed=0, state_keys=sorted(state)))
  ckpt.close()
  return workdir, trained


@pytest.fixture(scope="module")
def fixture_jsonl(tmp_path_factory):
  """Three pairs and one best-of-4 set (candidates from two toy instances), in toy words."""
  instances = world.make_instances(5, seed=123)
  records = [Record(id=f"pair{i}", prompt=inst.instruction, response_a=inst.response_a,
                    response_b=inst.response_b, winner="AB"[inst.label], source="fixture",
                    subset=f"s{i % 2}") for i, inst in enumerate(instances[:3])]
  a, b = instances[3], instances[4]
  records.append(Record(id="bon0", prompt=a.instruction, source="fixture", subset="bon",
                        candidates=(a.response_a, a.response_b, b.response_a, b.response_b),
                        preferred=a.label))
  path = tmp_path_factory.mktemp("data") / "fixture.jsonl"
  path.write_text("".join(json.dumps(record_to_json(r)) + "\n" for r in records))
  return str(path)


@pytest.fixture(scope="module")
def evaluated(toy_workdir, fixture_jsonl, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("eval"))
  results = run_evaluate(_eval_config(toy_workdir[0], fixture_jsonl), out)
  return out, results


def _read_jsonl(path):
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f]


def test_every_output_is_written(evaluated):
  out, _ = evaluated
  for name in ("results.md", "results.csv", "results.json", "predictions.jsonl", "results.png"):
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  with open(os.path.join(out, "results.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_killed_evaluation_resumes_and_writes_the_same_tables(evaluated, toy_workdir,
                                                                 fixture_jsonl, tmp_path):
  """The same command in a copy of the workdir whose generations.jsonl lost its second half (a
  kill) samples only those batches and writes the same predictions and accuracies."""
  out, results = evaluated
  stats = results["journal"]
  assert stats["batches_reused"] == 0 and stats["batches_sampled"] >= 4
  with open(os.path.join(out, "generations.jsonl"), encoding="utf-8") as f:
    lines = f.readlines()
  assert len(lines) == 1 + stats["batches_sampled"]
  keep = 1 + stats["batches_sampled"] // 2
  (tmp_path / "generations.jsonl").write_text("".join(lines[:keep]), encoding="utf-8")
  again = run_evaluate(_eval_config(toy_workdir[0], fixture_jsonl), str(tmp_path))
  assert again["journal"]["batches_reused"] == keep - 1
  assert again["journal"]["batches_sampled"] == stats["batches_sampled"] - (keep - 1)
  assert _read_jsonl(tmp_path / "predictions.jsonl") == _read_jsonl(
      os.path.join(out, "predictions.jsonl"))
  for name, system in results["systems"].items():
    for bench, m in system["benchmarks"].items():
      assert again["systems"][name]["benchmarks"][bench]["orders"] == m["orders"]


def test_a_stopped_evaluation_keeps_its_last_batch_and_resumes_to_the_same_tables(
    evaluated, toy_workdir, fixture_jsonl, tmp_path):
  """Asked to stop (what SIGTERM does in the command), the evaluator returns None once the batch
  it was sampling is in the journal, with no tables; the same command then samples only the
  rest and writes what the uninterrupted run wrote."""
  out, results = evaluated
  reads = []
  stopped = run_evaluate(_eval_config(toy_workdir[0], fixture_jsonl), str(tmp_path),
                         should_stop=lambda: reads.append(1) or len(reads) == 2)
  assert stopped is None and not (tmp_path / "results.json").exists()
  with open(tmp_path / "generations.jsonl", encoding="utf-8") as f:
    assert len(f.readlines()) == 1 + 2  # the header and the two batches sampled
  again = run_evaluate(_eval_config(toy_workdir[0], fixture_jsonl), str(tmp_path))
  assert again["journal"]["batches_reused"] == 2
  assert again["journal"]["batches_sampled"] == results["journal"]["batches_sampled"] - 2
  assert _read_jsonl(tmp_path / "predictions.jsonl") == _read_jsonl(
      os.path.join(out, "predictions.jsonl"))


def test_table_columns_follow_the_paper_then_avg_then_others(evaluated):
  out, results = evaluated
  expected = [label for _, label in PAPER_COLUMNS] + ["Avg", "held_out", "fixture"]
  with open(os.path.join(out, "results.csv"), newline="") as f:
    rows = list(csv.reader(f))
  assert rows[0] == ["system"] + expected
  assert [r[0] for r in rows[1:]] == ["trained", "trained voting@2", "prompted",
                                      "prompted voting@2", "direct", "direct voting@2"]
  assert all(r[1:11] == [""] * 10 for r in rows[1:])  # paper benchmarks not evaluated
  with open(os.path.join(out, "results.md"), encoding="utf-8") as f:
    header = next(line for line in f if line.startswith("| system"))
  assert [c.strip() for c in header.strip("|\n").split("|")] == ["system"] + expected
  assert results["table"]["columns"] == expected
  for row, table_row in zip(rows[1:], results["table"]["rows"]):
    cells = table_row["cells"]
    assert float(row[expected.index("held_out") + 1]) == pytest.approx(
        100 * cells["held_out"], abs=0.005)
    assert cells["Avg"] == pytest.approx((cells["held_out"] + cells["fixture"]) / 2)


def test_json_numbers_match_the_per_example_predictions(evaluated):
  out, results = evaluated
  with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
    saved = json.load(f)
  predictions = _read_jsonl(os.path.join(out, "predictions.jsonl"))
  assert len(predictions) == 3 * (4 + 4) * len(ORDERS)  # systems x examples x orders
  for name, system in saved["systems"].items():
    for bench, run in system["benchmarks"].items():
      assert run["examples"] == 4
      for order in ORDERS:
        rows = [p for p in predictions
                if (p["system"], p["benchmark"], p["order"]) == (name, bench, order)]
        assert len(rows) == 4
        for p in rows:
          assert p["verdicts"] == [[parse_verdict(t) for t in s] for s in p["judgments"]]
          assert all(len(s) == system["votes"] for s in p["judgments"])
          assert p["correct"] == all(v[0] == label for v, label in zip(p["verdicts"], p["label"]))
        summary = run["orders"][order]
        assert summary["accuracy"] == pytest.approx(np.mean([p["correct"] for p in rows]))
        if system["votes"] > 1:
          assert summary["voting_accuracy"] == pytest.approx(
              np.mean([p["voted_correct"] for p in rows]))
        failures = sum(v is None for p in rows for s in p["verdicts"] for v in s)
        assert summary["parse_failures"] == failures
      bias = abs(run["orders"]["ord1"]["accuracy"] - run["orders"]["ord2"]["accuracy"])
      assert run["position_bias"]["accuracy"] == pytest.approx(bias)
  assert saved["benchmarks"]["fixture"]["best_of_n"] == 1
  bon = [p for p in predictions if p["id"] == "bon0"]
  assert all(len(p["shown"]) == 3 for p in bon)  # the preferred vs each of the three others
  assert results["systems"]["trained"]["benchmarks"]["fixture"]["orders"]["mixed"][
      "accuracy"] == saved["systems"]["trained"]["benchmarks"]["fixture"]["orders"]["mixed"][
          "accuracy"]


def test_one_rubric_per_prompt_and_none_for_the_direct_judge(evaluated):
  out, _ = evaluated
  predictions = _read_jsonl(os.path.join(out, "predictions.jsonl"))
  for name in ("trained", "prompted"):
    by_id = {}
    for p in predictions:
      if p["system"] == name:
        by_id.setdefault(p["id"], set()).add(p["rubric"])
    assert all(len(r) == 1 and None not in r for r in by_id.values())
  assert all(p["rubric"] is None for p in predictions if p["system"] == "direct")


def test_trained_rows_read_the_newest_checkpoint(toy_workdir):
  workdir, saved = toy_workdir
  like = jax.tree.map(lambda x: jax.numpy.zeros(x.shape, x.dtype), saved)  # the target layout
  restored, meta = checkpoints.restore_policies(workdir, like)
  assert (meta["checkpoint_step"], meta["stage"]) == (7, "rl")
  for role in ("generator", "judge"):
    for got, want in zip(jax.tree.leaves(restored[role]), jax.tree.leaves(saved[role])):
      np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


# --- bad input -----------------------------------------------------------------------------------

def test_missing_dataset_path_is_named(toy_workdir, tmp_path):
  config = _eval_config(toy_workdir[0], str(tmp_path / "nowhere.jsonl"))
  with pytest.raises(FileNotFoundError, match=r"benchmark_specs\.fixture\.path=.*nowhere"):
    run_evaluate(config, str(tmp_path / "out"))
  config.benchmark_specs.fixture.path = str(tmp_path)  # a directory without a built dataset
  with pytest.raises(FileNotFoundError, match="without a built dataset"):
    run_evaluate(config, str(tmp_path / "out"))


def test_a_bad_record_is_named_before_any_model_loads(toy_workdir, fixture_jsonl, tmp_path):
  bad = tmp_path / "bad.jsonl"
  with open(fixture_jsonl, encoding="utf-8") as f:
    lines = f.readlines()
  lines[1] = lines[1].replace('"winner": "', '"winner": "C')
  bad.write_text("".join(lines))
  config = _eval_config(toy_workdir[0], str(bad))
  with pytest.raises(ValueError, match=r"bad\.jsonl:2: not a canonical record \(bad_winner"):
    run_evaluate(config, str(tmp_path / "out"))


def test_unknown_benchmark_and_system_names_are_named(toy_workdir, fixture_jsonl, tmp_path):
  config = _eval_config(toy_workdir[0], fixture_jsonl)
  config.benchmarks = ("held_out", "rb3")
  with pytest.raises(ValueError, match=r"unknown benchmark 'rb3'.*defined: chat, chat_hard"):
    run_evaluate(config, str(tmp_path))
  config = _eval_config(toy_workdir[0], fixture_jsonl)
  config.systems = ("trained", "oracle")
  with pytest.raises(ValueError, match=r"system 'oracle'.*defined: direct, prompted"):
    run_evaluate(config, str(tmp_path))


def test_workdir_without_checkpoint_is_named(fixture_jsonl, tmp_path):
  config = _eval_config(str(tmp_path / "empty_run"), fixture_jsonl)
  with pytest.raises(FileNotFoundError, match=r"empty_run'? has no checkpoint"):
    run_evaluate(config, str(tmp_path / "out"))


def test_a_training_config_is_refused(tmp_path):
  with pytest.raises(ValueError, match="job 'evaluate'"):
    run_evaluate(systems.load_train_config(TOY), str(tmp_path))


def test_evaluate_is_a_job_and_a_module_cli(fixture_jsonl, tmp_path):
  assert "evaluate" in jobs.JOBS
  proc = subprocess.run(
      [sys.executable, "-m", "arm_jax.evaluate", "--config",
       os.path.join(REPO, "configs", "evaluate_toy.py"), "--workdir", str(tmp_path / "out"),
       f"--config.trained.workdir={tmp_path / 'no_run'}"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert "has no checkpoint" in proc.stderr


def test_the_viewer_shows_every_system_and_example_of_a_real_evaluation(evaluated):
  """arm_jax.evaluation.view on this evaluation: one row per (system, example), its flags
  recomputed from the predictions by hand."""
  from arm_jax.evaluation import view  # noqa: PLC0415
  out, _ = evaluated
  predictions = _read_jsonl(os.path.join(out, "predictions.jsonl"))
  assert all(p["candidates"][p["preferred"]] for p in predictions)  # texts kept
  _, rows, skipped = view.load(out)
  assert skipped == {} and len(rows) == 3 * (4 + 4)
  for row in rows:
    mine = {p["order"]: p for p in predictions
            if (p["system"], p["benchmark"], p["id"]) == (row.system, row.benchmark, row.id)}
    assert row.wrong == (not mine["mixed"]["correct"])
    assert row.parse_failure == any(v is None for p in mine.values() for s in p["verdicts"]
                                    for v in s)
  text = view.page(out)
  assert text.count("<div class='row") == len(rows)
