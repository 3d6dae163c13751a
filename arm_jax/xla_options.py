"""XLA settings: the process-wide ones entry points apply, and per-compilation options for the
shapes each job runs.

configure_process() is called by the entry points (main.py, the generate and evaluate CLIs, the
experiments scripts, the test session) before JAX creates its CPU client; importing arm_jax
changes nothing.

XLA:CPU in jaxlib 0.10 hands every dot to YNNPACK by default (`individual_dot`). For the
training forward and backward (thousands of rows times a weight) Eigen's GEMM is faster at
every SmolLM2 layer shape, measured on a 2-core VM in GFLOP/s (YNNPACK -> Eigen):
[4096, 576] x [576, 3072] 89 -> 122, x [1536, 576] 122 -> 155, x [576, 576] 85 -> 152, and
the transposed forms of the backward alike. Options passed to one `jax.jit` touch only that
compilation, so decoding keeps the process-wide defaults. Off the CPU backend nothing is set.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import jax


def configure_process() -> None:
  """Routes XLA:CPU dots through XNNPACK unless the user chose otherwise.

  Decode multiplies a few rows by every weight matrix; XLA's default CPU dot streams the
  weights at a fraction of memory bandwidth there, XNNPACK's kernels about twice as fast
  (SmolLM2-135M greedy decode, batch 8: 28 -> 57 new tokens/s on a 2-core VM, same tokens).
  Only xla_cpu_* flags are touched, so GPU and TPU runs are unaffected. It must run before jax
  creates its CPU client (the first device use). Opt out with ARM_JAX_XNNPACK=0 or by setting
  --xla_cpu_use_xnnpack yourself.
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if os.environ.get("ARM_JAX_XNNPACK", "1") == "0" or "xla_cpu_use_xnnpack" in flags:
    return
  os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_use_xnnpack=true").strip()


_TARGETS: list[str] = []  # target_platform's stack


@contextlib.contextmanager
def target_platform(platform: str) -> Iterator[None]:
  """Within the block, functions made by jit_training compile for `platform` rather than this
  process's backend (arm_jax.plan compiles TPU programs on a CPU host): no CPU-only option."""
  _TARGETS.append(platform)
  try:
    yield
  finally:
    _TARGETS.pop()


def training_compiler_options() -> dict[str, str] | None:
  """compiler_options for a jitted training step or training-shaped forward; None off CPU."""
  platform = _TARGETS[-1] if _TARGETS else jax.default_backend()
  if platform != "cpu":
    return None
  return {"xla_cpu_experimental_ynn_fusion_type": ""}


def jit_training(fn, **kwargs):
  """jax.jit with the training compiler options of this backend."""
  options = training_compiler_options()
  if options:
    kwargs["compiler_options"] = options
  return jax.jit(fn, **kwargs)
