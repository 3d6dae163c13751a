"""A non-finite loss or gradient never reaches the weights: the GRPO, DPO and SFT updates skip it
(parameters and optimizer state bit-identical to their inputs, skipped_nonfinite = 1), a run
stops after checkpoint.max_nonfinite_updates skips in a row naming where, and a checkpoint is
never written with a non-finite value."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from arm_jax.rl.dpo import DPOConfig, make_dpo_update
from arm_jax.rl.grpo import GRPOConfig, make_update
from arm_jax.rl.sft import SFTConfig, make_sft_update
from arm_jax.training.loop import RunBase, nonfinite_leaves
from rl_fixtures import rollout, sequences, tiny_model
from test_train_resume import tiny_config


def _same(a, b):
  return all(np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True)
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _changed(a, b):
  return not _same(a, b)


def test_grpo_update_skips_a_nan_reward_and_applies_a_finite_one():
  model, params = tiny_model()
  seq = sequences(n=8)
  opt = optax.adamw(1e-2)
  update = make_update(model, GRPOConfig(group_size=4, beta=0.0, mu=2), opt, donate=False)
  state = opt.init(params)
  rewards = np.array([1, 0, 0, 1, 0, 1, 1, 0], np.float32)
  bad = rollout(model, params, seq, np.where(np.arange(8) == 2, np.nan, rewards))
  new, new_state, metrics = update(params, state, bad)
  assert _same(new, params) and _same(new_state, state)
  np.testing.assert_array_equal(np.asarray(metrics["skipped_nonfinite"]), [1.0, 1.0])
  new, new_state, metrics = update(params, state, rollout(model, params, seq, rewards))
  assert _changed(new, params) and _changed(new_state, state)
  np.testing.assert_array_equal(np.asarray(metrics["skipped_nonfinite"]), [0.0, 0.0])


def test_dpo_update_skips_a_nan_reference_log_prob():
  model, params = tiny_model()
  chosen, rejected = sequences(n=4, seed=1), sequences(n=4, seed=2)
  opt = optax.adamw(1e-2)
  state = opt.init(params)
  update = make_dpo_update(model, DPOConfig(), opt, donate=False)
  ref = jnp.zeros((4,), jnp.float32)
  new, new_state, metrics = update(params, state, (chosen, rejected, ref.at[1].set(jnp.nan), ref))
  assert _same(new, params) and _same(new_state, state)
  assert float(metrics["skipped_nonfinite"]) == 1.0
  new, _, metrics = update(params, state, (chosen, rejected, ref, ref))
  assert _changed(new, params) and float(metrics["skipped_nonfinite"]) == 0.0


def test_sft_update_skips_an_infinite_loss():
  model, params = tiny_model()
  opt = optax.adamw(1e-2)
  state = opt.init(params)
  update = make_sft_update(model, SFTConfig(), opt, donate=False)
  poisoned = dict(params, embedding=params["embedding"].at[3, 0].set(jnp.inf))
  seq = sequences(n=4)
  seq = seq.replace(tokens=seq.tokens.at[:, 6].set(3))  # every row reads the poisoned row
  new, new_state, metrics = update(poisoned, state, seq)
  assert _same(new, poisoned) and _same(new_state, state)
  assert float(metrics["skipped_nonfinite"]) == 1.0


def test_a_run_stops_after_max_nonfinite_updates_in_a_row(tmp_path):
  config = tiny_config({"checkpoint.max_nonfinite_updates": 3, "log.tensorboard": False})
  run = RunBase(config, str(tmp_path), total_steps=10, desc="test")
  try:
    for step, skipped in enumerate([1.0, 1.0, 0.0, 1.0, 1.0]):  # a finite one resets the count
      run.record(dict(phase="judge", step=step, loss=0.1, skipped_nonfinite=skipped))
    assert run.nonfinite_in_a_row == 2
    with pytest.raises(FloatingPointError, match=r"3 updates in a row .* the last at phase "
                       r"judge, step 5 .*max_nonfinite_updates=3"):
      run.record(dict(phase="judge", step=5, loss=float("nan"), skipped_nonfinite=0.5))
  finally:
    run.close()


def test_a_checkpoint_is_never_written_with_a_nonfinite_value(tmp_path):
  config = tiny_config({"log.tensorboard": False})
  run = RunBase(config, str(tmp_path), total_steps=1, desc="test")
  good = {"w": jnp.ones((3, 2)), "count": jnp.zeros((), jnp.int32)}
  bad = {"w": jnp.ones((3, 2)).at[1, 1].set(jnp.nan), "count": jnp.zeros((), jnp.int32)}
  assert nonfinite_leaves(good) == [] and nonfinite_leaves(bad) == ["['w']"]
  try:
    with pytest.raises(FloatingPointError, match=r"not saving checkpoint 0: non-finite values "
                       r"in \['w'\]"):
      run._save_state(bad)
    assert run.ckpt.latest_step() is None
    run._save_state(good)
    assert run.ckpt.latest_step() == 0
  finally:
    run.close()
