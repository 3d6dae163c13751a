"""Plan a training run for a TPU slice without the slice: compile, on this host, every program
the run executes at its real shapes for the slice's topology, and check that each fits a chip.

  pip install -e ".[tpu]"   # libtpu: compiles for TPU on a CPU-only machine
  python -m arm_jax.plan --config configs/qwen3_8b.py --topology v5p-128 [--out plan.json]
  python -m arm_jax.plan --config configs/qwen3_8b.py:v6e-64 --programs '*.update'  # a preset,
                                                             # the two updates only
  python -m arm_jax.plan --config configs/policy_qwen2_5_7b.py \
      --reward_model_config configs/qwen3_8b.py              # a policy job

No weights are read: the model is its architecture (the model's config.json when model.path is
a local directory, else the config file's ARCHITECTURE dict, the public config.json) and every
array an abstract value laid out as the run lays it out (the config's mesh, rules and dtypes).
Programs, per policy (docs/method.md §4; shapes from the config):

  <role>.sft                     a warm-start step: the role's warm-start rows x max_length
  <role>.rollout.prefill/decode  a phase's rollouts: prompts_per_step prompts prefilled once,
                                 decoded as prompts_per_step x group_size rows, the
                                 longest prompt bucket, max_new_tokens (the KV cache is decode's)
  <role>.reference_logprobs      the KL reference's log-probs of a rollout batch (beta > 0)
  <role>.update                  the GRPO update: mu steps, micro_batches slices
  generator.rubrics_for_judge    the judge phase's rubrics (eval.batch_size rows)
  judge.greedy_for_generator     the generator reward's greedy judgments (generator rows)
  eval.rubric / eval.judge       held-out evaluation (eval.batch_size rows, the eval lengths)

A policy job (job='policy', docs/method.md §6; the reward model's training config from
reward_model.workdir's config.json, reward_model.config or --reward_model_config):

  policy.warmstart               the policy's SFT warm start (actor.warmstart_steps > 0)
  policy.sample.prefill/decode   dpo / iterdpo: two samples per prompt, generate_batch prompts
  policy.greedy / policy.rollout grpo: the greedy response each rollout is judged against, and
                                 prompts_per_step x group_size rollouts
  reward_model.rubric / .judge   the reward model's rubrics and judgments (its batch_size rows)
  policy.reference_logprobs      the DPO reference's (a pair side) or GRPO's KL reference's
  policy.dpo_update / .update    DPO on batch_size pairs of max_length, or the GRPO update
  eval.policy.prefill/decode     the greedy evaluation responses (eval.batch_size rows)

Its prompt buckets are the largest the job's load checks admit (a prompt leaving room for the
response: Policy.room); IFEval's evaluation prompts are read, their bucket from the longest.

Each program's per-chip bytes come from the compiled program's memory_analysis (arguments,
outputs, temporaries, code; outputs that reuse a donated argument counted once); what the run
keeps on the chip outside the program (the other policy, the KL references, the active optimizer
state, the idle one unless offload_idle_optimizer moves it to host memory, each sampler's kept
decode-layout copy of its weights) is counted from the arrays' shardings. Peak = both. FLOPs and
bytes accessed from cost_analysis are kept, but XLA counts a loop's body once (layers,
micro-batches, mu steps and decode steps are loops), so the roofline time per call is
max(model FLOPs / peak FLOP/s, bytes / HBM bandwidth) with the chip's published peaks, model
FLOPs from the architecture (model_flops) and, for decode, every argument and temporary read
once per generated token. plan.json holds every figure; the exit status is 1
when a program does not fit.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import importlib.util
import json
import math
import os
import sys
import time
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from arm_jax import config_sections, sampling, sharding, xla_options
from arm_jax.core import ROLES
from arm_jax.models import Decoder, DecoderConfig
from arm_jax.models.checkpoint import abstract_params
from arm_jax.rl import grpo, optim
from arm_jax.rl.logprobs import SequenceBatch
from arm_jax.rl.sft import SFTConfig, make_sft_update
from arm_jax.sampling import DEFAULT_BUCKETS, SamplingParams, bucket_length

GB = 10**9


@dataclasses.dataclass(frozen=True)
class Slice:
  """A TPU slice as sold: its topology for jax.experimental.topologies and one chip's HBM and
  published peaks (bf16 FLOP/s, HBM bytes/s)."""
  name: str
  topology: str
  chips: int
  hbm_bytes: int
  peak_flops: float
  hbm_bandwidth: float
  # libtpu's chip configuration: "megacore" makes a v4 chip's two TensorCores one device, as
  # v4 slices run; "" = libtpu's default (v5p is megacore by default, v5e and v6e have one core).
  chip_config: str = ""


# Google Cloud's published per-chip figures (HBM, bf16 peak, HBM bandwidth). v4 and v5p names
# count TensorCores (two per chip), v5e and v6e names count chips.
SLICES = {s.name: s for s in (
    Slice("v5p-8", "v5p:2x2x1", 4, 95 * GB, 459e12, 2765e9),
    Slice("v5p-128", "v5p:4x4x4", 64, 95 * GB, 459e12, 2765e9),
    Slice("v5p-256", "v5p:4x4x8", 128, 95 * GB, 459e12, 2765e9),
    Slice("v4-8", "v4:2x2x1", 4, 32 * GB, 275e12, 1228e9, "megacore"),
    Slice("v4-128", "v4:4x4x4", 64, 32 * GB, 275e12, 1228e9, "megacore"),
    Slice("v5e-4", "v5e:2x2", 4, 16 * GB, 197e12, 819e9),
    Slice("v5e-64", "v5e:8x8", 64, 16 * GB, 197e12, 819e9),
    Slice("v5e-256", "v5e:16x16", 256, 16 * GB, 197e12, 819e9),
    Slice("v6e-4", "v6e:2x2", 4, 32 * GB, 918e12, 1640e9),
    Slice("v6e-64", "v6e:8x8", 64, 32 * GB, 918e12, 1640e9),
    Slice("v6e-256", "v6e:16x16", 256, 32 * GB, 918e12, 1640e9),
)}


# --- the run's architecture and arrays, abstractly ------------------------------------------------

def load_config_file(path: str) -> tuple[ml_collections.ConfigDict, Any]:
  """(validated config, the config file's module) of `configs/<name>.py` or, as main.py takes
  it, `configs/<name>.py:<argument>` (get_config(argument): a preset)."""
  file, argument = path, None
  if ":" in path and not os.path.isfile(path):
    file, argument = path.rsplit(":", 1)
  if not os.path.isfile(file):
    raise FileNotFoundError(f"--config={path!r}: no such file {file!r}")
  spec = importlib.util.spec_from_file_location("arm_jax_plan_config", file)
  if spec is None or spec.loader is None:
    raise FileNotFoundError(f"--config={path!r}: not a Python file")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config() if argument is None else module.get_config(argument)
  return config_sections.validate(config), module


def decoder_config(config: ml_collections.ConfigDict, module: Any = None,
                   role: str = "") -> DecoderConfig:
  """A policy's architecture without its weights: a plug-in's (the toy's), the config.json of
  a local <role>.path or model.path, or the config file's ARCHITECTURE (a model's public
  config.json; ARCHITECTURES[role] when the two policies differ)."""
  m = config.model
  if m.kind != "pretrained":  # a plug-in's model (the toy's): its registered architecture
    from arm_jax.training import setup as train_setup  # pylint: disable=import-outside-toplevel
    cfg = train_setup.architecture(config)
    if cfg is None:
      raise ValueError(f"model.kind={m.kind!r}: its plug-in registers no architecture "
                       "(arm_jax.training.setup.register_architecture)")
    return cfg
  overrides = dict(param_dtype=m.dtype, dtype=m.compute_dtype or m.dtype,
                   remat_policy=m.remat_policy, **config_sections.lora_overrides(m))
  path = (config[role].path if role else "") or m.path
  local = os.path.join(path, "config.json") if path else ""
  if local and os.path.isfile(local):
    with open(local, encoding="utf-8") as f:
      return DecoderConfig.from_hf(json.load(f), **overrides)
  hf = getattr(module, "ARCHITECTURES", {}).get(role) or getattr(module, "ARCHITECTURE", None)
  if hf is None:
    raise ValueError(f"model.path={m.path!r} has no config.json here and the config file "
                     "defines no ARCHITECTURE (the model's public config.json as a dict): the "
                     "planner needs one of them")
  return DecoderConfig.from_hf(hf, **overrides)


def reward_model_config(config: ml_collections.ConfigDict,
                        path: str = "") -> tuple[ml_collections.ConfigDict, Any]:
  """(a policy job's reward-model training config on the job's mesh, its config file's module
  or None): `path` (configs/<name>.py[:<argument>], the file the reward model's run was started
  with), else reward_model.config, else the config.json of the run in reward_model.workdir."""
  from arm_jax.downstream import job as policy_job  # pylint: disable=import-outside-toplevel
  r = config.reward_model
  if path:
    rm_config, rm_module = load_config_file(path)
  elif r.config:
    rm_config, rm_module = policy_job._reward_model_config(config), load_config_file(r.config)[1]  # pylint: disable=protected-access
  else:
    if not os.path.isfile(os.path.join(r.workdir, "config.json")):
      raise FileNotFoundError(
          f"reward_model.workdir={r.workdir!r} holds no config.json here (its run has not run on "
          "this machine): pass --reward_model_config configs/<the run's config>.py")
    rm_config, rm_module = policy_job._reward_model_config(config), None  # pylint: disable=protected-access
  if rm_config.job != "train":
    raise ValueError(f"the reward model's config has job={rm_config.job!r}; expected a training "
                     "config (job='train')")
  for key in ("mesh_shape", "mesh_axes", "rules"):  # the job's mesh, as the job puts it
    rm_config[key] = config[key]
  return rm_config, rm_module


def actor_config(config: ml_collections.ConfigDict, module: Any,
                 base: DecoderConfig) -> DecoderConfig:
  """The policy's architecture as the policy job loads it (load_pretrained with actor.dtype,
  actor.compute_dtype and actor.remat_policy): actor.path's config.json or GGUF header, else the config file's
  ARCHITECTURE (its public config.json); actor.path '' is the reward model's base model."""
  a = config.actor
  if not a.path:
    return base
  overrides = dict(param_dtype=a.dtype, dtype=a.compute_dtype or a.dtype,
                   remat_policy=a.remat_policy, **config_sections.lora_overrides(a))
  local = os.path.join(a.path, "config.json")
  if os.path.isfile(local):
    with open(local, encoding="utf-8") as f:
      return DecoderConfig.from_hf(json.load(f), **overrides)
  if a.path.endswith(".gguf") and os.path.isfile(a.path):
    from arm_jax.models.tensor_sources import GGUFSource  # pylint: disable=import-outside-toplevel
    return DecoderConfig.from_hf(GGUFSource(a.path).hf_config, **overrides)
  hf = getattr(module, "ARCHITECTURE", None)
  if hf is None:
    raise ValueError(f"actor.path={a.path!r} is not here and the config file defines no "
                     "ARCHITECTURE (the model's public config.json as a dict): the planner needs "
                     "one of them")
  return DecoderConfig.from_hf(hf, **overrides)


