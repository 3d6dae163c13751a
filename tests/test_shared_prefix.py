"""GRPO's shared prompt (GRPOConfig.shared_prefix, token_logprobs' shared_prefix): each group's
prompt runs once and its keys and values serve the group's completions. Log-probs, their
gradient and a whole GRPO update must equal the plain full-logits reference."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from arm_jax.rl.grpo import GRPOConfig, make_update, sequence_logprobs
from arm_jax.rl.logprobs import token_logprobs
from rl_fixtures import full_logprobs, grouped_sequences, rollout, tiny_model

VARIANTS = [dict(lora_rank=4, attention_block=2),
            pytest.param(dict(), marks=pytest.mark.slow),
            pytest.param(dict(scan_layers=False), marks=pytest.mark.slow),
            pytest.param(dict(tie_word_embeddings=False, qk_norm=True), marks=pytest.mark.slow)]


@jax.jit  # one program, not an eager op per leaf
def _lora_nonzero(params, seed=5):
  """LoRA's B starts at zero (no change to the model): random B so the adapters matter."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  out = [0.1 * jax.random.normal(k, x.shape, x.dtype) if "lora_b" in jax.tree_util.keystr(p)
         else x for (p, x), k in zip(leaves, keys)]
  return jax.tree_util.tree_unflatten(treedef, out)


@pytest.mark.parametrize("overrides", VARIANTS, ids=["lora_blocked_attention", "default",
                                                     "unscanned", "untied_qk_norm"])
def test_shared_prefix_logprobs_and_gradient_equal_the_full_pass(overrides):
  model, params = tiny_model(**overrides)
  params = _lora_nonzero(params)
  seq = grouped_sequences(groups=3, group=4, prompt=6, completion=7)
  # Jitted: eager dispatch of these small programs' ops costs minutes on a 2-core CPU.
  want, _ = jax.jit(lambda p: full_logprobs(model, p, seq))(params)
  mask = np.asarray(seq.loss_mask)
  for chunk in (3, 64):
    logprobs = jax.jit(lambda p, g, c=chunk: token_logprobs(model, p, seq, chunk=c,
                                                           shared_prefix=g),
                       static_argnums=1)
    got, entropy = logprobs(params, 4)
    plain, plain_entropy = logprobs(params, 1)
    np.testing.assert_allclose(np.asarray(got)[mask], np.asarray(want)[mask], rtol=2e-6,
                               atol=1e-5)
    np.testing.assert_allclose(np.asarray(entropy)[mask], np.asarray(plain_entropy)[mask],
                               atol=1e-4)
    assert not np.asarray(got)[:, :6].any()
  weights = jnp.asarray(np.random.RandomState(3).randn(*mask.shape), jnp.float32) * mask

  def loss(p, shared):
    if shared:
      return jnp.sum(token_logprobs(model, p, seq, chunk=3, shared_prefix=4)[0] * weights)
    return jnp.sum(full_logprobs(model, p, seq)[0] * weights)

  grad = jax.jit(jax.grad(loss), static_argnums=1)
  want_g, got_g = grad(params, False), grad(params, True)
  for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got_g), jax.tree.leaves(want_g)):
    scale = float(jnp.max(jnp.abs(w)))
    assert scale > 0, path  # every parameter, the prompt's projections included, gets gradient
    assert float(jnp.max(jnp.abs(g - w))) <= 2e-5 * max(scale, 1.0), path


def test_a_group_that_does_not_divide_the_rows_is_refused():
  model, params = tiny_model()
  seq = grouped_sequences(groups=3, group=4)
  with pytest.raises(ValueError, match="shared_prefix=5 does not divide the batch's 12 rows"):
    token_logprobs(model, params, seq, shared_prefix=5)
  np.testing.assert_allclose(  # the jitted old-policy / reference pass shares too
      np.asarray(sequence_logprobs(model, 64, 4)(params, seq)),
      np.asarray(token_logprobs(model, params, seq)[0]), atol=1e-5)


@pytest.mark.parametrize("micro_batches", [pytest.param(1, marks=pytest.mark.slow), 3])
def test_a_grpo_update_with_shared_prompts_equals_the_plain_one(micro_batches):
  model, params = tiny_model()
  _, ref_params = tiny_model(seed=3)
  seq = grouped_sequences(groups=3, group=4)
  rewards = np.random.RandomState(1).rand(12)
  batch = rollout(model, params, seq, rewards, ref_params=ref_params, perturb=0.3)
  base = dict(group_size=4, mu=2, beta=0.04, micro_batches=micro_batches)
  opt = optax.adam(1e-2)
  outs = {}
  for shared in (False, True):
    update = make_update(model, GRPOConfig(**base, shared_prefix=shared), opt, donate=False)
    outs[shared] = update(params, opt.init(params), batch)
  (p0, _, m0), (p1, _, m1) = outs[False], outs[True]
  for a, b in zip(jax.tree.leaves(p0), jax.tree.leaves(p1)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=2e-5, rtol=0)
  for key in ("loss", "grad_norm", "kl", "clip_fraction"):
    np.testing.assert_allclose(np.asarray(m1[key]), np.asarray(m0[key]), rtol=1e-4, atol=1e-6)
  assert float(m0["clip_fraction"][0]) > 0  # the perturbation makes some tokens clip
  with pytest.raises(ValueError, match="micro-batch of 3 rows does not hold whole groups of 4"):
    make_update(model, GRPOConfig(**dict(base, micro_batches=4), shared_prefix=True), opt,
                donate=False)(params, opt.init(params), batch)
