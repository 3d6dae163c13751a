"""The training job resumes exactly: interrupted runs end bit-identical to an uninterrupted one.

A tiny toy config (about a minute per run), data-parallel over the suite's 8 host devices. The
default tier checks the uninterrupted run's records, refuses a resume with changed training keys
and accepts one with changed saving keys, and SIGKILLs the README's `python main.py` (no
--config) on a compact warm-start-only run before re-running it; the slow tier adds a cosine warm
start resumed, an in-process SIGTERM mid phase, a crash between the warm start and RL, two
crashes that lose everything after the last checkpoint, RL started from a shared warm start
(init_from), the whole README command, and a SIGKILL of a real `main.py` mid-phase.
"""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from arm_jax.training import checkpoints
from arm_jax.training import loop as train, setup as train_setup
from arm_jax.training.checkpoints import TrainCheckpointer
from arm_jax.training.loop import run_train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = os.path.join(REPO, "configs", "toy.py")
OVERRIDES = {
    "model.num_layers": 1, "model.hidden_size": 32, "model.num_heads": 2,
    "model.num_kv_heads": 2, "model.intermediate_size": 64,
    # 40 + 40 warm-start steps at a high rate: enough for the judge to reach a Winner line and
    # the generator a well-formed rubric now and then, so that GRPO groups disagree and both
    # phases change the parameters (with 3 steps every reward was 0 and RL moved nothing).
    "data.num_instances": 40, "warmstart.steps": 40, "warmstart.generator_steps": 40,
    "warmstart.batch_size": 8, "warmstart.learning_rate": 1e-2, "warmstart.warmup_steps": 2,
    "warmstart.generator_learning_rate": -1.0,  # the generator at 1e-2 too
    "schedule.rounds": 1, "schedule.steps_per_phase": 2,
    "judge.group_size": 2, "judge.prompts_per_step": 4, "judge.max_new_tokens": 144,
    "generator.group_size": 2, "generator.prompts_per_step": 4, "generator.max_new_tokens": 48,
    "generator.beta": 0.1,  # the generator keeps a KL reference, which resume must restore
    "eval.max_pairs": 4, "eval.rubric_max_new_tokens": 48, "eval.judge_max_new_tokens": 144,
    "eval.batch_size": 8,
    "checkpoint.every_steps": 1, "log.tensorboard": False,
}


SFT_STEPS = OVERRIDES["warmstart.steps"] + OVERRIDES["warmstart.generator_steps"]  # 80
# Global steps after the warm start: judge 81-82, generator 83-84.


def tiny_config(overrides=None):
  import importlib.util  # noqa: PLC0415
  spec = importlib.util.spec_from_file_location("toy_config", TOY)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for dotted, value in (overrides or OVERRIDES).items():
    section, name = dotted.split(".")
    config[section][name] = value
  return config


def records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def trajectory(workdir):
  """What must not depend on interruptions: every record but its timings."""
  return [{k: v for k, v in r.items() if not k.startswith("seconds")} for r in records(workdir)]


@pytest.fixture(scope="module")
def reference(tiny_toy_run):
  return tiny_toy_run  # conftest.py: the uninterrupted run, shared with test_multihost.py


