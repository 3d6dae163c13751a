"""Paper scale: Rubric-ARM with Qwen3-8B as both policies on a 64-chip TPU v5p slice (v5p-128).

Hyperparameters are the paper's (docs/method.md §4): 3 rounds, judge first, one epoch per phase; judge G=7,
32 prompts (224 completions) per step, 1024 new tokens; generator G=6, 48 prompts (288
completions), 512 new tokens; AdamW lr 1e-6 constant, eps 0.2 / 0.28, beta 0.001, mu 2,
temperature / top-p 1.0; held-out evaluation as at inference (greedy rubric up to 1024 tokens,
judge sampled at temperature 1.0 up to 4096). Parameters and AdamW moments in f32, matmuls in
bf16: at lr 1e-6 an AdamW step (about 1e-6 per weight) is below half the bf16 spacing of most
weights (6e-5 at 0.01), so bf16 parameters would round most updates away.

On the TPU VM (every host of the slice):

  huggingface-cli download Qwen/Qwen3-8B --local-dir Qwen/Qwen3-8B
  python -m arm_jax.data.build --input ... --format openrubrics --out data/openrubrics
  python main.py --config configs/qwen3_8b.py --workdir runs/qwen3_8b

Stage I: the paper starts RL from SFT'd models (the released Rubric-RM-8B rubric generator and
judge are that stage). Point generator.path and judge.path at those two checkpoints, or set
warmstart.path to an SFT JSONL and warmstart.steps > 0 (the settings below are Rubric-RM's SFT:
generator lr 8e-6, batch 128, cutoff 3072; judge lr 5e-6, batch 64, cutoff 6144).

Planned on a CPU with `python -m arm_jax.plan --config configs/qwen3_8b.py --topology v5p-128`:
all 16 programs of the run compile for the slice, and the peak is the judge's update
(docs/results.md has every program's figures and the margin). Other slices are presets below,
`--config configs/qwen3_8b.py:<slice>` for main.py and the planner alike, each planned.

Device: TPU v5p, 95 GB HBM per chip. The paper does not name its hardware; its
vLLM rollouts and full bf16 fine-tune of two 8B models are the 80 GB-GPU recipe, and v5p is the
TPU training chip in that memory class. With this layout a v5e-64 (16 GB per chip) holds none
of the programs beside the resident state (the planner exits 1 there); the v5e-256 preset
splits the state 256 ways instead.

v5p-128 mesh: data=4 x fsdp=4 x tensor=4 (64 chips): tensor=4 stays within a v5p host's 4 chips and
divides Qwen3-8B's 8 kv heads, 32 heads, 12288 mlp and 151936 vocab; parameters and optimizer
states are split 16 ways (fsdp x tensor) and replicated over data; the batch is split over
data x fsdp = 16, which divides every rollout (224, 288), micro-batch (32 rows) and eval batch
(64). tests/test_configs.py checks this for every preset against the architecture below
without the download.
"""

import ml_collections

from arm_jax import config_sections

# The public config.json of Qwen/Qwen3-8B (the fields arm_jax reads): sizes the mesh checks in
# tests/test_configs.py and the planner's arrays without downloading 16 GB.
QWEN3_8B_CONFIG_JSON = {
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 151936,
    "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "hidden_act": "silu",
    "attention_bias": False, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "rope_scaling": None,
    "tie_word_embeddings": False, "max_position_embeddings": 40960, "use_sliding_window": False,
    "bos_token_id": 151643, "eos_token_id": 151645,
}
ARCHITECTURE = QWEN3_8B_CONFIG_JSON  # what `python -m arm_jax.plan` compiles without the download


