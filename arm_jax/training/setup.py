"""From a training config to what the run needs: two policies, the data, the RL settings.

Config sections (arm_jax.config_sections; configs/toy.py, configs/smollm2.py): model, data,
templates, warmstart, schedule, judge, generator, rewards, eval, checkpoint, log. The two
policies start from the same weights, as in the paper (both from one base model), and are
warm-started separately.

A builder turns (model.kind, data.kind) into the policies, the pairs and the warm-start examples.
This module registers ("pretrained", "dataset"): a Llama / Qwen checkpoint on pairs from `python
-m arm_jax.data.build` (arm_jax.data.pairs). Plug-ins register more with `register_builder`; a
config names the modules that do in `plugins`, imported by `build` (the toy world:
`plugins=("arm_jax.toy.setup",)`, model.kind "toy" with data.kind "toy"). templates.rubric /
.judge name a shipped template (arm_jax.prompts.SHIPPED, e.g. the "_compact" ones) or a file; ""
is the builder's templates (the full "rubric_generator" / "judge" for a pretrained model).
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from arm_jax import assets, config_sections, sharding
from arm_jax.core import ROLES, PreferencePair, SFTExample
from arm_jax.data import pairs as pairs_lib
from arm_jax.models import load_pretrained
from arm_jax.prompts import Template, load_template, render_judge_prompt, render_rubric_prompt
from arm_jax.rl import optim, phases, schedule
from arm_jax.rl.grpo import GRPOConfig
from arm_jax.rl.policy import Policy
from arm_jax.rl.sft import SFTConfig
from arm_jax.rl.trainer import TrainerConfig
from arm_jax.sampling import SamplingParams
from arm_jax.tokenizer import load_tokenizer


@dataclasses.dataclass
class Built:
  """What a builder returns: both policies (model, tokenizer, templates, starting params), the
  train and held-out pairs, warm-start examples by role, the no-rubric judge template the
  evaluator's direct rows read, and optional held-out diagnostics."""
  policies: dict[str, Policy]
  train: list[PreferencePair]
  held_out: list[PreferencePair]
  sft_examples: dict[str, list[SFTExample]]
  direct_template: Template
  # diagnose(pairs, rubrics, judgments) -> figures for the held-out eval records, or None
  eval_diagnostics: Optional[Callable[..., dict]] = None
  # A policy's responses measured without the reward model, where the world knows the truth:
  # oracle(instructions, responses, start_responses) -> figures (the policy job's eval.kind
  # "oracle"; arm_jax.downstream.job), or None.
  policy_oracle: Optional[Callable[..., dict]] = None


Builder = Callable[[ml_collections.ConfigDict, Any, Any], Built]  # (config, mesh, rules)
# The project's own plug-ins by model.kind, imported by name when a config lists no plug-in.
DEFAULT_PLUGINS = {"toy": ("arm_jax.toy.setup",)}
_BUILDERS: dict[tuple[str, str], Builder] = {}


def register_builder(model_kind: str, data_kind: str) -> Callable[[Builder], Builder]:
  """Registers a builder for (model.kind, data.kind) (a plug-in module does this on import)."""

  def register(fn: Builder) -> Builder:
    _BUILDERS[(model_kind, data_kind)] = fn
    return fn

  return register


@dataclasses.dataclass
class TrainSetup:
  generator: Policy
  judge: Policy
  train: list[PreferencePair]
  held_out: list[PreferencePair]
  sft_examples: dict[str, list[SFTExample]]
  # The warm-start optimizer state's structure (checkpoint templates), the same for both roles;
  # each role's own settings are sft_optimizer_config(config.warmstart, role).
  sft_optimizer: Any
  trainer_config: TrainerConfig
  total_steps: int
  direct_template: Template
  # round_end_steps[R]: the global step at which R rounds are complete (R = 0: the warm start's
  # end), the checkpoints that stay when checkpoint.keep_rounds is set.
  round_end_steps: tuple[int, ...] = ()
  eval_diagnostics: Optional[Callable[..., dict]] = None  # see Built
  policy_oracle: Optional[Callable[..., dict]] = None  # see Built
  # Pairs skipped at load because their prompts do not fit (drop_too_long): train, held out.
  too_long: tuple[int, int] = (0, 0)


