"""Toy Rubric-ARM run: a synthetic preference world, a tiny decoder from scratch, any CPU.

Pairs of short responses to instructions with explicit, checkable constraints (arm_jax.toy);
the preferred response meets more of them. Both policies start from one random tiny decoder,
are warm-started on imperfect synthetic rubrics and judgments, then trained by alternating
GRPO. `python main.py --config configs/toy.py --workdir DIR`; override any field with
`--config.judge.learning_rate=...`.
"""

import ml_collections

from arm_jax import config_sections


def _policy(max_new_tokens: int, learning_rate: float) -> ml_collections.ConfigDict:
  return config_sections.policy(
      group_size=4, beta=0.0, mu=1, micro_batches=2, prompts_per_step=8,
      max_new_tokens=max_new_tokens, learning_rate=learning_rate)


def get_config() -> ml_collections.ConfigDict:
  c = config_sections.train_base()
  c.model = ml_collections.ConfigDict(dict(
      kind="toy", num_layers=4, hidden_size=128, num_heads=4, num_kv_heads=4,
      intermediate_size=384))
  # Word checks only (include / avoid / start / end): what a 4-layer model learns in minutes;
  # add "at_most", "at_least" for the counting constraints.
  c.data = ml_collections.ConfigDict(dict(kind="toy", num_instances=6000, held_out_fraction=0.05,
                                          seed=0, kinds=("include", "avoid", "start", "end")))
  c.templates = ml_collections.ConfigDict(dict(rubric="", judge=""))  # "" = the toy templates
  c.warmstart = ml_collections.ConfigDict(dict(
      steps=300, batch_size=16, max_length=256, learning_rate=2e-3, max_grad_norm=1.0,
      imperfect_rate=0.3, judge_accuracy=0.65))
  c.schedule = ml_collections.ConfigDict(dict(rounds=2, order="judge_first", steps_per_phase=10,
                                              epochs_per_phase=1.0))
  c.judge = _policy(max_new_tokens=96, learning_rate=2e-4)
  c.generator = _policy(max_new_tokens=64, learning_rate=2e-4)
  # judge_temperature: the judge's held-out judgments are sampled as in training (a greedy
  # figure is logged beside it); 0 = greedy only.
  c.eval = ml_collections.ConfigDict(dict(max_pairs=128, rubric_max_new_tokens=64,
                                          judge_max_new_tokens=96, batch_size=64,
                                          judge_temperature=1.0))
  c.checkpoint = ml_collections.ConfigDict(dict(every_steps=10, max_to_keep=2))
  return c