def topology_mesh(slice_: Slice, config: ml_collections.ConfigDict) -> Mesh:
  """The config's mesh over the slice's abstract TPU devices (libtpu, no TPU needed)."""
  from jax.experimental import topologies  # pylint: disable=import-outside-toplevel
  # Compiling touches no TPU, so several planners (or a test beside a plan) may load libtpu at
  # once; without this the second one stops at libtpu's single-process lock file.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  try:
    extra = {"chip_config_name": slice_.chip_config} if slice_.chip_config else {}
    devices = topologies.get_topology_desc(topology_name=slice_.topology, platform="tpu",
                                           **extra).devices
  except Exception as e:  # noqa: BLE001  libtpu missing or too old: say how to get it
    raise RuntimeError(f"cannot describe TPU topology {slice_.topology!r} ({e}); install the "
                       "TPU compiler: pip install -e \".[tpu]\"") from e
  if len(devices) != slice_.chips:
    raise RuntimeError(f"{slice_.name}: topology {slice_.topology} has {len(devices)} devices, "
                       f"expected {slice_.chips}")
  return sharding.make_mesh(tuple(config.mesh_shape), tuple(config.mesh_axes), devices=devices)


def _abstract(tree: Any, shardings: Any) -> Any:
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)


def per_chip_bytes(tree: Any) -> int:
  """Bytes one chip holds of a tree of sharded abstract arrays (the largest shard of each)."""
  total = 0
  for leaf in jax.tree.leaves(tree):
    shard = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
    total += math.prod(shard) * np.dtype(leaf.dtype).itemsize
  return total


