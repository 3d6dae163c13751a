"""arm_jax: Rubric-ARM reward models (rubric generator + judge) trained by alternating RL."""

import os as _os


def _prefer_xnnpack_dots() -> None:
  """Route XLA:CPU dots through XNNPACK unless the user chose otherwise.

  Decode multiplies a few rows by every weight matrix; XLA's default CPU dot streams the
  weights at a fraction of memory bandwidth there, XNNPACK's kernels about twice as fast
  (SmolLM2-135M greedy decode, batch 8: 28 -> 57 new tokens/s on a 2-core VM, same tokens).
  Only xla_cpu_* flags are touched, so GPU and TPU runs are unaffected. It must run before
  jax creates its CPU client, which is why it lives at package import. Opt out with
  ARM_JAX_XNNPACK=0 or by setting --xla_cpu_use_xnnpack yourself.
  """
  flags = _os.environ.get("XLA_FLAGS", "")
  if _os.environ.get("ARM_JAX_XNNPACK", "1") == "0" or "xla_cpu_use_xnnpack" in flags:
    return
  _os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_use_xnnpack=true").strip()


_prefer_xnnpack_dots()
