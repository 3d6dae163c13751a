"""The rows of the evaluation table: which generator and which judge, from which weights.

A system spec (config `system_specs.<name>`, selected by name in `systems`) says
  generator: "trained", "base" or "none" (no rubric: the judge reads the direct template),
  judge: "trained" or "base",
  votes: judge samples per comparison (1; k > 1 adds a voting@k row),
  checkpoint: which checkpoint of the training run its trained weights come from ("" =
    `trained.checkpoint`; arm_jax.training.checkpoints.SELECTORS).
Weights:
  trained: a checkpoint of the training run in `trained.workdir` (arm_jax.training), its models
    built from the run's config (`trained.config` plus `trained.overrides`, the `--config.`
    overrides the run was started with; with `trained.config` empty, the config.json the run
    wrote into its workdir) exactly as the run built them (arm_jax.training.setup.build; a
    pretrained run needs its data.path, as training did);
  base: `model.path` (an HF directory or .gguf; "" = the shipped SmolLM2) when set or when there
    is no training run; otherwise the weights the training run started from (the pretrained
    checkpoint, or the toy's initial random decoder). The paper's "prompting only" row is the
    base model as generator and judge with the normal templates; "direct" is the base judge
    without a rubric.
Templates: `templates.rubric` / `templates.judge` / `templates.direct` name a shipped template or a
file; "" = the training run's templates (with a training run; its builder names the direct one),
else the full shipped ones and "judge_direct".
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import time
from typing import Any, Optional, Sequence

import ml_collections
from absl import logging

from arm_jax import assets, config_sections, sharding
from arm_jax.core import ROLES, PreferencePair
from arm_jax.models import load_pretrained
from arm_jax.prompts import Template, load_template
from arm_jax.rl import heldout
from arm_jax.rl.policy import Policy
from arm_jax.tokenizer import load_tokenizer
from arm_jax.training import checkpoints
from arm_jax.training import setup as train_setup

SOURCES = ("trained", "base")


@dataclasses.dataclass(frozen=True)
class SystemSpec:
  name: str
  generator: str  # "trained", "base" or "none"
  judge: str  # "trained" or "base"
  votes: int = 1
  checkpoint: str = "latest"  # of the trained weights: checkpoints.SELECTORS
  checkpoint_key: str = "trained.checkpoint"  # the config key it came from, for errors

  @property
  def direct(self) -> bool:
    return self.generator == "none"


def system_specs(config: ml_collections.ConfigDict) -> list[SystemSpec]:
  """The selected systems in row order; unknown names and bad fields are errors that name them."""
  specs = []
  if not config.systems:
    raise ValueError("config.systems is empty: name at least one of "
                     f"{sorted(config.system_specs)}")
  for name in config.systems:
    if name not in config.system_specs:
      raise ValueError(f"system {name!r} in config.systems is not defined in "
                       f"config.system_specs (defined: {', '.join(sorted(config.system_specs))})")
    s = config.system_specs[name]
    where = f"system_specs.{name}"
    spec = SystemSpec(name, s.generator, s.judge, s.votes,
                      s.checkpoint or config.trained.checkpoint,
                      f"{where}.checkpoint" if s.checkpoint else "trained.checkpoint")
    checkpoints.parse_selector(spec.checkpoint, spec.checkpoint_key)
    if spec.generator not in (*SOURCES, "none"):
      raise ValueError(f"{where}.generator={spec.generator!r}; expected trained, base or none")
    if spec.judge not in SOURCES:
      raise ValueError(f"{where}.judge={spec.judge!r}; expected trained or base")
    if spec.votes < 1:
      raise ValueError(f"{where}.votes={spec.votes}; expected 1 or more")
    if "trained" in (spec.generator, spec.judge) and not config.trained.workdir:
      raise ValueError(f"system {name!r} uses trained weights but trained.workdir is empty")
    specs.append(spec)
  if len(set(config.systems)) != len(config.systems):
    raise ValueError(f"config.systems names a system twice: {list(config.systems)}")
  return specs


# --- the training run ----------------------------------------------------------------------------

def parse_overrides(overrides: Sequence[str], key: str = "trained.overrides") -> dict[str, Any]:
  """("model.num_layers=1", "data.kinds=('include',)") -> {dotted: value}; values are Python
  literals, or text when they do not parse as one (as on the absl command line)."""
  out = {}
  for item in overrides:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
      raise ValueError(f"{key}: {item!r} is not key=value")
    try:
      value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
      value = raw.strip()
    out[key.strip()] = value
  return out


def load_train_config(path: str, overrides: Sequence[str] = (), workdir: str = "",
                      section: str = "trained") -> ml_collections.ConfigDict:
  """The training run's config: `get_config()` of the file with the run's overrides, or, with no
  file, the config.json the run wrote into its workdir (checkpoints.write_config), which already
  holds its overrides."""
  if not path:
    config = checkpoints.read_config(workdir)
    path = os.path.join(workdir, checkpoints.CONFIG_FILE)
  else:
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{section}.config={path!r}: no such config file (the training "
                              f"config the run was started with, e.g. configs/toy.py)")
    spec = importlib.util.spec_from_file_location("arm_jax_train_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
  for key, value in parse_overrides(overrides, f"{section}.overrides").items():
    where, _, name = key.rpartition(".")
    parent = config
    for part in filter(None, where.split(".")):
      if part not in parent:
        raise ValueError(f"{section}.overrides: {key!r} is not a field of {path}")
      parent = parent[part]
    if name not in parent:
      raise ValueError(f"{section}.overrides: {key!r} is not a field of {path}")
    parent[name] = value
  return config_sections.validate(config)


# --- models --------------------------------------------------------------------------------------

@dataclasses.dataclass
class Models:
  """Policies by weight key ("base", or "trained@<step>" for a checkpoint of the training run);
  `direct` judges read the no-rubric template."""
  generators: dict[str, Policy]
  judges: dict[str, Policy]
  directs: dict[str, Policy]
  held_out: list[PreferencePair]  # as the run's held-out eval shows them (draw 0)
  info: dict  # what was loaded, for results.json
  checkpoint_steps: dict[str, int] = dataclasses.field(default_factory=dict)  # selector -> step
  train_config: Optional[ml_collections.ConfigDict] = None  # the training run's, if any

  def weights(self, spec: SystemSpec, role: str) -> str:
    """The weight key of `spec`'s generator or judge."""
    source = getattr(spec, role)
    return "base" if source == "base" else f"trained@{self.checkpoint_steps[spec.checkpoint]}"

  def generator(self, spec: SystemSpec) -> Policy:
    return self.generators[self.weights(spec, "generator")]

  def judge(self, spec: SystemSpec) -> Policy:
    key = self.weights(spec, "judge")
    return self.directs[key] if spec.direct else self.judges[key]