def test_uninterrupted_run_logs_every_stage(reference):
  workdir, done = reference
  rs = records(workdir)
  assert rs[0]["phase"] == "data" and rs[0]["too_long_train"] == rs[0]["too_long_held_out"] == 0
  assert rs[0]["held_out_pairs"] >= 1 and rs[0]["train_pairs"] > 30
  assert [r["phase"] for r in rs].count("sft") == SFT_STEPS
  evals = [r for r in rs if r["phase"] == "eval"]
  assert [e["round"] for e in evals] == [0, 1] and all(0 <= e["judge_accuracy"] <= 1
                                                       for e in evals)
  # The toy's step-by-step reading checks (arm_jax.toy.diagnostics) ride on every eval record.
  for e in evals:
    shares = {k: v for k, v in e.items() if k.startswith(("rubric_", "judge_marks", "judge_re",
                                                          "judge_ev"))}
    assert {"rubric_exact", "judge_restated", "judge_evidence", "judge_marks"} <= set(shares)
    assert all(0 <= v <= 1 for v in shares.values())
    # each wrong judgment is charged to one step (arm_jax.toy.diagnostics.wrong_by)
    wrong = [e[k] for k in e if k.startswith("wrong_by_")]
    assert len(wrong) == 7 and sum(wrong) == pytest.approx(1 - e["judge_accuracy"])
  for r in rs:
    if r["phase"] in ("judge", "generator"):
      assert {"round", "step", "reward_mean", "accuracy", "format_rate", "kl",
              "grad_variance"} <= set(r)
  # RL moved both policies, so the checksums below compare trained parameters.
  for phase in ("judge", "generator"):
    assert max(r["grad_norm"] for r in rs if r["phase"] == phase) > 0
  assert rs[-1] == dict(done, global_step=rs[-1]["global_step"])
  assert set(done) == {"phase", "generator_checksum", "judge_checksum"}
  assert os.path.getsize(os.path.join(workdir, "curves.png")) > 0
  # config.json rebuilds the run's config (file plus overrides) for the evaluator.
  from arm_jax.evaluation.systems import load_train_config  # noqa: PLC0415
  assert load_train_config("", (), workdir).to_dict() == tiny_config().to_dict()
  # A second run of a finished workdir changes nothing and logs "done" once.
  assert run_train(tiny_config(), workdir) == done
  assert trajectory(workdir) == [{k: v for k, v in r.items() if not k.startswith("seconds")}
                                 for r in rs]


def interrupt_at(monkeypatch, global_step, action, run_class=train._Run):
  """Calls action() when a run of run_class finishes its global_step-th step (before any
  save)."""
  original = run_class._step_done

  def step_done(self):
    if self.meta["global_step"] + 1 == global_step:
      action()
    return original(self)

  monkeypatch.setattr(run_class, "_step_done", step_done)


@pytest.mark.slow  # the default tier's tests/test_multihost.py SIGTERMs and SIGKILLs real runs
def test_sigterm_mid_phase_saves_exits_and_resumes_exactly(reference, tmp_path, monkeypatch):
  ref_dir, ref_done = reference
  workdir = str(tmp_path)
  # After the first judge step (SFT_STEPS + 1) and before the second: mid RL phase.
  interrupt_at(monkeypatch, SFT_STEPS + 1, lambda: os.kill(os.getpid(), signal.SIGTERM))
  assert run_train(tiny_config(), workdir) is None
  assert [r["phase"] for r in records(workdir)][-1] == "judge"
  monkeypatch.undo()
  assert run_train(tiny_config(), workdir) == ref_done
  assert trajectory(workdir) == trajectory(ref_dir)


@pytest.mark.slow  # the default tier covers resume through SIGTERM; this adds two crashes
def test_crash_loses_only_unsaved_steps_and_resumes_exactly(reference, tmp_path, monkeypatch):
  ref_dir, ref_done = reference
  workdir = str(tmp_path)

  def crash():
    raise RuntimeError("simulated crash")

  # Mid SFT of the judge, then at the last generator step on the resumed run.
  interrupt_at(monkeypatch, SFT_STEPS - 20, crash)
  with pytest.raises(RuntimeError, match="simulated crash"):
    run_train(tiny_config(), workdir)
  monkeypatch.undo()
  interrupt_at(monkeypatch, SFT_STEPS + 4, crash)
  with pytest.raises(RuntimeError, match="simulated crash"):
    run_train(tiny_config(), workdir)
  monkeypatch.undo()
  assert run_train(tiny_config(), workdir) == ref_done
  assert trajectory(workdir) == trajectory(ref_dir)