def phase_config(c: ml_collections.ConfigDict) -> phases.PhaseConfig:
  """A policy section's GRPO and sampling settings (config_sections.policy)."""
  grpo = GRPOConfig(group_size=c.group_size, advantage=c.advantage, eps_low=c.eps_low,
                    eps_high=c.eps_high, beta=c.beta, mu=c.mu,
                    loss_aggregation=c.loss_aggregation, micro_batches=c.micro_batches,
                    shared_prefix=c.shared_prefix)
  sampling = SamplingParams(max_new_tokens=c.max_new_tokens, temperature=c.temperature,
                            top_p=c.top_p, top_k=c.top_k)
  return phases.PhaseConfig(grpo, sampling, c.prompts_per_step)


def optimizer_config(c: ml_collections.ConfigDict) -> optim.OptimizerConfig:
  """The AdamW settings of a GRPO section (training's judge / generator, the policy job's grpo)."""
  return optim.OptimizerConfig(learning_rate=c.learning_rate, weight_decay=c.weight_decay,
                               max_grad_norm=c.max_grad_norm, warmup_steps=c.warmup_steps)


def trainer_config(config: ml_collections.ConfigDict) -> TrainerConfig:
  s = config.schedule
  return TrainerConfig(
      schedule=schedule.ScheduleConfig(rounds=s.rounds, order=s.order,
                                       steps_per_phase=s.steps_per_phase,
                                       epochs_per_phase=s.epochs_per_phase, seed=config.seed),
      judge=phase_config(config.judge), generator=phase_config(config.generator),
      judge_optimizer=optimizer_config(config.judge),
      generator_optimizer=optimizer_config(config.generator),
      rewards=phases.RewardConfig(format_reward=config.rewards.format_reward,
                                  format_weight=config.rewards.format_weight,
                                  validity_weight=config.rewards.validity_weight,
                                  brevity_weight=config.rewards.brevity_weight),
      rubric_sampling=SamplingParams(max_new_tokens=config.generator.max_new_tokens,
                                     temperature=config.generator.temperature,
                                     top_p=config.generator.top_p, top_k=config.generator.top_k),
      rubric_batch=config.eval.batch_size,
      judge_greedy_max_new_tokens=config.judge.max_new_tokens,
      offload_idle_optimizer=config.offload_idle_optimizer)


def _warmstart_examples(w: ml_collections.ConfigDict) -> dict[str, list[SFTExample]]:
  """SFT examples from warmstart.path; none when it is "" (the paper's SFT data is not offline),
  which only a run without warm start (`sft_steps` 0 for both policies) can use."""
  sft = pairs_lib.read_sft_jsonl(w.path) if w.path else {role: [] for role in ROLES}
  if any(sft_steps(w, role) > 0 for role in ROLES):
    missing = [role for role in ROLES if not sft[role]]
    if missing:
      where = f"{w.path!r} has no examples for {missing}" if w.path else "warmstart.path is empty"
      raise ValueError(f"warmstart.steps={w.steps} needs SFT examples for both policies, but "
                       f"{where}; set warmstart.path or warmstart.steps=0")
  return sft


@dataclasses.dataclass(frozen=True)
class SFTSettings:
  """One policy's warm-start settings: warmstart.<role>_* where set, else warmstart.*."""
  learning_rate: float
  batch_size: int
  max_length: int
  micro_batches: int = 1
  prompt_loss_weight: float = 0.0

  @property
  def sft_config(self) -> SFTConfig:
    return SFTConfig(micro_batches=self.micro_batches, prompt_loss_weight=self.prompt_loss_weight)


