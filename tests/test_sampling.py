"""Jitted generation: token-exact greedy vs transformers, log-probs, filtering, keys, sharding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arm_jax import sharding
from arm_jax.models import load_pretrained
from arm_jax.sampling import LENGTH, STOP, Sampler, SamplingParams, _choose, filter_logits
from hf_reference import hf_greedy, make_hf_model

PROMPTS = [[5, 6, 7, 8, 9, 10, 11, 12, 13], [40, 41, 42], [60, 3, 61, 4, 62]]
STOP_ID = 2


def _trim(row, n):
  return list(row[:n])


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_greedy_equals_transformers_generate(tmp_path, arch):
  hf = make_hf_model(tmp_path, arch, vocab_size=64)
  model, params = load_pretrained(str(tmp_path))
  # Stop on a token that greedy decoding of prompt 0 emits at step 5, so rows end both ways.
  stop_id = int(hf_greedy(hf, PROMPTS, 6, eos_token_id=None)[0][5])
  out = Sampler(model, stop_ids=[stop_id])(params, PROMPTS, SamplingParams(24, greedy=True),
                                           jax.random.key(0))
  ref = hf_greedy(hf, PROMPTS, 24, eos_token_id=stop_id)
  for row in range(len(PROMPTS)):
    n = out.lengths[row]
    assert _trim(out.tokens[row], n) == _trim(ref[row], n)
    if out.stop_reason[row] == STOP:
      assert out.tokens[row][n - 1] == stop_id and (out.tokens[row][n:] == 0).all()
      assert stop_id not in out.tokens[row][:n - 1]
    else:
      assert n == 24 and out.stop_reason[row] == LENGTH and stop_id not in out.tokens[row]
  assert out.stop_reason[0] == STOP and out.lengths[0] <= 6


def _forward_logprobs(model, params, prompt, completion):
  seq = np.asarray([list(prompt) + list(completion)])
  logits = model.apply({"params": params}, seq)
  lp = jax.nn.log_softmax(logits[0, len(prompt) - 1:-1], axis=-1)
  return np.asarray(jnp.take_along_axis(lp, jnp.asarray(completion)[:, None], axis=-1)[:, 0])


def test_logprobs_equal_training_forward(tmp_path):
  make_hf_model(tmp_path, "qwen3", vocab_size=64)
  model, params = load_pretrained(str(tmp_path))
  out = Sampler(model, stop_ids=[STOP_ID])(
      params, PROMPTS, SamplingParams(16, temperature=0.7, top_k=20), jax.random.key(3),
      num_samples=2)
  assert out.tokens.shape == (6, 16)
  for row in range(6):
    n = out.lengths[row]
    ref = _forward_logprobs(model, params, PROMPTS[row // 2], out.tokens[row][:n])
    np.testing.assert_allclose(out.logprobs[row][:n], ref, atol=1e-4)
    assert (out.logprobs[row][n:] == 0).all()


def _allowed(logits, top_k, top_p):
  """Reference nucleus/top-k set computed in numpy."""
  order = np.argsort(-logits)
  keep = order[:top_k] if top_k else order
  z = logits[keep] - logits[keep].max()
  probs = np.exp(z) / np.exp(z).sum()
  cut = np.searchsorted(np.cumsum(probs), top_p - 1e-7) + 1
  return set(keep[:cut].tolist())


@pytest.mark.parametrize("top_k,top_p", [(3, 1.0), (0, 0.6), (5, 0.8), (0, 0.95)])
def test_filtering_never_emits_excluded_tokens(top_k, top_p):
  logits = jnp.asarray(np.random.RandomState(0).randn(2, 12).astype(np.float32) * 2)
  sp = SamplingParams(1, temperature=1.0, top_k=top_k, top_p=top_p)
  keys = jax.random.split(jax.random.key(0), 4000)
  draws = np.asarray(jax.vmap(lambda k: _choose(logits, k, sp))(keys))
  for row in range(2):
    allowed = _allowed(np.asarray(logits[row]), top_k, top_p)
    seen = set(draws[:, row].tolist())
    assert seen <= allowed
    assert seen == allowed  # 4000 draws reach every allowed token here
  filtered = np.asarray(filter_logits(logits, top_k, top_p))
  assert ((filtered > -1e30).sum(-1) == [len(_allowed(np.asarray(r), top_k, top_p))
                                          for r in logits]).all()


def test_sampled_tokens_stay_in_model_top_k(tmp_path):
  make_hf_model(tmp_path, "llama", vocab_size=64)
  model, params = load_pretrained(str(tmp_path))
  out = Sampler(model, stop_ids=[STOP_ID])(params, PROMPTS, SamplingParams(12, top_k=4),
                                           jax.random.key(1), num_samples=4)
  for row in range(len(out.tokens)):
    prompt, n = PROMPTS[row // 4], out.lengths[row]
    seq = np.asarray([list(prompt) + list(out.tokens[row][:n])])
    logits = np.asarray(model.apply({"params": params}, seq))[0, len(prompt) - 1:-1]
    for step in range(n):
      assert out.tokens[row][step] in np.argsort(-logits[step])[:4]


def test_same_key_same_output_and_different_key_differs(tmp_path):
  make_hf_model(tmp_path, "qwen2", vocab_size=64)
  model, params = load_pretrained(str(tmp_path))
  sampler = Sampler(model, stop_ids=[STOP_ID])
  sp = SamplingParams(16, temperature=1.0)
  a = sampler(params, PROMPTS, sp, jax.random.key(7), num_samples=3)
  b = sampler(params, PROMPTS, sp, jax.random.key(7), num_samples=3)
  c = sampler(params, PROMPTS, sp, jax.random.key(8), num_samples=3)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  np.testing.assert_array_equal(a.logprobs, b.logprobs)
  assert not np.array_equal(a.tokens, c.tokens)
  # Samples of one prompt differ from each other (a GRPO group needs distinct draws).
  assert len({tuple(r) for r in a.tokens[:3]}) > 1


def test_sharded_generation_equals_unsharded(tmp_path):
  if jax.device_count() < 8:
    pytest.skip("needs 8 host devices")
  make_hf_model(tmp_path, "qwen3", vocab_size=64)
  model, params = load_pretrained(str(tmp_path))
  mesh = sharding.make_mesh((2, 2, 2))
  smodel, sparams = load_pretrained(str(tmp_path), mesh=mesh)
  for sp in (SamplingParams(16, greedy=True), SamplingParams(16, temperature=1.0, top_p=0.9)):
    a = Sampler(model, stop_ids=[STOP_ID])(params, PROMPTS, sp, jax.random.key(5), num_samples=2)
    b = Sampler(smodel, stop_ids=[STOP_ID])(sparams, PROMPTS, sp, jax.random.key(5),
                                            num_samples=2)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_bad_sampling_settings_are_rejected():
  with pytest.raises(ValueError, match="temperature must be > 0"):
    SamplingParams(8, temperature=0.0)
  with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
    SamplingParams(8, top_p=0.0)


def test_scanned_decode_equals_unrolled_decode(tmp_path):
  make_hf_model(tmp_path, "llama_bias", vocab_size=64)
  model, params = load_pretrained(str(tmp_path))
  sp = SamplingParams(12, temperature=1.0, top_p=0.9)
  a = Sampler(model, stop_ids=[STOP_ID], unroll_layers=True)(params, PROMPTS, sp, jax.random.key(2))
  b = Sampler(model, stop_ids=[STOP_ID], unroll_layers=False)(params, PROMPTS, sp, jax.random.key(2))
  np.testing.assert_array_equal(a.tokens, b.tokens)
  np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)


def test_sampler_accepts_a_model_loaded_unscanned(tmp_path):
  make_hf_model(tmp_path, "qwen2", vocab_size=64)
  model, params = load_pretrained(str(tmp_path))
  umodel, uparams = load_pretrained(str(tmp_path), scan_layers=False)
  sp = SamplingParams(10, greedy=True)
  a = Sampler(model, stop_ids=[STOP_ID])(params, PROMPTS, sp, jax.random.key(0))
  for unroll in (True, False):
    b = Sampler(umodel, stop_ids=[STOP_ID], unroll_layers=unroll)(uparams, PROMPTS, sp,
                                                                  jax.random.key(0))
    np.testing.assert_array_equal(a.tokens, b.tokens)


def test_kept_decode_params_follow_the_params_passed(tmp_path):
  """The decode-layout copy is reused only for the very params it was made from: after an
  update (new arrays) the sampler decodes the new weights, as a fresh sampler does."""
  make_hf_model(tmp_path, "llama", vocab_size=64)
  model, params = load_pretrained(str(tmp_path))
  sp = SamplingParams(12, temperature=1.0)
  sampler = Sampler(model, stop_ids=[STOP_ID], out_major=True)
  a1 = sampler(params, PROMPTS, sp, jax.random.key(3))
  kept = sampler.decode_params(params)
  assert sampler.decode_params(params) is kept  # unchanged params: no second conversion
  # An "update": every weight scaled, as new arrays (the old ones stay alive, unchanged).
  updated = jax.tree.map(lambda x: x * 1.5, params)
  b = sampler(updated, PROMPTS, sp, jax.random.key(3))
  assert sampler.decode_params(updated) is not kept
  fresh = Sampler(model, stop_ids=[STOP_ID], out_major=True, keep_decode_params=False)
  ref_b = fresh(updated, PROMPTS, sp, jax.random.key(3))
  np.testing.assert_array_equal(b.tokens, ref_b.tokens)
  np.testing.assert_allclose(b.logprobs, ref_b.logprobs, atol=1e-6)
  assert not np.allclose(a1.logprobs, b.logprobs)  # the update changed what is decoded
  # Back to the first params: the same tokens and log-probs as the first call.
  a2 = sampler(params, PROMPTS, sp, jax.random.key(3))
  np.testing.assert_array_equal(a1.tokens, a2.tokens)
  np.testing.assert_allclose(a1.logprobs, a2.logprobs, atol=1e-6)
  assert fresh._kept is None


def test_each_prompt_is_prefilled_once_and_its_samples_decode_as_repeated_prompts(tmp_path,
                                                                                  monkeypatch):
  """num_samples=k prefills the prompts once (k-fold less prompt compute, as for a GRPO group
  or verified-pair sampling) and decodes exactly as the prompts repeated k times would."""
  import arm_jax.sampling as sampling_mod  # noqa: PLC0415
  make_hf_model(tmp_path, "llama", vocab_size=64)
  model, params = load_pretrained(str(tmp_path))
  sampler = Sampler(model, stop_ids=[STOP_ID])
  rows_seen = []
  real = sampling_mod._jitted_prefill

  def spy(m):
    fn = real(m)
    return lambda p, ids, mask: (rows_seen.append(ids.shape[0]), fn(p, ids, mask))[1]

  monkeypatch.setattr(sampling_mod, "_jitted_prefill", spy)
  repeated = [p for p in PROMPTS for _ in range(3)]
  for sp in (SamplingParams(12, greedy=True), SamplingParams(12, temperature=1.0)):
    once = sampler(params, PROMPTS, sp, jax.random.key(3), num_samples=3)
    each = sampler(params, repeated, sp, jax.random.key(3))
    np.testing.assert_array_equal(once.tokens, each.tokens)
    np.testing.assert_array_equal(once.lengths, each.lengths)
    np.testing.assert_allclose(once.logprobs, each.logprobs, atol=1e-6)
  assert rows_seen == [3, 9, 3, 9]
  with pytest.raises(ValueError, match="num_samples must be >= 1"):
    sampler(params, PROMPTS, SamplingParams(4, greedy=True), jax.random.key(0), num_samples=0)
