"""experiments/probe_judge_checks.py: the decision tokens it reads in a verifier judgment."""

import os
import sys

import numpy as np
import pytest

from arm_jax import assets
from arm_jax.data.verifier_sft import judgment_text
from arm_jax.tokenizer import load_tokenizer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "experiments"))
from probe_judge_checks import (  # noqa: E402  pylint: disable=wrong-import-position
    decisions, fit_logistic, linear_probe, read_check)


@pytest.fixture(scope="module")
def tokenizer():
  return load_tokenizer(assets.smollm2_gguf())


@pytest.mark.parametrize("follows_a, follows_b, winner", [
    ((True, False, True), (False, False, True), "A"),
    ((False,), (True,), "B"),
])
@pytest.mark.parametrize("with_evidence", [False, True])
def test_each_hard_rule_check_and_the_winner_are_found_at_their_token(tokenizer, follows_a,
                                                                      follows_b, winner,
                                                                      with_evidence):
  descriptions = [f"Constraint number {i}, with: punctuation." for i in range(len(follows_a))]
  found_a = [f'{i + 2} words in capitals: "OK", so "met"' for i in range(len(follows_a))]
  found_b = ['it ends with "... it is not met, so it is met"'] * len(follows_b)
  target = judgment_text(descriptions, follows_a, follows_b, winner,
                         *((found_a, found_b) if with_evidence else (None, None)))
  found = decisions(tokenizer, target)
  # One check per hard rule and response (principles are not decisions), then the winner.
  truths = ["Met" if ok else "Not" for ok in (*follows_a, *follows_b)] + [winner]
  assert [t for _, _, t, _ in found] == truths
  assert [k for _, k, _, _ in found] == ["check"] * (len(truths) - 1) + ["winner"]
  ids = tokenizer.encode(target, add_special_tokens=False)
  words = [t.lower() if with_evidence and t in ("Met", "Not") else t for t in truths]
  assert [tokenizer.decode([ids[o]]) for o, _, _, _ in found] == [f" {w}" for w in words]
  # The generation probe feeds the target up to each check's "Justification:".
  for _, kind, _, where in found[:-1]:
    assert kind == "check" and target[:where].endswith("[Hard Rule]: Justification:")


@pytest.mark.parametrize("text, expected", [
    (" Met: the response follows this instruction.", ("Met", 0, "")),
    (" Not met: the response does not follow this instruction.", ("Not", 0, "")),
    (' 3 sections marked SECTION X, so it is met.', ("Met", 38, "3 sections marked SECTION X")),
    (' A comma in "a, so it is met", so it is not met.',
     ("Not", 39, 'A comma in "a, so it is met"')),
    (" The response is fine.", (None, None, "")),
    (" Metropolis", (None, None, "")),
])
def test_a_written_check_line_is_read_for_its_result_and_evidence(text, expected):
  assert read_check(text) == expected