@pytest.mark.slow  # the default tier resumes mid-phase (SIGTERM); this adds the SFT -> RL window
def test_crash_between_warm_start_and_rl_resumes_exactly(reference, tmp_path, monkeypatch):
  """The checkpoint written when the warm start ends holds no RL optimizer state and no KL
  reference yet; a crash before the first RL checkpoint (here in the round-0 evaluation) must
  resume from it to the uninterrupted result, with fresh optimizer states and the KL reference
  taken from the warm-started policy, not from the freshly initialised one (the generator's
  beta > 0)."""
  ref_dir, ref_done = reference
  config = tiny_config()
  workdir = str(tmp_path / "run")
  original = train._Run.evaluate

  def crash(self, round_):
    if round_ == 0:
      raise RuntimeError("simulated crash")
    return original(self, round_)

  monkeypatch.setattr(train._Run, "evaluate", crash)
  with pytest.raises(RuntimeError, match="simulated crash"):
    run_train(config, workdir)
  monkeypatch.undo()
  assert [r["phase"] for r in records(workdir)][-1] == "sft"
  assert run_train(config, workdir) == ref_done
  assert trajectory(workdir) == trajectory(ref_dir)


@pytest.mark.slow  # two more tiny runs; the default tier is near its 15-minute budget on CI
def test_rl_from_a_shared_warm_start_matches_the_uninterrupted_run(reference, tmp_path):
  """schedule.rounds=0 stops after the warm start; a second run that starts from it
  (init_from, no warm-start steps) trains RL to the uninterrupted run's exact result."""
  ref_dir, ref_done = reference
  warm = tiny_config()
  warm.schedule.rounds = 0
  warm_dir = str(tmp_path / "warm")
  run_train(warm, warm_dir)
  phases = [r["phase"] for r in records(warm_dir)]
  assert phases == ["data"] + ["sft"] * SFT_STEPS + ["eval", "done"]
  warm_done = records(warm_dir)[-1]
  assert all(warm_done[f"{role}_checksum"] != ref_done[f"{role}_checksum"]
             for role in ("generator", "judge"))  # RL changed both policies

  rl = tiny_config()
  rl.init_from = warm_dir
  rl.warmstart.steps = rl.warmstart.generator_steps = 0
  rl_dir = str(tmp_path / "rl")
  assert run_train(rl, rl_dir) == ref_done

  def after_warm_start(workdir):
    return [{k: v for k, v in r.items() if k != "global_step"} for r in trajectory(workdir)
            if r["phase"] != "sft"]

  assert after_warm_start(rl_dir) == after_warm_start(ref_dir)
  # Resume wins over init_from: re-running the finished workdir changes nothing.
  assert run_train(rl, rl_dir) == ref_done
  # init_from_checkpoint picks the full run's warm-start checkpoint (kept by keep_rounds): RL
  # from it is the same run again, without a separate warm-start-only run.
  from_full = tiny_config()
  from_full.init_from, from_full.init_from_checkpoint = ref_dir, "warm_start"
  from_full.warmstart.steps = from_full.warmstart.generator_steps = 0
  assert run_train(from_full, str(tmp_path / "from_full")) == ref_done
  bad = tiny_config()
  bad.init_from, bad.init_from_checkpoint = ref_dir, "round:9"
  with pytest.raises(ValueError, match="init_from_checkpoint='round:9'"):
    run_train(bad, str(tmp_path / "bad"))

  missing = tiny_config()
  missing.init_from = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="nowhere"):
    run_train(missing, str(tmp_path / "other"))


@pytest.mark.slow  # the default tier's SIGKILL test resumes a (constant-rate) warm start
def test_cosine_warm_start_spans_each_policy_and_resumes_exactly(tmp_path, monkeypatch):
  """warmstart.schedule="cosine" (the paper's SFT schedule): each policy's learning rate warms
  up linearly, then decays to 0 over its own warm-start steps (hand formula); a run stopped in
  the judge's warm start resumes on the same schedule to the uninterrupted run's records.
  warmstart.pad_multiple sets the rows' padding."""
  overrides = dict(OVERRIDES, **{"warmstart.schedule": "cosine", "warmstart.steps": 12,
                                 "warmstart.generator_steps": 8, "schedule.rounds": 0,
                                 "warmstart.pad_multiple": 16})
  peak, warmup = OVERRIDES["warmstart.learning_rate"], OVERRIDES["warmstart.warmup_steps"]

  def expected(step, total):
    if step < warmup:
      return peak * step / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))

  ref_dir = str(tmp_path / "ref")
  run_train(tiny_config(overrides), ref_dir)
  sft = [r for r in records(ref_dir) if r["phase"] == "sft"]
  for role, total in (("generator", 8), ("judge", 12)):
    got = [r["learning_rate"] for r in sft if r["role"] == role]
    assert got == pytest.approx([expected(t, total) for t in range(total)], rel=1e-5, abs=1e-9)
  # warmstart.pad_multiple: rows padded to a multiple of 16, not of the default 64
  lengths = {r["length"] for r in sft}
  assert all(n % 16 == 0 for n in lengths) and any(n % 64 for n in lengths), lengths
  workdir = str(tmp_path / "run")
  interrupt_at(monkeypatch, 8 + 5, lambda: os.kill(os.getpid(), signal.SIGTERM))
  assert run_train(tiny_config(overrides), workdir) is None
  monkeypatch.undo()
  run_train(tiny_config(overrides), workdir)
  assert trajectory(workdir) == trajectory(ref_dir)


