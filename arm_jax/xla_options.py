"""Per-compilation XLA options for the shapes each job runs.

XLA:CPU in jaxlib 0.10 hands every dot to YNNPACK by default (`individual_dot`). For the
training forward and backward (thousands of rows times a weight) Eigen's GEMM is faster at
every SmolLM2 layer shape, measured on a 2-core VM in GFLOP/s (YNNPACK -> Eigen):
[4096, 576] x [576, 3072] 89 -> 122, x [1536, 576] 122 -> 155, x [576, 576] 85 -> 152, and
the transposed forms of the backward alike. Options passed to one `jax.jit` touch only that
compilation, so decoding keeps the process-wide defaults. Off the CPU backend nothing is set.
"""

from __future__ import annotations

import jax


def training_compiler_options() -> dict[str, str] | None:
  """compiler_options for a jitted training step or training-shaped forward; None off CPU."""
  if jax.default_backend() != "cpu":
    return None
  return {"xla_cpu_experimental_ynn_fusion_type": ""}


def jit_training(fn, **kwargs):
  """jax.jit with the training compiler options of this backend."""
  options = training_compiler_options()
  if options:
    kwargs["compiler_options"] = options
  return jax.jit(fn, **kwargs)
