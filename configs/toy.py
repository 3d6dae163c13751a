"""Toy Rubric-ARM run: a synthetic preference world, a tiny decoder from scratch, any CPU.

Pairs of short responses to instructions with explicit, checkable constraints (arm_jax.toy); the
preferred response meets more of them. Both policies start from one random tiny decoder, are
warm-started on imperfect synthetic rubrics and judgments, then trained by alternating GRPO.
The embedded default: `python main.py` runs it, as does `python main.py --config configs/toy.py
--workdir DIR`; override any field with `--config.judge.learning_rate=...`. It takes about 5.5
minutes on a 2-core CPU (301-326 s on a 2-core Intel Xeon, seeds 0-2). Measured runs (time,
held-out judge_accuracy per round and seed, the ablations) and how this config departs from the
paper's settings: docs/results.md.
"""

import ml_collections

from arm_jax import config_sections


def _policy(**fields) -> ml_collections.ConfigDict:
  # warmup: a fresh AdamW's first update moves every weight by the full rate (the judge's KL
  # after it: 0.09 to 285 on seeds 0-2); 10 updates of linear warmup lifted seed 0's gain 8 -> 20.
  return config_sections.policy(**{**dict(group_size=4, beta=0.0, mu=2, micro_batches=2,
                                          prompts_per_step=8, warmup_steps=10), **fields})


def get_config() -> ml_collections.ConfigDict:
  c = config_sections.train_base()
  c.plugins = ("arm_jax.toy.setup",)  # registers the toy model and data kinds
  # Two layers: a word's presence in response A or B is decided at the word itself; a narrow
  # feed-forward (128) makes every step 27% cheaper (docs/results.md).
  c.model = config_sections.model("toy", num_layers=2, hidden_size=128, num_heads=4,
                                  num_kv_heads=4, intermediate_size=128)
  # Word checks only, two per instruction, responses of at most 8 words: short rows, and every
  # instruction has a "does not use" rule for the negation slip below.
  c.data = config_sections.data("toy", num_instances=6000, held_out_fraction=0.05, seed=0,
                                kinds=("include", "avoid"), max_constraints=2, max_words=8)
  c.warmstart.update(
      steps=700,  # the judge's: 95% of its evidence tags right teacher-forced, seeds 0-2
      generator_steps=300,  # copying the instruction's constraints is learned by step 300
      batch_size=32, max_length=256,
      pad_multiple=16,  # rows are short and alike: little padding at 16
      learning_rate=2e-3, generator_learning_rate=1e-3, warmup_steps=30,
      schedule="constant",  # cosine reads better at round 0, and RL then breaks its reading
      prompt_loss_weight=0.0,  # targets only: the policies learn to read, not to copy
      imperfect_rate=0.3, judge_accuracy=1.0,
      # A judge error for RL to fix: "does not use" read as "uses" in 60% of judgments (at 0.8
      # seed 0 gained 8 points, its evidence reading falling under RL; docs/results.md).
      negation_slip=0.6,
      # The gatekeeper is named from the rubric, before reading, as the paper's is: one named
      # from the responses is guessed, and the evidence written after it follows the guess.
      gatekeeper="rubric")
  c.schedule.update(rounds=2, steps_per_phase=25)
  # The generator reward alone drifted into unparseable rubrics: half a point for validity.
  c.rewards.validity_weight = 0.5
  # 8 prompts x 8 judgments, two updates each (the paper's mu; lifts the weakest seed's gain
  # from 6.4 to 8.4 points, docs/results.md); beta 0.1 keeps the judge restating criteria.
  c.judge = _policy(max_new_tokens=112, learning_rate=5e-4, group_size=8, beta=0.1)
  c.generator = _policy(max_new_tokens=32, learning_rate=2e-4, beta=0.1)  # KL holds rubrics
  # Every held-out pair (about 300), 4 sampled judgments each at the paper's temperature 1.
  c.eval.update(max_pairs=300, samples=4, rubric_max_new_tokens=32, judge_max_new_tokens=112,
                batch_size=64, judge_temperature=1.0)
  c.checkpoint.update(every_steps=50, max_to_keep=2)
  return c
