"""LoRA adapters (Hu et al. 2021) of the decoder's projections: trainable / frozen split, merging.

With DecoderConfig.lora_rank > 0, each projection named in lora_targets (q, kv, o, gate_up, down)
has two more parameters beside its weight in the params tree, `<name>_lora_a` [in..., rank] and
`<name>_lora_b` [rank, out...], and computes x.W + (lora_alpha / lora_rank) * (x.A).B
(arm_jax.models.decoder). The params stay one tree, so sampling, log-probs and losses need
nothing new; what changes is what trains:

  trainable, frozen = split(params)   # the adapters / everything else (all / {} without LoRA)
  params = combine(trainable, frozen)

The SFT, GRPO and DPO updates differentiate `trainable` only (no weight gradients of the frozen
base: about a third of a full fine-tune's backward matmuls), optimizer states cover it only,
and checkpoints of a LoRA run hold it only (a few MB for SmolLM2-135M instead of the 540 MB
base, which is reloaded from model.path). `merge` folds the adapters into the weights (export,
and the sampler's decode weights).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from arm_jax.models.config import DecoderConfig

SUFFIXES = ("_lora_a", "_lora_b")


def _name(key: Any) -> str:
  return str(getattr(key, "key", key))


def is_adapter_path(path: tuple) -> bool:
  """Whether a params path (keys or names) ends in a LoRA factor."""
  return bool(path) and _name(path[-1]).endswith(SUFFIXES)


def has_adapters(params: Any) -> bool:
  return any(is_adapter_path(p) for p, _ in jax.tree_util.tree_leaves_with_path(params))


def _split_dict(tree: Any, adapter: bool) -> Any:
  """The nested-dict subtree whose leaves are (adapter) or are not (not adapter) LoRA factors;
  empty branches are dropped."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      sub = _split_dict(v, adapter)
      if sub:
        out[k] = sub
    elif str(k).endswith(SUFFIXES) == adapter:
      out[k] = v
  return out


def split(params: Any) -> tuple[Any, Any]:
  """(trainable, frozen): the adapters and the rest when `params` has adapters, else (params,
  {}), so a run without LoRA trains (and keeps optimizer state for) every parameter as before.
  Works on any tree shaped like the params (their shardings, an optimizer's moments)."""
  if not isinstance(params, dict) or not has_adapters(params):
    return params, {}
  return _split_dict(params, True), _split_dict(params, False)


def trainable(params: Any) -> Any:
  return split(params)[0]


def combine(trainable_part: Any, frozen: Any) -> Any:
  """Inverse of split: one nested dict holding both parts' leaves."""
  if not frozen:
    return trainable_part
  out = dict(frozen)
  for k, v in trainable_part.items():
    out[k] = combine(v, out[k]) if isinstance(v, dict) and k in out else v
  return out


def num_adapter_params(params: Any) -> int:
  return sum(int(np.prod(x.shape)) for p, x in jax.tree_util.tree_leaves_with_path(params)
             if is_adapter_path(p))


def _delta(a: jax.Array, b: jax.Array, scale: float, stacked: bool) -> jax.Array:
  """scale * A . B over the rank axis (A [in..., r], B [r, out...]), per layer when the factors
  carry the scanned model's leading layers axis."""
  if stacked:
    return jax.vmap(lambda x, y: _delta(x, y, scale, False))(a, b)
  return jnp.tensordot(a.astype(jnp.float32), b.astype(jnp.float32), axes=1) * scale


def merge(params: Any, config: DecoderConfig) -> Any:
  """The params with each adapter folded into its weight (W + alpha / r * A . B) and the
  factors dropped: a plain model's params (config.replace(lora_rank=0)). Weights must be in
  the standard [in..., out...] layout (merge before decoder.out_major_params)."""
  if not config.lora_rank or not has_adapters(params):
    return params
  if config.weights_out_major:
    raise ValueError("merge LoRA adapters before converting weights to the out-major layout")
  scale = config.lora_alpha / config.lora_rank

  def walk(tree: dict, stacked: bool) -> dict:
    out = {}
    for k, v in tree.items():
      if isinstance(v, dict):
        out[k] = walk(v, stacked or (config.scan_layers and k == "layers"))
      elif not str(k).endswith(SUFFIXES):
        a, b = tree.get(f"{k}_lora_a"), tree.get(f"{k}_lora_b")
        if a is None:
          out[k] = v
        else:
          out[k] = (v.astype(jnp.float32) + _delta(a, b, scale, stacked)).astype(v.dtype)
    return out

  return walk(params, False)


def init_adapters(params: Any, config: DecoderConfig, rng: jax.Array, shardings: Any = None
                  ) -> Any:
  """A base model's params (no adapters) with fresh adapters added as the decoder's init makes
  them (A uniform within 1/sqrt(fan_in), B zero): a loaded checkpoint becomes a LoRA model's
  starting point, equal to the base in every output. `shardings` (a tree like the LoRA model's
  params) places them."""
  if not config.lora_rank or has_adapters(params):
    return params
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  from arm_jax.models.decoder import Decoder  # pylint: disable=import-outside-toplevel
  model = Decoder(config)
  dummy = jnp.zeros((1, 1), jnp.int32)
  abstract = nn.unbox(jax.eval_shape(lambda: model.init(jax.random.key(0), dummy))["params"])
  like, _ = split(abstract)

  def make(path, leaf):
    nonlocal rng
    name = _name(path[-1])
    if name.endswith("_lora_b"):
      value = jnp.zeros(leaf.shape, leaf.dtype)
    else:
      rng, key = jax.random.split(rng)
      stacked = config.scan_layers and _name(path[0]) == "layers"
      fan_in = int(np.prod(leaf.shape[1 if stacked else 0:-1]))
      bound = 1.0 / np.sqrt(fan_in)
      value = jax.random.uniform(key, leaf.shape, jnp.float32, -bound, bound).astype(leaf.dtype)
    if shardings is not None:
      target = shardings
      for key in path:
        target = target[_name(key)]
      value = jax.device_put(value, target)
    return value

  return combine(jax.tree_util.tree_map_with_path(make, like), params)
