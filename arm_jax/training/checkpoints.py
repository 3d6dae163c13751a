"""A training run's directory: orbax checkpoints, the run's config.json, and reading both back.

One module for everything that writes or reads a run: the training loop (save, resume), a new
run starting from another's checkpoint (`init_from`) and the evaluator (a run's config and any
kept checkpoint's policies).

One checkpoint = `state` (a pytree of arrays: both policies' params and optimizer states, the
KL references if kept) and `meta` (JSON: stage, phase, step, cached rubrics, the byte offset of
metrics.jsonl, the config's seed, round_end_steps). The newest `max_to_keep` checkpoints stay,
and so do the ones at `keep_steps`: a run keeps the end of its warm start and of each round, so
that the pair after any round can be evaluated later (SELECTORS). Orbax writes each step into a
temporary directory and renames it when complete, so a crash during a save leaves no checkpoint
that looks finished; the next start resumes from the newest complete one and orbax removes the
partial directory.
"""

from __future__ import annotations

import contextlib
import json
import logging as py_logging
import os
import shutil
from typing import Any, Iterator, Optional

import jax
import ml_collections
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint.checkpoint_managers import preservation_policy as preservation

from arm_jax.core import ROLES
from arm_jax.models import lora


def _barrier(name: str) -> None:
  """Every process waits here for the others (a no-op with one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)

CONFIG_FILE = "config.json"  # the run's full config (file plus --config. overrides)
CHECKPOINTS_DIR = "checkpoints"
RESAVE_DIR = ".resave"  # inside CHECKPOINTS_DIR: a step's new copy while its old one stays
# Checkpoint selectors: the newest one, the pair after the warm start (round 0: the paper's
# Stage I), after round R (Stage II's rounds), or a global step.
SELECTORS = ("latest", "warm_start", "round:R", "step:N")


def abstract_like(tree: Any) -> Any:
  """Shape, dtype and sharding of each array: the restore target (placed as the live run)."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def _keep_warnings(record: py_logging.LogRecord) -> bool:
  return record.levelno >= py_logging.WARNING or "/orbax/" not in record.pathname


def quiet_orbax() -> None:
  """Orbax logs several INFO lines per save and restore through absl; keep its warnings only
  (for the rest of the process: a training run)."""
  logger = py_logging.getLogger("absl")
  if _keep_warnings not in logger.filters:
    logger.addFilter(_keep_warnings)


def _not_a_read_only_note(record: py_logging.LogRecord) -> bool:
  return not ("/orbax/" in record.pathname and "read only" in record.getMessage().replace(
      "_", " "))


@contextlib.contextmanager
def _no_read_only_notes() -> Iterator[None]:
  """Drops orbax's two warnings that a read-only manager is read-only (reduce opens one)."""
  logger = py_logging.getLogger("absl")
  logger.addFilter(_not_a_read_only_note)
  try:
    yield
  finally:
    logger.removeFilter(_not_a_read_only_note)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
  """quiet_orbax for one block (the evaluator's reads), leaving the logger as it was."""
  logger = py_logging.getLogger("absl")
  added = _keep_warnings not in logger.filters
  if added:
    logger.addFilter(_keep_warnings)
  try:
    yield
  finally:
    if added:
      logger.removeFilter(_keep_warnings)


