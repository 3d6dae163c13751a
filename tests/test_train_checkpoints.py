"""A run's checkpoints under injected faults: a re-save of the only checkpoint that fails or is
killed at each point keeps a finished copy of that step; orbax's leftovers from a killed save
are removed at start; a run that crashed before its first checkpoint starts its metrics afresh;
a newest checkpoint that cannot be read is moved aside for the one before it, and when none can
be read the error names them.
"""

import json
import os

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from arm_jax.training import checkpoints
from arm_jax.training.checkpoints import RESAVE_DIR, TrainCheckpointer
from arm_jax.training.loop import RunBase
from test_train_resume import tiny_config

TMP_SUFFIX = ".orbax-checkpoint-tmp"  # orbax's name for a directory being written


def _state(value):
  return {"w": jnp.full((4, 3), value, jnp.float32), "b": jnp.arange(3, dtype=jnp.float32) * value}


def _meta(step, tag):
  return dict(global_step=step, tag=tag, metrics_offset=0)


def _restored(directory, step):
  ckpt = TrainCheckpointer(directory)
  try:
    assert ckpt.all_steps() == [step]
    state = ckpt.restore_state(step, _state(0.0))
    return float(np.asarray(state["w"])[0, 0]), ckpt.restore_meta(step)["tag"]
  finally:
    ckpt.close()


def _saved_once(directory, step=5):
  ckpt = TrainCheckpointer(directory, max_to_keep=1)
  ckpt.save(step, _state(1.0), _meta(step, "old"))
  return ckpt


def test_resave_replaces_the_only_checkpoint(tmp_path):
  directory = str(tmp_path / "checkpoints")
  ckpt = _saved_once(directory)
  ckpt.save(5, _state(2.0), _meta(5, "new"))
  assert sorted(os.listdir(directory)) == ["5"]  # no side directory left
  ckpt.close()
  assert _restored(directory, 5) == (2.0, "new")


def test_a_resave_that_fails_midway_keeps_the_old_checkpoint(tmp_path, monkeypatch):
  directory = str(tmp_path / "checkpoints")
  ckpt = _saved_once(directory)
  real_save = ocp.CheckpointManager.save

  def failing(self, step, *args, **kwargs):
    if RESAVE_DIR in str(self.directory):
      raise OSError(28, "No space left on device")  # the disk fills during the new copy
    return real_save(self, step, *args, **kwargs)
  monkeypatch.setattr(ocp.CheckpointManager, "save", failing)
  with pytest.raises(OSError, match="No space left"):
    ckpt.save(5, _state(2.0), _meta(5, "new"))
  ckpt.close()
  monkeypatch.undo()
  assert _restored(directory, 5) == (1.0, "old")
  assert not os.path.exists(os.path.join(directory, RESAVE_DIR))  # dropped at the next start


def test_a_resave_killed_after_the_old_copy_went_completes_at_the_next_start(tmp_path,
                                                                             monkeypatch):
  """The window the delete-then-save order lost everything in: the old copy is deleted, the new
  one not yet in place."""
  directory = str(tmp_path / "checkpoints")
  ckpt = _saved_once(directory)
  real_replace = os.replace

  def killed(src, dst):
    if src == os.path.join(directory, RESAVE_DIR, "5"):  # moving the new copy into place
      raise KeyboardInterrupt("killed")
    return real_replace(src, dst)
  monkeypatch.setattr(checkpoints.os, "replace", killed)
  with pytest.raises(KeyboardInterrupt):
    ckpt.save(5, _state(2.0), _meta(5, "new"))
  monkeypatch.undo()
  assert not os.path.exists(os.path.join(directory, "5"))  # the old copy is gone ...
  assert _restored(directory, 5) == (2.0, "new")  # ... and the next start finds the new one


def test_a_resave_killed_while_writing_keeps_the_old_checkpoint(tmp_path):
  directory = str(tmp_path / "checkpoints")
  _saved_once(directory).close()
  partial = os.path.join(directory, RESAVE_DIR, f"5{TMP_SUFFIX}-1796210000")
  os.makedirs(os.path.join(partial, "state"))  # what a kill during the new copy leaves
  assert _restored(directory, 5) == (1.0, "old")
  assert sorted(os.listdir(directory)) == ["5"]


def test_leftovers_of_a_killed_save_are_removed_at_start(tmp_path):
  directory = str(tmp_path / "checkpoints")
  _saved_once(directory).close()
  planted = os.path.join(directory, f"9{TMP_SUFFIX}-1796210000")
  os.makedirs(os.path.join(planted, "state"))
  assert _restored(directory, 5) == (1.0, "old")
  assert not os.path.exists(planted)


def test_a_failed_save_is_an_error(tmp_path, monkeypatch):
  ckpt = TrainCheckpointer(str(tmp_path / "checkpoints"))
  monkeypatch.setattr(ocp.CheckpointManager, "save", lambda self, step, **kw: False)
  with pytest.raises(RuntimeError, match="did not save checkpoint 3"):
    ckpt.save(3, _state(1.0), _meta(3, "x"))
  ckpt.close()