@dataclasses.dataclass
class Model:
  """One policy's model on the slice, abstractly: params, their decode-layout copy."""
  model: Decoder
  params: Any
  param_shardings: Any
  decode_model: Decoder
  decode_params: Any


def abstract_model(cfg: DecoderConfig, mesh: Mesh, rules) -> Model:
  model = Decoder(cfg, mesh=mesh, rules=rules)
  boxed = abstract_params(model)
  shardings = nn.unbox(sharding.tree_shardings(boxed, mesh, rules, strict=True))
  params = _abstract(nn.unbox(boxed), shardings)
  decode_model = sampling._decode_model(model, True, False)  # pylint: disable=protected-access
  decode_fn = sampling._jitted_decode_params(model, True, False)  # pylint: disable=protected-access
  decode_params = jax.eval_shape(decode_fn, params)
  decode_shardings = nn.unbox(sharding.tree_shardings(abstract_params(decode_model), mesh, rules,
                                                      strict=True))
  return Model(model, params, shardings, decode_model,
               _abstract(decode_params, decode_shardings))


def abstract_opt_state(optimizer, m: Model, mesh: Mesh) -> tuple[Any, Any]:
  """(abstract optimizer state laid out as the run lays it out, its shardings)."""
  shardings = optim.opt_state_shardings(optimizer, m.params, m.param_shardings,
                                        NamedSharding(mesh, P()))
  return (_abstract(jax.eval_shape(lambda p: optim.init_state(optimizer, p), m.params), shardings),
          shardings)


# --- programs ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Program:
  name: str
  compile: Callable[[], Any]  # -> jax.stages.Compiled
  stage: str  # "sft", "rl", "policy_warmstart" or "policy": which resident state lives beside it
  role: str  # the policy it runs
  takes: tuple[str, ...]  # resident items among its arguments (not counted twice)
  rows: int = 0
  length: int = 0  # tokens per row (prompt bucket + new tokens)
  kind: str = "forward"  # "forward", "train" (forward + backward) or "decode"
  new: int = 0  # decode: tokens generated per row
  passes: int = 1  # train: optimizer steps over the batch (GRPO's mu)


def _data(mesh, rules, shape, dtype) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding.data_sharding(mesh, rules,
                                                                            len(shape)))


def _replicated(mesh, shape, dtype) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(mesh, P()))


def _seq(mesh, rules, rows, prompt, new) -> SequenceBatch:
  t = prompt + new
  return SequenceBatch(_data(mesh, rules, (rows, t), jnp.int32), _data(mesh, rules, (rows, t), bool),
                       _data(mesh, rules, (rows, t), bool), score_from=prompt)


