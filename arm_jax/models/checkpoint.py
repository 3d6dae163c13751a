"""Load Hugging Face / GGUF checkpoints into (sharded) params, and export back to safetensors."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from jax.sharding import Mesh

from arm_jax import multihost
from arm_jax import sharding as sharding_lib
from arm_jax.models.config import DecoderConfig, dtype_from_name
from arm_jax.models.lora import init_adapters, merge as merge_adapters
from arm_jax.models.decoder import Decoder
from arm_jax.models.tensor_sources import CheckpointError, open_source

_NP_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}


@dataclasses.dataclass(frozen=True)
class _Mapping:
  """One of our parameters and the transformers tensors it is made of."""

  path: tuple[str, ...]
  hf: tuple[str, ...]  # templates; "{i}" marks per-layer tensors (stacked on our axis 0)
  hf_shapes: Callable[[DecoderConfig], tuple[tuple[int, ...], ...]]
  to_ours: Callable[[DecoderConfig, list[np.ndarray]], np.ndarray]
  to_hf: Callable[[DecoderConfig, np.ndarray], list[np.ndarray]]
  when: Callable[[DecoderConfig], bool] = lambda c: True

  @property
  def per_layer(self) -> bool:
    return "{i}" in self.hf[0]


def _ident(shape_fn):
  return dict(hf_shapes=lambda c: (shape_fn(c),), to_ours=lambda c, t: t[0],
              to_hf=lambda c, w: [w])


def _linear(shape_fn):
  """transformers Linear [out, in] <-> our [in, out]."""
  return dict(hf_shapes=lambda c: (shape_fn(c),), to_ours=lambda c, t: t[0].T,
              to_hf=lambda c, w: [w.T])


_L = "model.layers.{i}."
MAPPINGS: tuple[_Mapping, ...] = (
    _Mapping(("embedding",), ("model.embed_tokens.weight",),
             **_ident(lambda c: (c.vocab_size, c.hidden_size))),
    _Mapping(("final_norm", "scale"), ("model.norm.weight",), **_ident(lambda c: (c.hidden_size,))),
    _Mapping(("lm_head",), ("lm_head.weight",), **_linear(lambda c: (c.vocab_size, c.hidden_size)),
             when=lambda c: not c.tie_word_embeddings),
    _Mapping(("layers", "attn_norm", "scale"), (_L + "input_layernorm.weight",),
             **_ident(lambda c: (c.hidden_size,))),
    _Mapping(("layers", "mlp_norm", "scale"), (_L + "post_attention_layernorm.weight",),
             **_ident(lambda c: (c.hidden_size,))),
    _Mapping(
        ("layers", "attn", "q"), (_L + "self_attn.q_proj.weight",),
        hf_shapes=lambda c: ((c.num_heads * c.head_dim, c.hidden_size),),
        to_ours=lambda c, t: t[0].reshape(c.num_heads, c.head_dim, -1).transpose(2, 0, 1),
        to_hf=lambda c, w: [w.transpose(1, 2, 0).reshape(c.num_heads * c.head_dim, -1)]),
    _Mapping(
        ("layers", "attn", "kv"), (_L + "self_attn.k_proj.weight", _L + "self_attn.v_proj.weight"),
        hf_shapes=lambda c: ((c.num_kv_heads * c.head_dim, c.hidden_size),) * 2,
        to_ours=lambda c, t: np.stack(
            [x.reshape(c.num_kv_heads, c.head_dim, -1).transpose(2, 0, 1) for x in t], axis=1),
        to_hf=lambda c, w: [w[:, j].transpose(1, 2, 0).reshape(c.num_kv_heads * c.head_dim, -1)
                            for j in range(2)]),
    _Mapping(
        ("layers", "attn", "q_bias"), (_L + "self_attn.q_proj.bias",),
        hf_shapes=lambda c: ((c.num_heads * c.head_dim,),),
        to_ours=lambda c, t: t[0].reshape(c.num_heads, c.head_dim),
        to_hf=lambda c, w: [w.reshape(-1)], when=lambda c: c.qkv_bias),
    _Mapping(
        ("layers", "attn", "kv_bias"), (_L + "self_attn.k_proj.bias", _L + "self_attn.v_proj.bias"),
        hf_shapes=lambda c: ((c.num_kv_heads * c.head_dim,),) * 2,
        to_ours=lambda c, t: np.stack([x.reshape(c.num_kv_heads, c.head_dim) for x in t]),
        to_hf=lambda c, w: [w[0].reshape(-1), w[1].reshape(-1)], when=lambda c: c.qkv_bias),
    _Mapping(("layers", "attn", "q_norm", "scale"), (_L + "self_attn.q_norm.weight",),
             **_ident(lambda c: (c.head_dim,)), when=lambda c: c.qk_norm),
    _Mapping(("layers", "attn", "k_norm", "scale"), (_L + "self_attn.k_norm.weight",),
             **_ident(lambda c: (c.head_dim,)), when=lambda c: c.qk_norm),
    _Mapping(
        ("layers", "attn", "o"), (_L + "self_attn.o_proj.weight",),
        hf_shapes=lambda c: ((c.hidden_size, c.num_heads * c.head_dim),),
        to_ours=lambda c, t: t[0].reshape(-1, c.num_heads, c.head_dim).transpose(1, 2, 0),
        to_hf=lambda c, w: [w.transpose(2, 0, 1).reshape(-1, c.num_heads * c.head_dim)]),
    _Mapping(("layers", "attn", "o_bias"), (_L + "self_attn.o_proj.bias",),
             **_ident(lambda c: (c.hidden_size,)), when=lambda c: c.o_bias),
    _Mapping(
        ("layers", "mlp", "gate_up"), (_L + "mlp.gate_proj.weight", _L + "mlp.up_proj.weight"),
        hf_shapes=lambda c: ((c.intermediate_size, c.hidden_size),) * 2,
        to_ours=lambda c, t: np.stack([t[0].T, t[1].T], axis=1),
        to_hf=lambda c, w: [w[:, 0].T, w[:, 1].T]),
    _Mapping(("layers", "mlp", "down"), (_L + "mlp.down_proj.weight",),
             **_linear(lambda c: (c.hidden_size, c.intermediate_size))),
)
# Tensors a checkpoint may carry that the model rebuilds itself.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def abstract_params(model: Decoder) -> Any:
  """The eval_shape of init: ShapeDtypeStructs boxed with their logical axis names."""
  dummy = jnp.zeros((1, 1), jnp.int32)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), dummy))["params"]


def param_shardings(model: Decoder, mesh: Mesh, rules, *, strict: bool = False) -> Any:
  return nn.unbox(sharding_lib.tree_shardings(abstract_params(model), mesh, rules, strict=strict))


@functools.lru_cache(maxsize=32)
def _jitted_init(model: Decoder, mesh: Mesh | None, rules: tuple | None):
  """One compiled init per (model, mesh, rules): every policy of an equal model (the toy's
  rubric generator and judge, the tests' runs) reuses it; rngs differ, programs do not."""
  dummy = jnp.zeros((1, 1), jnp.int32)
  init = lambda r: nn.unbox(model.init(r, dummy)["params"])  # noqa: E731
  if mesh is None:
    return jax.jit(init)
  shardings = param_shardings(model, mesh, rules or sharding_lib.DEFAULT_RULES)
  return jax.jit(init, out_shardings=shardings)


def init_params(model: Decoder, rng: jax.Array, mesh: Mesh | None = None, rules=None) -> Any:
  """Random init, created directly in its shardings when a mesh is given."""
  frozen = None if rules is None else sharding_lib.rules_from_config(rules)  # hashable
  return _jitted_init(model, mesh, frozen)(rng)


def _tree_get(tree: dict, path: Sequence[str]):
  for p in path:
    tree = tree[p]
  return tree


def _tree_set(tree: dict, path: Sequence[str], value) -> None:
  for p in path[:-1]:
    tree = tree.setdefault(p, {})
  tree[path[-1]] = value


def _place(array: np.ndarray, sharding) -> jax.Array:
  """Puts a host array on devices; with a sharding, each device receives only its shard."""
  if sharding is None:
    return jax.device_put(array)
  return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def load_pretrained(path: str, *, dtype: Any = None, mesh: Mesh | None = None, rules=None,
                    compute_dtype: Any = None, **config_overrides) -> tuple[Decoder, Any]:
  """Loads a Llama/Qwen2/Qwen3 HF directory or a Llama GGUF file.

  `dtype` is the parameter dtype (default float32) and `compute_dtype` the matmul dtype
  (default: dtype); f32 parameters with bf16 compute keep small updates (lr 1e-6) that bf16
  weights would round away. Returns (model, params);
  with a mesh, every parameter is built in its target sharding from one host tensor at a time.
  """
  source = open_source(path)
  dtype_name = jnp.dtype(dtype_from_name(dtype or "float32")).name
  compute_name = jnp.dtype(dtype_from_name(compute_dtype or dtype_name)).name
  config = DecoderConfig.from_hf(source.hf_config, param_dtype=dtype_name, dtype=compute_name,
                                 **config_overrides)
  if rules is None and mesh is not None:
    rules = sharding_lib.DEFAULT_RULES
  model = Decoder(config, mesh=mesh, rules=tuple(rules or ()))
  shardings = param_shardings(model, mesh, rules) if mesh is not None else None
  np_dtype = _NP_DTYPES[dtype_name]
  available = source.names()
  used: set[str] = set()
  params: dict = {}
  for m in MAPPINGS:
    if not m.when(config):
      continue
    layers = range(config.num_layers) if m.per_layer else [None]
    expected = m.hf_shapes(config)
    stacked = []
    for i in layers:
      names = [t.format(i=i) for t in m.hf]
      for name, shape in zip(names, expected):
        if name not in available:
          raise CheckpointError(f"{path}: missing tensor {name!r} (needed for "
                                f"{'/'.join(m.path)} of a {config.architecture} model)")
        if tuple(source.shape(name)) != tuple(shape):
          raise CheckpointError(f"{path}: tensor {name!r} has shape {tuple(source.shape(name))}, "
                                f"config.json implies {tuple(shape)}")
      used.update(names)
      tensors = [np.asarray(source.get(n), dtype=np.float32) for n in names]
      stacked.append(m.to_ours(config, tensors).astype(np_dtype))
    if m.per_layer and not config.scan_layers:  # unscanned: layers_i/... one by one
      placed = [((f"layers_{i}",) + m.path[1:], a) for i, a in enumerate(stacked)]
    else:
      placed = [(m.path, np.stack(stacked) if m.per_layer else stacked[0])]
    for where, array in placed:
      target = _tree_get(shardings, where) if shardings is not None else None
      _tree_set(params, where, _place(array, target))
  extra = sorted(n for n in available - used if not n.endswith(_IGNORED_SUFFIXES))
  if config.tie_word_embeddings and "lm_head.weight" in extra:
    extra.remove("lm_head.weight")  # a tied checkpoint may still store the shared matrix
  if extra:  # an unread tensor means the model would silently differ from the checkpoint
    raise CheckpointError(f"{path}: {len(extra)} tensors that a {config.architecture} model with "
                          f"this config.json does not have: {extra[:8]}")
  # lora_rank > 0: fresh adapters (B = 0, so the model equals the checkpoint until it trains).
  params = init_adapters(params, config, jax.random.key(0), shardings)
  return model, params


def save_pretrained(model: Decoder, params: Any, out_dir: str, tokenizer=None, *,
                    max_shard_bytes: int = 4 << 30) -> None:
  """Writes config.json and safetensors (sharded with an index past max_shard_bytes)."""
  config = model.config
  if config.lora_rank:  # adapters folded into their weights: a plain checkpoint
    params, config = merge_adapters(params, config), config.replace(lora_rank=0)
  os.makedirs(out_dir, exist_ok=True)
  tensors: dict[str, np.ndarray] = {}
  if not config.scan_layers:
    params = stack_layers(params, config.num_layers)
  for m in MAPPINGS:
    if not m.when(config):
      continue
    value = multihost.host_array(_tree_get(params, m.path))
    for i in range(config.num_layers) if m.per_layer else [None]:
      parts = m.to_hf(config, value[i] if m.per_layer else value)
      for template, part in zip(m.hf, parts):
        tensors[template.format(i=i)] = np.ascontiguousarray(part)
  _write_safetensors(tensors, out_dir, max_shard_bytes)
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(config.to_hf(), f, indent=2)
  gen = {"bos_token_id": config.bos_token_id, "do_sample": False}
  if config.eos_token_ids:
    gen["eos_token_id"] = list(config.eos_token_ids)
  with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
    json.dump(gen, f, indent=2)
  if tokenizer is not None:
    tokenizer.save_pretrained(out_dir)


def _write_safetensors(tensors: dict[str, np.ndarray], out_dir: str, max_shard_bytes: int) -> None:
  from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel

  shards: list[dict[str, np.ndarray]] = [{}]
  size = 0
  for name, t in tensors.items():
    if shards[-1] and size + t.nbytes > max_shard_bytes:
      shards.append({})
      size = 0
    shards[-1][name] = t
    size += t.nbytes
  meta = {"format": "pt"}
  if len(shards) == 1:
    save_file(shards[0], os.path.join(out_dir, "model.safetensors"), metadata=meta)
    return
  weight_map = {}
  for k, shard in enumerate(shards):
    fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
    save_file(shard, os.path.join(out_dir, fname), metadata=meta)
    weight_map.update({name: fname for name in shard})
  total = sum(t.nbytes for t in tensors.values())
  with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def stack_layers(params: Any, num_layers: int) -> Any:
  """Unscanned params (layers_0, ...) -> scanned ({"layers": [L, ...]}); inverse of unstack_layers."""
  out = {k: v for k, v in params.items() if not k.startswith("layers_")}
  out["layers"] = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                               *[params[f"layers_{i}"] for i in range(num_layers)])
  return out
