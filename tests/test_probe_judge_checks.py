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
