"""Decoder logits against transformers (torch, f32) for tiny random Llama/Qwen2/Qwen3 models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arm_jax.models import KVCache, load_pretrained
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


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_kv_cache_decode_equals_full_forward(tmp_path, arch):
  """Prefill a prefix, then feed one token at a time against the cache: same logits."""
  make_hf_model(tmp_path, arch)
  model, params = load_pretrained(str(tmp_path))
  cfg = model.config
  ids, mask = _batch(lengths=(10, 6))
  full = np.asarray(model.apply({"params": params}, ids, attention_mask=mask))
  b, t = ids.shape
  prefix = 4
  slots = t
  shape = (cfg.num_layers, b, slots, cfg.num_kv_heads, cfg.head_dim)
  cache = KVCache(jnp.zeros(shape), jnp.zeros(shape), jnp.zeros((b, slots), bool))
  positions = np.maximum(np.cumsum(mask, -1) - 1, 0)
  logits, (k, v) = model.apply({"params": params}, ids[:, :prefix], attention_mask=mask[:, :prefix],
                               positions=positions[:, :prefix], return_kv=True)
  real = mask[:, :prefix].astype(bool)
  np.testing.assert_allclose(np.asarray(logits)[real], full[:, :prefix][real], atol=1e-5)
  cache = KVCache(cache.k.at[:, :, :prefix].set(k), cache.v.at[:, :, :prefix].set(v),
                  cache.mask.at[:, :prefix].set(mask[:, :prefix].astype(bool)))
  for step in range(prefix, t):
    logits, (k, v) = model.apply({"params": params}, ids[:, step:step + 1],
                                 attention_mask=mask[:, step:step + 1],
                                 positions=positions[:, step:step + 1], cache=cache)
    real = mask[:, step].astype(bool)
    np.testing.assert_allclose(np.asarray(logits)[real, 0], full[real, step], atol=1e-5)
    cache = KVCache(cache.k.at[:, :, step].set(k[:, :, 0]), cache.v.at[:, :, step].set(v[:, :, 0]),
                    cache.mask.at[:, step].set(real))


def test_logits_at_selects_one_position(tmp_path):
  make_hf_model(tmp_path, "llama")
  model, params = load_pretrained(str(tmp_path))
  ids, mask = _batch()
  full = np.asarray(model.apply({"params": params}, ids, attention_mask=mask))
  at = jnp.array([8, 3, 6])
  last = np.asarray(model.apply({"params": params}, ids, attention_mask=mask, logits_at=at))
  np.testing.assert_allclose(last, full[np.arange(3), np.asarray(at)], atol=1e-6)


@pytest.mark.parametrize("policy", ["full", "dots"])
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