class TrainCheckpointer:
  """Numbered checkpoints under `directory`; the number is the run's global step. create=False
  opens an existing run read-only."""

  def __init__(self, directory: str, max_to_keep: int = 2, create: bool = True,
               keep_steps: tuple[int, ...] = ()):
    if max_to_keep < 1:
      raise ValueError(f"checkpoint.max_to_keep={max_to_keep}; expected 1 or more")
    self._directory = os.path.abspath(directory)
    self.keep_steps = tuple(keep_steps)
    self._preservation = preservation.AnyPreservationPolicy([
        preservation.LatestN(max_to_keep), preservation.CustomSteps(keep_steps)])
    self._writable = create
    if create:
      self._recover_resave()
    with _quiet():
      self._manager = self._open(self._directory)

  def _open(self, directory: str) -> ocp.CheckpointManager:
    # cleanup_tmp_directories: a save killed midway leaves a temporary directory, removed here.
    options = ocp.CheckpointManagerOptions(preservation_policy=self._preservation,
                                           create=self._writable,
                                           enable_async_checkpointing=False,
                                           read_only=not self._writable,
                                           cleanup_tmp_directories=self._writable)
    return ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))

  @property
  def _resave_dir(self) -> str:
    return os.path.join(self._directory, RESAVE_DIR)

  def _recover_resave(self) -> None:
    """Finishes or drops a re-save that a crash interrupted (save): a complete new copy whose
    old one is gone takes its place; anything else in the side directory is removed, leaving
    the old copy."""
    side = self._resave_dir
    if jax.process_index() == 0 and os.path.isdir(side):
      for name in os.listdir(side):
        target = os.path.join(self._directory, name)
        if name.isdigit() and not os.path.exists(target):
          os.replace(os.path.join(side, name), target)
          py_logging.getLogger(__name__).warning(
              "%s: completed an interrupted re-save of checkpoint %s", self._directory, name)
      shutil.rmtree(side)
    _barrier("arm_jax_recover_resave")

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Blocking save of (state, meta) as checkpoint `step`. A step that exists already (a phase
    end right after a periodic save, a re-run of a finished run) is written completely beside
    it first (RESAVE_DIR) and only then replaces it, so that a crash or a full disk at any
    point leaves a finished checkpoint of that step. A save that does not happen is an error."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    if step not in self._manager.all_steps():
      if not self._manager.save(step, args=args, force=True):
        raise RuntimeError(f"{self._directory}: orbax did not save checkpoint {step}")
      self._manager.wait_until_finished()
      return
    side = self._open(self._resave_dir)
    try:
      if not side.save(step, args=args, force=True):
        raise RuntimeError(f"{self._resave_dir}: orbax did not save checkpoint {step}")
      side.wait_until_finished()
    finally:
      side.close()
    self._manager.delete(step)
    if jax.process_index() == 0:
      os.replace(os.path.join(self._resave_dir, str(step)),
                 os.path.join(self._directory, str(step)))
      shutil.rmtree(self._resave_dir)
    _barrier("arm_jax_resave")
    self._manager.reload()

  def reduce(self, step: int, like: Any, meta: dict) -> None:
    """Rewrites checkpoint `step` with `like`'s entries only (read from it, placed like `like`)
    and `meta`: the rest of its arrays go. Crash-safe as save's re-save of a step is."""
    # A manager of its own: this one's "state" handler is StandardSave's once it has saved,
    # and orbax refuses a partial (PyTree) restore through it.
    with _quiet(), _no_read_only_notes():
      reader = ocp.CheckpointManager(self._directory, options=ocp.CheckpointManagerOptions(
          read_only=True, create=False), item_names=("state", "meta"))
      try:
        state = _partial_restore(reader, step, abstract_like(like))
      finally:
        reader.close()
    self.save(step, state, meta)

  def set_aside(self, step: int) -> str:
    """Moves checkpoint `step` out of the run (a checkpoint that cannot be read) to
    `corrupt-<step>` beside the others, where orbax no longer sees it; returns the new path."""
    source = os.path.join(self._directory, str(step))
    target = os.path.join(self._directory, f"corrupt-{step}")
    if jax.process_index() == 0:
      n = 1
      while os.path.exists(target):
        n += 1
        target = os.path.join(self._directory, f"corrupt-{step}-{n}")
      os.replace(source, target)
    _barrier("arm_jax_set_aside")
    self._manager.reload()
    return target

  def restore_meta(self, step: int) -> dict:
    return dict(self._manager.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))["meta"])

  def restore_state(self, step: int, like: Any, partial: bool = False) -> Any:
    """The arrays of checkpoint `step`, laid out as `like` (live arrays or abstract ones);
    partial: `like` may name a subset of the saved entries (e.g. only the params)."""
    target = abstract_like(like)
    if not partial:
      return self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target)))["state"]
    return _partial_restore(self._manager, step, target)

  def close(self) -> None:
    self._manager.close()


def _partial_restore(manager: ocp.CheckpointManager, step: int, target: Any) -> Any:
  return manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
      item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
      partial_restore=True)))["state"]


# --- the run directory ---------------------------------------------------------------------------

def checkpoints_dir(path: str, key: str = "trained.workdir") -> str:
  """The checkpoints folder of a run given its workdir or the folder itself; a missing one is a
  FileNotFoundError naming `key` and how to make it."""
  directory = os.path.abspath(path)
  if os.path.basename(directory) != CHECKPOINTS_DIR:
    directory = os.path.join(directory, CHECKPOINTS_DIR)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"{key}={path!r} has no checkpoint ({directory} is missing); train "
                            f"first: python main.py --config configs/<name>.py --workdir {path}")
  return directory


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """WORKDIR/config.json, atomically: the run's full config, which the evaluator rebuilds the
  run's models from. Written by process 0 only."""
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG_FILE)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
  os.replace(path + ".tmp", path)


