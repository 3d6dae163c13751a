"""Evaluate a Qwen3-8B rubric reward model on the paper's ten benchmarks (docs/method.md §7).

Rows (docs/method.md §7's comparison of Stage I and Stage II):
  start    the pair the run started RL from: configs/qwen3_8b.py's generator.path and judge.path
           (the released Rubric-RM-8B generator and judge, the paper's Rubric-RM row);
  trained  the pair after alternating RL (the run's newest checkpoint, Rubric-ARM), with a
           voting@5 row from the same samples.
Columns: Chat, Chat-Hard, FollowBench, PPE-IFEval, InfoBench, IFBench, RM-Bench, RewardBench2
Precise-IF and Focus, HelpSteer3, each read from data/benchmarks/<name>
(config_sections.paper_benchmarks, which says how each is built). IFBench is made pairwise as
the paper does: two responses sampled per prompt, labelled by IFBench's own checker:

  python -m arm_jax.data.verified --benchmark ifbench --model Qwen/Qwen3-8B --samples 2 \
      --workdir data/ifbench_sampled --out data/benchmarks/ifbench
  python -m arm_jax.evaluate --config configs/evaluate_qwen3_8b.py --workdir runs/qwen3_8b/eval

Decoding as at inference (docs/method.md §5): greedy rubrics, judgments sampled at temperature
1.0, the run's limits (1024 rubric, 4096 judgment tokens). All three orders run, so the table
has the position bias. The prompted Qwen3-8B rows ("prompting only" and the judge without a
rubric) are the same command with `--config.model.path=Qwen/Qwen3-8B
--config.systems="('prompted', 'direct')"`. `configs/evaluate_qwen3_8b.py:<slice>` takes the
mesh of configs/qwen3_8b.py's preset for that slice (default v5p-128, the run's own).
"""

import importlib.util
import os

import ml_collections

from arm_jax import config_sections
from arm_jax.evaluation.benchmarks import PAPER_COLUMNS


def _training_config(slice_name: str) -> ml_collections.ConfigDict:
  """configs/qwen3_8b.py's preset: its mesh and rules are the evaluation's."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "qwen3_8b.py")
  spec = importlib.util.spec_from_file_location("configs_qwen3_8b", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(slice_name)


def get_config(slice_name: str = "") -> ml_collections.ConfigDict:
  train = _training_config(slice_name)
  c = config_sections.evaluate_base()
  c.mesh_shape, c.mesh_axes, c.rules = train.mesh_shape, train.mesh_axes, train.rules
  c.model.path = ""  # the run's starting weights: its generator.path and judge.path
  c.trained.workdir = "runs/qwen3_8b"
  c.trained.config = ""  # "" = runs/qwen3_8b/config.json, the config the run started with
  c.system_specs.start = config_sections.system(generator="base", judge="base")
  c.system_specs.trained.votes = 5
  c.systems = ("start", "trained")
  c.benchmarks = tuple(name for name, _ in PAPER_COLUMNS)
  c.orders = ("mixed", "ord1", "ord2")
  c.judge.temperature = 1.0
  c.batch_size = 64  # splits over every preset's data-parallel chips (16 or 32)
  return c
