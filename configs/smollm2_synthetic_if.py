"""Rubric-ARM on SmolLM2-135M-Instruct with Synthetic-IF pairs: Stage I SFT from verifier-written
rubrics and judgments, then alternating GRPO on other pairs (docs/method.md §3, §4).

The training stage of experiments/real_lm_pipeline.py, which builds the data and sets the paths
and step counts from its budget; run alone it expects that layout:

  python main.py --config configs/smollm2_synthetic_if.py --workdir runs/real_lm/train \\
      --config.data.path=runs/real_lm/split/rl --config.warmstart.path=runs/real_lm/split/sft.jsonl

Both policies start from the shipped SmolLM2 GGUF (model.path '' ; any HF directory or .gguf
works). Departures from the paper's settings, all for a 135M model on a 2-core CPU, are listed
in docs/results.md ("Rubric-ARM on SmolLM2 with Synthetic-IF").
"""

import ml_collections

from arm_jax import config_sections


def get_config() -> ml_collections.ConfigDict:
  c = config_sections.train_base()
  # "" = the shipped SmolLM2 GGUF. LoRA rank 8 on every projection: a policy's checkpoint is
  # 8.7 MB instead of 540 MB, so the pipeline's archive can carry the trained pair between
  # machines (README, "Train").
  c.model = config_sections.model("pretrained", path="", lora_rank=8, lora_alpha=16.0)
  c.data = config_sections.data(
      "dataset", path="runs/real_lm/split/rl", held_out_fraction=0.05,  # a small curve set
      build_hint="experiments/real_lm_pipeline.py builds it (stage split)")
  # The compact templates: the full ones' instructions are ~400 tokens a 135M model reads badly.
  c.templates.update(rubric="rubric_generator_compact", judge="judge_compact")
  # Stage I: the verifier's rubrics and judgments (arm_jax.data.verifier_sft). LoRA adapters of a
  # 135M model learn a new format at a higher rate than the paper's 8e-6 / 5e-6 full 8B models.
  # Judge rows hold two responses of up to 384 tokens: 2048 cuts no verdict off.
  c.warmstart.update(path="runs/real_lm/split/sft.jsonl", steps=200, batch_size=8,
                     max_length=2048, generator_max_length=1024, learning_rate=2e-4,
                     schedule="cosine", warmup_steps=10,
                     length_groups=16,  # judge rows run 400-1900 tokens: batch alike lengths
                     pad_multiple=128)  # half the judge shapes to compile (docs/results.md)
  # 8 judge rows of 1920 tokens need 20.4 GB of temporaries (XLA's memory_analysis; killed on a
  # 24 GiB machine): two exact halves of 4 rows (docs/results.md, "the data so far").
  c.warmstart.judge_micro_batches = 2
  c.schedule.update(rounds=2, steps_per_phase=10)
  # G 4 (the paper's 6 / 7) and 2 instances per step: 8 rollouts per update on two cores.
  # LoRA RL at 5e-5, 5 updates of warmup: LoRA's best rate runs ~10x full fine-tuning's, more
  # in runs under 100 updates (Schulman et al. 2025, "LoRA Without Regret"), and these adapters
  # scale by alpha / rank = 2 and get a few tens of updates each; the warmup as configs/toy.py.
  # The judge's 8 rollouts run up to ~2100 tokens too: its update in two halves as well.
  # 384 judgment tokens: the warm start's judgments must fit before their verdict, and a
  # group's long judge prompt runs once in the update (shared_prefix; docs/results.md).
  c.judge = config_sections.policy(group_size=4, mu=1, prompts_per_step=2, max_new_tokens=384,
                                   learning_rate=5e-5, warmup_steps=5, micro_batches=2,
                                   shared_prefix=True)
  c.generator = config_sections.policy(group_size=4, mu=1, prompts_per_step=2,
                                       max_new_tokens=192, learning_rate=5e-5, warmup_steps=5)
  # Greedy judgments for the per-round curve; the full evaluation samples (arm_jax.evaluate).
  c.eval.update(max_pairs=32, rubric_max_new_tokens=192, judge_max_new_tokens=384,
                batch_size=16, judge_temperature=0.0)
  c.checkpoint.update(every_steps=10, max_to_keep=1)  # warm_start and round ends stay too
  return c
