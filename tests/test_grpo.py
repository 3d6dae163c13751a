"""GRPO advantages, loss, and the jitted update against numpy / plain-JAX references."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from arm_jax.rl import advantages, losses
from arm_jax.rl.grpo import GRPOConfig, make_update
from arm_jax.rl.logprobs import token_logprobs
from rl_fixtures import full_logprobs, rollout, sequences, tiny_model

REWARDS = np.array([1, 0, 0, 1, 2, 2, 2, 2, 0, 1, 1, 1], np.float32)  # three groups of 4


def np_advantages(kind, r, g, eps=1e-6):
  out = []
  for grp in r.reshape(-1, g):
    for i, x in enumerate(grp):
      if kind == "grpo":
        out.append((x - grp.mean()) / (grp.std() + eps))
      elif kind == "drgrpo":
        out.append(x - grp.mean())
      else:
        out.append(x - (grp.sum() - x) / (g - 1))
  return np.array(out)


@pytest.mark.parametrize("kind", ["grpo", "drgrpo", "rloo"])
def test_advantages_match_numpy(kind):
  got = np.asarray(advantages.compute(kind, jnp.asarray(REWARDS), 4))
  np.testing.assert_allclose(got, np_advantages(kind, REWARDS, 4), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(got[4:8], 0.0)  # equal rewards: no signal


def test_advantages_hand_values():
  # group [1, 0, 0, 1]: mean .5, std .5 -> +-1; rloo: 1 - 1/3 = 2/3, 0 - 2/3 = -2/3
  np.testing.assert_allclose(advantages.grpo(jnp.asarray(REWARDS[:4]), 4), [1, -1, -1, 1],
                             rtol=1e-5)
  np.testing.assert_allclose(advantages.rloo(jnp.asarray(REWARDS[:4]), 4),
                             [2 / 3, -2 / 3, -2 / 3, 2 / 3], rtol=1e-6)
  with pytest.raises(ValueError, match="groups of 5"):
    advantages.grpo(jnp.asarray(REWARDS), 5)


def test_zero_std_fraction_counts_the_groups_without_signal():
  # groups [1,0,0,1], [2,2,2,2], [0,1,1,1]: one of three has equal rewards; in pairs, the
  # six groups [1,0] [0,1] [2,2] [2,2] [0,1] [1,1] have three
  assert float(advantages.zero_std_fraction(jnp.asarray(REWARDS), 4)) == pytest.approx(1 / 3)
  assert float(advantages.zero_std_fraction(jnp.asarray(REWARDS), 2)) == pytest.approx(1 / 2)
  assert float(advantages.zero_std_fraction(jnp.asarray(REWARDS), 12)) == 0.0
  for g in (2, 4):  # the same groups are those every variant gives zero advantage
    adv = np.asarray(advantages.compute("grpo", jnp.asarray(REWARDS), g)).reshape(-1, g)
    assert float(advantages.zero_std_fraction(jnp.asarray(REWARDS), g)) == pytest.approx(
        np.mean(np.all(adv == 0, axis=1)))


def np_loss(logp, old, ref, adv, mask, eps_low, eps_high, beta, agg):
  ratio = np.exp(logp - old)
  a = adv[:, None]
  pg = -np.minimum(ratio * a, np.clip(ratio, 1 - eps_low, 1 + eps_high) * a)
  kl = np.exp(ref - logp) - (ref - logp) - 1 if ref is not None else 0 * logp
  tok = (pg + beta * kl) * mask
  if agg == "token_mean":
    return tok.sum() / mask.sum()
  return (tok.sum(1) / np.maximum(mask.sum(1), 1)).mean()


@pytest.mark.parametrize("agg", ["seq_mean_token_mean", "token_mean"])
def test_token_loss_matches_numpy(agg):
  rng = np.random.RandomState(0)
  n, t = 6, 9
  logp, old, ref = (rng.randn(n, t) * 0.3 - 2 for _ in range(3))
  adv = rng.randn(n)
  mask = rng.rand(n, t) > 0.3
  terms = losses.token_terms(jnp.asarray(logp), jnp.asarray(old), jnp.asarray(ref),
                             jnp.asarray(adv), jnp.asarray(mask), eps_low=0.2, eps_high=0.28,
                             beta=0.05)
  total, denom = losses.aggregation(agg)(terms.loss, jnp.asarray(mask), jnp.float32(n),
                                         jnp.float32(mask.sum()))
  want = np_loss(logp, old, ref, adv, mask, 0.2, 0.28, 0.05, agg)
  np.testing.assert_allclose(float(total / denom), want, rtol=1e-5)
  # k3 is non-negative and clipping is reported where the clipped branch wins.
  assert float(terms.kl.min()) >= 0
  ratio = np.exp(logp - old)
  a = adv[:, None]
  expect_clip = ((a > 0) & (ratio > 1.28) | (a < 0) & (ratio < 0.8)) & mask
  np.testing.assert_array_equal(np.asarray(terms.clipped) > 0, expect_clip)


def test_chunked_logprobs_equal_full_logits():
  model, params = tiny_model()
  seq = sequences(n=4, prompt=6, completion=9)
  want, logits = full_logprobs(model, params, seq)
  for chunk in (1, 4, 5, 64):
    logp, entropy = token_logprobs(model, params, seq, chunk=chunk)
    np.testing.assert_allclose(np.asarray(logp), np.asarray(want), atol=1e-5)
  p = jax.nn.softmax(logits[:, :-1], -1)
  want_entropy = -(p * jnp.log(p)).sum(-1)
  np.testing.assert_allclose(np.asarray(entropy[:, 1:]), np.asarray(want_entropy), atol=1e-4)
  # The head over the completion columns only: same values there, zeros over the prompt.
  for chunk in (4, 64):
    logp, entropy = token_logprobs(model, params, seq.replace(score_from=6), chunk=chunk)
    np.testing.assert_allclose(np.asarray(logp[:, 6:]), np.asarray(want[:, 6:]), atol=1e-5)
    np.testing.assert_allclose(np.asarray(entropy[:, 6:]), np.asarray(want_entropy[:, 5:]),
                               atol=1e-4)
    assert not np.asarray(logp[:, :6]).any() and not np.asarray(entropy[:, :6]).any()
  with pytest.raises(ValueError, match="score_from=15"):
    token_logprobs(model, params, seq.replace(score_from=15))


@pytest.mark.parametrize("tied", [True, False])
def test_head_gradient_equals_full_logits(tied):
  """The hand-written VJP of the chunked head against jax.grad through full logits."""
  model, params = tiny_model(tie_word_embeddings=tied)
  seq = sequences(n=4, prompt=6, completion=9)
  weights = jnp.asarray(np.random.RandomState(3).randn(*seq.tokens.shape), jnp.float32)
  weights = weights * seq.loss_mask

  def loss(p, fn):
    return jnp.sum(fn(p) * weights)

  want = jax.grad(loss)(params, lambda p: full_logprobs(model, p, seq)[0])
  for first, chunk in ((1, 4), (6, 5), (6, 64)):
    got = jax.grad(loss)(params, lambda p: token_logprobs(
        model, p, seq.replace(score_from=first), chunk=chunk)[0])
    for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
      scale = float(jnp.max(jnp.abs(w)))
      assert float(jnp.max(jnp.abs(g - w))) <= 1e-5 * max(scale, 1.0), (path, first, chunk)


def _reference_grads(model, params, batch, cfg: GRPOConfig):
  """Plain-JAX loss on full logits over the un-split batch, differentiated by jax.grad."""
  adv = jnp.asarray(np_advantages(cfg.advantage, np.asarray(batch.rewards), cfg.group_size))

  def loss_fn(p):
    logp, _ = full_logprobs(model, p, batch.seq)
    mask = batch.seq.loss_mask.astype(jnp.float32)
    ratio = jnp.exp(logp - batch.old_logp)
    a = adv[:, None]
    pg = -jnp.minimum(ratio * a, jnp.clip(ratio, 1 - cfg.eps_low, 1 + cfg.eps_high) * a)
    kl = 0.0
    if batch.ref_logp is not None:
      d = batch.ref_logp - logp
      kl = jnp.exp(d) - d - 1
    tok = (pg + cfg.beta * kl) * mask
    if cfg.loss_aggregation == "token_mean":
      return tok.sum() / mask.sum()
    return (tok.sum(1) / jnp.maximum(mask.sum(1), 1)).mean()

  return jax.jit(jax.value_and_grad(loss_fn))(params)


def _sgd_step_grads(model, params, batch, cfg):
  """Run the jitted update with SGD(lr=1): the parameter change is minus the gradient."""
  update = make_update(model, cfg, optax.sgd(1.0), donate=False)
  new, _, metrics = update(params, optax.sgd(1.0).init(params), batch)
  return jax.tree.map(lambda a, b: a - b, params, new), metrics


@pytest.mark.parametrize("kind,agg,splits", [("grpo", "seq_mean_token_mean", (4,)),
                                             ("rloo", "token_mean", (2,))])
def test_update_gradient_matches_reference_and_accumulation_is_exact(kind, agg, splits):
  model, params = tiny_model()
  _, ref_params = tiny_model(seed=3)
  seq = sequences(n=8)
  batch = rollout(model, params, seq, REWARDS[:8], ref_params=ref_params, perturb=0.3)
  base = dict(group_size=4, advantage=kind, mu=1, beta=0.04, loss_aggregation=agg)
  loss, want = _reference_grads(model, params, batch, GRPOConfig(**base))
  for m in splits:
    got, metrics = _sgd_step_grads(model, params, batch, GRPOConfig(**base, micro_batches=m))
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      scale = float(np.abs(np.asarray(w)).max())  # f32 summation order: relative to the leaf
      np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5 * scale, rtol=0)
    np.testing.assert_allclose(float(metrics["loss"][0]), float(loss), rtol=1e-5, atol=1e-7)
    assert float(metrics["clip_fraction"][0]) > 0  # the perturbation makes some tokens clip
    # REWARDS[:8] in groups of 4: [1, 0, 0, 1] and [2, 2, 2, 2], the second without signal
    assert float(metrics["zero_std_groups"]) == 0.5


def test_mu_steps_equal_sequential_single_steps():
  """mu inner updates == mu separate updates that keep the same stored old log-probs."""
  model, params = tiny_model()
  batch = rollout(model, params, sequences(n=8), REWARDS[:8], perturb=0.1)
  opt = optax.adamw(1e-2)
  cfg = dict(group_size=4, beta=0.0, micro_batches=2)
  two, s2, m2 = make_update(model, GRPOConfig(mu=2, **cfg), opt, donate=False)(
      params, opt.init(params), batch)
  one = make_update(model, GRPOConfig(mu=1, **cfg), opt, donate=False)
  p, s, _ = one(params, opt.init(params), batch)
  p, s, m1 = one(p, s, batch)
  for a, b in zip(jax.tree.leaves(two), jax.tree.leaves(p)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
  assert m2["loss"].shape == (2,)
  np.testing.assert_allclose(float(m2["loss"][1]), float(m1["loss"][0]), rtol=1e-5)
  # The first inner step starts at the rollout policy's weights; the second has moved.
  assert float(m2["ratio_deviation"][1]) != float(m2["ratio_deviation"][0])


def test_gradient_variance_matches_per_micro_batch_reference():
  model, params = tiny_model()
  batch = rollout(model, params, sequences(n=8), REWARDS[:8], perturb=0.2)
  cfg = GRPOConfig(group_size=4, beta=0.0, mu=1, micro_batches=4)
  _, metrics = _sgd_step_grads(model, params, batch, cfg)
  # Reference: each micro-batch's own normalised gradient (advantages from the whole batch).
  adv = np_advantages("grpo", np.asarray(batch.rewards), 4)
  def loss_fn(p, sub):
    logp, _ = full_logprobs(model, p, sub.seq)
    mask = sub.seq.loss_mask.astype(jnp.float32)
    ratio = jnp.exp(logp - sub.old_logp)
    a = sub.rewards[:, None]
    tok = -jnp.minimum(ratio * a, jnp.clip(ratio, 0.8, 1.28) * a) * mask
    return (tok.sum(1) / jnp.maximum(mask.sum(1), 1)).mean()

  grad = jax.jit(jax.grad(loss_fn))
  flat = []
  for i in range(4):
    rows = slice(2 * i, 2 * i + 2)
    # The rewards field carries the whole batch's advantages into the per-slice loss.
    sub = jax.tree.map(lambda x: x[rows], batch._replace(rewards=jnp.asarray(adv)))
    g = grad(params, sub)
    flat.append(np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)]))
  flat = np.stack(flat)
  mean = flat.mean(0)
  want = ((flat - mean) ** 2).sum(1).sum() / 3 / (mean @ mean)
  np.testing.assert_allclose(float(metrics["grad_variance"][0]), want, rtol=1e-3)
  nan = _sgd_step_grads(model, params, batch, GRPOConfig(group_size=4, beta=0.0, mu=1))[1]
  assert np.isnan(float(nan["grad_variance"][0]))


def test_beta_zero_needs_no_reference_and_beta_needs_one():
  model, params = tiny_model()
  batch = rollout(model, params, sequences(n=8), REWARDS[:8])
  with pytest.raises(ValueError, match="ref_logp"):
    make_update(model, GRPOConfig(group_size=4, beta=0.1), optax.sgd(1.0), donate=False)(
        params, optax.sgd(1.0).init(params), batch)
  with pytest.raises(ValueError, match="advantage"):
    GRPOConfig(group_size=4, advantage="ppo")


def test_update_reports_each_inner_updates_schedule_step_and_its_rate():
  """update_count is the learning-rate schedule's step of each inner update; a skipped
  (non-finite) update leaves it, and with_learning_rate turns it into the rate applied."""
  from arm_jax.rl import optim  # noqa: PLC0415
  model, params = tiny_model()
  batch = rollout(model, params, sequences(n=8), REWARDS[:8], perturb=0.1)
  cfg = optim.OptimizerConfig(learning_rate=1e-3, warmup_steps=4)
  opt = optim.make_optimizer(cfg)
  update = make_update(model, GRPOConfig(group_size=4, beta=0.0, mu=2), opt, donate=False)
  p, s, m1 = update(params, opt.init(params), batch)
  p, s, m2 = update(p, s, batch)
  bad = batch._replace(rewards=batch.rewards.at[0].set(jnp.nan))
  _, _, m3 = update(p, s, bad)
  assert [np.asarray(m["update_count"]).tolist() for m in (m1, m2, m3)] == \
      [[0, 1], [2, 3], [4, 4]]
  assert np.asarray(m3["skipped_nonfinite"]).tolist() == [1.0, 1.0]
  # The trainer's records: the first inner update's rate, 1e-3 x 2/4 for the second call.
  host = {k: float(np.ravel(v)[0]) for k, v in m2.items()}
  host["update_count_first"] = host["update_count"]
  rec = optim.with_learning_rate(host, cfg)
  assert rec["learning_rate"] == pytest.approx(5e-4) and "update_count" not in rec
  assert "update_count" not in make_update(model, GRPOConfig(group_size=4, beta=0.0, mu=1),
                                           optax.sgd(1.0), donate=False)(
      params, optax.sgd(1.0).init(params), batch)[2]  # a fixed-rate optimizer has no schedule
