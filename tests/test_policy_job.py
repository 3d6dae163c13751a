"""The policy job (arm_jax.downstream.job): a toy policy trained by IterDPO and online GRPO with a
real tiny toy reward model, resumed exactly after interruptions.

One tiny reward-model run (a warm start only, about a minute: its judge writes verdicts, so pairs
get kept) serves every test. Each policy run warm-starts the toy decoder, then trains by
iterdpo (2 iterations) or grpo (4 steps). The default tier runs both methods uninterrupted and
interrupted by SIGTERM mid-training (in-process); the slow tier adds two crashes in one run
(mid warm start, mid second iteration), kills a real `main.py` with SIGKILL mid-DPO and
mid-GRPO and re-runs the same command, and runs configs/policy_smollm2.py on the real model. Every interrupted run must end with
the same parameters (checksum) and the same metrics.jsonl records, timings aside.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from arm_jax import config_sections
from arm_jax.downstream import job as policy_job
from arm_jax.downstream.job import run_policy
from arm_jax.evaluation.journal import ScopedJournal
from arm_jax.training.loop import run_train
from test_train_resume import OVERRIDES, interrupt_at, records, tiny_config, trajectory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POLICY_TOY = os.path.join(REPO, "configs", "policy_toy.py")
# The reward model: a warm start big enough for the judge to write verdicts (as in
# test_evaluate_training_run), no RL round.
RM = dict(OVERRIDES, **{
    "model.num_layers": 2, "model.hidden_size": 64, "model.num_heads": 2,
    "model.num_kv_heads": 2, "model.intermediate_size": 192,
    "data.num_instances": 300, "data.held_out_fraction": 0.1,
    "warmstart.steps": 150, "warmstart.generator_steps": 60, "warmstart.batch_size": 16,
    "warmstart.learning_rate": 3e-3, "warmstart.warmup_steps": 10, "schedule.rounds": 0,
    "eval.max_pairs": 8, "eval.samples": 1, "eval.batch_size": 32,
    "checkpoint.every_steps": 0})
POLICY = {
    # Sampled judgments and responses: the tiny reward model's greedy judge mostly names one slot
    # in both orders, which keeps no pair.
    "reward_model.judge_temperature": 1.0, "dpo.temperature": 1.0, "grpo.temperature": 1.0,
    "actor.warmstart_steps": 30, "actor.warmstart_batch_size": 16,
    "dpo.iterations": 2, "dpo.prompts_per_iteration": 64, "dpo.batch_size": 8,
    "dpo.epochs": 1, "generate_batch": 32,
    "grpo.steps": 4, "grpo.prompts_per_step": 4, "grpo.group_size": 2,
    "eval.max_prompts": 16, "eval.every_steps": 2,
    "checkpoint.every_steps": 1, "log.tensorboard": False,
}


def policy_config(rm_workdir, method, overrides=None):
  import importlib.util  # noqa: PLC0415
  spec = importlib.util.spec_from_file_location("policy_toy", POLICY_TOY)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.method = method
  config.reward_model.workdir = rm_workdir
  for dotted, value in dict(POLICY, **(overrides or {})).items():
    *sections, name = dotted.split(".")
    parent = config
    for s in sections:
      parent = parent[s]
    parent[name] = value
  return config


@pytest.fixture(scope="module")
def rm_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reward_model"))
  run_train(tiny_config(RM), workdir)
  return workdir


@pytest.fixture(scope="module")
def dpo_reference(rm_run, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("dpo"))
  return workdir, run_policy(policy_config(rm_run, "iterdpo"), workdir)


@pytest.fixture(scope="module")
def grpo_reference(rm_run, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("grpo"))
  return workdir, run_policy(policy_config(rm_run, "grpo"), workdir)


def test_iterdpo_labels_trains_and_evaluates_each_iteration(rm_run, dpo_reference):
  workdir, done = dpo_reference
  rs = records(workdir)
  assert rs[0]["phase"] == "data" and rs[0]["too_long"] == 0 and rs[0]["prompts"] >= 64
  assert [r["phase"] for r in rs].count("sft") == POLICY["actor.warmstart_steps"]
  labels = [r for r in rs if r["phase"] == "label"]
  assert [r["iteration"] for r in labels] == [1, 2]
  for r in labels:
    assert r["prompts"] == 64
    assert r["kept"] + r["inconsistent"] + r["unparseable"] + r["identical"] == 64
    assert r["kept"] >= 16  # the judge writes verdicts: DPO has pairs to train on
    assert r["consistency_rate"] == r["kept"] / (r["kept"] + r["inconsistent"])
    assert r["seconds_sampling"] > 0 and r["seconds_labelling"] > 0
  # The pairs file holds every comparison; its kept pairs are the ones DPO trained on.
  for it, r in ((1, labels[0]), (2, labels[1])):
    with open(os.path.join(workdir, "pairs", f"iteration_{it}.jsonl"), encoding="utf-8") as f:
      rows = [json.loads(line) for line in f]
    assert len(rows) == 64 and {"rubric", "first", "second", "judgments"} <= set(rows[0])
    steps = [x for x in rs if x["phase"] == "dpo" and x["iteration"] == it]
    assert len(steps) == r["kept"] // POLICY["dpo.batch_size"]
    assert all(x["pairs"] == r["kept"] - x["too_long"] for x in steps)
  dpo = [r for r in rs if r["phase"] == "dpo"]
  assert {"dpo_loss", "accuracy", "margin", "chosen_reward", "nll", "grad_norm"} <= set(dpo[0])
  # each step's padded length (dpo.pad_multiple 16, max_length 128) and its wall time
  assert all(x["length"] % 16 == 0 and 16 <= x["length"] <= 128 and x["seconds"] > 0
             for x in dpo)
  # The first step of an iteration starts at its reference: margin 0, loss log 2 + 0.2 NLL.
  first = dpo[0]
  assert first["margin"] == pytest.approx(0.0, abs=1e-5)
  assert first["loss"] == pytest.approx(0.6931472 + 0.2 * first["nll"], rel=1e-5)
  evals = [r for r in rs if r["phase"] == "eval"]
  assert [e["unit"] for e in evals] == [0, 1, 2]
  assert evals[0]["win_rate_vs_start"] == 0.5
  assert all(0 <= e["constraint_share"] <= 1 and e["seconds"] > 0 for e in evals)
  for unit in (0, 1, 2):
    assert os.path.isfile(os.path.join(workdir, "eval", f"{unit:05d}.jsonl"))
  assert set(done) == {"phase", "policy_checksum"} and rs[-1]["phase"] == "done"
  assert os.path.getsize(os.path.join(workdir, "curves.png")) > 0
  # A finished workdir re-run changes nothing and logs "done" once.
  assert run_policy(policy_config(rm_run, "iterdpo"), workdir) == done
  assert trajectory(workdir) == [{k: v for k, v in r.items() if not k.startswith("seconds")}
                                 for r in rs]


def test_grpo_rewards_rollouts_and_evaluates_every_two_steps(grpo_reference):
  workdir, done = grpo_reference
  rs = records(workdir)
  steps = [r for r in rs if r["phase"] == "grpo"]
  assert [r["step"] for r in steps] == [0, 1, 2, 3]
  for r in steps:
    assert 0 <= r["reward_mean"] <= 1 and {"kl", "consistency_rate", "flat_groups"} <= set(r)
    # Eq. 16: rewards are in {0, 0.5, 1}, so a mean over 4 x 2 rollouts is a multiple of 1/16.
    assert (r["reward_mean"] * 16) == pytest.approx(round(r["reward_mean"] * 16))
    assert r["learning_rate"] == pytest.approx(3e-4)  # configs/policy_toy.py, no warmup
  assert [e["unit"] for e in rs if e["phase"] == "eval"] == [0, 2, 4]
  assert done["phase"] == "done"


def _interrupt_at(monkeypatch, global_step, action):
  interrupt_at(monkeypatch, global_step, action, policy_job._PolicyRun)


WARM = POLICY["actor.warmstart_steps"]


@pytest.mark.parametrize("method", ["iterdpo", "grpo"])
def test_sigterm_mid_training_saves_exits_and_resumes_exactly(method, rm_run, dpo_reference,
                                                              grpo_reference, tmp_path,
                                                              monkeypatch):
  ref_dir, ref_done = dpo_reference if method == "iterdpo" else grpo_reference
  workdir = str(tmp_path)
  _interrupt_at(monkeypatch, WARM + 2, lambda: os.kill(os.getpid(), signal.SIGTERM))
  assert run_policy(policy_config(rm_run, method), workdir) is None
  phases = [r["phase"] for r in records(workdir) if r["phase"] != "eval"]
  assert phases[-1] == ("dpo" if method == "iterdpo" else "grpo")  # stopped mid-training
  monkeypatch.undo()
  assert run_policy(policy_config(rm_run, method), workdir) == ref_done
  assert trajectory(workdir) == trajectory(ref_dir)


@pytest.mark.parametrize("how", ["crash", "sigterm"])
def test_a_crash_or_sigterm_mid_labelling_resumes_without_sampling_a_batch_twice(
    rm_run, dpo_reference, tmp_path, monkeypatch, how):
  """A crash while the reward model judges iteration 2's pairs: the rerun restores the checkpoint
  of iteration 1 and reads the batches already sampled from generations.jsonl instead of
  sampling them again (the journal ends with as many batches as the uninterrupted run's), and
  ends with the same parameters and records. A SIGTERM there stops the job (None) once the
  batch being judged is written, and resumes the same way."""
  ref_dir, ref_done = dpo_reference
  workdir = str(tmp_path)
  put = ScopedJournal.put
  seen = []

  def interrupted_put(self, key, entry):
    seen.append(self.scope)
    if self.scope == "reward_model.judge" and "policy@label2" in seen:
      if how == "crash":
        raise RuntimeError("simulated crash")
      os.kill(os.getpid(), signal.SIGTERM)  # as the batch is written: the job stops after it
    put(self, key, entry)

  monkeypatch.setattr(ScopedJournal, "put", interrupted_put)
  if how == "crash":
    with pytest.raises(RuntimeError, match="simulated crash"):
      run_policy(policy_config(rm_run, "iterdpo"), workdir)
  else:
    assert run_policy(policy_config(rm_run, "iterdpo"), workdir) is None
  monkeypatch.undo()
  assert [r["iteration"] for r in records(workdir) if r["phase"] == "label"] == [1]
  assert run_policy(policy_config(rm_run, "iterdpo"), workdir) == ref_done
  assert trajectory(workdir) == trajectory(ref_dir)
  lines = [_lines(os.path.join(d, policy_job.JOURNAL)) for d in (workdir, ref_dir)]
  assert lines[0] == lines[1]  # the header and each batch once
  assert 1 < len(seen) - 1 < lines[0] - 1  # the stop came after some batches, before the last


def _lines(path):
  with open(path, encoding="utf-8") as f:
    return sum(1 for _ in f)


@pytest.mark.slow  # the default tier resumes through SIGTERM; this adds two crashes
def test_crash_mid_warm_start_and_in_the_second_iteration_resumes_exactly(rm_run, dpo_reference,
                                                                         tmp_path, monkeypatch):
  ref_dir, ref_done = dpo_reference
  dpo_steps = [r for r in records(ref_dir) if r["phase"] == "dpo"]
  first_iteration = sum(r["iteration"] == 1 for r in dpo_steps)
  workdir = str(tmp_path)

  def crash():
    raise RuntimeError("simulated crash")

  config = policy_config(rm_run, "iterdpo", {"checkpoint.every_steps": 7})
  _interrupt_at(monkeypatch, WARM - 5, crash)
  with pytest.raises(RuntimeError, match="simulated crash"):
    run_policy(config, workdir)
  monkeypatch.undo()
  _interrupt_at(monkeypatch, WARM + first_iteration + 2, crash)
  with pytest.raises(RuntimeError, match="simulated crash"):
    run_policy(config, workdir)
  monkeypatch.undo()
  assert run_policy(config, workdir) == ref_done
  assert trajectory(workdir) == trajectory(ref_dir)


def _main_cmd(workdir, rm_workdir, method):
  cmd = [sys.executable, os.path.join(REPO, "main.py"), f"--config={POLICY_TOY}",
         f"--workdir={workdir}", f"--config.method={method}",
         f"--config.reward_model.workdir={rm_workdir}"]
  return cmd + [f"--config.{k}={v}" for k, v in POLICY.items()]


@pytest.mark.slow
@pytest.mark.parametrize("method, phase", [("iterdpo", "dpo"), ("grpo", "grpo")])
def test_sigkill_mid_training_then_same_command_matches_uninterrupted(method, phase, rm_run,
                                                                      dpo_reference,
                                                                      grpo_reference,
                                                                      tmp_path):
  ref_dir, ref_done = dpo_reference if method == "iterdpo" else grpo_reference
  workdir = str(tmp_path)
  proc = subprocess.Popen(_main_cmd(workdir, rm_run, method), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  path = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + 600
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(path) and sum(r["phase"] == phase for r in records(workdir)) >= 2:
      break
    time.sleep(0.05)
  assert proc.poll() is None, "the run ended before it could be killed"
  proc.kill()
  proc.wait()
  subprocess.run(_main_cmd(workdir, rm_run, method), check=True, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL, timeout=600)
  assert records(workdir)[-1]["policy_checksum"] == ref_done["policy_checksum"]
  assert trajectory(workdir) == trajectory(ref_dir)


def test_resume_refuses_a_changed_dpo_beta(rm_run, dpo_reference, tmp_path, monkeypatch):
  """The policy job checks the fingerprint too, before the reward model or the policy loads."""
  workdir = str(tmp_path / "run")
  shutil.copytree(dpo_reference[0], workdir)
  with open(os.path.join(workdir, "config.json"), "rb") as f:
    before = f.read()
  monkeypatch.setattr(policy_job, "build", lambda config: pytest.fail("built"))
  with pytest.raises(ValueError, match=r"dpo\.beta: the run has 0\.1, the config says 0\.5"):
    run_policy(policy_config(rm_run, "iterdpo", {"dpo.beta": 0.5}), workdir)
  with open(os.path.join(workdir, "config.json"), "rb") as f:
    assert f.read() == before


# --- configuration errors -------------------------------------------------------------------

def test_reward_model_needs_exactly_one_source(tmp_path):
  config = config_sections.validate(config_sections.policy_base())
  with pytest.raises(ValueError, match="set one of reward_model.workdir"):
    policy_job.build(config)
  config.reward_model.workdir = str(tmp_path)
  config.reward_model.config = os.path.join(REPO, "configs", "toy.py")
  with pytest.raises(ValueError, match="set one of reward_model.workdir"):
    policy_job.build(config)


def test_missing_reward_model_run_names_the_key(tmp_path):
  config = config_sections.validate(config_sections.policy_base())
  config.reward_model.workdir = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="config.json"):
    policy_job.build(config)


def test_prompt_file_errors_name_the_line(tmp_path):
  path = tmp_path / "prompts.jsonl"
  path.write_text('{"prompt": "a"}\n\n{"text": "b"}\n', encoding="utf-8")
  with pytest.raises(ValueError, match=r"prompts.jsonl:3: expected an object with a string"):
    policy_job.read_prompts(str(path))
  path.write_text('{"prompt": "a"}\nnot json\n', encoding="utf-8")
  with pytest.raises(ValueError, match=r"prompts.jsonl:2: malformed_json"):
    policy_job.read_prompts(str(path))
  path.write_text('{"prompt": "a", "n": ' + "9" * 5000 + '}\n', encoding="utf-8")
  with pytest.raises(ValueError, match=r"prompts.jsonl:1: number_too_long \(an integer of 5000"):
    policy_job.read_prompts(str(path))
  path.write_text('{"prompt": "a"}\n{"p": ' + "[" * 100000 + "]" * 100000 + '}\n')
  with pytest.raises(ValueError, match=r"prompts.jsonl:2: nesting_too_deep"):
    policy_job.read_prompts(str(path))
  path.write_text('{"prompt": "a"}\n\n{"prompt": "b"}\n', encoding="utf-8")
  assert policy_job.read_prompts(str(path)) == ["a", "b"]


def test_a_prompt_too_long_for_the_context_is_counted_and_skipped(rm_run, tmp_path):
  path = tmp_path / "prompts.jsonl"
  long = " ".join(["moon"] * 9000)  # 9000 toy tokens
  path.write_text("".join(json.dumps({"prompt": p}) + "\n"
                          for p in ["Write about sun.", long, "Write about moon."]))
  setup = policy_job.build(config_sections.validate(policy_config(
      rm_run, "iterdpo", {"prompts.source": "jsonl", "prompts.path": str(path)})))
  assert setup.prompts == ["Write about sun.", "Write about moon."] and setup.too_long == 1


def test_prompt_windows_continue_cyclically():
  prompts = ["a", "b", "c", "d", "e"]
  assert [policy_job.window(prompts, 2, i) for i in range(4)] == [
      ["a", "b"], ["c", "d"], ["e", "a"], ["b", "c"]]
  assert policy_job.window(prompts, 7, 0) == ["a", "b", "c", "d", "e", "a", "b"]


def test_policy_configs_validate_and_name_a_known_method():
  config = config_sections.policy_base()
  config.method = "ppo"
  with pytest.raises(ValueError, match=r"'method'='ppo' is not allowed"):
    config_sections.validate(config)
  config = config_sections.validate(config_sections.policy_base())
  g = config.grpo  # the paper's online GRPO (docs/method.md §6)
  assert (g.group_size, g.prompts_per_step * g.group_size, g.learning_rate, g.beta, g.mu,
          g.eps_low, g.eps_high) == (6, 288, 5e-7, 0.001, 2, 0.2, 0.28)
  d = config.dpo
  assert (d.beta, d.sft_weight, d.learning_rate, d.batch_size, d.iterations) == (
      0.1, 0.2, 8e-7, 64, 3)


def test_ifeval_evaluation_scores_with_the_checker_and_ifbench_prompts_are_not_ifevals():
  import types  # noqa: PLC0415

  from arm_jax.data import ifeval  # noqa: PLC0415
  from arm_jax.evaluation import ifeval_policy  # noqa: PLC0415
  config = config_sections.validate(config_sections.policy_base())
  config.eval.update(kind="ifeval", max_prompts=5)
  prompts, score = policy_job._scorer(config, None, "pretrained")
  inputs = ifeval.read_prompts()[:5]
  assert prompts == [inp.prompt for inp in inputs]
  responses = ["a response, with a comma", "", "hello world", "HELLO", "two\n\nparagraphs"]
  want = ifeval_policy.score(inputs, responses)
  got = score(responses, None)
  assert got == want
  # The training prompts of configs/policy_smollm2.py: IFBench's 300, none of them IFEval's.
  ifbench = policy_job.read_prompts(ifeval.ifbench_prompts_path())
  assert len(ifbench) == 300
  assert not set(ifbench) & {inp.prompt for inp in ifeval.read_prompts()}
  config.eval.update(kind="oracle", at_start=False)
  with pytest.raises(ValueError, match=r"eval.at_start=False with eval.kind='oracle'"):
    policy_job._scorer(config, types.SimpleNamespace(policy_oracle=None), "pretrained")
  config.eval.at_start = True
  with pytest.raises(ValueError, match=r"model.kind='pretrained'\) has no oracle"):
    policy_job._scorer(config, types.SimpleNamespace(policy_oracle=None), "pretrained")


@pytest.mark.slow  # the shipped SmolLM2 as policy and as the prompted reward model: minutes
def test_smollm2_policy_config_runs_grpo_on_ifbench_prompts_scored_by_ifeval(tmp_path):
  """configs/policy_smollm2.py end to end on a real model, sized down: the untrained SmolLM2 pair
  (reward_model.config) judges the shipped SmolLM2's rollouts on IFBench prompts; IFEval scores
  its greedy responses before and after."""
  import importlib.util  # noqa: PLC0415

  from arm_jax import assets  # noqa: PLC0415
  from test_configs import _fixture  # noqa: PLC0415
  try:
    assets.smollm2_gguf()
  except FileNotFoundError as err:
    pytest.skip(str(err))
  spec = importlib.util.spec_from_file_location(
      "policy_smollm2", os.path.join(REPO, "configs", "policy_smollm2.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.method = "grpo"
  # Parameters split over the suite's 8 host devices (fsdp), not replicated 8 times: the policy,
  # its AdamW moments and reference, and the two reward-model policies.
  config.mesh_shape = (1, -1, 1)
  config.reward_model.update(
      workdir="", config=os.path.join(REPO, "configs", "smollm2.py"),
      overrides=(f"data.path={_fixture(tmp_path)}", "data.held_out_fraction=0.4",
                 "templates.rubric=rubric_generator_compact", "templates.judge=judge_compact"),
      rubric_max_new_tokens=32, judge_max_new_tokens=48, batch_size=8)
  config.prompts.limit = 8
  config.grpo.update(steps=2, prompts_per_step=4, group_size=2, max_new_tokens=24)
  config.eval.update(max_prompts=8, max_new_tokens=32, batch_size=8, every_steps=0)
  config.generate_batch = 8
  config.log.tensorboard = False
  workdir = str(tmp_path / "run")
  done = run_policy(config, workdir)
  rs = records(workdir)
  assert [r["step"] for r in rs if r["phase"] == "grpo"] == [0, 1]
  for r in rs:
    if r["phase"] == "grpo":
      assert 0 <= r["reward_mean"] <= 1 and r["kl"] >= 0
  evals = [r for r in rs if r["phase"] == "eval"]
  assert [e["unit"] for e in evals] == [0, 2]
  for e in evals:
    assert e["prompts"] == 8 and all(0 <= e[k] <= 1 for k in (
        "prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose", "average"))
  with open(os.path.join(workdir, "eval", "00002.json"), encoding="utf-8") as f:
    side = json.load(f)  # per-kind accuracies, intervals and verdicts beside the responses
  assert side["by_kind"] and len(side["per_prompt"]) == 8
  assert side["ci"]["average"][0] <= side["average"] <= side["ci"]["average"][1]
  assert done["phase"] == "done"


def _tiny_actor_and_prompts(tmp_path, n):
  """(a tiny random HF policy with SmolLM2's tokenizer, a JSONL of n IFEval-format prompts that
  ask for at least 7 words: 12 random tokens make 3 to 12 words, so some samples follow it and
  some do not). Skips without the checker's langdetect or the shipped GGUF."""
  pytest.importorskip("langdetect")
  from arm_jax import assets  # noqa: PLC0415
  from arm_jax.tokenizer import load_tokenizer  # noqa: PLC0415
  from test_configs import _tiny_hf_dir  # noqa: PLC0415
  try:
    gguf = assets.smollm2_gguf()
  except FileNotFoundError as err:
    pytest.skip(str(err))
  actor = _tiny_hf_dir(tmp_path / "actor", 0, load_tokenizer(gguf))
  rows = [{"key": i, "prompt": f"Write about topic {i} in at least 7 words.",
           "instruction_id_list": ["length_constraints:number_words"],
           "kwargs": [{"relation": "at least", "num_words": 7}]} for i in range(n)]
  prompts = tmp_path / "prompts.jsonl"
  prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return actor, prompts


def test_checker_labels_a_policys_pairs_as_the_oracle(tmp_path):
  """reward_model.kind='checker': a tiny random policy's sampled pairs on prompts that carry
  IFEval instructions are labelled by the checker; every kept pair's chosen response follows
  more instructions than its rejected one (recounted here), ties are dropped, DPO trains."""
  from arm_jax.data import ifeval  # noqa: PLC0415
  actor, prompts = _tiny_actor_and_prompts(tmp_path, 64)
  config = config_sections.policy_base()
  config.method = "dpo"
  config.reward_model.kind = "checker"
  config.actor.path = actor
  config.prompts.update(source="jsonl", path=str(prompts))
  config.dpo.update(max_new_tokens=12, temperature=1.0, batch_size=8, max_length=128, epochs=1,
                    learning_rate=1e-4)
  config.generate_batch = 16
  # IFEval on 3 prompts after the pass only: another run would have scored the same start.
  config.eval.update(kind="ifeval", max_prompts=3, max_new_tokens=4, batch_size=4,
                     at_start=False)
  config.log.tensorboard = False
  workdir = str(tmp_path / "run")
  done = run_policy(config, workdir)
  assert done["phase"] == "done"
  assert sorted(os.listdir(os.path.join(workdir, "eval"))) == ["00001.json", "00001.jsonl"]
  assert [r["unit"] for r in records(workdir) if r["phase"] == "eval"] == [1]
  with open(os.path.join(workdir, "pairs", "iteration_1.jsonl"), encoding="utf-8") as f:
    comparisons = [json.loads(line) for line in f]
  assert len(comparisons) == 64
  examples = {e.prompt: e for e in ifeval.read_prompts(str(prompts))}
  counts = {"kept": 0, "tie": 0, "identical": 0}
  for c in comparisons:
    fa = sum(ifeval.follow_list(examples[c["prompt"]], c["response_a"]))
    fb = sum(ifeval.follow_list(examples[c["prompt"]], c["response_b"]))
    want = ("A", "B") if fa > fb else ("B", "A") if fb > fa else ("A", "A")
    assert (c["first"], c["second"]) == want
    kind = ("identical" if c["response_a"] == c["response_b"] else
            "tie" if fa == fb else "kept")
    counts[kind] += 1
  label = next(r for r in records(workdir) if r["phase"] == "label")
  assert label["kept"] == counts["kept"] and label["inconsistent"] == counts["tie"]
  assert counts["kept"] >= 8, counts  # a batch of pairs to train on
  dpo_steps = [r for r in records(workdir) if r["phase"] == "dpo"]
  assert len(dpo_steps) == counts["kept"] // 8
  with pytest.raises(ValueError, match=r"reward_model.kind='checker': .*actor.path must name"):
    config.actor.path = ""
    policy_job.build(config_sections.validate(config))


@pytest.mark.slow  # 50 s; the default tier resumes a LoRA training run (tests/test_lora.py)
def test_a_lora_policy_checkpoints_adapters_only_and_resumes_exactly(tmp_path, monkeypatch):
  """actor.lora_rank: DPO of a tiny pretrained policy (checker-labelled) trains LoRA adapters
  only; its checkpoints hold them alone (with their optimizer state and the iteration's
  reference), and a run stopped by SIGTERM mid-DPO resumes to the uninterrupted run's end."""
  import jax  # noqa: PLC0415
  from arm_jax.models import lora  # noqa: PLC0415
  from arm_jax.training.checkpoints import TrainCheckpointer  # noqa: PLC0415
  actor, prompts = _tiny_actor_and_prompts(tmp_path, 160)

  def config():
    c = config_sections.policy_base()
    c.method = "dpo"
    c.reward_model.kind = "checker"
    c.actor.update(path=actor, lora_rank=4, lora_alpha=8.0)
    c.prompts.update(source="jsonl", path=str(prompts))
    c.dpo.update(max_new_tokens=12, temperature=1.0, batch_size=8, max_length=128, epochs=1,
                 learning_rate=1e-3)
    c.generate_batch = 16
    c.eval.update(kind="none")
    c.checkpoint.every_steps = 1
    c.log.tensorboard = False
    return c

  ref_dir, work = str(tmp_path / "ref"), str(tmp_path / "stopped")
  done = run_policy(config(), ref_dir)
  steps = [r for r in records(ref_dir) if r["phase"] == "dpo"]
  assert len(steps) >= 2, "too few kept pairs for a mid-DPO stop"
  ckpt = TrainCheckpointer(os.path.join(ref_dir, "checkpoints"), create=False)
  try:
    saved = ckpt.restore_state(ckpt.latest_step(), None)
  finally:
    ckpt.close()
  names = {str(getattr(p[-1], "key", p[-1]))
           for p, _ in jax.tree_util.tree_leaves_with_path(saved["policy"])}
  assert names and all(n.endswith(lora.SUFFIXES) for n in names)
  _interrupt_at(monkeypatch, steps[0]["global_step"] + 1,  # after the first DPO step
                lambda: os.kill(os.getpid(), signal.SIGTERM))
  assert run_policy(config(), work) is None
  monkeypatch.undo()
  assert run_policy(config(), work) == done
  assert trajectory(work) == trajectory(ref_dir)


@pytest.mark.slow  # a third toy policy run (~30 s); the default tier is near its 15 minutes
def test_an_iteration_with_fewer_pairs_than_a_batch_leaves_the_policy_and_says_so(
    rm_run, tmp_path, caplog):
  """64 prompts and dpo.batch_size 128: no DPO step, a warning names why, and the policy after
  the iteration is the warm-started one (its evaluation writes the same responses)."""
  workdir = str(tmp_path / "dpo_no_steps")
  with caplog.at_level("WARNING"):
    done = run_policy(policy_config(rm_run, "dpo", {"dpo.batch_size": 128}), workdir)
  assert done["phase"] == "done"
  rs = records(workdir)
  label = [r for r in rs if r["phase"] == "label"]
  assert len(label) == 1 and not [r for r in rs if r["phase"] == "dpo"]
  assert any("fewer than dpo.batch_size=128: no DPO step" in r.getMessage()
             and f"{label[0]['kept']} usable pairs" in r.getMessage() for r in caplog.records)
  assert [r["unit"] for r in rs if r["phase"] == "eval"] == [0, 1]
  with open(os.path.join(workdir, "eval", "00000.jsonl"), encoding="utf-8") as f:
    before = f.read()
  with open(os.path.join(workdir, "eval", "00001.jsonl"), encoding="utf-8") as f:
    assert f.read() == before