def sft_settings(warmstart: ml_collections.ConfigDict, role: str) -> SFTSettings:
  w = warmstart
  lr = w[f"{role}_learning_rate"]
  batch = w[f"{role}_batch_size"] or w.batch_size
  own = w[f"{role}_micro_batches"]
  key = f"warmstart.{role}_micro_batches" if own else "warmstart.micro_batches"
  micro = own or w.micro_batches
  if micro < 1 or batch % micro:
    raise ValueError(f"{key}={micro}: the {role}'s warm-start batch of {batch} rows must split "
                     "into that many equal micro-batches")
  return SFTSettings(learning_rate=w.learning_rate if lr < 0 else lr, batch_size=batch,
                     max_length=w[f"{role}_max_length"] or w.max_length, micro_batches=micro,
                     prompt_loss_weight=w.prompt_loss_weight)


def sft_optimizer_config(warmstart: ml_collections.ConfigDict, role: str) -> optim.OptimizerConfig:
  """The role's warm-start AdamW (run_sft spans a cosine schedule over the role's own steps)."""
  w = warmstart
  return optim.OptimizerConfig(learning_rate=sft_settings(w, role).learning_rate,
                               max_grad_norm=w.max_grad_norm, warmup_steps=w.warmup_steps,
                               schedule=w.schedule,
                               final_fraction=w.final_learning_rate_fraction)


def sft_steps(warmstart: ml_collections.ConfigDict, role: str) -> int:
  """Warm-start steps of one policy: warmstart.<role>_steps, or warmstart.steps when that is -1
  (0 or less: no warm start for that policy)."""
  steps = int(warmstart[f"{role}_steps"])
  return int(warmstart.steps) if steps == -1 else steps


@register_builder("pretrained", "dataset")
def _pretrained(config: ml_collections.ConfigDict, mesh, rules) -> Built:
  """One pretrained checkpoint for both policies (loaded once), pairs from a built dataset, SFT
  examples from a JSONL. Data and SFT files are checked first: a bad path should not wait for an
  8B checkpoint to load."""
  m, d = config.model, config.data
  split = pairs_lib.load_split(d.path, held_out_fraction=d.held_out_fraction, seed=d.seed,
                                limit=d.limit, build_hint=d.build_hint)
  logging.info("%s: %d train pairs, %d held-out pairs, %d best-of-n rows skipped", d.path,
               len(split.train), len(split.held_out), split.best_of_n_skipped)
  sft = _warmstart_examples(config.warmstart)
  # generator.path / judge.path: a policy's own checkpoint; a path both use is loaded once.
  paths = {role: config[role].path or m.path or assets.smollm2_gguf() for role in ROLES}
  loaded = {}
  for path in dict.fromkeys(paths.values()):
    start = time.perf_counter()
    model, params = load_pretrained(path, dtype=m.dtype, mesh=mesh, rules=rules,
                                    compute_dtype=m.compute_dtype or m.dtype,
                                    remat_policy=m.remat_policy,
                                    **config_sections.lora_overrides(m))
    loaded[path] = (model, load_tokenizer(path), params)
    logging.info("loaded %s (%.1fM params, %s) on mesh %s in %.1fs", path,
                 model.config.num_params / 1e6, m.dtype, dict(mesh.shape),
                 time.perf_counter() - start)
  templates = {"generator": load_template("rubric_generator", "rubric"),
               "judge": load_template("judge", "judge")}
  policies = {role: Policy(role, *loaded[paths[role]][:2], templates[role],
                           loaded[paths[role]][2]) for role in ROLES}
  return Built(policies, split.train, split.held_out, sft,
               direct_template=load_template("judge_direct", "direct"))