def _sampling_programs(name, role, m: Model, mesh, rules, rows, prompt, sp, takes, stage="rl",
                       num_samples=1):
  """Prefill and decode of one generation call: rows x prompt bucket, sp.max_new_tokens. With
  num_samples > 1, as the sampler runs it: `rows` prompts (padded to the data-parallel size)
  prefilled once, each repeated num_samples times in the decode."""
  prefill = sampling._jitted_prefill(m.model)  # pylint: disable=protected-access
  if num_samples > 1:
    dp = int(np.prod([mesh.shape[a] for a in sharding.batch_axes(mesh, rules)]))
    rows = -(-rows // dp) * dp
  ids, mask = _data(mesh, rules, (rows, prompt), jnp.int32), _data(mesh, rules, (rows, prompt), bool)

  compiled = {}

  def compile_prefill():
    if "prefill" not in compiled:  # decode reads its output layout
      compiled["prefill"] = prefill.lower(m.params, ids, mask).compile()
    return compiled["prefill"]

  def compile_decode():
    out = jax.eval_shape(prefill, m.params, ids, mask)
    layouts = jax.tree.leaves(compile_prefill().output_shardings)
    logits, k, v, next_pos = jax.tree.unflatten(
        jax.tree.structure(out), [jax.ShapeDtypeStruct(o.shape, o.dtype, sharding=s)
                                  for o, s in zip(jax.tree.leaves(out), layouts)])
    decode = sampling._jitted_decode(  # pylint: disable=protected-access
        m.decode_model, sp, 0, num_samples)
    key = _replicated(mesh, (), jax.random.key(0).dtype)
    stop = _replicated(mesh, (1,), jnp.int32)
    return decode.lower(m.decode_params, logits, k, v, mask, next_pos, key, stop).compile()

  return [Program(f"{name}.prefill", compile_prefill, stage, role, (f"{role}.params",), rows,
                  prompt),
          Program(f"{name}.decode", compile_decode, stage, role, takes, rows * num_samples,
                  prompt + sp.max_new_tokens, kind="decode", new=sp.max_new_tokens)]


def _prompt_bucket(config, role: str, cfg: DecoderConfig, new_tokens: int) -> int:
  """The longest prompt bucket a role's generation sees: its max_prompt_tokens (or what the
  model's positions leave), rounded up to the sampler's bucket."""
  return _room_bucket(cfg, new_tokens, config[role].max_prompt_tokens)


def programs(config: ml_collections.ConfigDict, cfgs: dict[str, DecoderConfig], mesh: Mesh,
             rules, models: dict[str, Model]) -> list[Program]:
  """Every program the training run executes, at its largest shapes."""
  from arm_jax.training import setup as train_setup  # pylint: disable=import-outside-toplevel
  out: list[Program] = []
  tc = train_setup.trainer_config(config)
  e = config.eval
  new = {"generator": config.generator.max_new_tokens, "judge": config.judge.max_new_tokens}
  eval_new = {"generator": e.rubric_max_new_tokens, "judge": e.judge_max_new_tokens}
  bucket = {r: _prompt_bucket(config, r, cfgs[r], max(new[r], eval_new[r])) for r in ROLES}
  w = config.warmstart
  for role in ROLES:
    m = models[role]
    if train_setup.sft_steps(w, role) > 0:
      sft_opt = optim.make_optimizer(train_setup.sft_optimizer_config(w, role))
      ss = train_setup.sft_settings(w, role)
      opt_state, o_sh = abstract_opt_state(sft_opt, m, mesh)
      update = make_sft_update(m.model, ss.sft_config, sft_opt,
                               shardings=(m.param_shardings, o_sh))
      batch = _seq(mesh, rules, ss.batch_size, 0, ss.max_length)
      # Every column scored: an upper bound, since run_sft's head window (score_width) is the
      # data's longest target.
      batch = SequenceBatch(batch.tokens, batch.attention, batch.loss_mask, score_from=1)
      out.append(Program(f"{role}.sft", lambda u=update, p=m.params, o=opt_state, b=batch:
                         u.lower(p, o, b).compile(), "sft", role, (f"{role}.params",),
                         ss.batch_size, ss.max_length, kind="train"))
    phase = getattr(tc, role)
    g = phase.grpo
    rows = phase.prompts_per_step * g.group_size
    out += _sampling_programs(f"{role}.rollout", role, m, mesh, rules, phase.prompts_per_step,
                              bucket[role], phase.sampling, (f"{role}.decode_copy",),
                              num_samples=g.group_size)
    optimizer = optim.make_optimizer(getattr(tc, f"{role}_optimizer"))
    opt_state, o_sh = abstract_opt_state(optimizer, m, mesh)
    seq = _seq(mesh, rules, rows, bucket[role], new[role])
    t = bucket[role] + new[role]
    f32 = lambda: _data(mesh, rules, (rows, t), jnp.float32)  # noqa: E731
    batch = grpo.RolloutBatch(seq, f32(), f32() if g.beta else None,
                              _data(mesh, rules, (rows,), jnp.float32))
    if g.beta:
      logprobs = grpo.sequence_logprobs(m.model, g.logprob_chunk, g.prefix_rows)
      out.append(Program(f"{role}.reference_logprobs",
                         lambda f=logprobs, p=m.params, s=seq: f.lower(p, s).compile(), "rl", role,
                         (f"{role}.ref",), rows, t))
    update = grpo.make_update(m.model, g, optimizer, shardings=(m.param_shardings, o_sh))
    out.append(Program(f"{role}.update", lambda u=update, p=m.params, o=opt_state, b=batch:
                       u.lower(p, o, b).compile(), "rl", role, (f"{role}.params", f"{role}.opt"),
                       rows, t, kind="train", passes=g.mu))
  gen, judge = models["generator"], models["judge"]
  out += _sampling_programs("generator.rubrics_for_judge", "generator", gen, mesh, rules,
                            tc.rubric_batch, bucket["generator"], tc.rubric_sampling,
                            ("generator.decode_copy",))
  greedy = SamplingParams(max_new_tokens=tc.judge_greedy_max_new_tokens, greedy=True)
  out += _sampling_programs("judge.greedy_for_generator", "judge", judge, mesh, rules,
                            tc.generator.prompts_per_step * tc.generator.grpo.group_size,
                            bucket["judge"], greedy, ("judge.decode_copy",))
  if e.enabled:
    out += _sampling_programs("eval.rubric", "generator", gen, mesh, rules, e.batch_size,
                              bucket["generator"],
                              SamplingParams(max_new_tokens=e.rubric_max_new_tokens, greedy=True),
                              ("generator.decode_copy",))
    judge_sp = (SamplingParams(max_new_tokens=e.judge_max_new_tokens, temperature=e.judge_temperature)
                if e.judge_temperature > 0 else
                SamplingParams(max_new_tokens=e.judge_max_new_tokens, greedy=True))
    out += _sampling_programs("eval.judge", "judge", judge, mesh, rules, e.batch_size,
                              bucket["judge"], judge_sp, ("judge.decode_copy",))
  return out


def _room_bucket(cfg: DecoderConfig, new_tokens: int, max_prompt_tokens: int = 0) -> int:
  """The longest prompt bucket a policy job's load checks admit (Policy.room, rounded up to the
  sampler's bucket)."""
  room = min(cfg.max_position_embeddings - new_tokens, max(DEFAULT_BUCKETS))
  room = min(room, max_prompt_tokens) if max_prompt_tokens > 0 else room
  return bucket_length(room, DEFAULT_BUCKETS)


def _even_rows(n: int, batch_size: int) -> int:
  """The rows of generate_in_batches' largest call for n prompts (near-equal batches)."""
  return math.ceil(n / math.ceil(n / batch_size))


def policy_programs(config: ml_collections.ConfigDict,
                    rm_config: Optional[ml_collections.ConfigDict],
                    cfgs: dict[str, DecoderConfig], mesh: Mesh, rules,
                    models: dict[str, Model]) -> list[Program]:
  """Every program a policy job (config.job = "policy", docs/method.md §6) executes, at its
  largest shapes: prompt buckets are the largest the job's load checks admit (fit_prompts).
  rm_config None: the checker labels (reward_model.kind 'checker'), no reward model runs."""
  from arm_jax.downstream import job as policy_job  # pylint: disable=import-outside-toplevel
  from arm_jax.training import setup as train_setup  # pylint: disable=import-outside-toplevel
  out: list[Program] = []
  pol = models["policy"]
  a = config.actor
  if a.warmstart_steps > 0:
    warm_opt = optim.make_optimizer(optim.OptimizerConfig(
        learning_rate=a.warmstart_learning_rate, warmup_steps=policy_job._WARMUP_STEPS))  # pylint: disable=protected-access
    opt_state, o_sh = abstract_opt_state(warm_opt, pol, mesh)
    update = make_sft_update(pol.model, SFTConfig(), warm_opt,  # as run_sft builds it
                             shardings=(pol.param_shardings, o_sh))
    batch = _seq(mesh, rules, a.warmstart_batch_size, 0, a.warmstart_max_length)
    batch = SequenceBatch(batch.tokens, batch.attention, batch.loss_mask, score_from=1)
    out.append(Program("policy.warmstart", lambda u=update, p=pol.params, o=opt_state, b=batch:
                       u.lower(p, o, b).compile(), "policy_warmstart", "policy",
                       ("policy.params",), a.warmstart_batch_size, a.warmstart_max_length,
                       kind="train"))
  grpo_method = config.method == "grpo"
  if grpo_method:
    g = config.grpo
    phase = train_setup.phase_config(g)
    new = g.max_new_tokens
    bucket = _room_bucket(cfgs["policy"], new, g.max_prompt_tokens)
    greedy = SamplingParams(max_new_tokens=new, greedy=True)
    out += _sampling_programs("policy.greedy", "policy", pol, mesh, rules,
                              _even_rows(g.prompts_per_step, config.generate_batch), bucket,
                              greedy, ("policy.decode_copy",), stage="policy")
    rows = g.prompts_per_step * g.group_size
    out += _sampling_programs("policy.rollout", "policy", pol, mesh, rules, g.prompts_per_step,
                              bucket, phase.sampling, ("policy.decode_copy",), stage="policy",
                              num_samples=g.group_size)
  else:
    cfg = policy_job.iteration_config(config)
    new = cfg.sampling.max_new_tokens
    bucket = _room_bucket(cfgs["policy"], new)
    out += _sampling_programs("policy.sample", "policy", pol, mesh, rules,
                              2 * config.generate_batch, bucket, cfg.sampling,
                              ("policy.decode_copy",), stage="policy")
  # The reward model: greedy rubrics, then judgments of both orders (RewardModel.compare); the
  # checker (reward_model.kind 'checker') runs on the host.
  out += [] if rm_config is None else _reward_model_programs(config, rm_config, cfgs, mesh, rules,
                                                              models)
  out += _policy_training_programs(config, cfgs, mesh, rules, models, pol, grpo_method,
                                   phase if grpo_method else None, bucket, new,
                                   rows if grpo_method else 0,
                                   None if grpo_method else cfg)
  return out


def _reward_model_programs(config, rm_config, cfgs, mesh, rules, models) -> list[Program]:
  r, out = config.reward_model, []
  rm_e = rm_config.eval
  rubric_new = r.rubric_max_new_tokens or rm_e.rubric_max_new_tokens
  judge_new = r.judge_max_new_tokens or rm_e.judge_max_new_tokens
  rm_rows = r.batch_size or rm_e.batch_size
  out += _sampling_programs("reward_model.rubric", "generator", models["generator"], mesh, rules,
                            rm_rows, _room_bucket(cfgs["generator"], rubric_new),
                            SamplingParams(max_new_tokens=rubric_new, greedy=True),
                            ("generator.decode_copy",), stage="policy")
  out += _sampling_programs("reward_model.judge", "judge", models["judge"], mesh, rules, rm_rows,
                            _room_bucket(cfgs["judge"], judge_new),
                            SamplingParams(max_new_tokens=judge_new,
                                           temperature=r.judge_temperature or 1.0,
                                           greedy=r.judge_temperature == 0),
                            ("judge.decode_copy",), stage="policy")
  return out


def _policy_training_programs(config, cfgs, mesh, rules, models, pol, grpo_method, phase, bucket,
                              new, rows, cfg) -> list[Program]:
  from arm_jax.downstream import dpo as dpo_lib  # pylint: disable=import-outside-toplevel
  from arm_jax.downstream import job as policy_job  # pylint: disable=import-outside-toplevel
  out: list[Program] = []
  g, e = config.grpo, config.eval
  optimizer = policy_job.optimizer(config)
  opt_state, _ = abstract_opt_state(optimizer, pol, mesh)
  if grpo_method:
    t = bucket + new
    seq = _seq(mesh, rules, rows, bucket, new)
    f32 = lambda: _data(mesh, rules, (rows, t), jnp.float32)  # noqa: E731
    if phase.grpo.beta:
      logprobs = grpo.sequence_logprobs(pol.model, phase.grpo.logprob_chunk,  # as train_on_rollout
                                        phase.grpo.prefix_rows)
      out.append(Program("policy.reference_logprobs",
                         lambda f=logprobs, p=pol.params, q=seq: f.lower(p, q).compile(),
                         "policy", "policy", ("policy.ref",), rows, t))
    batch = grpo.RolloutBatch(seq, f32(), f32() if phase.grpo.beta else None,
                              _data(mesh, rules, (rows,), jnp.float32))
    update = grpo.make_update(pol.model, phase.grpo, optimizer)  # as the job builds it
    out.append(Program("policy.update", lambda u=update, p=pol.params, o=opt_state, b=batch:
                       u.lower(p, o, b).compile(), "policy", "policy",
                       ("policy.params", "policy.opt"), rows, t, kind="train",
                       passes=phase.grpo.mu))
  else:
    n, t = cfg.batch_size, cfg.max_length
    update, ref_logps = dpo_lib._compiled(pol.model, cfg)  # pylint: disable=protected-access
    side = _seq(mesh, rules, n, 0, t)
    side = SequenceBatch(side.tokens, side.attention, side.loss_mask, score_from=1)
    ref = _data(mesh, rules, (n,), jnp.float32)
    out.append(Program("policy.reference_logprobs",
                       lambda f=ref_logps, p=pol.params, q=side: f.lower(p, q).compile(),
                       "policy", "policy", ("policy.ref",), n, t))
    out.append(Program("policy.dpo_update",
                       lambda u=update, p=pol.params, o=opt_state, b=(side, side, ref, ref):
                       u.lower(p, o, b).compile(), "policy", "policy",
                       ("policy.params", "policy.opt"), 2 * n, t, kind="train"))
  if e.kind != "none":
    prompts = _eval_prompt_bucket(config, cfgs["policy"], e.max_new_tokens)
    out += _sampling_programs("eval.policy", "policy", pol, mesh, rules, e.batch_size, prompts,
                              SamplingParams(max_new_tokens=e.max_new_tokens, greedy=True),
                              ("policy.decode_copy",), stage="policy")
  return out


def _eval_prompt_bucket(config: ml_collections.ConfigDict, cfg: DecoderConfig,
                        new_tokens: int) -> int:
  """IFEval's prompts are read here: the bucket of the longest one's UTF-8 bytes (a token holds
  at least one) plus a chat template's; other evaluations: the policy's room."""
  room = _room_bucket(cfg, new_tokens)
  if config.eval.kind != "ifeval":
    return room
  from arm_jax.data import ifeval  # pylint: disable=import-outside-toplevel
  inputs = ifeval.read_prompts()
  inputs = inputs[:config.eval.max_prompts] if config.eval.max_prompts else inputs
  longest = max(len(i.prompt.encode()) for i in inputs) + _CHAT_BYTES
  return min(room, bucket_length(min(longest, max(DEFAULT_BUCKETS)), DEFAULT_BUCKETS))


# An upper bound on a chat template's tokens around one user turn (Qwen2.5's adds a default system
# turn of about 30 tokens).
_CHAT_BYTES = 256


def model_flops(program: Program, cfg: DecoderConfig) -> float:
  """The program's FLOPs over all chips from the model's size (XLA's cost_analysis counts a loop
  body once, and the layers, micro-batches, mu steps and decode steps are loops): 2 per
  parameter per token forward, 6 forward and backward, plus causal attention's scores and
  values (4 x layers x heads x head_dim per token per attended position)."""
  matmul = cfg.num_params - cfg.vocab_size * cfg.hidden_size * (not cfg.tie_word_embeddings)
  attention = 4 * cfg.num_layers * cfg.num_heads * cfg.head_dim
  if program.kind == "decode":
    prompt = program.length - program.new
    context = prompt + program.new / 2
    return program.rows * program.new * (2 * matmul + attention * context)
  tokens = program.rows * program.length
  per_token = 2 * matmul + attention * program.length / 2
  return tokens * per_token * (3 * program.passes if program.kind == "train" else 1)


def resident(config: ml_collections.ConfigDict, models: dict[str, Model], mesh: Mesh,
             tc) -> dict[str, int]:
  """Per-chip bytes of what the run keeps on the chip between programs."""
  items = {}
  for role in ROLES:
    m = models[role]
    items[f"{role}.params"] = per_chip_bytes(m.params)
    items[f"{role}.decode_copy"] = per_chip_bytes(m.decode_params)
    phase = getattr(tc, role)
    if phase.grpo.beta:
      items[f"{role}.ref"] = items[f"{role}.params"]
    optimizer = optim.make_optimizer(getattr(tc, f"{role}_optimizer"))
    items[f"{role}.opt"] = per_chip_bytes(abstract_opt_state(optimizer, m, mesh)[0])
  return items


def policy_resident(config: ml_collections.ConfigDict, models: dict[str, Model],
                    mesh: Mesh) -> dict[str, int]:
  """Per-chip bytes a policy job keeps between programs: the reward model's two policies and
  their decode copies, the policy, its decode copy, its reference (DPO's, or GRPO's KL
  reference when beta > 0) and its AdamW state."""
  from arm_jax.downstream import job as policy_job  # pylint: disable=import-outside-toplevel
  items = {}
  for role in [r for r in ("generator", "judge", "policy") if r in models]:
    items[f"{role}.params"] = per_chip_bytes(models[role].params)
    items[f"{role}.decode_copy"] = per_chip_bytes(models[role].decode_params)
  if config.method != "grpo" or config.grpo.beta:
    items["policy.ref"] = items["policy.params"]
  items["policy.opt"] = per_chip_bytes(
      abstract_opt_state(policy_job.optimizer(config), models["policy"], mesh)[0])
  return items


def alive_outside(program: Program, items: dict[str, int], offload_idle: bool) -> dict[str, int]:
  """The resident items on the chip while `program` runs, less those it takes as arguments. In
  the warm start: the other policy's weights. In RL: both policies, their references and decode
  copies, the running policy's optimizer state, and the other's unless it waits in host memory
  (evaluation and the helper generations count the larger optimizer state as running)."""
  other = "judge" if program.role == "generator" else "generator"
  if program.stage == "policy_warmstart":  # the reward model is loaded; nothing sampled yet
    alive = {k: v for k, v in items.items() if k in ("generator.params", "judge.params")}
  elif program.stage == "policy":  # everything, as no program of the job frees any of it
    alive = dict(items)
  elif program.stage == "sft":
    alive = {f"{other}.params": items[f"{other}.params"]}
  else:
    alive = {k: v for k, v in items.items() if not k.endswith(".opt")}
    opts = {k: v for k, v in items.items() if k.endswith(".opt")}
    if offload_idle:
      running = (f"{program.role}.opt" if program.name.startswith(program.role)
                 else max(opts, key=opts.get))
      alive[running] = opts[running]
    else:
      alive.update(opts)
  for name in program.takes:
    alive.pop(name, None)
  return alive


def _memory(compiled) -> dict[str, int]:
  m = compiled.memory_analysis()
  figures = dict(arguments=m.argument_size_in_bytes, outputs=m.output_size_in_bytes,
                 aliased=m.alias_size_in_bytes, temporaries=m.temp_size_in_bytes,
                 code=m.generated_code_size_in_bytes)
  figures["program"] = (figures["arguments"] + figures["outputs"] - figures["aliased"]
                        + figures["temporaries"] + figures["code"])
  return figures


def _cost(compiled) -> dict[str, float]:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else (cost or {})
  return dict(flops=float(cost.get("flops", 0.0)),
              bytes_accessed=float(cost.get("bytes accessed", 0.0)))


def select(names: list[str], patterns: str) -> list[str]:
  """The program names that match any of the comma-separated shell patterns (fnmatch; a name
  without a wildcard matches itself and the programs under it: 'judge' is judge.*)."""
  wanted = [p.strip() for p in patterns.split(",") if p.strip()]
  chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) or n.startswith(p + ".")
                                    for p in wanted)]
  unknown = [p for p in wanted if not any(fnmatch.fnmatchcase(n, p) or n.startswith(p + ".")
                                          for n in names)]
  if unknown:
    raise ValueError(f"--programs: {', '.join(unknown)} match no program; the run's programs: "
                     f"{', '.join(names)}")
  return chosen


