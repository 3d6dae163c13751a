"""Mesh, logical rules and the sharded forward pass on 8 forced host devices."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from arm_jax import sharding
from arm_jax.models import Decoder, DecoderConfig, init_params, load_pretrained
from hf_reference import make_hf_model


def _mesh():
  if jax.device_count() < 8:
    pytest.skip("needs 8 host devices (conftest sets XLA_FLAGS)")
  return sharding.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"))


def test_make_mesh_fills_minus_one_and_rejects_bad_shapes():
  mesh = sharding.make_mesh((-1, 2, 1), devices=jax.devices()[:8])
  assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "tensor": 1}
  with pytest.raises(ValueError, match="needs 6 devices, 8 available"):
    sharding.make_mesh((3, 2, 1), devices=jax.devices()[:8])
  with pytest.raises(ValueError, match="differ in length"):
    sharding.make_mesh((8,), ("data", "fsdp"))


def test_rules_use_each_mesh_axis_once_and_fall_back_on_uneven_dims():
  mesh = _mesh()
  rules = sharding.DEFAULT_RULES
  assert sharding.logical_to_spec(("embed", "heads", "head_dim"), (48, 6, 16), mesh, rules) == \
      P("fsdp", "tensor", None)
  # "batch" takes data and fsdp; a later "embed" may not reuse fsdp.
  assert sharding.logical_to_spec(("batch", "embed"), (4, 48), mesh, rules) == \
      P(("data", "fsdp"), None)
  # 9 heads do not split over tensor=2: replicated, or an error when strict.
  assert sharding.logical_to_spec(("embed", "heads"), (48, 9), mesh, rules) == P("fsdp", None)
  with pytest.raises(ValueError, match=r"dimension 1 \(heads, size 9\) is not divisible"):
    sharding.logical_to_spec(("embed", "heads"), (48, 9), mesh, rules, strict=True)


def test_sharded_forward_equals_single_device(tmp_path):
  mesh = _mesh()
  make_hf_model(tmp_path, "qwen3", hidden=48, heads=6, kv_heads=2, intermediate=80, vocab_size=104)
  model, params = load_pretrained(str(tmp_path))
  smodel, sparams = load_pretrained(str(tmp_path), mesh=mesh, rules=sharding.DEFAULT_RULES)
  q = sparams["layers"]["attn"]["q"]
  assert q.sharding.spec == P(None, "fsdp", "tensor", None)
  # Loaded straight into the sharding: each device holds a quarter of q.
  assert q.addressable_shards[0].data.shape == (2, 24, 3, 16)
  assert sparams["embedding"].sharding.spec == P("tensor", "fsdp")

  rng = np.random.RandomState(0)
  ids = rng.randint(3, 104, (4, 12)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, :5] = 0
  mask[3, :2] = 0
  ref = np.asarray(model.apply({"params": params}, ids, attention_mask=mask))
  data = sharding.data_sharding(mesh, sharding.DEFAULT_RULES)
  fwd = jax.jit(lambda p, i, m: smodel.apply({"params": p}, i, attention_mask=m),
                out_shardings=sharding.data_sharding(mesh, sharding.DEFAULT_RULES, ndim=3))
  out = fwd(sparams, jax.device_put(ids, data), jax.device_put(mask, data))
  assert len(out.sharding.device_set) == 8
  real = mask.astype(bool)
  assert np.abs(np.asarray(out) - ref)[real].max() <= 1e-5


def test_init_params_creates_params_in_their_shardings():
  mesh = _mesh()
  cfg = DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2,
                      num_heads=4, num_kv_heads=2, head_dim=8)
  model = Decoder(cfg, mesh=mesh, rules=sharding.DEFAULT_RULES)
  params = init_params(model, jax.random.key(0), mesh, sharding.DEFAULT_RULES)
  gate_up = params["layers"]["mlp"]["gate_up"]
  assert gate_up.shape == (2, 32, 2, 64)
  assert gate_up.sharding.spec == P(None, "fsdp", None, "tensor")
  assert gate_up.addressable_shards[0].data.shape == (2, 16, 2, 32)
  unsharded = init_params(Decoder(cfg), jax.random.key(0))
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(unsharded)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert sum(x.size for x in jax.tree.leaves(params)) == cfg.num_params