def drop_too_long(policies: dict[str, Policy], pairs: list[PreferencePair],
                  config: ml_collections.ConfigDict) -> tuple[list[PreferencePair], int]:
  """(the pairs whose prompts fit, how many did not). The rubric prompt must leave room for the
  longest rubric (generator.max_new_tokens or eval.rubric_max_new_tokens), and the judge prompt,
  with that rubric in it, for the longest judgment (judge.max_new_tokens or
  eval.judge_max_new_tokens), within each model's positions, the sampler's largest bucket and
  the role's max_prompt_tokens (Policy.room). Checked once, at load: a pair that cannot fit would fail its phase step at the
  same step after every resume."""
  generator, judge = policies["generator"], policies["judge"]
  rubric_new = max(config.generator.max_new_tokens, config.eval.rubric_max_new_tokens)
  judge_new = max(config.judge.max_new_tokens, config.eval.judge_max_new_tokens)
  rubric_ok = generator.fit([render_rubric_prompt(generator.template, p.instruction)
                             for p in pairs],
                            generator.room(rubric_new, config.generator.max_prompt_tokens))
  # The judge's limit is on its whole prompt, the rubric in it included.
  judge_ok = judge.fit([render_judge_prompt(judge.template, p.instruction, "", p.response_a,
                                            p.response_b) for p in pairs],
                       judge.room(judge_new, config.judge.max_prompt_tokens) - rubric_new)
  kept = [p for p, r, j in zip(pairs, rubric_ok, judge_ok) if r and j]
  return kept, len(pairs) - len(kept)


_LIMIT_KEYS = {"generator": ("generator.max_new_tokens", "eval.rubric_max_new_tokens"),
               "judge": ("judge.max_new_tokens", "eval.judge_max_new_tokens")}


def _limit(config: ml_collections.ConfigDict, key: str) -> int:
  section, name = key.split(".")
  return config[section][name]


def warm_start_targets_cut(policies: dict[str, Policy],
                           sft: dict[str, list[SFTExample]],
                           config: ml_collections.ConfigDict) -> dict[str, dict[str, Any]]:
  """Per role with a warm start, its SFT targets that the role's RL sampling or the evaluation
  would cut before their end (target tokens and the end token over the limit): a judge taught
  judgments longer than judge.max_new_tokens never reaches its verdict when sampled.
  {role: {"examples", "longest", <limit key>: how many exceed it, ...}} for roles with any."""
  out = {}
  for role in ROLES:
    if sft_steps(config.warmstart, role) <= 0 or not sft.get(role):
      continue
    tok = policies[role].tokenizer
    lengths = [len(tok.encode(ex.target, add_special_tokens=False)) + 1 for ex in sft[role]]
    over = {key: sum(n > _limit(config, key) for n in lengths) for key in _LIMIT_KEYS[role]}
    if any(over.values()):
      out[role] = dict(examples=len(lengths), longest=max(lengths), **over)
  return out


def round_end_steps(warm_steps: int, planned: list[schedule.Phase]) -> tuple[int, ...]:
  """The global step after the warm start (round 0) and after each round's last phase."""
  ends, step = [warm_steps], warm_steps
  for r in sorted({p.round for p in planned}):
    step += sum(p.steps for p in planned if p.round == r)
    ends.append(step)
  return tuple(ends)


def _import_plugins(config: ml_collections.ConfigDict) -> None:
  """The config's plug-ins (or, for a config that names none, such as a run's config.json
  written before `plugins` existed, the project's own plug-in of its model kind)."""
  plugins = tuple(config.plugins) if "plugins" in config else ()
  for name in plugins or DEFAULT_PLUGINS.get(config.model.kind, ()):
    try:
      importlib.import_module(name)
    except ImportError as e:
      raise ValueError(f"plugins: cannot import {name!r} ({e})") from e


# model.kind -> config -> DecoderConfig: a plug-in model's architecture without building it
# (arm_jax.plan compiles for it without weights or data).
_ARCHITECTURES: dict[str, Callable[[ml_collections.ConfigDict], Any]] = {}


def register_architecture(model_kind: str):
  """Registers how a plug-in's model.kind turns a config into its DecoderConfig."""

  def register(fn):
    _ARCHITECTURES[model_kind] = fn
    return fn

  return register


def architecture(config: ml_collections.ConfigDict):
  """The DecoderConfig a plug-in registered for the config's model.kind, or None."""
  _import_plugins(config)
  fn = _ARCHITECTURES.get(config.model.kind)
  return None if fn is None else fn(config)