# Slices users rent, each planned (`python -m arm_jax.plan --config configs/qwen3_8b.py:<slice>`;
# docs/results.md has each plan's per-program figures and margin). Only the layout changes:
# every preset keeps the paper's hyperparameters and f32 parameters.
#   mesh: (data, fsdp, tensor); the batch splits over data x fsdp, parameters over fsdp x tensor.
#   micro: (judge, generator) micro-batches of the GRPO update, one row per data-parallel chip
#     where HBM is short.
#   remat: what the update's backward pass recomputes.
PRESETS = {
    # 95 GB chips: parameters 16 ways, 2 rows per chip per judge micro-batch.
    "v5p-128": dict(kind="TPU v5p", chips=64, hbm=95, mesh=(4, 4, 4),
                    micro=(7, 9), remat="dots_with_no_batch_dims"),
    # 32 GB chips (v6e; v4): parameters 64 ways, one row per chip per micro-batch.
    "v6e-64": dict(kind="TPU v6e", chips=64, hbm=32, mesh=(1, 16, 4),
                   micro=(14, 18), remat="dots_with_no_batch_dims"),
    "v4-128": dict(kind="TPU v4", chips=64, hbm=32, mesh=(1, 16, 4),
                   micro=(14, 18), remat="dots_with_no_batch_dims"),
    # 16 GB chips: parameters 256 ways; tensor=8 divides the 8 kv heads and lets the batch split
    # 32 ways, which divides 224 and 288.
    "v5e-256": dict(kind="TPU v5e", chips=256, hbm=16, mesh=(1, 32, 8),
                    micro=(7, 9), remat="dots_with_no_batch_dims"),
}


def get_config(slice_name: str = "") -> ml_collections.ConfigDict:
  """`configs/qwen3_8b.py` is the v5p-128 preset; `configs/qwen3_8b.py:<slice>` another one."""
  name = slice_name or "v5p-128"
  if name not in PRESETS:
    raise ValueError(f"configs/qwen3_8b.py:{name}: no preset for that slice; presets: "
                     f"{', '.join(PRESETS)}")
  preset = PRESETS[name]
  c = config_sections.train_base()
  c.device.update(kind=preset["kind"], chips=preset["chips"],
                  hbm_bytes_per_chip=preset["hbm"] * 10**9)
  c.mesh_shape = preset["mesh"]
  c.mesh_axes = ("data", "fsdp", "tensor")
  c.rules = (
      ("batch", ("data", "fsdp")), ("length", None), ("act_embed", None), ("embed", "fsdp"),
      ("heads", "tensor"), ("kv_heads", "tensor"), ("mlp", "tensor"), ("vocab", "tensor"),
      ("head_dim", None), ("layers", None), ("cache_slots", None))
  c.model = config_sections.model(
      "pretrained", path="Qwen/Qwen3-8B",  # a local HF directory (see the download above)
      dtype="float32", compute_dtype="bfloat16", remat_policy=preset["remat"])
  c.data = config_sections.data(
      "dataset", path="data/openrubrics", held_out_fraction=0.02,
      build_hint="build it with `python -m arm_jax.data.build --format openrubrics "
                 "--input FILE --out data/openrubrics`")
  c.warmstart.update(steps=0, batch_size=64, max_length=6144, learning_rate=5e-6,
                     generator_learning_rate=8e-6, generator_batch_size=128,
                     generator_max_length=3072)
  c.schedule.update(rounds=3, order="judge_first", epochs_per_phase=1.0)
  # Prompt limits: the judge's holds the instruction, a rubric and two responses; longer pairs
  # are skipped at load.
  c.judge = config_sections.policy(group_size=7, prompts_per_step=32, max_new_tokens=1024,
                                   micro_batches=preset["micro"][0], max_prompt_tokens=4096)
  c.generator = config_sections.policy(group_size=6, prompts_per_step=48, max_new_tokens=512,
                                       micro_batches=preset["micro"][1], max_prompt_tokens=1024)
  # As at inference (docs/method.md §5): greedy rubrics, sampled judgments (a greedy figure is logged too).
  c.eval.update(max_pairs=512, rubric_max_new_tokens=1024, judge_max_new_tokens=4096,
                batch_size=64, judge_temperature=1.0)
  c.checkpoint.update(every_steps=10, max_to_keep=2)
  return c
