"""The reward-model evaluation of experiments/real_lm_pipeline.py: SmolLM2 trained on Synthetic-IF
(configs/smollm2_synthetic_if.py) against its own SFT-only checkpoint and the untrained base.

Rows: "trained" (the pair after alternating RL; voting@5 from the same five sampled judgments),
"sft" (the pair after the Stage I warm start, the run's warm_start checkpoint), "prompted" (the
base SmolLM2 as rubric generator and judge, the paper's "prompting only") and "direct" (the
base judge without a rubric). Columns: the held-out Synthetic-IF pairs (no base instruction of
them in training) and pairs sampled on IFEval's own prompts, both labelled by IFEval's checker.
All three orders run, so the table has the position bias (docs/method.md §7).

  python -m arm_jax.evaluate --config configs/evaluate_synthetic_if.py --workdir DIR \\
      --config.trained.workdir=runs/real_lm/train

The pipeline sets the paths and the example caps from its budget.
"""

import ml_collections

from arm_jax import config_sections


def get_config() -> ml_collections.ConfigDict:
  c = config_sections.evaluate_base()
  c.trained.workdir = "runs/real_lm/train"  # its config.json builds the models as trained
  c.benchmark_specs.synthetic_if = config_sections.benchmark(
      path="runs/real_lm/pairs/dataset/held_out",
      build_hint="experiments/real_lm_pipeline.py builds it (stage pairs)")
  c.benchmark_specs.ifeval_verified = config_sections.benchmark(
      path="runs/real_lm/ifeval_pairs/dataset",
      build_hint="experiments/real_lm_pipeline.py builds it (stage ifeval_pairs)")
  c.benchmarks = ("synthetic_if", "ifeval_verified")
  c.system_specs.trained.votes = 5  # the paper's voting@5
  c.system_specs.sft = config_sections.system(generator="trained", judge="trained",
                                              checkpoint="warm_start")
  c.systems = ("trained", "sft", "prompted", "direct")
  c.orders = ("mixed", "ord1", "ord2")
  # Templates and length limits: "" / 0 = the training run's (compact, 192 / 384 tokens).
  c.batch_size = 16
  return c
