"""The rows of the evaluation table: which generator and which judge, from which weights.

A system spec (config `system_specs.<name>`, selected by name in `systems`) says
  generator: "trained", "base" or "none" (no rubric: the judge reads the direct template),
  judge: "trained" or "base",
  votes: judge samples per comparison (1; k > 1 adds a voting@k row).
Weights:
  trained: the newest checkpoint of the training run in `trained.workdir` (arm_jax.train), its
    models built from the run's config (`trained.config` plus `trained.overrides`, the
    `--config.` overrides the run was started with; with `trained.config` empty, the
    config.json the run wrote into its workdir) exactly as the run built them
    (arm_jax.train_setup.build; a pretrained run needs its data.path, as training did);
  base: `model.path` (an HF directory or .gguf; "" = the shipped SmolLM2) when set or when there
    is no training run; otherwise the weights the training run started from (the pretrained
    checkpoint, or the toy's initial random decoder). The paper's "prompting only" row is the
    base model as generator and judge with the normal templates; "direct" is the base judge
    without a rubric.
Templates: `templates.rubric` / `templates.judge` / `templates.direct` name a shipped template or a
file; "" = the training run's templates (with a training run), else the full shipped ones; the
direct template defaults to "judge_direct" ("judge_direct_toy" for the toy world).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.resources
import importlib.util
import json
import logging as py_logging
import os
import time
from typing import Any, Optional, Sequence

import ml_collections
import orbax.checkpoint as ocp
from absl import logging

from arm_jax import assets, jobs
from arm_jax.models import load_pretrained
from arm_jax.prompts import Template, load_template
from arm_jax.rl.phases import PreferencePair
from arm_jax.rl.policy import Policy
from arm_jax.tokenizer import load_tokenizer
from arm_jax.train_checkpoint import abstract_like

SOURCES = ("trained", "base")
ROLES = ("generator", "judge")


@dataclasses.dataclass(frozen=True)
class SystemSpec:
  name: str
  generator: str  # "trained", "base" or "none"
  judge: str  # "trained" or "base"
  votes: int = 1

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
    spec = SystemSpec(name, s.generator, s.judge, s.get("votes", 1))
    where = f"system_specs.{name}"
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

def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
  """("model.num_layers=1", "data.kinds=('include',)") -> {dotted: value}; values are Python
  literals, or text when they do not parse as one (as on the absl command line)."""
  out = {}
  for item in overrides:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
      raise ValueError(f"trained.overrides: {item!r} is not key=value")
    try:
      value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
      value = raw.strip()
    out[key.strip()] = value
  return out


def _tuples(value: Any) -> Any:
  """JSON lists back to the tuples config files use."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def load_train_config(path: str, overrides: Sequence[str] = (),
                      workdir: str = "") -> ml_collections.ConfigDict:
  """The training run's config: `get_config()` of the file with the run's overrides, or, with no
  file, the config.json the run wrote into its workdir (arm_jax.train.write_config), which
  already holds its overrides."""
  if not path:
    saved = os.path.join(workdir, "config.json")
    if not os.path.isfile(saved):
      raise FileNotFoundError(
          f"trained.config is empty and {saved!r} does not exist (runs write it since it was "
          "added): set trained.config to the training config file the run was started with, "
          "plus trained.overrides")
    with open(saved, encoding="utf-8") as f:
      config = ml_collections.ConfigDict(_tuples(json.load(f)))
    path = saved
  else:
    if not os.path.isfile(path):
      raise FileNotFoundError(f"trained.config={path!r}: no such config file (the training "
                              f"config the run was started with, e.g. configs/toy.py)")
    spec = importlib.util.spec_from_file_location("arm_jax_train_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
  for key, value in parse_overrides(overrides).items():
    section, _, name = key.rpartition(".")
    parent = config
    for part in filter(None, section.split(".")):
      if part not in parent:
        raise ValueError(f"trained.overrides: {key!r} is not a field of {path}")
      parent = parent[part]
    if name not in parent:
      raise ValueError(f"trained.overrides: {key!r} is not a field of {path}")
    parent[name] = value
  return config


class _QuietOrbax:
  """Drops orbax's INFO lines (several per restore) from the absl logger until closed."""

  def __init__(self):
    self._logger = py_logging.getLogger("absl")
    self._logger.addFilter(self)

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING or "/orbax/" not in record.pathname

  def close(self) -> None:
    self._logger.removeFilter(self)


def _checkpoint_dir(workdir: str) -> str:
  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"trained.workdir={workdir!r} has no checkpoint ({directory} is "
                            "missing); train first: python main.py --config configs/<name>.py "
                            f"--workdir {workdir}")
  return directory


def _manager(workdir: str) -> ocp.CheckpointManager:
  directory = _checkpoint_dir(workdir)
  options = ocp.CheckpointManagerOptions(create=False, read_only=True)
  quiet = _QuietOrbax()
  try:
    return ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))
  finally:
    quiet.close()