def _tuples(value: Any) -> Any:
  """JSON lists back to the tuples config files use."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run wrote with write_config."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"{path!r} does not exist (runs write it since it was added): set trained.config to "
        "the training config file the run was started with, plus trained.overrides")
  with open(path, encoding="utf-8") as f:
    return ml_collections.ConfigDict(_tuples(json.load(f)))


def parse_selector(selector: str, key: str) -> tuple[str, int]:
  """("latest", 0), ("round", R) (warm_start = round 0) or ("step", N); anything else is an error
  naming `key` and the accepted forms."""
  kind, _, number = selector.partition(":")
  if selector in ("latest", "warm_start"):
    return ("latest", 0) if selector == "latest" else ("round", 0)
  if kind in ("round", "step") and number.isdigit():
    return kind, int(number)
  raise ValueError(f"{key}={selector!r}; expected one of {', '.join(SELECTORS)} (R, N: whole "
                   "numbers, e.g. round:0 for the pair after the warm start)")


def resolve(workdir: str, selector: str, key: str = "trained.checkpoint") -> int:
  """The global step of the checkpoint `selector` names in the run in `workdir`; an error says
  what the run has when it is not there."""
  kind, number = parse_selector(selector, key)
  ckpt = TrainCheckpointer(checkpoints_dir(workdir), create=False)
  try:
    steps = ckpt.all_steps()
    if not steps:
      raise FileNotFoundError(f"trained.workdir={workdir!r}: its checkpoints folder holds no "
                              "finished checkpoint")
    round_ends = list(ckpt.restore_meta(steps[-1]).get("round_end_steps", []))  # older runs: none
  finally:
    ckpt.close()
  kept = ", ".join(map(str, steps))
  if kind == "latest":
    return steps[-1]
  if kind == "step":
    if number not in steps:
      raise FileNotFoundError(f"{key}={selector!r}: {workdir}/checkpoints has no step {number} "
                              f"(kept: {kept})")
    return number
  if not round_ends:
    raise ValueError(f"{key}={selector!r}: the checkpoints in {workdir} do not record where its "
                     f"rounds end (runs written before checkpoint.keep_rounds); name a step "
                     f"instead (kept: {kept})")
  if number >= len(round_ends):
    raise ValueError(f"{key}={selector!r}: the run has {len(round_ends) - 1} rounds (round:0 is "
                     "the pair after the warm start)")
  step = round_ends[number]
  if step > steps[-1]:
    raise FileNotFoundError(f"{key}={selector!r}: the run has not reached it yet (round "
                            f"{number} ends at step {step}, the newest checkpoint is {steps[-1]})")
  if step not in steps:
    raise FileNotFoundError(f"{key}={selector!r}: step {step} was not kept (kept: {kept}); "
                            "training keeps each round's end with checkpoint.keep_rounds=True")
  return step


def restore_policies(path: str, like: dict[str, Any], step: Optional[int] = None,
                     key: str = "trained.workdir") -> tuple[dict[str, Any], dict]:
  """({"generator": params, "judge": params}, meta) from checkpoint `step` (None = the newest) of
  the run at `path` (its workdir or checkpoints folder), placed like `like`. Only the two policies
  are read, so a checkpoint taken mid-run (optimizer states, references) restores as well as a
  finished one. meta gains checkpoint_step and loses the cached rubrics. A LoRA model's
  checkpoint holds its adapters only (arm_jax.models.lora): they are read into `like`'s, whose
  base weights stay."""
  ckpt = TrainCheckpointer(checkpoints_dir(path, key), create=False)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"{key}={path!r}: its checkpoints folder holds no finished "
                              "checkpoint")
    with _quiet():
      meta = ckpt.restore_meta(step)
      missing = [r for r in ROLES if r not in meta.get("state_keys", ROLES)]
      if missing:
        raise ValueError(f"{key}={path!r}: checkpoint {step} holds no {missing}")
      try:
        state = ckpt.restore_state(step, {role: lora.trainable(like[role]) for role in ROLES},
                                   partial=True)
      except ValueError as e:
        raise ValueError(f"{key}={path!r}: checkpoint {step} does not hold this config's "
                         f"models: {e}") from e
  finally:
    ckpt.close()
  meta = {k: v for k, v in meta.items() if k != "rubric_cache"}
  meta["checkpoint_step"] = step
  return {role: lora.combine(state[role], lora.split(like[role])[1]) for role in ROLES}, meta
