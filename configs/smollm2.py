"""Rubric-ARM with the shipped SmolLM2-135M-Instruct as both policies, on IFEval-verified pairs.

A real model and real labels, sized for a laptop CPU: one round of one judge step and one
generator step, then the held-out evaluation. Data: the offline pairs that
`python experiments/build_offline_data.py --out data/offline --limit 48` writes to
data/offline/ifeval_verified (the default data.path, relative to the working directory; point it
elsewhere with `--config.data.path=DIR/ifeval_verified`). No SFT warm start: the paper's
distilled SFT data is not available offline (set warmstart.path and warmstart.steps to add one).

  python main.py --config configs/smollm2.py --workdir runs/smollm2

The full (non-compact) templates are the paper's formats; at 135M parameters
`--config.templates.rubric=rubric_generator_compact --config.templates.judge=judge_compact`
give shorter prompts. For paper scale see configs/qwen3_8b.py.
"""

import ml_collections

from arm_jax import config_sections


def _policy(group_size: int, prompts_per_step: int,
            max_new_tokens: int) -> ml_collections.ConfigDict:
  # mu=1 (the paper uses 2) halves the CPU time of an update; clip and KL are the paper's.
  return config_sections.policy(group_size=group_size, mu=1, prompts_per_step=prompts_per_step,
                                max_new_tokens=max_new_tokens)


def get_config() -> ml_collections.ConfigDict:
  c = config_sections.train_base()
  c.model = config_sections.model("pretrained", path="")  # "" = the shipped SmolLM2 GGUF
  c.data = config_sections.data(
      "dataset", path="data/offline/ifeval_verified", held_out_fraction=0.2,
      build_hint="build it with `python experiments/build_offline_data.py --out data/offline "
                 "--limit 48` (about 12 minutes on a 2-core CPU), or set --config.data.path")
  c.warmstart.update(steps=0, batch_size=4, max_length=2048, learning_rate=5e-6)  # no SFT data
  c.schedule.update(rounds=1, steps_per_phase=1)
  c.judge = _policy(group_size=2, prompts_per_step=1, max_new_tokens=192)
  c.generator = _policy(group_size=2, prompts_per_step=1, max_new_tokens=96)
  c.eval.update(max_pairs=4, rubric_max_new_tokens=96, judge_max_new_tokens=192, batch_size=8,
                judge_temperature=0.0)  # 0 = greedy only
  c.checkpoint.update(every_steps=0, max_to_keep=1)
  return c