@pytest.mark.parametrize("l2", [0.0, 0.1])
def test_logistic_fit_is_the_penalized_optimum(l2):
  """The Newton solution zeroes the gradient of mean log-loss + l2/2 |w|^2 (bias free),
  computed here on its own; with no penalty it recovers the generating weights."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(4000, 3))
  true = np.array([2.0, -1.0, 0.5, 0.3])
  y = (rng.random(4000) < 1 / (1 + np.exp(-(x @ true[:3] + true[3])))).astype(float)
  w = fit_logistic(x, y, l2)
  p = 1 / (1 + np.exp(-(x @ w[:3] + w[3])))
  grad = np.concatenate([x.T @ (p - y) / len(y) + l2 * w[:3], [np.mean(p - y)]])
  assert np.max(np.abs(grad)) < 1e-8
  if l2 == 0.0:
    np.testing.assert_allclose(w, true, atol=0.15)
  else:
    assert np.linalg.norm(w[:3]) < np.linalg.norm(fit_logistic(x, y, 0.0)[:3])


def test_linear_probe_against_the_kind_prior():
  """Labels set by feature 0's sign are read out exactly; the kind prior is each kind's
  training majority, counted here by hand."""
  rng = np.random.default_rng(1)
  x = rng.normal(size=(300, 4))
  y = x[:, 0] > 0
  kinds = ["a" if i % 3 else "b" for i in range(300)]
  # kind "a" is mostly met in training, "b" mostly not
  y_train = np.where(np.array(kinds) == "a", True, False)
  y_train[:10] = ~y_train[:10]
  out = linear_probe(x[:200], y[:200], kinds[:200], x[200:], y[200:], kinds[200:])
  assert out["probe"] > 0.95 and out["train_checks"] == 200 and out["test_checks"] == 100
  prior = {k: np.mean([t for t, kk in zip(y[:200], kinds[:200]) if kk == k]) >= 0.5
           for k in "ab"}
  expect = np.mean([t == prior[k] for t, k in zip(y[200:], kinds[200:])])
  assert out["kind_prior"] == pytest.approx(expect)
  assert out["majority"] == pytest.approx(np.mean(y[200:] == (np.mean(y[:200]) >= 0.5)))
  assert sum(v["checks"] for v in out["kinds"].values()) == 100
  # labels set by the kind, features that are noise: the kind prior is exact, and the read-out,
  # which does not see the kind, about the overall majority's 2/3
  noise = linear_probe(rng.normal(size=(200, 4)), y_train[:200], kinds[:200],
                       rng.normal(size=(100, 4)), y_train[200:], kinds[200:])
  assert noise["kind_prior"] == 1.0 and noise["probe"] < 0.8


@pytest.mark.parametrize("scan_layers", [True, False])
def test_layer_states_are_the_blocks_outputs(scan_layers):
  """The last block's output, final-normed, is the model's own hidden state; the first is one
  block applied to the embeddings; and the LoRA layout (scanned or not) changes neither."""
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415
  from probe_judge_checks import layer_states  # noqa: PLC0415
  from arm_jax.models.decoder import Block, RMSNorm, unstack_layers  # noqa: PLC0415
  from rl_fixtures import tiny_model  # noqa: PLC0415

  model, params = tiny_model(seed=3, num_layers=3, scan_layers=scan_layers, lora_rank=2,
                             remat_policy="full" if scan_layers else "none")
  # non-zero adapters, so a layout slip that drops them shows
  params = jax.tree_util.tree_map_with_path(
      lambda path, x: x + 0.05 if "lora_b" in str(path[-1]) else x, params)
  tokens = jnp.asarray(np.random.RandomState(0).randint(2, 64, (2, 9)), jnp.int32)
  states = np.asarray(layer_states(model, params, tokens))
  assert states.shape == (3, 2, 9, 32)
  positions = jnp.broadcast_to(jnp.arange(9)[None], tokens.shape)
  hidden = model.apply({"params": params}, tokens, attention_mask=jnp.ones_like(tokens, bool),
                       positions=positions, return_hidden=True)
  cfg = model.config
  normed = RMSNorm(cfg.rms_norm_eps, "embed", jnp.float32, jnp.float32).apply(
      {"params": params["final_norm"]}, jnp.asarray(states[-1]))
  np.testing.assert_allclose(normed, hidden, atol=1e-5)
  first_layer = unstack_layers(params)["layers_0"] if scan_layers else params["layers_0"]
  x0 = jnp.take(params["embedding"], tokens, axis=0)
  one, _ = Block(cfg.replace(scan_layers=False)).apply(
      {"params": first_layer}, x0, positions, jnp.ones_like(tokens, bool), None, None, None,
      None)
  np.testing.assert_allclose(states[0], one, atol=1e-5)
  assert np.abs(states[1] - states[0]).max() > 1e-3  # a later layer is another state


def test_probe_layers_are_parsed_and_bad_ones_named():
  from probe_judge_checks import parse_layers  # noqa: PLC0415
  assert parse_layers("all", 4) == [0, 1, 2, 3]
  assert parse_layers("3,-1,0", 30) == [0, 3, 29]
  with pytest.raises(ValueError, match="layer 30 is outside"):
    parse_layers("30", 30)
  with pytest.raises(ValueError, match="'x' is not a layer index"):
    parse_layers("1,x", 30)