def plan(config: ml_collections.ConfigDict, slice_: Slice, module: Any = None,
         log: Callable[[str], None] = print, only: str = "", reward_model: str = "") -> dict:
  """Compiles every program of the run (or policy job) for `slice_` (or those `only` selects,
  see select); returns the plan (see the module docstring). Programs that fail to compile are
  reported with their error. `reward_model`: a policy job's reward-model training config file
  (see reward_model_config)."""
  if config.job not in ("train", "policy"):
    raise ValueError(f"job={config.job!r}: the planner plans training runs (job='train') and "
                     "policy jobs (job='policy')")
  rm_config = None
  policy_job = config.job == "policy"
  if policy_job and config.reward_model.kind == "checker":  # no reward model on the chips
    if not config.actor.path:
      raise ValueError("reward_model.kind='checker' needs actor.path (no reward model's base "
                       "model to start the policy from)")
    cfgs = {"policy": actor_config(config, module, None)}
  elif policy_job:
    rm_config, rm_module = reward_model_config(config, reward_model)
    cfgs = {role: decoder_config(rm_config, rm_module, role) for role in ROLES}
    cfgs["policy"] = actor_config(config, module, cfgs["generator"])
  else:
    cfgs = {role: decoder_config(config, module, role) for role in ROLES}
  mesh = topology_mesh(slice_, config)
  rules = (sharding.rules_from_config(config.rules) if config.rules
           else sharding.DEFAULT_RULES)
  # One model per architecture (each role still has its own arrays).
  built: list[tuple[DecoderConfig, Model]] = []
  models = {}
  for role, cfg in cfgs.items():
    same = [m for c, m in built if c == cfg]
    models[role] = same[0] if same else abstract_model(cfg, mesh, rules)
    if not same:
      built.append((cfg, models[role]))
  if policy_job:
    items = policy_resident(config, models, mesh)
  else:
    from arm_jax.training import setup as train_setup  # pylint: disable=import-outside-toplevel
    items = resident(config, models, mesh, train_setup.trainer_config(config))
  rows = []
  start = time.perf_counter()
  with xla_options.target_platform("tpu"):
    todo = (policy_programs(config, rm_config, cfgs, mesh, rules, models) if policy_job
            else programs(config, cfgs, mesh, rules, models))
    if only:
      chosen = set(select([p.name for p in todo], only))
      todo = [p for p in todo if p.name in chosen]
    for program in todo:
      t0 = time.perf_counter()
      row: dict[str, Any] = dict(program=program.name, rows=program.rows, length=program.length)
      try:
        compiled = program.compile()
      except Exception as e:  # noqa: BLE001  one program's failure is reported, the rest planned
        row.update(error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}", fits=False)
        rows.append(row)
        log(f"{program.name}: does not compile: {row['error']}")
        continue
      memory, cost = _memory(compiled), _cost(compiled)
      outside = alive_outside(program, items, config.get("offload_idle_optimizer", False))
      peak = memory["program"] + sum(outside.values())
      flops = model_flops(program, cfgs[program.role]) / slice_.chips
      # Decode reads every weight and the cache once per token: bytes = its arguments and
      # temporaries per step; the other programs' traffic is what XLA counts.
      traffic = (program.new * (memory["arguments"] + memory["temporaries"])
                 if program.kind == "decode" else cost["bytes_accessed"])
      roofline = max(flops / slice_.peak_flops, traffic / slice_.hbm_bandwidth)
      row.update(memory=memory, resident_outside=outside, peak_bytes=peak,
                 margin_bytes=slice_.hbm_bytes - peak, fits=peak <= slice_.hbm_bytes,
                 model_flops_per_chip=flops, xla_flops_loop_bodies_once=cost["flops"],
                 xla_bytes_accessed=cost["bytes_accessed"], roofline_seconds=roofline,
                 compile_seconds=time.perf_counter() - t0)
      rows.append(row)
      log(_row_line(row, slice_))
  worst = max((r for r in rows if "peak_bytes" in r), key=lambda r: r["peak_bytes"], default=None)
  return dict(
      config=dict(mesh_shape=list(mesh.shape.values()), mesh_axes=list(mesh.axis_names),
                  rules=[list(r) for r in rules],
                  models={role: dataclasses.asdict(c) for role, c in cfgs.items()}),
      slice=dataclasses.asdict(slice_), resident=items, programs=rows,
      selected=only or "every program",
      peak_bytes=worst["peak_bytes"] if worst else None,
      peak_program=worst["program"] if worst else None,
      fits=all(r["fits"] for r in rows),
      compile_seconds=time.perf_counter() - start)


