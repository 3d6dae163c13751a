"""Toy Rubric-ARM run: a synthetic preference world, a tiny decoder from scratch, any CPU.

Pairs of short responses to instructions with explicit, checkable constraints (arm_jax.toy);
the preferred response meets more of them. Both policies start from one random tiny decoder,
are warm-started on imperfect synthetic rubrics and judgments, then trained by alternating
GRPO. `python main.py --config configs/toy.py --workdir DIR`; override any field with
`--config.judge.learning_rate=...`.
"""

import ml_collections


def _policy(max_new_tokens: int, learning_rate: float, beta: float) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      group_size=4, advantage="grpo", eps_low=0.2, eps_high=0.28, beta=beta, mu=1,
      loss_aggregation="seq_mean_token_mean", micro_batches=2, prompts_per_step=8,
      max_new_tokens=max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
      learning_rate=learning_rate, weight_decay=0.0, max_grad_norm=1.0))


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.job = "train"
  c.seed = 0
  c.mesh_shape = (-1, 1, 1)
  c.mesh_axes = ("data", "fsdp", "tensor")
  c.rules = ml_collections.FieldReference(None, field_type=tuple)  # None = arm_jax defaults
  c.offload_idle_optimizer = True
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
  c.judge = _policy(max_new_tokens=96, learning_rate=2e-4, beta=0.0)
  c.generator = _policy(max_new_tokens=64, learning_rate=2e-4, beta=0.0)
  c.rewards = ml_collections.ConfigDict(dict(format_reward="binary", format_weight=1.0,
                                             validity_weight=0.0, brevity_weight=0.0))
  # judge_temperature: the judge's held-out judgments are sampled as in training (a greedy
  # figure is logged beside it); 0 = greedy only.
  c.eval = ml_collections.ConfigDict(dict(max_pairs=128, rubric_max_new_tokens=64,
                                          judge_max_new_tokens=96, batch_size=64,
                                          judge_temperature=1.0))
  c.checkpoint = ml_collections.ConfigDict(dict(every_steps=10, max_to_keep=2))
  c.log = ml_collections.ConfigDict(dict(tensorboard=True))
  return c
