"""Evaluate the shipped SmolLM2-135M-Instruct as a rubric reward model on IFEval-verified pairs.

Two rows on the same base model: "prompted" (SmolLM2 writes the rubric and judges with it, the
paper's "prompting only" row, with a voting@3 row from the same samples) and "direct" (SmolLM2
judges without a rubric). The data is what `python experiments/build_offline_data.py --out
data/offline --limit 48` writes to data/offline/ifeval_verified (relative to the working
directory; point elsewhere with `--config.benchmark_specs.ifeval_verified.path=DIR`). All three
orders run, so the table also gets the position bias (Mixed reuses the Ord-1 / Ord-2
judgments). The compact templates, the token limits and the example cap keep it near fifteen
minutes on a 2-core CPU (the 6 pairs of a --limit 48 build: 540 s prompted with 3 votes, all
orders). A 135M model mostly loses the format at this length: expect many parse failures, which
the table counts as wrong and reports:

  python -m arm_jax.evaluate --config configs/evaluate_smollm2.py --workdir runs/eval_smollm2

Paper benchmarks built with `python -m arm_jax.data.build` into data/benchmarks/ (see
arm_jax.config_sections.paper_benchmarks) join with e.g.
`--config.benchmarks="('ifeval_verified', 'rb2_pif')"`. For a trained pair, set
`--config.trained.workdir=runs/smollm2 --config.trained.config=configs/smollm2.py` and add
"trained" to `systems`.
"""

import ml_collections

from arm_jax import config_sections


def get_config() -> ml_collections.ConfigDict:
  c = config_sections.evaluate_base()
  c.benchmark_specs.ifeval_verified = config_sections.benchmark(
      path="data/offline/ifeval_verified", max_examples=12,
      build_hint="build it with `python experiments/build_offline_data.py --out data/offline "
                 "--limit 48` (about 12 minutes on a 2-core CPU), or set "
                 "--config.benchmark_specs.ifeval_verified.path")
  c.benchmarks = ("ifeval_verified",)
  c.systems = ("prompted", "direct")
  c.system_specs.prompted.votes = 3
  c.orders = ("mixed", "ord1", "ord2")
  # The compact templates are the ones written for ~135M models (shorter prompts, same formats).
  c.templates.rubric = "rubric_generator_compact"
  c.templates.judge = "judge_compact"
  c.rubric.max_new_tokens = 96
  c.judge.max_new_tokens = 320
  c.batch_size = 8
  return c