def restore_trained(workdir: str, like: dict[str, Any]) -> tuple[dict[str, Any], dict]:
  """({"generator": params, "judge": params}, meta) from the newest checkpoint of `workdir`,
  placed like `like`. Only the two policies are read, so a checkpoint taken mid-run (optimizer
  states, references) restores as well as a finished one."""
  manager = _manager(workdir)
  quiet = _QuietOrbax()
  try:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f"trained.workdir={workdir!r}: {workdir}/checkpoints holds no "
                              "finished checkpoint")
    meta = dict(manager.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))["meta"])
    missing = [r for r in ROLES if r not in meta.get("state_keys", ROLES)]
    if missing:
      raise ValueError(f"trained.workdir={workdir!r}: checkpoint {step} holds no {missing}")
    target = abstract_like({role: like[role] for role in ROLES})
    state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
        partial_restore=True)))["state"]
  finally:
    manager.close()
    quiet.close()
  meta = {k: v for k, v in meta.items() if k != "rubric_cache"}
  meta["checkpoint_step"] = step
  return {role: state[role] for role in ROLES}, meta


# --- models --------------------------------------------------------------------------------------

@dataclasses.dataclass
class Models:
  """Policies by weight source; `direct` judges read the no-rubric template."""
  generators: dict[str, Policy]
  judges: dict[str, Policy]
  directs: dict[str, Policy]
  held_out: list[PreferencePair]
  info: dict  # what was loaded, for results.json


def _template(name: str, kind: str, default: Template) -> Template:
  return load_template(name, kind) if name else default


def _direct_default(toy: bool) -> Template:
  if not toy:
    return load_template("judge_direct", "direct")
  path = importlib.resources.files("arm_jax") / "templates" / "judge_direct_toy.txt"
  return load_template(str(path), "direct")


def _policies(model, tokenizer, params: dict[str, Any],
              templates: dict[str, Template]) -> dict[str, Policy]:
  """Generator, judge and direct judge; the direct judge reads the judge's weights."""
  return {kind: Policy(kind, model, tokenizer, templates[kind],
                       params["generator" if kind == "generator" else "judge"])
          for kind in ("generator", "judge", "direct")}


def _train_setup(config: ml_collections.ConfigDict, train_config: ml_collections.ConfigDict):
  """The training run's models, built as the run built them, and its held-out pairs (all)."""
  from arm_jax import train_setup  # pylint: disable=import-outside-toplevel  (the RL stack)
  train_config = ml_collections.ConfigDict(train_config.to_dict())  # an unlocked copy
  train_config.eval.max_pairs = 0  # every held-out pair; benchmarks cap their own size
  _manager(config.trained.workdir).close()  # a missing checkpoint fails before the build
  return train_setup.build(train_config), train_config.model.kind == "toy"


def build_models(config: ml_collections.ConfigDict, specs: Sequence[SystemSpec],
                 train_config: Optional[ml_collections.ConfigDict] = None) -> Models:
  """Loads only the weights the selected systems use."""
  t = config.templates
  used = {s.generator for s in specs} | {s.judge for s in specs}
  info: dict[str, Any] = {}
  by_source: dict[str, dict[str, Policy]] = {}
  held_out: list[PreferencePair] = []
  run_base = None
  if config.trained.workdir:
    if "trained" in used:  # a missing run is the first thing to say, before its config
      _checkpoint_dir(config.trained.workdir)
    if train_config is None:
      train_config = load_train_config(config.trained.config, tuple(config.trained.overrides),
                                       config.trained.workdir)
    setup, toy = _train_setup(config, train_config)
    held_out = list(setup.held_out)
    templates = {"generator": _template(t.rubric, "rubric", setup.generator.template),
                 "judge": _template(t.judge, "judge", setup.judge.template),
                 "direct": _template(t.direct, "direct", _direct_default(toy))}
    model, tokenizer = setup.judge.model, setup.judge.tokenizer
    start = {"generator": setup.generator.params, "judge": setup.judge.params}
    run_base = (model, tokenizer, start, templates)
    info["trained"] = dict(workdir=config.trained.workdir, config=config.trained.config,
                           overrides=list(config.trained.overrides))
    if "trained" in used:
      trained, meta = restore_trained(config.trained.workdir, start)
      logging.info("restored %s checkpoint %d (stage %s)", config.trained.workdir,
                   meta["checkpoint_step"], meta.get("stage"))
      by_source["trained"] = _policies(model, tokenizer, trained, templates)
      info["trained"]["checkpoint"] = meta
  if "base" in used:
    if config.model.path or run_base is None:
      path = config.model.path or assets.smollm2_gguf()
      mesh, rules = jobs.mesh_and_rules(config)
      start_time = time.perf_counter()
      model, params = load_pretrained(path, dtype=config.model.dtype, mesh=mesh, rules=rules)
      tokenizer = load_tokenizer(path)
      logging.info("loaded %s (%.1fM params) in %.1fs", path, model.config.num_params / 1e6,
                   time.perf_counter() - start_time)
      templates = {"generator": _template(t.rubric, "rubric",
                                          load_template("rubric_generator", "rubric")),
                   "judge": _template(t.judge, "judge", load_template("judge", "judge")),
                   "direct": _template(t.direct, "direct", _direct_default(False))}
      by_source["base"] = _policies(model, tokenizer, {r: params for r in ROLES}, templates)
      info["base"] = dict(path=path, dtype=config.model.dtype)
    else:
      model, tokenizer, start, templates = run_base
      by_source["base"] = _policies(model, tokenizer, start, templates)
      info["base"] = dict(path=f"starting weights of {config.trained.workdir}")
  for source, policies in by_source.items():
    info.setdefault(source, {})["templates"] = {k: p.template.source for k, p in policies.items()}
  return Models(generators={s: p["generator"] for s, p in by_source.items()},
                judges={s: p["judge"] for s, p in by_source.items()},
                directs={s: p["direct"] for s, p in by_source.items()},
                held_out=held_out, info=info)

