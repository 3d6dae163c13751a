"""Decoder logits against transformers (torch, f32) for tiny random Llama/Qwen2/Qwen3 models."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arm_jax.models import KVCache, load_pretrained
from arm_jax.models.decoder import out_major_params
from hf_reference import hf_logits, make_hf_model

ARCHS = ["llama", "llama_bias", "qwen2", "qwen3"]


def _batch(vocab=101, lengths=(9, 5, 7), seed=0):
  """Left-padded batch of random prompts with different lengths."""
  rng = np.random.RandomState(seed)
  t = max(lengths)
  ids = np.zeros((len(lengths), t), np.int32)
  mask = np.zeros((len(lengths), t), np.int32)
  for row, n in enumerate(lengths):
    ids[row, t - n:] = rng.randint(3, vocab, n)
    mask[row, t - n:] = 1
  return ids, mask


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("arch", ARCHS)
def test_logits_match_transformers_left_padded(tmp_path, arch, tie):
  hf = make_hf_model(tmp_path, arch, tie=tie)
  model, params = load_pretrained(str(tmp_path))
  assert model.config.head_dim * model.config.num_heads != model.config.hidden_size
  assert model.config.num_kv_heads < model.config.num_heads
  ids, mask = _batch()
  ref = hf_logits(hf, ids, mask)
  ours = np.asarray(model.apply({"params": params}, ids, attention_mask=mask))
  assert ours.shape == (3, 9, 101)
  real = mask.astype(bool)
  assert np.abs(ours - ref)[real].max() <= 1e-4


def test_family_flags_come_from_config(tmp_path):
  make_hf_model(tmp_path / "q2", "qwen2")
  make_hf_model(tmp_path / "q3", "qwen3")
  q2, p2 = load_pretrained(str(tmp_path / "q2"))
  q3, p3 = load_pretrained(str(tmp_path / "q3"))
  assert q2.config.qkv_bias and not q2.config.qk_norm and "q_bias" in p2["layers"]["attn"]
  assert q3.config.qk_norm and not q3.config.qkv_bias and "q_norm" in p3["layers"]["attn"]


@pytest.mark.parametrize("scan", [True, False], ids=["scanned", "unrolled"])
@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_kv_cache_decode_equals_full_forward(tmp_path, arch, scan):
  """Prefill a prefix, then feed one token at a time against the cache: same logits."""
  make_hf_model(tmp_path, arch)
  model, params = load_pretrained(str(tmp_path), scan_layers=scan)
  if not scan:
    assert "layers_1" in params and "layers" not in params
  cfg = model.config
  ids, mask = _batch(lengths=(10, 6))
  full = np.asarray(model.apply({"params": params}, ids, attention_mask=mask))
  b, t = ids.shape
  prefix = 4
  shape = (b, cfg.num_kv_heads, t, cfg.head_dim)
  positions = np.maximum(np.cumsum(mask, -1) - 1, 0)
  logits, (k, v) = model.apply({"params": params}, ids[:, :prefix], attention_mask=mask[:, :prefix],
                               positions=positions[:, :prefix], return_kv=True)
  real = mask[:, :prefix].astype(bool)
  np.testing.assert_allclose(np.asarray(logits)[real], full[:, :prefix][real], atol=1e-5)
  pack = (lambda xs: jnp.stack(xs)) if scan else tuple
  cache = KVCache(pack([jnp.zeros(shape).at[:, :, :prefix].set(k[i]) for i in range(cfg.num_layers)]),
                  pack([jnp.zeros(shape).at[:, :, :prefix].set(v[i]) for i in range(cfg.num_layers)]),
                  jnp.zeros((b, t), bool).at[:, :prefix].set(real))
  # First two tokens in one call (a multi-token write), then one token per call.
  steps = [(prefix, prefix + 2)] + [(s, s + 1) for s in range(prefix + 2, t)]
  for start, end in steps:
    logits, cache = model.apply({"params": params}, ids[:, start:end],
                                attention_mask=mask[:, start:end],
                                positions=positions[:, start:end], cache=cache, cache_index=start)
    real = mask[:, start:end].astype(bool)
    np.testing.assert_allclose(np.asarray(logits)[real], full[:, start:end][real], atol=1e-5)
  np.testing.assert_array_equal(np.asarray(cache.mask), mask.astype(bool))


def test_logits_at_selects_one_position(tmp_path):
  make_hf_model(tmp_path, "llama")
  model, params = load_pretrained(str(tmp_path))
  ids, mask = _batch()
  full = np.asarray(model.apply({"params": params}, ids, attention_mask=mask))
  at = jnp.array([8, 3, 6])
  last = np.asarray(model.apply({"params": params}, ids, attention_mask=mask, logits_at=at))
  np.testing.assert_allclose(last, full[np.arange(3), np.asarray(at)], atol=1e-6)


@pytest.mark.parametrize("arch,tie", [("llama_bias", False), ("qwen3", True)])
def test_out_major_weights_give_the_same_logits(tmp_path, arch, tie):
  make_hf_model(tmp_path, arch, tie=tie)
  model, params = load_pretrained(str(tmp_path))
  om_model = model.clone(config=model.config.replace(weights_out_major=True))
  om_params = out_major_params(params)
  # The converted tree is exactly what the out-major model declares.
  declared = nn.unbox(jax.eval_shape(om_model.init, jax.random.key(0),
                                     jnp.ones((1, 4), jnp.int32)))["params"]
  assert jax.tree.map(lambda a: a.shape, om_params) == jax.tree.map(lambda a: a.shape, declared)
  assert om_params["layers"]["attn"]["q"].shape[1:] == (
      model.config.num_heads, model.config.head_dim, model.config.hidden_size)
  ids, mask = _batch()
  ref = np.asarray(model.apply({"params": params}, ids, attention_mask=mask))
  ours = np.asarray(om_model.apply({"params": om_params}, ids, attention_mask=mask))
  np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("policy", [pytest.param("full", marks=pytest.mark.slow), "dots"])
def test_remat_policy_keeps_values_and_gradients(tmp_path, policy):
  make_hf_model(tmp_path, "qwen3")
  model, params = load_pretrained(str(tmp_path))
  remat_model, _ = load_pretrained(str(tmp_path), remat_policy=policy)
  ids, mask = _batch()

  def loss(m, p):
    return jnp.mean(jax.nn.log_softmax(m.apply({"params": p}, ids, attention_mask=mask)) ** 2)

  v0, g0 = jax.value_and_grad(lambda p: loss(model, p))(params)
  v1, g1 = jax.value_and_grad(lambda p: loss(remat_model, p))(params)
  np.testing.assert_allclose(v0, v1, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)


def test_bf16_params_and_compute(tmp_path):
  hf = make_hf_model(tmp_path, "qwen2")
  model, params = load_pretrained(str(tmp_path), dtype="bfloat16")
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(params))
  ids, mask = _batch()
  ours = np.asarray(model.apply({"params": params}, ids, attention_mask=mask))
  assert ours.dtype == np.float32  # logits are returned in f32 for the losses
  ref = hf_logits(hf, ids, mask)
  real = mask.astype(bool)
  # bf16 has 8 mantissa bits: agreement to a few percent of the logit scale, not to 1e-4.
  assert np.abs(ours - ref)[real].max() < 0.05 * np.abs(ref).max()
  assert np.abs(ours - ref)[real].max() > 1e-4  # and it really ran in bf16


def test_swiglu_vjp_matches_autodiff_of_the_formula():
  from arm_jax.models.decoder import swiglu

  def plain(gu):
    return jax.nn.silu(gu[..., 0, :]) * gu[..., 1, :]

  gu = jnp.asarray(np.random.RandomState(0).randn(3, 5, 2, 7).astype(np.float32) * 6)
  ct = jnp.asarray(np.random.RandomState(1).randn(3, 5, 7).astype(np.float32))
  np.testing.assert_allclose(swiglu(gu), plain(gu), rtol=1e-5, atol=1e-6)
  got = jax.vjp(swiglu, gu)[1](ct)[0]
  want = jax.vjp(plain, gu)[1](ct)[0]
  assert got.shape == gu.shape
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
