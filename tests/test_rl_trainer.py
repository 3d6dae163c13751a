"""Two-step judge and generator phases on a tiny model, on one device and on 8 host devices.

The toy world's word-level tokenizer, templates and pairs (arm_jax.toy) keep prompts near 100
tokens and the vocabulary at ~450, so both runs take seconds; the phases themselves are the
ones a pretrained model runs.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arm_jax import sharding
from arm_jax.models import Decoder, init_params
from arm_jax.rl import optim, phases
from arm_jax.rl.grpo import GRPOConfig
from arm_jax.rl.phases import PhaseConfig
from arm_jax.rl.policy import Policy
from arm_jax.rl.schedule import ScheduleConfig
from arm_jax.rl.trainer import AlternatingTrainer, TrainerConfig
from arm_jax.sampling import SamplingParams
from arm_jax.toy import warmstart, world
from arm_jax.toy.tokenizer import build_tokenizer
from rl_fixtures import TINY

PAIRS = [inst.pair for inst in world.make_instances(8, seed=3)]
TEMPLATES = dict(zip(("rubric", "judge"), warmstart.templates()))


@pytest.fixture(scope="module")
def tokenizer():
  return build_tokenizer()


def _policy(name, tokenizer, template, seed, mesh=None):
  cfg = TINY.replace(vocab_size=len(tokenizer), eos_token_ids=(tokenizer.eos_token_id,))
  rules = sharding.DEFAULT_RULES if mesh is not None else ()
  model = Decoder(cfg, mesh=mesh, rules=rules)
  params = init_params(model, jax.random.key(seed), mesh, rules or None)
  # A flatter output distribution than the N(0, 1) embedding gives: varied samples.
  params["embedding"] = params["embedding"] * 0.05
  return Policy(name, model, tokenizer, TEMPLATES[template], params,
                ref_params=jax.tree.map(jnp.copy, params))


def _config():
  grpo = dict(beta=0.01, mu=2, micro_batches=2)
  return TrainerConfig(
      schedule=ScheduleConfig(rounds=1, steps_per_phase=2),
      judge=PhaseConfig(GRPOConfig(group_size=4, **grpo), SamplingParams(max_new_tokens=12), 2),
      generator=PhaseConfig(GRPOConfig(group_size=4, **grpo), SamplingParams(max_new_tokens=10),
                            2),
      judge_optimizer=optim.OptimizerConfig(learning_rate=1e-3),
      generator_optimizer=optim.OptimizerConfig(learning_rate=1e-3),
      rubric_sampling=SamplingParams(max_new_tokens=10), rubric_batch=8,
      judge_greedy_max_new_tokens=12)


def _learnable(real, scored="texts"):
  """The real reward plus a term a random tiny model can earn (its characters' code sum
  mod 3), so the advantages are not all zero and both phases really update."""
  def rewards(texts, *args, **kwargs):
    out = real(texts, *args, **kwargs)
    own = texts if scored == "texts" else kwargs[scored]  # the generator's: its rubrics
    out["total"] = out["total"] + np.array([sum(map(ord, t)) % 3 for t in own], np.float32)
    return out
  return rewards


@pytest.fixture(scope="module", autouse=True)
def learnable_rewards():
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(phases, "judge_rewards", _learnable(phases.judge_rewards))
    mp.setattr(phases, "generator_rewards", _learnable(phases.generator_rewards, "rubrics"))
    yield


def _run(tokenizer, mesh=None):
  gen = _policy("generator", tokenizer, "rubric", 0, mesh)
  judge = _policy("judge", tokenizer, "judge", 1, mesh)
  start = {"generator": gen.params, "judge": judge.params}
  start = jax.tree.map(np.asarray, start)
  events = []
  trainer = AlternatingTrainer(gen, judge, _config(), log_fn=events.append)
  memory_during = []
  original = trainer.update_fn

  def spy(role):
    other = trainer.policies["generator" if role == "judge" else "judge"]
    memory_during.append({x.sharding.memory_kind for x in jax.tree.leaves(other.opt_state)})
    return original(role)
  trainer.update_fn = spy
  history = trainer.run(PAIRS, jax.random.key(0))
  return trainer, start, history, events, memory_during


@pytest.fixture(scope="module")
def single(tokenizer):
  return _run(tokenizer)


def test_two_steps_of_each_phase_report_every_metric(single):
  trainer, start, history, events, _ = single
  assert [(h["role"], h["step"]) for h in history] == [("judge", 0), ("judge", 1),
                                                        ("generator", 0), ("generator", 1)]
  keys = {"reward_mean", "reward_std", "accuracy", "clip_fraction", "kl", "entropy",
          "grad_norm", "grad_variance", "completion_length_mean", "seconds_generation",
          "seconds_reward", "seconds_update", "loss", "skipped_nonfinite", "zero_std_groups"}
  for h in history:
    assert keys <= set(h), keys - set(h)
    assert all(np.isfinite(h[k]) for k in keys), h
    assert h["skipped_nonfinite"] == 0.0
  assert "format_rate" in history[0] and "format_rate" in history[2]
  # Rubrics for the judge phase are sampled once, one per example its steps show: 2 steps of
  # 2 distinct pairs (the part holds all 8; the other 4 are never shown, so never sampled).
  sampled = [e for e in events if e.get("event") == "rubrics_sampled"]
  assert len(sampled) == 1 and sampled[0]["count"] == 4


def test_each_phase_trains_only_its_policy(single):
  trainer, start, history, _, memory_during = single
  for role in ("generator", "judge"):
    moved = [float(np.abs(np.asarray(a) - b).max()) for a, b in
             zip(jax.tree.leaves(trainer.policies[role].params), jax.tree.leaves(start[role]))]
    assert max(moved) > 0, role
  # While one policy trains, the other's optimizer state sits in host memory.
  assert all(kinds == {"pinned_host"} for kinds in memory_during), memory_during


def test_eight_devices_equal_one(tokenizer, single):
  mesh = sharding.make_mesh((2, 2, 2))
  trainer8, _, history8, _, _ = _run(tokenizer, mesh)
  trainer1, _, history1, _, _ = single
  for h1, h8 in zip(history1, history8):
    for k in ("reward_mean", "loss", "kl", "completion_length_mean"):
      np.testing.assert_allclose(h8[k], h1[k], rtol=1e-4, atol=1e-5, err_msg=k)
  for role in ("generator", "judge"):
    for a, b in zip(jax.tree.leaves(trainer8.policies[role].params),
                    jax.tree.leaves(trainer1.policies[role].params)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_judge_warmup_starts_its_updates_at_rate_zero(tokenizer):
  """optimizer warmup_steps (config judge.warmup_steps): the rate rises linearly from 0 over the
  first updates, so with one update per step and a 2-update warmup the judge is unchanged by its
  first step (rate 0) and moved by its second (rate 1e-3 / 2); without warmup the first step
  moves it. Each policy keeps its own schedule: the generator, without warmup, moves at once."""
  def judge_after_each_step(warmup):
    gen = _policy("generator", tokenizer, "rubric", 0)
    judge = _policy("judge", tokenizer, "judge", 1)
    grpo = GRPOConfig(group_size=4, beta=0.01, mu=1)
    cfg = dataclasses.replace(
        _config(), judge=PhaseConfig(grpo, SamplingParams(max_new_tokens=12), 2),
        judge_optimizer=optim.OptimizerConfig(learning_rate=1e-3, warmup_steps=warmup))
    snapshots = [jax.tree.map(np.asarray, {"judge": judge.params, "generator": gen.params})]
    trainer = AlternatingTrainer(gen, judge, cfg)

    def on_step(phase, step):
      snapshots.append(jax.tree.map(np.asarray, {r: trainer.policies[r].params
                                                 for r in ("judge", "generator")}))
      return False
    trainer.run(PAIRS, jax.random.key(0), on_step=on_step)
    return snapshots  # start, after judge steps 0 and 1, after generator steps 0 and 1

  def moved(a, b, role):
    return max(float(np.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a[role]),
                                                          jax.tree.leaves(b[role])))
  warm = judge_after_each_step(2)
  assert moved(warm[0], warm[1], "judge") == 0.0
  assert moved(warm[1], warm[2], "judge") > 0.0
  assert moved(warm[2], warm[3], "generator") > 0.0
  cold = judge_after_each_step(0)
  assert moved(cold[0], cold[1], "judge") > 0.0
