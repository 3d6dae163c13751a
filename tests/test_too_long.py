"""A pair whose prompt cannot fit the context is counted and skipped when the data is loaded,
never at a phase step (where it would fail at the same step after every resume)."""

import json
import os

import pytest

from arm_jax.core import PreferencePair
from arm_jax.training import setup as train_setup
from arm_jax.training.loop import run_train
from test_train_resume import OVERRIDES, tiny_config

LONG = " ".join(["moon"] * 9000)  # 9000 toy tokens: over the sampler's largest bucket


@pytest.fixture
def with_long_pairs(monkeypatch):
  """The toy builder with a 9000-token pair beside every train and held-out pair."""
  kinds = ("toy", "toy")
  train_setup.builder(tiny_config())  # imports the toy plug-in, which registers its builder
  real = train_setup._BUILDERS[kinds]  # pylint: disable=protected-access

  def build(config, mesh, rules):
    built = real(config, mesh, rules)
    long_pair = lambda p: PreferencePair(p.instruction, LONG, p.response_b, 0)  # noqa: E731
    injected.update(train=len(built.train), held_out=len(built.held_out))
    built.train = [q for p in built.train for q in (p, long_pair(p))]
    built.held_out = [q for p in built.held_out for q in (long_pair(p), p)]
    return built

  injected = {}
  monkeypatch.setitem(train_setup._BUILDERS, kinds, build)  # pylint: disable=protected-access
  return injected


def test_the_toy_tokenizer_makes_the_long_pair_9000_tokens(with_long_pairs):
  setup = train_setup.build(tiny_config())
  assert len(setup.judge.tokenizer(LONG, add_special_tokens=False)["input_ids"]) == 9000


def test_over_long_pairs_are_counted_and_the_run_proceeds(with_long_pairs, tmp_path):
  overrides = dict(OVERRIDES, **{"warmstart.steps": 0, "warmstart.generator_steps": 0,
                                 "schedule.steps_per_phase": 1})
  clean = train_setup.build(tiny_config(overrides))
  n = with_long_pairs
  assert clean.too_long == (n["train"], n["held_out"])  # each injected pair, no other
  assert len(clean.train) == n["train"]
  done = run_train(tiny_config(overrides), str(tmp_path))
  with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  assert records[0] == dict(phase="data", train_pairs=n["train"],
                            held_out_pairs=min(n["held_out"], OVERRIDES["eval.max_pairs"]),
                            too_long_train=n["train"], too_long_held_out=n["held_out"],
                            global_step=0)
  assert [r["phase"] for r in records] == ["data", "eval", "judge", "generator", "eval", "done"]
  assert done["phase"] == "done"


def test_room_leaves_space_for_the_longest_generation():
  setup = train_setup.build(tiny_config())
  judge = setup.judge
  positions = judge.model.config.max_position_embeddings
  assert judge.room(144) == min(positions - 144, max(judge.sampler.buckets))
  text = " ".join(["moon"] * 100)
  n = len(judge.encode([text])[0])
  assert judge.fit([text, text + " moon"], n) == [True, False]  # exact at the boundary


def test_warm_start_targets_longer_than_the_sampling_limits_are_counted_and_logged(caplog):
  setup = train_setup.build(tiny_config())
  judge_targets = [ex.target for ex in setup.sft_examples["judge"]]
  assert judge_targets
  tok = setup.judge.tokenizer
  lengths = sorted(len(tok(t, add_special_tokens=False)["input_ids"]) + 1  # + the end token
                   for t in judge_targets)
  rl_limit, eval_limit = lengths[len(lengths) // 2], lengths[-1] - 1
  config = tiny_config(dict(OVERRIDES, **{"judge.max_new_tokens": rl_limit,
                                          "eval.judge_max_new_tokens": eval_limit}))
  policies = {"generator": setup.generator, "judge": setup.judge}
  cut = train_setup.warm_start_targets_cut(policies, setup.sft_examples, config)
  assert cut["judge"] == {"examples": len(lengths), "longest": lengths[-1],
                          "judge.max_new_tokens": sum(n > rl_limit for n in lengths),
                          "eval.judge_max_new_tokens": sum(n > eval_limit for n in lengths)}
  assert 0 < cut["judge"]["judge.max_new_tokens"] < len(lengths)
  assert cut["judge"]["eval.judge_max_new_tokens"] >= 1  # the longest, at least
  # Limits that hold every target: nothing to report; nor for a role without a warm start.
  roomy = tiny_config(dict(OVERRIDES, **{"judge.max_new_tokens": lengths[-1],
                                         "eval.judge_max_new_tokens": lengths[-1],
                                         "generator.max_new_tokens": 4096,
                                         "eval.rubric_max_new_tokens": 4096}))
  assert train_setup.warm_start_targets_cut(policies, setup.sft_examples, roomy) == {}
  no_sft = tiny_config(dict(OVERRIDES, **{"warmstart.steps": 0, "warmstart.generator_steps": 0,
                                          "judge.max_new_tokens": 1}))
  assert train_setup.warm_start_targets_cut(policies, setup.sft_examples, no_sft) == {}
  with caplog.at_level("WARNING"):
    train_setup.build(config)
  assert any("warm start: of the judge's" in r.getMessage() and
             f"over judge.max_new_tokens={rl_limit}" in r.getMessage() for r in caplog.records)
