"""The shipped SmolLM2-135M-Instruct trained with a SmolLM2 reward model on IFEval-style prompts,
scored on IFEval (docs/method.md §6, §7); a laptop-CPU run of the paper's downstream recipe.

The reward model is a configs/smollm2.py run (train it first), or the untrained SmolLM2 pair
prompted as rubric generator and judge (the paper's "prompting only" reward):

  python main.py --config configs/smollm2.py --workdir runs/smollm2
  python main.py --config configs/policy_smollm2.py --workdir runs/policy_smollm2
  python main.py --config configs/policy_smollm2.py --workdir runs/policy_smollm2_prompted \
      --config.reward_model.workdir= --config.reward_model.config=configs/smollm2.py
  python main.py --config configs/policy_smollm2.py --workdir runs/policy_smollm2_grpo \
      --config.method=grpo

The policy is the reward model's base weights (the shipped SmolLM2-135M-Instruct GGUF), trained
on IFBench's 300 prompts (IFEval's kind of instructions, not IFEval's prompts, which score it).
Table 10's DPO and GRPO settings, sized down for two CPU cores: 64 prompts per iteration,
256-token responses, batch 8.
"""

import ml_collections

from arm_jax import config_sections


def get_config() -> ml_collections.ConfigDict:
  c = config_sections.policy_base()
  c.method = "iterdpo"
  c.reward_model.update(workdir="runs/smollm2", checkpoint="latest")
  c.prompts.source = "ifbench"
  c.generate_batch = 32
  c.dpo.update(iterations=3, prompts_per_iteration=64, max_new_tokens=256, batch_size=8,
               max_length=1024, learning_rate=8e-7,  # beta 0.1, SFT weight 0.2: Table 10's
               micro_batches=2)  # 8 pairs x 2 sides x up to 1024 tokens in two halves: 24 GiB
  # The paper's K 6, lr 5e-7, clip, KL and mu; 8 prompts per step instead of 48.
  c.grpo.update(prompts_per_step=8, steps=8, max_new_tokens=256)
  # IFEval's 541 prompts at the start and after every iteration: about 35 minutes each here.
  c.eval.update(kind="ifeval", every_iterations=1, every_steps=4, max_new_tokens=512,
                batch_size=32)
  c.checkpoint.update(every_steps=10, max_to_keep=2)
  return c
