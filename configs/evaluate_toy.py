"""Evaluate a toy training run (configs/toy.py) on its held-out pairs, round by round.

Rows: the pair after the warm start (round 0, the paper's Stage I), after round 1, and after the
last round (the newest checkpoint) with voting@5: the paper's Stage I vs Stage II comparison on
the same pairs. The toy world's tokenizer only knows toy text, so the benchmark is the run's own
held-out split, every pair, in the order the run's held-out eval showed them (draw 0: that is
Ord-1 here), with Ord-2 for the position bias:

  python main.py --config configs/toy.py --workdir runs/toy
  python -m arm_jax.evaluate --config configs/evaluate_toy.py --workdir runs/toy/eval

The run's models, templates and generation limits come from the config.json it wrote into its
workdir (its config file plus its --config. overrides); `--config.trained.config=FILE` with
`trained.overrides` takes a config file instead. The untrained decoder (the "prompted" and
"direct" rows of configs/evaluate_smollm2.py) writes no verdict at all, so it is not a row here.
"""

import ml_collections

from arm_jax import config_sections


def get_config() -> ml_collections.ConfigDict:
  c = config_sections.evaluate_base()
  c.trained.workdir = "runs/toy"
  c.trained.config = ""  # "" = runs/toy/config.json
  c.benchmark_specs.held_out = config_sections.benchmark(kind="held_out")  # every pair
  c.benchmarks = ("held_out",)
  c.system_specs.warm_start = config_sections.system(checkpoint="warm_start")  # Stage I
  c.system_specs.round_1 = config_sections.system(checkpoint="round:1")
  c.systems = ("warm_start", "round_1", "trained")
  c.system_specs.trained.votes = 5
  c.orders = ("mixed", "ord1", "ord2")
  c.batch_size = 64  # the run's eval batch
  return c