def _copy(ref_dir, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(ref_dir, workdir)
  return workdir


def _file(workdir, name):
  with open(os.path.join(workdir, name), "rb") as f:
    return f.read()


def test_resume_refuses_changed_training_keys_before_anything_loads(reference, tmp_path,
                                                                    monkeypatch):
  """A changed learning rate, data size and seed are named with both values; no model is built
  and config.json and metrics.jsonl stay as they were."""
  workdir = _copy(reference[0], tmp_path)
  before = {name: _file(workdir, name) for name in ("config.json", "metrics.jsonl")}
  config = tiny_config()
  config.judge.learning_rate = 2e-2  # the toy config's is 5e-4
  config.data.num_instances = 41
  config.seed = 1

  def build(config):
    raise AssertionError("a refused resume must not build (load) anything")

  monkeypatch.setattr(train_setup, "build", build)
  with pytest.raises(ValueError) as error:
    run_train(config, workdir)
  message = str(error.value)
  assert "data.num_instances: the run has 40, the config says 41" in message
  assert "judge.learning_rate: the run has 0.0005, the config says 0.02" in message
  assert "seed: the run has 0, the config says 1" in message
  assert workdir in message and "checkpoint.every_steps" in message  # what may change
  assert {name: _file(workdir, name) for name in before} == before


def test_resume_accepts_changes_to_the_resumable_keys(reference, tmp_path):
  """Saving, logging and memory keys may change: the finished run re-runs to the same end."""
  ref_dir, ref_done = reference
  workdir = _copy(ref_dir, tmp_path)
  config = tiny_config(dict(OVERRIDES, **{
      "checkpoint.every_steps": 7, "checkpoint.max_to_keep": 1,
      "checkpoint.max_nonfinite_updates": 3, "judge.micro_batches": 2}))
  assert run_train(config, workdir) == ref_done
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["checkpoint"]["every_steps"] == 7  # the new config is the run's now


def test_rl_rates_may_change_until_the_first_rl_update(reference, tmp_path):
  """From the checkpoint saved as the warm start ends, RL may start at another rate: the run
  trains with it (its RL records carry it and its judge ends elsewhere), a resume of the
  finished run with the new rate passes, and from then on the old rate is refused."""
  ref_dir, ref_done = reference
  # The toy's RL rates warm up linearly from 0 over 10 updates, 2 updates (mu) per step: the
  # judge's steps start at updates 0 and 2, 5e-4 x 0/10 and x 2/10.
  assert [r["learning_rate"] for r in records(ref_dir) if r["phase"] == "judge"] == \
      pytest.approx([0.0, 1e-4])
  workdir = _copy(ref_dir, tmp_path)
  directory = os.path.join(workdir, checkpoints.CHECKPOINTS_DIR)
  for name in os.listdir(directory):
    if name.isdigit() and int(name) > SFT_STEPS:
      shutil.rmtree(os.path.join(directory, name))
  assert max(int(n) for n in os.listdir(directory) if n.isdigit()) == SFT_STEPS
  faster = tiny_config(dict(OVERRIDES, **{"judge.learning_rate": 2e-3,
                                          "judge.warmup_steps": 0}))
  reseeded = tiny_config(dict(OVERRIDES, **{"judge.learning_rate": 2e-3}))
  reseeded.seed = 1  # other keys are still refused, and the message names what may change
  with pytest.raises(ValueError, match=r"seed: the run has 0, the config says 1\. .*before its "
                                       r"first RL update also judge\.learning_rate") as error:
    run_train(reseeded, workdir)
  assert "judge.learning_rate: the run" not in str(error.value)
  done = run_train(faster, workdir)
  assert [r["learning_rate"] for r in records(workdir) if r["phase"] == "judge"] == \
      pytest.approx([2e-3, 2e-3])
  assert done["judge_checksum"] != ref_done["judge_checksum"]
  assert trajectory(workdir)[:SFT_STEPS + 1] == trajectory(ref_dir)[:SFT_STEPS + 1]
  assert run_train(faster, workdir) == done  # the run's fingerprint is the new config's
  with pytest.raises(ValueError, match=r"judge\.learning_rate: the run has 0\.002, the config "
                                       r"says 0\.0005"):
    run_train(tiny_config(), workdir)


def test_every_resumable_key_is_a_config_field():
  """RESUMABLE_KEYS names fields of the schemas (a misspelt one would protect nothing)."""
  from arm_jax import config_sections as cs  # noqa: PLC0415
  fields = set()
  for base in (cs.train_base(), cs.policy_base(), tiny_config()):
    fields |= {k for k in _flat_keys(base)}
  for key in cs.RESUMABLE_KEYS:
    assert any(f == key or (key.endswith(".") and f.startswith(key)) for f in fields), key


def _flat_keys(config, prefix=""):
  for k, v in config.items():
    if hasattr(v, "items"):
      yield from _flat_keys(v, f"{prefix}{k}.")
    else:
      yield prefix + k


def _main_cmd(workdir, config=TOY, overrides=None):
  """main.py on the tiny overrides; config=None leaves out --config (the embedded default)."""
  flags = [f"--config.{k}={v}" for k, v in (overrides or OVERRIDES).items()]
  return [sys.executable, os.path.join(REPO, "main.py"),
          *(["--config", config] if config else []), "--workdir", workdir, *flags]


@pytest.mark.slow  # the default tier's SIGKILL test runs the same command (no --config)
def test_main_without_config_builds_and_runs_the_toy_config(tmp_path):
  """The README's main-job command (`python main.py`, no --config) runs configs/toy.py: the
  config it records is the toy config with the overrides, and its policies are the ones that
  config builds (warm start and RL switched off to keep the default tier short; the slow tier
  runs the whole command)."""
  quick = dict(OVERRIDES, **{"warmstart.steps": 0, "warmstart.generator_steps": 0,
                             "schedule.rounds": 0})
  subprocess.run(_main_cmd(str(tmp_path), config=None, overrides=quick), check=True,
                 stdout=subprocess.DEVNULL, timeout=600)
  config = tiny_config(quick)
  from arm_jax.evaluation.systems import load_train_config  # noqa: PLC0415
  assert load_train_config("", (), str(tmp_path)).to_dict() == config.to_dict()
  setup = train_setup.build(config)
  rs = records(str(tmp_path))
  assert [r["phase"] for r in rs] == ["data", "eval", "done"]
  assert rs[-1]["generator_checksum"] == train.params_checksum(setup.generator.params)
  assert rs[-1]["judge_checksum"] == train.params_checksum(setup.judge.params)


@pytest.mark.slow  # the default tier checks the same command without warm start and RL
def test_main_without_config_is_the_toy_run(reference, tmp_path):
  """The whole README main-job command on the tiny overrides ends as the in-process run."""
  _, ref_done = reference
  subprocess.run(_main_cmd(str(tmp_path), config=None), check=True, stdout=subprocess.DEVNULL,
                 timeout=600)
  done = records(str(tmp_path))[-1]
  assert done["generator_checksum"] == ref_done["generator_checksum"]
  assert done["judge_checksum"] == ref_done["judge_checksum"]


# A compact run for the default tier's SIGKILL: warm starts only, a checkpoint every other step,
# no evaluation.
COMPACT = dict(OVERRIDES, **{"warmstart.generator_steps": 5, "warmstart.steps": 20,
                             "schedule.rounds": 0, "eval.enabled": False,
                             "checkpoint.every_steps": 2,
                             "warmstart.pad_multiple": 256})  # one shape: one compilation


def test_sigkill_of_a_real_run_then_the_same_command_resumes_exactly(tmp_path):
  """The README's main-job command (`python main.py`, no --config: configs/toy.py) killed with
  SIGKILL once the judge's warm start is under way, then run again: it ends as an
  uninterrupted in-process run of the toy config, with each record once."""
  workdir = str(tmp_path / "killed")
  proc = subprocess.Popen(_main_cmd(workdir, config=None, overrides=COMPACT),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  path = os.path.join(workdir, "metrics.jsonl")
  try:
    while proc.poll() is None:
      if os.path.exists(path) and any(r.get("role") == "judge" for r in records(workdir)):
        break
      time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.kill()
  finally:
    proc.kill()
    proc.wait()
  assert records(workdir)[-1]["phase"] != "done"
  subprocess.run(_main_cmd(workdir, config=None, overrides=COMPACT), check=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
  from arm_jax.evaluation.systems import load_train_config  # noqa: PLC0415
  assert load_train_config("", (), workdir).to_dict() == tiny_config(COMPACT).to_dict()
  ref_dir = str(tmp_path / "reference")  # saving less often changes no record
  ref_done = run_train(tiny_config(dict(COMPACT, **{"checkpoint.every_steps": 0})), ref_dir)
  assert records(workdir)[-1] == dict(ref_done, global_step=records(workdir)[-1]["global_step"])
  assert trajectory(workdir) == trajectory(ref_dir)


@pytest.mark.slow
def test_sigkill_mid_phase_then_same_command_matches_uninterrupted(reference, tmp_path):
  ref_dir, ref_done = reference
  workdir = str(tmp_path)
  proc = subprocess.Popen(_main_cmd(workdir), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  path = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + 600
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(path) and any(r["phase"] == "generator" for r in records(workdir)):
      break  # the generator phase has 2 steps: this is its middle
    time.sleep(0.05)
  assert proc.poll() is None, "the run ended before it could be killed"
  proc.kill()
  proc.wait()
  subprocess.run(_main_cmd(workdir), check=True, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL, timeout=600)
  assert records(workdir)[-1]["generator_checksum"] == ref_done["generator_checksum"]
  assert records(workdir)[-1]["judge_checksum"] == ref_done["judge_checksum"]
  assert trajectory(workdir) == trajectory(ref_dir)


def test_warm_start_micro_batches_are_per_role_and_exact(tmp_path, monkeypatch):
  """warmstart.judge_micro_batches splits only the judge's warm-start steps into micro-batches
  (less memory per step), and the split is exact: each step's loss matches the unsplit run's to
  float rounding, the generator's records are identical, and a split that does not divide the
  batch names its config key before anything trains."""
  def warm_only(**extra):
    c = tiny_config({**OVERRIDES, "warmstart.steps": 4, "warmstart.generator_steps": 3,
                     "schedule.rounds": 0, **extra})
    return c

  def sft(workdir, role):
    return [r for r in records(workdir) if r["phase"] == "sft" and r["role"] == role]

  plain, split = str(tmp_path / "plain"), str(tmp_path / "split")
  run_train(warm_only(), plain)
  seen = []

  def spy(model, params, tokenizer, examples, **kw):
    seen.append((examples[0].prompt[:20], kw["sft_config"].micro_batches))
    return run_sft(model, params, tokenizer, examples, **kw)

  run_sft = train.run_sft
  monkeypatch.setattr(train, "run_sft", spy)
  run_train(warm_only(**{"warmstart.judge_micro_batches": 4}), split)
  assert [m for _, m in seen] == [1, 4], seen  # the generator's warm start, then the judge's
  strip = lambda rs: [{k: v for k, v in r.items() if not k.startswith("seconds")} for r in rs]  # noqa: E731
  assert strip(sft(split, "generator")) == strip(sft(plain, "generator"))
  a, b = sft(plain, "judge"), sft(split, "judge")
  assert len(a) == len(b) == 4
  for x, y in zip(a, b):
    assert x["tokens"] == y["tokens"] > 0
    assert y["loss"] == pytest.approx(x["loss"], rel=1e-5)
  assert a[-1]["loss"] != a[0]["loss"]  # the steps moved the judge
  for key, value in (("warmstart.judge_micro_batches", 3), ("warmstart.micro_batches", 5)):
    with pytest.raises(ValueError, match=key.replace(".", r"\.") + f"={value}: the "
                       r"\w+'s warm-start batch of 8 rows"):
      run_train(warm_only(**{key: value}), str(tmp_path / f"bad{value}"))


@pytest.mark.slow  # three tiny runs (~45 s); test_train_checkpoints.py tests reduce() itself
def test_kept_round_ends_keep_the_policies_only_and_a_resume_from_one_warns(tmp_path, caplog):
  """checkpoint.kept_params_only (the default): once round 2 saves, round 1's kept end holds
  the two policies only, equal to the same checkpoint of a run that keeps everything, and the
  newest is left as it is. A resume that has only the reduced one (the newer ones lost) warns
  and runs to the end."""
  quick = dict(OVERRIDES, **{"warmstart.steps": 2, "warmstart.generator_steps": 2,
                             "schedule.rounds": 2, "schedule.steps_per_phase": 1,
                             "checkpoint.every_steps": 0, "checkpoint.max_to_keep": 1,
                             "eval.enabled": False})
  full, slim = str(tmp_path / "full"), str(tmp_path / "slim")
  done_full = run_train(tiny_config(dict(quick, **{"checkpoint.kept_params_only": False})), full)
  done_slim = run_train(tiny_config(quick), slim)
  assert done_slim == done_full  # the same run; only what stays on disk differs
  warm, round1, round2 = 4, 6, 8  # 2 + 2 warm-start steps, then one judge and one generator step
  assert checkpoints.resolve(slim, "round:1") == round1
  assert checkpoints.resolve(slim, "latest") == round2

  def opened(workdir, step):
    ckpt = TrainCheckpointer(os.path.join(workdir, "checkpoints"), create=False)
    try:
      return ckpt.restore_meta(step)
    finally:
      ckpt.close()

  full_keys = ["generator", "generator_opt", "generator_ref", "judge", "judge_opt", "judge_ref"]
  assert opened(full, round1)["state_keys"] == full_keys
  meta = opened(slim, round1)
  assert meta["state_keys"] == ["generator", "judge"]
  assert meta["dropped_keys"] == ["generator_opt", "generator_ref", "judge_opt", "judge_ref"]
  # The newest is never reduced (a finished run's holds the policies only: nothing resumes
  # after it); the warm start's end had nothing to drop.
  newest = opened(slim, round2)
  assert newest["state_keys"] == opened(full, round2)["state_keys"]
  assert "dropped_keys" not in newest
  assert opened(slim, warm)["state_keys"] == ["generator", "judge"]

  def arrays(workdir, step):
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    checkpointer = ocp.PyTreeCheckpointer()
    tree = checkpointer.metadata(path).item_metadata.tree
    return checkpointer.restore(path, restore_args=jax.tree.map(
        lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree))

  a, b = arrays(slim, round1), arrays(full, round1)
  assert sorted(a) == ["generator", "judge"]
  for role in ("generator", "judge"):
    leaves_a, leaves_b = jax.tree.leaves(a[role]), jax.tree.leaves(b[role])
    assert len(leaves_a) == len(leaves_b) > 0
    for x, y in zip(leaves_a, leaves_b):
      np.testing.assert_array_equal(x, y)

  def size(workdir, step):
    root = os.path.join(workdir, "checkpoints", str(step))
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)

  assert size(slim, round1) < 0.6 * size(full, round1)
  shutil.rmtree(os.path.join(slim, "checkpoints", str(round2)))  # the newest is lost
  with caplog.at_level("WARNING"):
    again = run_train(tiny_config(quick), slim)
  assert "resuming from checkpoint 6, which keeps the policies only" in caplog.text, (
      caplog.text[-3000:])
  assert again["phase"] == "done" and sorted(again) == sorted(done_full)
  assert checkpoints.resolve(slim, "latest") == round2  # round 2 ran again to its end
  assert "dropped_keys" not in opened(slim, round2)  # the run's own checkpoints hold everything
