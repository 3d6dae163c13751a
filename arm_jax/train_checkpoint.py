"""Orbax checkpoints of a training run: array state plus a JSON record of where the run is.

One checkpoint = `state` (a pytree of arrays: both policies' params and optimizer states, the
KL references if kept) and `meta` (JSON: stage, phase, step, cached rubrics, the byte offset of
metrics.jsonl, the config's seed). The newest `max_to_keep` checkpoints stay, and so do the ones
at `keep_steps` (a run keeps the end of its warm start and of each round, so that the pair after
any round can be evaluated later: arm_jax.evaluation.systems). Orbax writes each step into a temporary directory and renames
it when complete, so a crash during a save leaves no checkpoint that looks finished; the next
start resumes from the newest complete one and orbax removes the partial directory.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as preservation


def abstract_like(tree: Any) -> Any:
  """Shape, dtype and sharding of each array: the restore target (placed as the live run)."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


class TrainCheckpointer:
  """Numbered checkpoints under `directory`; the number is the run's global step."""

  def __init__(self, directory: str, max_to_keep: int = 2, create: bool = True,
               keep_steps: tuple[int, ...] = ()):
    if max_to_keep < 1:
      raise ValueError(f"checkpoint.max_to_keep={max_to_keep}; expected 1 or more")
    policy = preservation.AnyPreservationPolicy([preservation.LatestN(max_to_keep),
                                                 preservation.CustomSteps(keep_steps)])
    options = ocp.CheckpointManagerOptions(preservation_policy=policy, create=create,
                                           enable_async_checkpointing=False,
                                           read_only=not create)
    self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options,
                                          item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Blocking save of (state, meta) as checkpoint `step` (replacing one of the same number)."""
    if step in self._manager.all_steps():
      self._manager.delete(step)
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)))
    self._manager.wait_until_finished()

  def restore_meta(self, step: int) -> dict:
    return dict(self._manager.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))["meta"])

  def restore_state(self, step: int, like: Any, partial: bool = False) -> Any:
    """The arrays of checkpoint `step`, laid out as `like` (live arrays or abstract ones);
    partial: `like` may name a subset of the saved entries (e.g. only the params)."""
    target = abstract_like(like)
    return self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target, strict=not partial)))["state"]

  def close(self) -> None:
    self._manager.close()
