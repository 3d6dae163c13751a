"""Using the reward model for a policy: the DPO loss with its SFT term, the two-order consistency
filter and the online GRPO reward against hand-computed values; the DPO update against a full-
logits reference; the reward model's comparisons with scripted rubric and judge callables."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from arm_jax.downstream import reward_model as rm
from arm_jax.evaluation.runner import Generation
from arm_jax.rl.dpo import DPOConfig, dpo_terms, make_dpo_update, sequence_logprobs
from arm_jax.sampling import SamplingParams
from rl_fixtures import full_logprobs, sequences, tiny_model


def _softplus(x):
  return math.log1p(math.exp(x))


def test_dpo_terms_equal_hand_computed_values():
  # Pair 0: the policy moved toward the chosen response; pair 1: toward the rejected one.
  terms = dpo_terms(jnp.array([-10.0, -8.0]), jnp.array([-12.0, -6.0]),
                    jnp.array([-11.0, -8.0]), jnp.array([-11.0, -8.0]),
                    jnp.array([5.0, 4.0]), beta=0.1, sft_weight=0.2)
  # Pair 0: rewards 0.1 and -0.1, margin 0.2; -log sigmoid(0.2) = log(1 + e^-0.2);
  # NLL per token 10 / 5 = 2.
  # Pair 1: rewards 0 and 0.2, margin -0.2; NLL 8 / 4 = 2.
  np.testing.assert_allclose(terms["margin"], [0.2, -0.2], rtol=1e-6)
  np.testing.assert_allclose(terms["dpo_loss"], [_softplus(-0.2), _softplus(0.2)], rtol=1e-6)
  np.testing.assert_allclose(terms["nll"], [2.0, 2.0], rtol=1e-6)
  np.testing.assert_allclose(terms["loss"], [_softplus(-0.2) + 0.4, _softplus(0.2) + 0.4],
                             rtol=1e-6)
  np.testing.assert_array_equal(terms["accuracy"], [1.0, 0.0])
  np.testing.assert_allclose(terms["chosen_reward"], [0.1, 0.0], atol=1e-6)
  np.testing.assert_allclose(terms["rejected_reward"], [-0.1, 0.2], atol=1e-6)


def test_dpo_config_rejects_bad_values():
  with pytest.raises(ValueError, match="beta"):
    DPOConfig(beta=0.0)
  with pytest.raises(ValueError, match="sft_weight"):
    DPOConfig(sft_weight=-1.0)


def _pairs(model, params):
  chosen, rejected = sequences(n=4, seed=1), sequences(n=4, seed=2)
  ref_c = sequence_logprobs(model, params, chosen)
  ref_r = sequence_logprobs(model, params, rejected)
  return chosen, rejected, ref_c, ref_r


def test_dpo_update_equals_the_full_logits_loss_and_its_gradient():
  model, params = tiny_model()
  chosen, rejected, ref_c, ref_r = _pairs(model, params)
  cfg = DPOConfig(beta=0.5, sft_weight=0.2)

  def reference_loss(p):
    pc = jnp.where(chosen.loss_mask, full_logprobs(model, p, chosen)[0], 0).sum(1)
    pr = jnp.where(rejected.loss_mask, full_logprobs(model, p, rejected)[0], 0).sum(1)
    tokens = chosen.loss_mask.sum(1)
    margin = cfg.beta * ((pc - ref_c) - (pr - ref_r))
    return jnp.mean(jax.nn.softplus(-margin) + cfg.sft_weight * (-pc / tokens))

  loss, grads = jax.value_and_grad(reference_loss)(params)
  sgd = optax.sgd(1.0)
  new, _, metrics = make_dpo_update(model, cfg, sgd, donate=False)(
      params, sgd.init(params), (chosen, rejected, ref_c, ref_r))
  # At the reference the margin is 0: the DPO part is log 2 (to float32 rounding: the jitted
  # forward and the reference's differ in the last bits).
  np.testing.assert_allclose(metrics["dpo_loss"], math.log(2), atol=2e-5)
  np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-5)
  for got, p, g in zip(jax.tree.leaves(new), jax.tree.leaves(params), jax.tree.leaves(grads)):
    np.testing.assert_allclose(p - got, g, rtol=2e-4, atol=1e-6)


def test_dpo_micro_batches_give_the_unsplit_update():
  model, params = tiny_model()
  batch = _pairs(model, params)
  # Plain SGD: the new parameters differ by the gradients' difference. (AdamW divides by the
  # root of the squared gradient, so a near-zero gradient's float noise became a visible step.)
  opt = optax.sgd(1.0)
  outs = []
  for m in (1, 2, 4):
    new, _, metrics = make_dpo_update(model, DPOConfig(micro_batches=m), opt, donate=False)(
        params, opt.init(params), batch)
    outs.append((new, metrics))
  for new, metrics in outs[1:]:
    np.testing.assert_allclose(metrics["loss"], outs[0][1]["loss"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(outs[0][0])):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_dpo_steps_move_the_policy_toward_the_chosen_responses():
  model, params = tiny_model()
  batch = _pairs(model, params)
  opt = optax.adamw(3e-3)
  update = make_dpo_update(model, DPOConfig(beta=0.1, sft_weight=0.0), opt, donate=False)
  state = opt.init(params)
  first = None
  for _ in range(20):
    params, state, metrics = update(params, state, batch)
    first = metrics if first is None else first
  assert float(metrics["margin"]) > float(first["margin"]) + 0.1
  assert float(metrics["accuracy"]) == 1.0 and float(metrics["dpo_loss"]) < math.log(2)


# --- the two-order filter and the online reward ---------------------------------------------------

def _cmp(first, second, a="x", b="y"):
  return rm.Comparison("p", a, b, "r", first, second, ("", ""))


@pytest.mark.parametrize("first, second, want", [
    ("A", "B", (0, rm.KEPT)),  # a wins in slot A and in slot B
    ("B", "A", (1, rm.KEPT)),  # b wins in both orders
    ("A", "A", (None, rm.INCONSISTENT)),  # slot A wins both times: position, not content
    ("B", "B", (None, rm.INCONSISTENT)),
    (None, "B", (None, rm.UNPARSEABLE)),
    ("A", None, (None, rm.UNPARSEABLE)),
])
def test_preference_keeps_only_order_consistent_verdicts(first, second, want):
  assert rm.preference(_cmp(first, second)) == want


def test_identical_responses_are_dropped_as_such():
  assert rm.preference(_cmp("A", "B", a="same", b="same")) == (None, rm.IDENTICAL)


@pytest.mark.parametrize("first, second, reward", [
    ("A", "B", 1.0), ("A", "A", 0.5), ("B", "B", 0.5), ("B", "A", 0.0),
    (None, "B", 0.5), (None, None, 0.0), ("A", None, 0.5)])
def test_online_reward_is_the_share_of_orders_won(first, second, reward):
  assert rm.online_reward(_cmp(first, second)) == reward


def test_compare_judges_both_orders_under_one_cached_rubric(monkeypatch):
  """Scripted callables: the judge prefers the response containing 'good' but always says A on
  prompt 'biased'; rubrics are counted."""
  rubric_calls, seen = [], []

  def rubric_fn_factory(generator, max_new_tokens, batch_size, key, journal):
    assert journal is None  # the model has no journal unless a job gives it one
    def rubric_fn(instructions):
      rubric_calls.append(list(instructions))
      return [Generation(f"rubric for {i}", 3) for i in instructions]
    return rubric_fn

  def judge_fn_factory(judge, sampling, batch_size, key, journal):
    assert journal is None
    def judge_fn(requests, k):
      out = []
      for r in requests:
        seen.append((r.instruction, r.rubric, r.response_a, r.response_b))
        slot = "A" if r.instruction == "biased" or "good" in r.response_a else "B"
        out.append([Generation(f"--- Final Judgment ---\nJustification: x.\nWinner: Response "
                               f"{slot}", 9)] * k)
      return out
    return judge_fn

  monkeypatch.setattr(rm, "policy_rubric_fn", rubric_fn_factory)
  monkeypatch.setattr(rm, "policy_judge_fn", judge_fn_factory)
  model = rm.RewardModel(None, None, rubric_max_new_tokens=8,
                         judge_sampling=SamplingParams(8, greedy=True), batch_size=4)
  got = model.compare(["q", "q", "biased"], ["good 1", "bad 2", "good 3"],
                      ["bad 1", "good 2", "bad 3"])
  assert rubric_calls == [["q", "biased"]]  # one rubric per distinct prompt
  assert seen[:2] == [("q", "rubric for q", "good 1", "bad 1"),
                      ("q", "rubric for q", "bad 1", "good 1")]
  assert [(c.first, c.second) for c in got] == [("A", "B"), ("B", "A"), ("A", "A")]
  assert [rm.preference(c) for c in got] == [(0, rm.KEPT), (1, rm.KEPT),
                                            (None, rm.INCONSISTENT)]
  model.compare(["q"], ["good"], ["bad"])
  assert rubric_calls == [["q", "biased"]]  # cached across calls
  with pytest.raises(ValueError, match="one of each per comparison"):
    model.compare(["q"], ["a", "b"], ["c"])


def test_label_pairs_keeps_consistent_pairs_and_counts_the_rest():
  from arm_jax.downstream import dpo  # noqa: PLC0415

  class Scripted:
    def compare(self, prompts, a, b, key=None):
      verdicts = {"p1": ("A", "B"), "p2": ("B", "A"), "p3": ("A", "A"), "p4": (None, "A"),
                  "p5": ("A", "B")}
      return [rm.Comparison(p, x, y, "r", *verdicts[p], ("", "")) for p, x, y in
              zip(prompts, a, b)]

  got = dpo.label_pairs(Scripted(), ["p1", "p2", "p3", "p4", "p5"],
                        ["a1", "a2", "a3", "a4", "same"], ["b1", "b2", "b3", "b4", "same"])
  assert (got.prompts, got.chosen, got.rejected) == (["p1", "p2"], ["a1", "b2"], ["b1", "a2"])
  assert got.counts == dict(kept=2, identical=1, unparseable=1, inconsistent=1)
  assert got.consistency_rate == 2 / 3  # kept over kept + inconsistent


def test_grpo_step_rewards_each_rollout_against_the_greedy_reference(monkeypatch):
  """Wiring with fakes: rollouts are judged prompt-major against their own prompt's greedy a0,
  and the update receives Eq. 16's rewards in the sampler's order."""
  from arm_jax.downstream import grpo  # noqa: PLC0415
  from arm_jax.rl.grpo import GRPOConfig  # noqa: PLC0415
  from arm_jax.rl.phases import PhaseConfig  # noqa: PLC0415

  class FakePolicy:
    def encode(self, texts):
      return [[len(t)] for t in texts]

    def generate(self, ids, sampling, key, num_samples):
      assert not sampling.greedy and num_samples == 2
      return "out", ["win", "lose", "tie", "win"]  # prompt-major: p1 x2, p2 x2

  greedy_calls = []

  def fake_generate_in_batches(policy, ids, sampling, key, batch_size, k):
    greedy_calls.append(sampling.greedy)
    return [[Generation(f"a0 of {i[0]}", 3)] for i in ids]

  class Judge:
    def compare(self, prompts, a, b, key=None):
      slots = {"win": ("A", "B"), "lose": ("B", "A"), "tie": ("A", "A")}
      return [rm.Comparison(p, x, y, "r", *slots[x], ("", "")) for p, x, y in zip(prompts, a, b)]

  seen = {}

  def fake_train(policy, cfg, update, ids, out, rewards):
    seen.update(ids=ids, out=out, rewards=list(rewards))
    return {"loss": 0.0}

  monkeypatch.setattr(grpo, "generate_in_batches", fake_generate_in_batches)
  monkeypatch.setattr(grpo, "train_on_rollout", fake_train)
  calls = []
  judge = Judge()
  original = judge.compare
  judge.compare = lambda p, a, b, key: calls.append((p, a, b)) or original(p, a, b)
  cfg = PhaseConfig(GRPOConfig(group_size=2), SamplingParams(8, temperature=1.0), 2)
  metrics = grpo.grpo_step(FakePolicy(), judge, cfg, None, ["p1", "p22"], jax.random.key(0))
  assert greedy_calls == [True]
  assert calls == [(["p1", "p1", "p22", "p22"], ["win", "lose", "tie", "win"],
                    ["a0 of 2", "a0 of 2", "a0 of 3", "a0 of 3"])]
  assert seen["rewards"] == [1.0, 0.0, 0.5, 1.0] and seen["ids"] == [[2], [3]]
  assert metrics["reward_mean"] == 0.625 and metrics["flat_groups"] == 0.0
  assert metrics["consistency_rate"] == 0.75  # the tie's two orders disagree
