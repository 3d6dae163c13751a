"""Evaluate a toy training run (configs/toy.py) on its held-out pairs.

Rows: the trained pair with voting@5, the untrained starting decoder prompted as generator and
judge, and that decoder judging without a rubric. The toy world's tokenizer only knows toy text,
so the benchmark is the run's own held-out split (the pairs its training curves were measured
on), with the orders needed for the position bias:

  python main.py --config configs/toy.py --workdir runs/toy
  python -m arm_jax.evaluate --config configs/evaluate_toy.py --workdir runs/toy/eval

The run's models are rebuilt from the config.json it wrote into its workdir (its config file
plus its --config. overrides); `--config.trained.config=FILE` with `trained.overrides` takes a
config file instead.
"""

import ml_collections

from arm_jax import config_sections


def get_config() -> ml_collections.ConfigDict:
  c = config_sections.evaluate_base()
  c.trained.workdir = "runs/toy"
  c.trained.config = ""  # "" = runs/toy/config.json
  c.benchmark_specs.held_out = ml_collections.ConfigDict(dict(
      kind="held_out", path="", subset="", max_examples=128))
  c.benchmarks = ("held_out",)
  c.systems = ("trained", "prompted", "direct")
  c.system_specs.trained.votes = 5
  c.orders = ("mixed", "ord1", "ord2")
  c.rubric.max_new_tokens = 64  # configs/toy.py's generation limits
  c.judge.max_new_tokens = 96
  c.batch_size = 64
  return c