def _row_line(row: dict, slice_: Slice) -> str:
  m = row["memory"]
  return (f"{row['program']:<34} {row['rows']:>5} x {row['length']:<6} "
          f"args {m['arguments'] / GB:6.2f}  temp {m['temporaries'] / GB:6.2f}  "
          f"beside {sum(row['resident_outside'].values()) / GB:6.2f}  "
          f"peak {row['peak_bytes'] / GB:6.2f} / {slice_.hbm_bytes / GB:.0f} GB  "
          f"{'fits' if row['fits'] else 'DOES NOT FIT'}  "
          f"{row['model_flops_per_chip'] / 1e12:9.2f} TFLOP  "
          f"roofline {row['roofline_seconds']:8.3f} s  "
          f"(compiled in {row['compile_seconds']:.1f}s)")


def main(argv: Optional[list[str]] = None) -> int:
  p = argparse.ArgumentParser(prog="python -m arm_jax.plan", description=__doc__.split("\n\n")[0])
  p.add_argument("--config", required=True, help="a training config file (configs/<name>.py)")
  p.add_argument("--topology", default="", help=f"a slice: {', '.join(SLICES)}; default: the "
                 "config's device.kind and device.chips")
  p.add_argument("--out", default="plan.json", help="where the plan is written")
  p.add_argument("--reward_model_config", default="", help="a policy job's (job='policy'): the "
                 "reward model's training config file (configs/<name>.py[:<argument>]) when "
                 "reward_model.workdir's run is not on this machine")
  p.add_argument("--programs", default="", help="compile only these programs: comma-separated "
                 "names, prefixes or shell patterns (e.g. 'judge.update,generator.update' or "
                 "'*.update'); the peak and the exit status are then theirs")
  args = p.parse_args(argv)
  # Compiling for a TPU needs no TPU: JAX runs on this host's CPU, libtpu only compiles (and
  # stays quiet about the TPU it does not find once it is told which one it compiles for).
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  config, module = load_config_file(args.config)
  name = args.topology or _slice_of(config)
  if name not in SLICES:
    raise SystemExit(f"--topology={name!r}; known slices: {', '.join(SLICES)}")
  slice_ = SLICES[name]
  os.environ.setdefault("TPU_ACCELERATOR_TYPE", slice_.name)
  print(f"planning {args.config} on {slice_.name} ({slice_.chips} chips, "
        f"{slice_.hbm_bytes / GB:.0f} GB HBM each), mesh {tuple(config.mesh_shape)}")
  result = plan(config, slice_, module, only=args.programs,
                reward_model=args.reward_model_config)
  with open(args.out, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2)
  bad = [r["program"] for r in result["programs"] if not r["fits"]]
  print(f"peak {result['peak_bytes'] / GB:.2f} GB per chip ({result['peak_program']}) of "
        f"{slice_.hbm_bytes / GB:.0f} GB; {len(result['programs'])} programs compiled in "
        f"{result['compile_seconds']:.0f}s; plan written to {args.out}")
  if bad:
    print(f"does not fit on {slice_.name}: {', '.join(bad)}")
    return 1
  return 0


def _slice_of(config: ml_collections.ConfigDict) -> str:
  kind = config.device.kind.replace("TPU ", "").lower()
  for s in SLICES.values():
    if s.topology.startswith(kind + ":") and s.chips == config.device.chips:
      return s.name
  raise SystemExit(f"device.kind={config.device.kind!r} with device.chips={config.device.chips} "
                   f"names no known slice; pass --topology ({', '.join(SLICES)})")


if __name__ == "__main__":
  sys.exit(main())