def _template(name: str, kind: str, default: Template) -> Template:
  return load_template(name, kind) if name else default


def _policies(model, tokenizer, params: dict[str, Any],
              templates: dict[str, Template]) -> dict[str, Policy]:
  """Generator, judge and direct judge; the direct judge reads the judge's weights."""
  return {kind: Policy(kind, model, tokenizer, templates[kind],
                       params["generator" if kind == "generator" else "judge"])
          for kind in ("generator", "judge", "direct")}


def _train_setup(train_config: ml_collections.ConfigDict) -> train_setup.TrainSetup:
  """The training run's models, built as the run built them, and its held-out pairs (all)."""
  train_config = ml_collections.ConfigDict(train_config.to_dict())  # an unlocked copy
  train_config.eval.max_pairs = 0  # every held-out pair; benchmarks cap their own size
  return train_setup.build(train_config)


def build_models(config: ml_collections.ConfigDict, specs: Sequence[SystemSpec],
                 train_config: Optional[ml_collections.ConfigDict] = None) -> Models:
  """Loads only the weights the selected systems use: each named checkpoint of the training run
  once, however many rows read it. Checkpoints are found before any model is built."""
  t = config.templates
  trained_specs = [s for s in specs if "trained" in (s.generator, s.judge)]
  used = {s.generator for s in specs} | {s.judge for s in specs}
  info: dict[str, Any] = {}
  by_source: dict[str, dict[str, Policy]] = {}
  held_out: list[PreferencePair] = []
  checkpoint_steps: dict[str, int] = {}
  run_base = None
  if config.trained.workdir:
    if trained_specs:  # a missing run or checkpoint is the first thing to say, before its config
      checkpoints.checkpoints_dir(config.trained.workdir)
      for s in trained_specs:
        if s.checkpoint not in checkpoint_steps:
          checkpoint_steps[s.checkpoint] = checkpoints.resolve(config.trained.workdir,
                                                               s.checkpoint, s.checkpoint_key)
    if train_config is None:
      train_config = load_train_config(config.trained.config, tuple(config.trained.overrides),
                                       config.trained.workdir)
    setup = _train_setup(train_config)
    held_out = heldout.shown_order(list(setup.held_out), int(train_config.seed))
    templates = {"generator": _template(t.rubric, "rubric", setup.generator.template),
                 "judge": _template(t.judge, "judge", setup.judge.template),
                 "direct": _template(t.direct, "direct", setup.direct_template)}
    model, tokenizer = setup.judge.model, setup.judge.tokenizer
    start = {"generator": setup.generator.params, "judge": setup.judge.params}
    run_base = (model, tokenizer, start, templates)
    # checkpoints: selector -> step; restored: step -> that checkpoint's position (meta)
    info["trained"] = dict(workdir=config.trained.workdir, config=config.trained.config,
                           overrides=list(config.trained.overrides),
                           checkpoints=dict(checkpoint_steps), restored={})
    for step in sorted(set(checkpoint_steps.values())):
      trained, meta = checkpoints.restore_policies(config.trained.workdir, start, step)
      logging.info("restored %s checkpoint %d (stage %s)", config.trained.workdir, step,
                   meta.get("stage"))
      by_source[f"trained@{step}"] = _policies(model, tokenizer, trained, templates)
      info["trained"]["restored"][str(step)] = meta
  if "base" in used:
    if config.model.path or run_base is None:
      path = config.model.path or assets.smollm2_gguf()
      mesh, rules = sharding.mesh_and_rules(config)
      start_time = time.perf_counter()
      model, params = load_pretrained(path, dtype=config.model.dtype, mesh=mesh, rules=rules)
      tokenizer = load_tokenizer(path)
      logging.info("loaded %s (%.1fM params) in %.1fs", path, model.config.num_params / 1e6,
                   time.perf_counter() - start_time)
      templates = {"generator": _template(t.rubric, "rubric",
                                          load_template("rubric_generator", "rubric")),
                   "judge": _template(t.judge, "judge", load_template("judge", "judge")),
                   "direct": _template(t.direct, "direct", load_template("judge_direct", "direct"))}
      by_source["base"] = _policies(model, tokenizer, {r: params for r in ROLES}, templates)
      info["base"] = dict(path=path, dtype=config.model.dtype)
    else:
      model, tokenizer, start, templates = run_base
      by_source["base"] = _policies(model, tokenizer, start, templates)
      info["base"] = dict(path=f"starting weights of {config.trained.workdir}")
  for source, policies in by_source.items():  # every trained checkpoint reads the same templates
    info[source.split("@")[0]]["templates"] = {k: p.template.source for k, p in policies.items()}
  return Models(generators={s: p["generator"] for s, p in by_source.items()},
                judges={s: p["judge"] for s, p in by_source.items()},
                directs={s: p["direct"] for s, p in by_source.items()},
                held_out=held_out, info=info, checkpoint_steps=checkpoint_steps,
                train_config=train_config)
