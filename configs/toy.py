"""Toy Rubric-ARM run: a synthetic preference world, a tiny decoder from scratch, any CPU.

Pairs of short responses to instructions with explicit, checkable constraints (arm_jax.toy); the
preferred response meets more of them. Both policies start from one random tiny decoder, are
warm-started on imperfect synthetic rubrics and judgments, then trained by alternating GRPO.
The embedded default: `python main.py` runs it, as does `python main.py --config configs/toy.py
--workdir DIR`; override any field with `--config.judge.learning_rate=...`. Measured runs (time,
held-out judge_accuracy per round and seed, the ablations) and how this config departs from the
paper's settings: docs/results.md.
"""

import ml_collections

from arm_jax import config_sections


def _policy(**fields) -> ml_collections.ConfigDict:
  return config_sections.policy(**{**dict(group_size=4, beta=0.0, mu=2, micro_batches=2,
                                          prompts_per_step=8), **fields})


def get_config() -> ml_collections.ConfigDict:
  c = config_sections.train_base()
  c.plugins = ("arm_jax.toy.setup",)  # registers the toy model and data kinds
  # Two layers: a word's presence in response A or B is decided at the word itself.
  c.model = config_sections.model("toy", num_layers=2, hidden_size=128, num_heads=4,
                                  num_kv_heads=4, intermediate_size=384)
  # Word checks only: "end" and the counting kinds need a second hop the time budget lacks.
  c.data = config_sections.data("toy", num_instances=6000, held_out_fraction=0.05, seed=0,
                                kinds=("include", "avoid", "start"))
  c.warmstart.update(
      steps=1100,  # the judge's: evidence tags appear late and at a seed-dependent step
      generator_steps=500,  # copying the instruction's constraints is learned sooner
      batch_size=32, max_length=256,
      pad_multiple=16,  # judge rows are 160 tokens on average: less padding than 64
      learning_rate=1e-3, warmup_steps=30,
      prompt_loss_weight=0.0,  # targets only: the policies learn to read, not to copy
      imperfect_rate=0.3, judge_accuracy=1.0,
      negation_slip=0.8)  # a judge error for RL to fix: "does not use" read as "uses"
  c.schedule.update(rounds=2, steps_per_phase=40)
  # The generator reward alone drifted into unparseable rubrics: half a point for validity.
  c.rewards.validity_weight = 0.5
  # 16 prompts x 8 judgments, one update each; beta 0.1 keeps the judge restating criteria.
  c.judge = _policy(max_new_tokens=144, learning_rate=5e-4, prompts_per_step=16, group_size=8,
                    mu=1, micro_batches=4, beta=0.1)
  c.generator = _policy(max_new_tokens=64, learning_rate=2e-4, beta=0.1)  # KL holds rubrics
  # Every held-out pair (281 with seed 0), 8 sampled judgments each as in training.
  c.eval.update(max_pairs=300, samples=8, rubric_max_new_tokens=64, judge_max_new_tokens=144,
                batch_size=64, judge_temperature=1.0)
  c.checkpoint.update(every_steps=50, max_to_keep=2)
  return c