def builder(config: ml_collections.ConfigDict) -> Builder:
  """The registered builder of the config's (model.kind, data.kind), after importing the
  config's plug-ins (_import_plugins)."""
  _import_plugins(config)
  kinds = (config.model.kind, config.data.kind)
  if kinds not in _BUILDERS:
    raise ValueError(f"model.kind={kinds[0]!r} with data.kind={kinds[1]!r}; registered: "
                     f"{', '.join('/'.join(k) for k in sorted(_BUILDERS))} (model/data; plug-ins "
                     f"named in config.plugins add more)")
  return _BUILDERS[kinds]


def build(config: ml_collections.ConfigDict) -> TrainSetup:
  """The run's setup; the config is validated first (arm_jax.config_sections), after its
  (model.kind, data.kind) pair is found (a pair no builder serves is the clearer error)."""
  make = builder(config)
  config = config_sections.validate(config)
  mesh, rules = sharding.mesh_and_rules(config)
  built = make(config, mesh, rules)
  policies, train, held_out = built.policies, built.train, built.held_out
  # Both policies may start from the same arrays, and the RL update donates its params: without
  # a warm start (which trains a copy) the judge's first update would delete the generator's.
  if policies["judge"].params is policies["generator"].params:
    policies["judge"].params = jax.tree.map(jnp.copy, policies["judge"].params)
  if config.templates.rubric:
    policies["generator"].template = load_template(config.templates.rubric, "rubric")
  if config.templates.judge:
    policies["judge"].template = load_template(config.templates.judge, "judge")
  (train, too_long_train), (held_out, too_long_held_out) = (
      drop_too_long(policies, pairs, config) for pairs in (train, held_out))
  if too_long_train or too_long_held_out:
    logging.warning("skipped %d train and %d held-out pairs whose prompts do not fit the "
                    "context with the configured generation lengths", too_long_train,
                    too_long_held_out)
  held_out = held_out[:config.eval.max_pairs] if config.eval.max_pairs else held_out
  for role, cut in warm_start_targets_cut(policies, built.sft_examples, config).items():
    limits = ", ".join(f"{n} over {key}={_limit(config, key)}"
                       for key, n in cut.items() if key in _LIMIT_KEYS[role] and n)
    logging.warning("warm start: of the %s's %d SFT targets (longest %d tokens with the end "
                    "token), %s: sampled as taught, those outputs are cut before their end%s",
                    role, cut["examples"], cut["longest"], limits,
                    " (a judgment before its verdict)" if role == "judge" else "")
  tc = trainer_config(config)
  per_step = {"judge": tc.judge.prompts_per_step, "generator": tc.generator.prompts_per_step}
  planned = schedule.plan(len(train), tc.schedule, per_step)
  rl_steps = sum(p.steps for p in planned)
  w = config.warmstart
  warm_steps = sum(max(sft_steps(w, r), 0) for r in ROLES)
  for r in ROLES:  # a bad warm-start setting is reported now, not after the other's SFT
    if sft_steps(w, r) > 0:
      sft_settings(w, r)
  sft_cfg = sft_optimizer_config(w, ROLES[0])
  # The SFT optimizer here gives the state's structure (checkpoint templates); run_sft spans a
  # cosine schedule over each policy's own warm-start steps (total_steps=0).
  like_cfg = (dataclasses.replace(sft_cfg, total_steps=sft_cfg.warmup_steps + 1)
              if sft_cfg.schedule == "cosine" else sft_cfg)
  return TrainSetup(policies["generator"], policies["judge"], train, held_out,
                    built.sft_examples, optim.make_optimizer(like_cfg), tc,
                    total_steps=warm_steps + rl_steps, direct_template=built.direct_template,
                    round_end_steps=round_end_steps(warm_steps, planned),
                    eval_diagnostics=built.eval_diagnostics, policy_oracle=built.policy_oracle,
                    too_long=(too_long_train, too_long_held_out))
