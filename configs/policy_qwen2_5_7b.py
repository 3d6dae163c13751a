"""Paper scale: Qwen2.5-7B-Instruct trained with the Qwen3-8B Rubric-ARM pair by IterDPO (or
`--config.method=grpo`), the paper's downstream setting (docs/method.md §6, the paper's Table
10), on the 64-chip TPU v5p slice of configs/qwen3_8b.py.

On the TPU VM (every host of the slice), after the reward model's run:

  huggingface-cli download Qwen/Qwen2.5-7B-Instruct --local-dir Qwen/Qwen2.5-7B-Instruct
  python main.py --config configs/qwen3_8b.py --workdir runs/qwen3_8b
  python main.py --config configs/policy_qwen2_5_7b.py --workdir runs/policy_qwen2_5_7b

`configs/policy_qwen2_5_7b.py:grpo` is the online-GRPO run. Planned on a CPU without the slice
(docs/results.md has the figures):

  python -m arm_jax.plan --config configs/policy_qwen2_5_7b.py \
      --reward_model_config configs/qwen3_8b.py

The policy, its AdamW moments and its DPO / KL reference (f32, matmuls in bf16, as in
configs/qwen3_8b.py) and the reward model's two 8B policies share one mesh, data=4 x fsdp=4 x
tensor=4: every weight is split 16 ways. tests/test_configs.py checks the shapes and the even
sharding against the public architectures without the downloads; the planner compiles every
program of the job and its memory beside that state.
Prompts: the reward model's training instructions (the paper does not publish its policy
prompts; set prompts.source=jsonl and prompts.path to use others).
"""

import ml_collections

from arm_jax import config_sections

# The public config.json of Qwen/Qwen2.5-7B-Instruct (the fields arm_jax reads): sizes the mesh
# and the memory check in tests/test_configs.py without downloading 15 GB.
QWEN2_5_7B_INSTRUCT_CONFIG_JSON = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 152064,
    "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
    "num_attention_heads": 28, "num_key_value_heads": 4, "hidden_act": "silu",
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "rope_scaling": None,
    "tie_word_embeddings": False, "max_position_embeddings": 32768, "use_sliding_window": False,
    "sliding_window": 131072, "bos_token_id": 151643, "eos_token_id": 151645,
}
ARCHITECTURE = QWEN2_5_7B_INSTRUCT_CONFIG_JSON  # what `python -m arm_jax.plan` compiles


def get_config(method: str = "iterdpo") -> ml_collections.ConfigDict:
  c = config_sections.policy_base()  # Table 10's DPO and GRPO settings
  c.device.update(kind="TPU v5p", chips=64, hbm_bytes_per_chip=95 * 10**9)
  c.mesh_shape = (4, 4, 4)  # as configs/qwen3_8b.py: tensor=4 within a host's 4 chips
  c.mesh_axes = ("data", "fsdp", "tensor")
  c.rules = (
      ("batch", ("data", "fsdp")), ("length", None), ("act_embed", None), ("embed", "fsdp"),
      ("heads", "tensor"), ("kv_heads", "tensor"), ("mlp", "tensor"), ("vocab", "tensor"),
      ("head_dim", None), ("layers", None), ("cache_slots", None))
  c.method = method or "iterdpo"
  c.reward_model.update(workdir="runs/qwen3_8b", checkpoint="latest")
  # Matmul outputs kept, the rest recomputed: the DPO update's temporaries otherwise leave 1.6 GB
  # of the 95 (docs/results.md).
  c.actor.update(path="Qwen/Qwen2.5-7B-Instruct", dtype="float32", compute_dtype="bfloat16",
                 remat_policy="dots_with_no_batch_dims")
  c.generate_batch = 64  # 4 rows per data-parallel group
  # 2048 response tokens; a pair's rows up to 4096 tokens; 64 pairs in 4 micro-batches of 16.
  c.dpo.update(iterations=3, max_new_tokens=2048, max_length=4096, batch_size=64,
               micro_batches=4)
  # 48 prompts x K 6 = 288 rollouts, 9 micro-batches of 32 rows (2 per data-parallel group).
  c.grpo.update(max_new_tokens=2048, micro_batches=9)
  c.eval.update(kind="ifeval", every_iterations=1, every_steps=50, max_new_tokens=2048,
                batch_size=64)
  c.checkpoint.update(every_steps=50, max_to_keep=2)
  return c
