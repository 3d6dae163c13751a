"""Sections shared by the training and evaluation configs (configs/*.py), so a config states only
its choices.

Imports nothing but ml_collections: a config file stays cheap to load.
"""

from __future__ import annotations

import ml_collections

# RUBRIC_ARM.md §3's GRPO settings; weight decay 0 and clipping at norm 1 are not given by the
# paper (the usual GRPO defaults).
_POLICY = dict(
    group_size=4, advantage="grpo", eps_low=0.2, eps_high=0.28, beta=0.001, mu=2,
    loss_aggregation="seq_mean_token_mean", micro_batches=1, prompts_per_step=8,
    max_new_tokens=512, temperature=1.0, top_p=1.0, top_k=0, learning_rate=1e-6,
    weight_decay=0.0, max_grad_norm=1.0)


def policy(**fields) -> ml_collections.ConfigDict:
  """One policy's GRPO, sampling and optimizer settings: the paper's, updated by `fields`."""
  unknown = set(fields) - set(_POLICY)
  if unknown:
    raise ValueError(f"unknown policy fields {sorted(unknown)}; known: {sorted(_POLICY)}")
  return ml_collections.ConfigDict({**_POLICY, **fields})


def _run_base(job: str) -> ml_collections.ConfigDict:
  """What every job's config starts with: the job, the seed, a data-parallel mesh over every
  device and the default sharding rules."""
  c = ml_collections.ConfigDict()
  c.job = job
  c.seed = 0
  c.mesh_shape = (-1, 1, 1)
  c.mesh_axes = ("data", "fsdp", "tensor")
  c.rules = ml_collections.FieldReference(None, field_type=tuple)  # None = arm_jax defaults
  return c


def train_base() -> ml_collections.ConfigDict:
  """job, seed, a data-parallel mesh over every device, default rules, rewards, logging."""
  c = _run_base("train")
  c.offload_idle_optimizer = True
  # A workdir (or its checkpoints folder) of an earlier run: a fresh run starts both policies
  # from that run's newest checkpoint (e.g. one warm start, `schedule.rounds=0`, shared by RL
  # variants that set warmstart.steps=warmstart.generator_steps=0). "" = from scratch / the
  # model's weights. Ignored when --workdir already holds a checkpoint (resume wins).
  c.init_from = ""
  c.rewards = ml_collections.ConfigDict(dict(format_reward="binary", format_weight=1.0,
                                             validity_weight=0.0, brevity_weight=0.0))
  c.log = ml_collections.ConfigDict(dict(tensorboard=True))
  # every_steps: save every N global steps (0 = only at stage / phase ends and on SIGTERM);
  # max_to_keep: the newest N stay; keep_rounds: the checkpoints after the warm start and after
  # each round stay too, for evaluating any round's pair (arm_jax.evaluate, trained.checkpoint).
  c.checkpoint = ml_collections.ConfigDict(dict(every_steps=50, max_to_keep=2, keep_rounds=True))
  return c


# --- evaluation (arm_jax.evaluate) ---------------------------------------------------------------

def _benchmark(path: str, fmt: str, subset: str = "") -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      kind="dataset", path=path, subset=subset, max_examples=0,
      build_hint=f"build it with `python -m arm_jax.data.build --input <hub files> --format {fmt} "
                 f"--out {path}`"))


def paper_benchmarks() -> ml_collections.ConfigDict:
  """RUBRIC_ARM.md §6's ten benchmarks as `benchmark_specs` entries, named as the table's columns
  (arm_jax.evaluation.benchmarks.PAPER_COLUMNS), each read from where `python -m
  arm_jax.data.build` is expected to have written it. FollowBench and InfoBench are made
  pairwise by sampling two responses and the benchmark's verifier (the `columns` format)."""
  return ml_collections.ConfigDict(dict(
      chat=_benchmark("data/benchmarks/rewardbench", "rewardbench", "Chat"),
      chat_hard=_benchmark("data/benchmarks/rewardbench", "rewardbench", "Chat-Hard"),
      follow=_benchmark("data/benchmarks/followbench", "columns"),
      ppe_if=_benchmark("data/benchmarks/ppe_ifeval", "ppe_ifeval"),
      info=_benchmark("data/benchmarks/infobench", "columns"),
      ifbench=_benchmark("data/benchmarks/ifbench", "columns"),
      rmb=_benchmark("data/benchmarks/rmbench", "rmbench", "chat"),
      rb2_pif=_benchmark("data/benchmarks/rewardbench2", "rewardbench2", "Precise IF"),
      rb2_focus=_benchmark("data/benchmarks/rewardbench2", "rewardbench2", "Focus"),
      hs3=_benchmark("data/benchmarks/helpsteer3", "helpsteer3")))


def system_specs() -> ml_collections.ConfigDict:
  """The table rows a config can select (arm_jax.evaluation.systems): the trained pair, the base
  model prompted as generator and judge (the paper's "prompting only" row), the base judge
  without a rubric, and the trained judge without a rubric. votes > 1 adds a voting@k row;
  checkpoint picks the training run's checkpoint for trained weights ("" = trained.checkpoint;
  arm_jax.evaluation.systems.CHECKPOINTS)."""
  spec = lambda generator, judge: ml_collections.ConfigDict(  # noqa: E731
      dict(generator=generator, judge=judge, votes=1, checkpoint=""))
  return ml_collections.ConfigDict(dict(
      trained=spec("trained", "trained"), prompted=spec("base", "base"),
      direct=spec("none", "base"), trained_direct=spec("none", "trained")))


def evaluate_base() -> ml_collections.ConfigDict:
  """An evaluation config's shared sections, with RUBRIC_ARM.md §4's decoding: greedy rubrics,
  judgments sampled at temperature 1.0; the length limits are the training run's (or the
  paper's 1024 / 4096 without one)."""
  c = _run_base("evaluate")
  # Base weights: an HF directory or .gguf ("" = the shipped SmolLM2, or the training run's
  # starting weights when trained.workdir is set).
  c.model = ml_collections.ConfigDict(dict(path="", dtype="float32"))
  # A training run: its workdir, the config file it was started with ("" = its config.json),
  # its --config. overrides as "key=value" strings, and the checkpoint its trained rows read:
  # latest, warm_start (round 0), round:R or step:N (arm_jax.evaluation.systems.CHECKPOINTS).
  c.trained = ml_collections.ConfigDict(dict(workdir="", config="", overrides=(),
                                             checkpoint="latest"))
  c.templates = ml_collections.ConfigDict(dict(rubric="", judge="", direct=""))
  # max_new_tokens 0: the training run's own limits (its eval section), else the paper's.
  c.rubric = ml_collections.ConfigDict(dict(max_new_tokens=0))
  c.judge = ml_collections.ConfigDict(dict(max_new_tokens=0, temperature=1.0, top_p=1.0,
                                           top_k=0))
  c.batch_size = 8  # prompts per generation call (times votes rows)
  c.orders = ("mixed",)  # any of mixed, ord1, ord2; ord1 + ord2 give the position bias
  c.systems = ("prompted", "direct")
  c.system_specs = system_specs()
  c.benchmarks = ()
  c.benchmark_specs = paper_benchmarks()
  return c
