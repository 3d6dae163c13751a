"""Optimizer construction, optimizer-state shardings, and host offload of an idle state."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from arm_jax import multihost
from arm_jax.models import lora
from arm_jax.xla_options import jit_training


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  learning_rate: float = 1e-6
  schedule: str = "constant"  # constant | cosine (with linear warmup)
  warmup_steps: int = 0
  total_steps: int = 0  # cosine only
  final_fraction: float = 0.0  # cosine only: the last step's rate over the peak
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  weight_decay: float = 0.0
  max_grad_norm: float = 1.0  # 0 disables clipping


def learning_rate_schedule(cfg: OptimizerConfig) -> optax.Schedule:
  if cfg.warmup_steps < 0:
    raise ValueError(f"warmup_steps={cfg.warmup_steps}; expected 0 or more")
  if cfg.final_fraction and cfg.schedule != "cosine":
    raise ValueError(f"final_fraction={cfg.final_fraction} needs the cosine schedule, not "
                     f"{cfg.schedule!r}")
  if cfg.schedule == "constant":
    if cfg.warmup_steps:
      return optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps)
    return optax.constant_schedule(cfg.learning_rate)
  if cfg.schedule == "cosine":
    if cfg.total_steps <= cfg.warmup_steps:
      raise ValueError(f"cosine schedule needs total_steps > warmup_steps, got "
                       f"{cfg.total_steps} <= {cfg.warmup_steps}")
    if not 0.0 <= cfg.final_fraction <= 1.0:
      raise ValueError(f"cosine final_fraction={cfg.final_fraction}; expected 0 to 1")
    return optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, cfg.warmup_steps,
                                              cfg.total_steps,
                                              end_value=cfg.final_fraction * cfg.learning_rate)
  raise ValueError(f"schedule={cfg.schedule!r}; expected 'constant' or 'cosine'")


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
  """AdamW after global-norm clipping (clipping sees the accumulated, normalised gradient)."""
  adamw = optax.adamw(learning_rate_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                      weight_decay=cfg.weight_decay)
  if cfg.max_grad_norm:
    return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), adamw)
  return adamw


def init_state(optimizer: optax.GradientTransformation, params: Any) -> Any:
  """The optimizer state of the parameters that train: all of them, or a LoRA model's adapters
  only (arm_jax.models.lora.split)."""
  return optimizer.init(lora.trainable(params))


def update_count(opt_state: Any) -> jax.Array | None:
  """How many updates `opt_state` has applied: its learning-rate schedule's step (make_optimizer
  always has one), which a skipped non-finite update leaves as it was; None for an optimizer
  without exactly one schedule (a fixed-rate optax one)."""
  is_schedule = lambda s: isinstance(s, optax.ScaleByScheduleState)  # noqa: E731
  counts = [s.count for s in jax.tree.leaves(opt_state, is_leaf=is_schedule) if is_schedule(s)]
  return counts[0] if len(counts) == 1 else None


def with_learning_rate(metrics: dict, cfg: OptimizerConfig) -> dict:
  """A GRPO update's host `metrics` with its schedule step (update_count; the first inner
  update's with mu > 1) replaced by the learning rate that update applied."""
  metrics = dict(metrics)
  count = metrics.pop("update_count_first", metrics.get("update_count"))
  metrics.pop("update_count", None)
  if count is not None:
    metrics["learning_rate"] = float(learning_rate_schedule(cfg)(int(count)))
  return metrics


def opt_state_shardings(optimizer: optax.GradientTransformation, params: Any,
                        param_shardings: Any, replicated: jax.sharding.Sharding) -> Any:
  """Moments follow their parameter's sharding; counters and other scalars are replicated.
  `params` and `param_shardings` are the whole model's; the state is init_state's."""
  abstract = jax.eval_shape(lambda p: init_state(optimizer, p), params)
  return optax.tree_map_params(optimizer, lambda _, s: s, abstract,
                               lora.trainable(param_shardings),
                               transform_non_params=lambda _: replicated)


def value_and_grad(loss: Callable[..., Any], params: Any) -> tuple[Callable[..., Any], Any, Any]:
  """(grad_fn, trainable, frozen) for `loss(params, *args) -> (value, aux)`: grad_fn(trainable,
  *args) gives ((value, aux), gradient of the trainable part only), the frozen part held
  constant, so a LoRA model computes no weight gradients of its base (lora.split)."""
  trainable_part, frozen = lora.split(params)
  fn = jax.value_and_grad(lambda t, *args: loss(lora.combine(t, frozen), *args), has_aux=True)
  return fn, trainable_part, frozen


def apply_gradients(optimizer: optax.GradientTransformation, grads: Any, opt_state: Any,
                    params: Any, finite: jax.Array | None = None) -> tuple[Any, Any]:
  """One optimizer step from f32 accumulated gradients (cast to each parameter's dtype).
  `grads` and `opt_state` cover the trainable part (value_and_grad); `params` is the whole
  model's, returned with that part updated and the rest as it was. With
  `finite` (a boolean scalar) false, the step is skipped: parameters and optimizer state come
  back unchanged, so one non-finite loss or gradient never reaches the weights."""
  train, frozen = lora.split(params)
  grads_cast = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, train)
  updates, new_state = optimizer.update(grads_cast, opt_state, train)
  new_train = optax.apply_updates(train, updates)
  if finite is not None:
    def keep(new, old):
      return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    new_train, new_state = keep(new_train, train), keep(new_state, opt_state)
  return lora.combine(new_train, frozen), new_state


def finite_step(loss: jax.Array, grad_norm: jax.Array) -> jax.Array:
  """True when an update may be applied: its loss and its gradient's norm are finite."""
  return jnp.isfinite(loss) & jnp.isfinite(grad_norm)


def split_micro_batches(x: jax.Array, m: int) -> jax.Array:
  """[n, ...] -> [m, n / m, ...] where rows i, i + m, ... form micro-batch i: a row-sharded batch
  splits without moving data (the SFT and DPO updates accumulate over these)."""
  return x.reshape((x.shape[0] // m, m) + x.shape[1:]).swapaxes(0, 1)


def jit_update(update, shardings: tuple[Any, Any] | None, donate: bool):
  """jit an update(params, opt_state, batch): state donated, laid out by `shardings`."""
  kwargs = dict(donate_argnums=(0, 1) if donate else ())
  if shardings is not None:
    kwargs.update(in_shardings=(shardings[0], shardings[1], None),
                  out_shardings=(shardings[0], shardings[1], None))
  return jit_training(update, **kwargs)


def _host_sharding(sharding: jax.sharding.Sharding) -> jax.sharding.Sharding | None:
  memories = {m.kind for d in sharding.device_set for m in d.addressable_memories()}
  return sharding.with_memory_kind("pinned_host") if "pinned_host" in memories else None


def offload(tree: Any) -> Any:
  """Move a pytree to host memory (same shardings, pinned_host memory kind)."""
  def move(x):
    host = _host_sharding(x.sharding)
    return jax.device_put(x, host) if host is not None else multihost.host_array(x)
  return jax.tree.map(move, tree)


def onload(tree: Any, shardings: Any) -> Any:
  """Bring an offloaded pytree back into device memory with the given shardings."""
  return jax.tree.map(lambda x, s: jax.device_put(x, s), tree, shardings)
