"""What notebooks/rubric_arm_colab.ipynb calls, so that the notebook stays a few lines per step:
the runtime's kind, the shipped configs sized for it, the toy method run, its curves, the
evaluation, the policy step and a real model's generations.

Sizes per runtime (`SIZES`): a TPU or GPU runs the configs as shipped (configs/toy.py is the
README's default); a CPU runs the same training with a lighter held-out evaluation; `smoke` is
the tests' tiny run, which shows that every cell works, not that the method learns.
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any, Optional, Sequence

import ml_collections

from arm_jax import config_sections, jobs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Overrides of configs/toy.py (dotted keys) per size.
SIZES: dict[str, dict[str, Any]] = {
    "full": {},  # the README's default, for a TPU or a GPU
    # The default's warm start (the judge learns evidence late, docs/results.md), a lighter
    # held-out evaluation: about 10 minutes on 2 cores.
    "cpu": {"eval.max_pairs": 150, "eval.samples": 4},
    "smoke": {"data.num_instances": 400, "warmstart.steps": 12, "warmstart.generator_steps": 8,
              "warmstart.warmup_steps": 2, "schedule.rounds": 1, "schedule.steps_per_phase": 1,
              "judge.prompts_per_step": 4, "judge.micro_batches": 1,
              "generator.prompts_per_step": 4, "generator.micro_batches": 1,
              "eval.max_pairs": 8, "eval.samples": 1, "checkpoint.every_steps": 0},
}
# The policy step (configs/policy_toy.py:dpo) per size.
POLICY_SIZES: dict[str, dict[str, Any]] = {
    "full": {},
    "cpu": {"actor.warmstart_steps": 100, "dpo.prompts_per_iteration": 1024, "dpo.epochs": 4},
    "smoke": {"actor.warmstart_steps": 4, "dpo.prompts_per_iteration": 32, "dpo.epochs": 1,
              "dpo.batch_size": 8, "eval.max_prompts": 16},
}


def runtime() -> str:
  """"tpu", "gpu" or "cpu": the platform JAX computes on."""
  import jax  # pylint: disable=import-outside-toplevel
  return jax.default_backend()


def size_for(kind: str, smoke: bool = False) -> str:
  return "smoke" if smoke else "full" if kind in ("tpu", "gpu") else "cpu"


def load_config(name: str, arg: Optional[str] = None) -> ml_collections.ConfigDict:
  """configs/<name>.py's get_config(arg) from the repository this package is installed from."""
  path = os.path.join(REPO, "configs", f"{name}.py")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such config (the notebook needs the repository's "
                            "configs/: install arm_jax from a checkout, pip install -e DIR)")
  spec = importlib.util.spec_from_file_location(f"arm_jax_config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config() if arg is None else module.get_config(arg)


def override(config: ml_collections.ConfigDict, values: dict[str, Any]) -> ml_collections.ConfigDict:
  """Sets dotted keys; a key the config does not have is an error that names it."""
  for key, value in values.items():
    *parents, name = key.split(".")
    node = config
    for part in parents:
      if part not in node:
        raise KeyError(f"{key!r}: the config has no section {part!r}")
      node = node[part]
    if name not in node:
      raise KeyError(f"{key!r}: the config has no field {name!r}")
    node[name] = value
  return config


def toy_config(size: str) -> ml_collections.ConfigDict:
  return override(load_config("toy"), SIZES[size])


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs (or resumes) the training run; returns its last metrics record."""
  jobs.run(config, workdir)
  return read_metrics(workdir)[-1]


def read_metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def eval_table(workdir: str) -> list[dict]:
  """The run's held-out evaluations: round, step, judge accuracy."""
  return [dict(round=r.get("round"), step=r.get("global_step"),
               judge_accuracy=r.get("judge_accuracy")) for r in read_metrics(workdir)
          if r.get("phase") == "eval"]


def curves(workdir: str) -> str:
  """Draws the run's curves (arm_jax.training.metrics.plot_curves) into WORKDIR/curves.png."""
  from arm_jax.training.metrics import plot_curves  # pylint: disable=import-outside-toplevel
  out = os.path.join(workdir, "curves.png")
  plot_curves(os.path.join(workdir, "metrics.jsonl"), out)
  return out


def evaluate(run_dir: str, out_dir: str, size: str) -> str:
  """configs/evaluate_toy.py on the run in run_dir (its warm start, round 1 when it has one, and
  the trained pair); returns results.md's path."""
  config = load_config("evaluate_toy")
  config.trained.workdir = run_dir
  rounds = read_config_rounds(run_dir)
  config.systems = ("warm_start", "round_1", "trained") if rounds >= 2 else (
      "warm_start", "trained")
  if size == "smoke":
    config.system_specs.trained.votes = 2
    config.benchmark_specs.held_out.max_examples = 8
  jobs.run(config, out_dir)
  return os.path.join(out_dir, "results.md")


def read_config_rounds(run_dir: str) -> int:
  with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as f:
    return int(json.load(f)["schedule"]["rounds"])


def policy(reward_dir: str, out_dir: str, size: str) -> list[dict]:
  """One DPO pass of the toy policy labelled by the trained toy reward model
  (configs/policy_toy.py:dpo); returns the oracle's evaluations (start and end)."""
  config = override(load_config("policy_toy", "dpo"), POLICY_SIZES[size])
  config.reward_model.workdir = reward_dir
  jobs.run(config, out_dir)
  return [{k: v for k, v in r.items() if k not in ("phase",)}
          for r in read_metrics(out_dir) if r.get("phase") == "eval"]


def generate(prompts: Sequence[str], path: str = "", max_new_tokens: int = 48) -> list[str]:
  """Greedy answers of a real model (an HF directory or .gguf; '' = the shipped
  SmolLM2-135M-Instruct) to `prompts`, each a user turn of its chat template."""
  config = config_sections.generate_base()
  config.model.path = path
  config.prompts = tuple(prompts)
  config.sampling.max_new_tokens = max_new_tokens
  import tempfile  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as out:
    records = jobs.run(config, out)
  return [r["completion"] for r in records]
