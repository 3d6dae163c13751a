"""Device mesh and the logical-axis -> mesh-axis rules table.

Model code names axes logically ("embed", "heads", ...); one rules table in the config maps
them onto mesh axes ("data", "fsdp", "tensor"). Shardings for a pytree are derived from the
`jax.eval_shape` of its init function, whose leaves carry the logical names.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# Parameters: embed on fsdp (ZeRO-3 style), heads/mlp/vocab on tensor. Activations: batch on
# (data, fsdp); "act_embed" is a separate name so the hidden state is never split on the axis
# that already splits its batch.
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("act_embed", None),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("head_dim", None),
    ("layers", None),
    ("cache_slots", None),
)


def make_mesh(shape: Sequence[int], axes: Sequence[str] = MESH_AXES, devices=None) -> Mesh:
  """A mesh of `shape` over `axes`; one entry may be -1 to take all remaining devices."""
  devices = list(jax.devices() if devices is None else devices)
  shape = list(shape)
  if len(shape) != len(axes):
    raise ValueError(f"mesh_shape {tuple(shape)} and mesh_axes {tuple(axes)} differ in length")
  if shape.count(-1) > 1:
    raise ValueError(f"mesh_shape {tuple(shape)} has more than one -1")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if len(devices) % known:
      raise ValueError(f"{len(devices)} devices do not divide into mesh_shape {tuple(shape)}")
    shape[shape.index(-1)] = len(devices) // known
  if math.prod(shape) != len(devices):
    raise ValueError(
        f"mesh_shape {tuple(shape)} needs {math.prod(shape)} devices, {len(devices)} available")
  grid = np.asarray(devices).reshape(shape)
  return Mesh(grid, tuple(axes))


def rules_from_config(rules) -> tuple[tuple[str, Any], ...]:
  """Normalises rules from an ml_collections config (lists of lists) into tuples."""
  out = []
  for name, target in rules:
    if isinstance(target, (list, tuple)):
      target = tuple(target)
    out.append((str(name), target))
  return tuple(out)


def logical_to_spec(names: Sequence[str | None], shape: Sequence[int], mesh: Mesh,
                    rules: Sequence[tuple[str, Any]], *, strict: bool = False,
                    what: str = "array") -> P:
  """Maps logical axis names to a PartitionSpec, keeping each dimension evenly divisible.

  A mesh axis is used at most once per array. A dimension that the mapped mesh axes do not
  divide evenly is replicated on the axes that don't fit (logged), or, with `strict`, raises:
  device_put cannot place uneven shards, and paper-scale configs must shard everything evenly.
  """
  table = {}
  for name, target in rules:
    table.setdefault(name, target)
  used: set[str] = set()
  spec = []
  for dim, (name, size) in enumerate(zip(names, shape)):
    target = table.get(name) if name is not None else None
    axes = () if target is None else ((target,) if isinstance(target, str) else tuple(target))
    axes = tuple(a for a in axes if a in mesh.shape and a not in used and mesh.shape[a] > 1)
    fitted = axes
    while fitted and size % math.prod(mesh.shape[a] for a in fitted):
      fitted = fitted[:-1]
    if fitted != axes:
      msg = (f"{what}: dimension {dim} ({name}, size {size}) is not divisible by mesh axes "
             f"{axes} of sizes {[mesh.shape[a] for a in axes]}")
      if strict:
        raise ValueError(msg)
      logging.info("%s; sharding it over %s only", msg, fitted or "no axis")
    used.update(fitted)
    spec.append(fitted[0] if len(fitted) == 1 else (fitted or None))
  return P(*spec)


def tree_shardings(abstract_boxed: Any, mesh: Mesh, rules: Sequence[tuple[str, Any]], *,
                   strict: bool = False) -> Any:
  """NamedShardings for every leaf of an eval_shape'd tree of nn.Partitioned boxes.

  Leaves without logical names are replicated.
  """

  def one(path, leaf):
    what = jax.tree_util.keystr(path)
    if isinstance(leaf, nn.Partitioned):
      value = leaf.value
      names = leaf.names
    else:
      value, names = leaf, (None,) * len(getattr(leaf, "shape", ()))
    return NamedSharding(mesh, logical_to_spec(names, value.shape, mesh, rules, strict=strict,
                                               what=what))

  return jax.tree_util.tree_map_with_path(
      one, abstract_boxed, is_leaf=lambda x: isinstance(x, nn.Partitioned))


def batch_axes(mesh: Mesh, rules: Sequence[tuple[str, Any]]) -> tuple[str, ...]:
  """The mesh axes the rules put the logical "batch" axis on."""
  target = dict(rules).get("batch")
  axes = () if target is None else ((target,) if isinstance(target, str) else tuple(target))
  return tuple(a for a in axes if a in mesh.shape)


def data_sharding(mesh: Mesh, rules: Sequence[tuple[str, Any]], ndim: int = 2) -> NamedSharding:
  """Sharding of a [batch, ...] input: batch on the rules' batch axes, the rest replicated."""
  return NamedSharding(mesh, P(batch_axes(mesh, rules) or None, *([None] * (ndim - 1))))


def constrain(x: jax.Array, axes: tuple, mesh: Mesh | None, rules: Sequence) -> jax.Array:
  """with_logical_constraint when running on a mesh; the identity otherwise."""
  if mesh is None or not rules:
    return x
  return nn.with_logical_constraint(x, axes, rules=rules, mesh=mesh)


def mesh_and_rules(config: Any) -> tuple[Mesh, tuple[tuple[str, Any], ...]]:
  """The mesh and logical-axis rules a job's config names (mesh_shape, mesh_axes, rules; rules
  None = DEFAULT_RULES)."""
  mesh = make_mesh(tuple(config.mesh_shape), tuple(config.mesh_axes))
  rules = rules_from_config(config.rules) if config.rules else DEFAULT_RULES
  return mesh, rules