def test_a_crash_before_the_first_checkpoint_leaves_no_records_behind(tmp_path):
  """A run killed before it saved anything has written records; the rerun starts from nothing,
  so it must not append to them (each (phase, step) once)."""
  config = tiny_config()
  workdir = str(tmp_path)
  first = RunBase(config, workdir, total_steps=3, desc="test")
  for step in range(3):
    first.record(dict(phase="sft", step=step))
  first.writer.close()  # killed here: no checkpoint
  second = RunBase(config, workdir, total_steps=3, desc="test")
  try:
    assert second._restore(("seed",), lambda meta: {}) is None
    second.record(dict(phase="sft", step=0))
  finally:
    second.close()
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    assert [json.loads(line)["step"] for line in f] == [0]


def _run_with_checkpoints(workdir, steps):
  """A RunBase that saved _state(step) at each of `steps`, closed."""
  run = RunBase(tiny_config(), workdir, total_steps=10, desc="test")
  for step in steps:
    run.meta["global_step"] = step
    run.record(dict(phase="sft", step=step))
    run._save_state(_state(float(step)))
  run.close()


def _truncate_data(workdir, step):
  """Cuts every array data file of checkpoint `step` to half: a disk that filled, a copy that
  stopped."""
  root = os.path.join(workdir, "checkpoints", str(step), "state")
  cut = 0
  for folder, _, files in os.walk(root):
    for name in files:
      path = os.path.join(folder, name)
      if os.path.getsize(path) > 64 and not name.startswith("_"):
        with open(path, "r+b") as f:
          f.truncate(os.path.getsize(path) // 2)
        cut += 1
  assert cut


def test_an_unreadable_newest_checkpoint_falls_back_to_the_one_before(tmp_path, caplog):
  workdir = str(tmp_path)
  _run_with_checkpoints(workdir, [3, 5])
  _truncate_data(workdir, 5)
  run = RunBase(tiny_config(), workdir, total_steps=10, desc="test")
  try:
    step, meta, state = run._restore(("seed",), lambda meta: _state(0.0))
  finally:
    run.close()
  assert (step, meta["global_step"], float(np.asarray(state["w"])[0, 0])) == (3, 3, 3.0)
  aside = os.path.join(workdir, "checkpoints", "corrupt-5")
  assert os.path.isdir(aside) and "checkpoint 5 cannot be read" in caplog.text
  assert aside in caplog.text
  with open(os.path.join(workdir, "metrics.jsonl")) as f:  # truncated to checkpoint 3's records
    assert [json.loads(line)["step"] for line in f] == [3]


def test_no_readable_checkpoint_is_an_error_naming_each(tmp_path):
  workdir = str(tmp_path)
  _run_with_checkpoints(workdir, [3, 5])
  _truncate_data(workdir, 3)
  _truncate_data(workdir, 5)
  run = RunBase(tiny_config(), workdir, total_steps=10, desc="test")
  try:
    with pytest.raises(RuntimeError, match=r"no checkpoint can be read.*checkpoint 5 cannot be "
                       r"read.*corrupt-5.*checkpoint 3 cannot be read.*corrupt-3"):
      run._restore(("seed",), lambda meta: _state(0.0))
  finally:
    run.close()


def test_reduce_keeps_the_named_entries_of_a_kept_step_and_nothing_else(tmp_path):
  """TrainCheckpointer.reduce (checkpoint.kept_params_only): step 3 is rewritten with its
  policy only, read back equal, its meta replaced, its files smaller; step 5 is untouched."""
  directory = str(tmp_path / "checkpoints")
  rng = np.random.default_rng(0)
  big = {"judge": {"w": jnp.asarray(rng.standard_normal((64, 64)), jnp.float32)},
         "judge_opt": {"mu": jnp.asarray(rng.standard_normal((64, 64)), jnp.float32),
                       "nu": jnp.asarray(rng.standard_normal((64, 64)), jnp.float32)}}
  ckpt = TrainCheckpointer(directory, max_to_keep=1, keep_steps=(3,))
  ckpt.save(3, big, dict(_meta(3, "round end"), state_keys=sorted(big)))
  ckpt.save(5, _state(5.0), _meta(5, "newest"))

  def size(step):
    root = os.path.join(directory, str(step))
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)

  before = size(3)
  ckpt.reduce(3, {"judge": big["judge"]}, dict(_meta(3, "reduced"), state_keys=["judge"]))
  assert ckpt.all_steps() == [3, 5] and size(3) < 0.5 * before
  assert ckpt.restore_meta(3)["tag"] == "reduced"
  state = ckpt.restore_state(3, {"judge": big["judge"]})  # a full restore: nothing else is left
  np.testing.assert_array_equal(np.asarray(state["judge"]["w"]), np.asarray(big["judge"]["w"]))
  assert float(np.asarray(ckpt.restore_state(5, _state(0.0))["w"])[0, 0]) == 5.0
  assert sorted(os.listdir(directory)) == ["3", "5"]  # no side directory left
  ckpt.close()
