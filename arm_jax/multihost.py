"""Several processes, one run: joining, reading global arrays on the host, agreeing to stop.

Every process runs the same program on the same host-side data (docs/multihost.md): the pair
table, each global batch (a function of seed, phase and step), the sampled texts and their
rewards are computed identically everywhere, and `jax.device_put(batch, sharding)` places only
the rows of the process's own devices. What comes back from the devices is gathered with
`host_array`, so every process holds the same global value again; process 0 alone writes files.

Joining (`initialize`, called by main.py and `python -m arm_jax.evaluate`):
- explicit: JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES, JAX_PROCESS_ID
  (what `python -m arm_jax.launch` sets for local processes, and what a GPU cluster without a
  scheduler JAX knows needs on each host);
- detected: a TPU VM pod slice (TPU_WORKER_HOSTNAMES lists several hosts) or a SLURM job with
  several tasks, where jax.distributed.initialize() finds the coordinator itself.
CPU processes exchange collectives through gloo. A process that dies is noticed by the others
within ARM_JAX_HEARTBEAT_SECONDS (default 100, JAX's), after which they abort with an error.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def _int_env(name: str) -> int:
  value = os.environ[name]
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"{name}={value!r}: expected a whole number") from None


def _detected_cluster() -> str | None:
  """The multi-process cluster jax.distributed.initialize() detects by itself, if any."""
  hosts = [h for h in os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]
  if len(hosts) > 1:
    return f"TPU pod slice of {len(hosts)} hosts"
  if os.environ.get("SLURM_JOB_ID") and int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1:
    return f"SLURM job of {os.environ['SLURM_NTASKS']} tasks"
  return None


def initialize() -> bool:
  """Joins the multi-process run the environment describes (module doc); False when there is
  none (one process). Call before any device is used."""
  explicit = [name for name in _ENV if os.environ.get(name)]
  if explicit and len(explicit) != len(_ENV):
    missing = [name for name in _ENV if name not in explicit]
    raise ValueError(f"{', '.join(explicit)} set but {', '.join(missing)} not: a multi-process "
                     "run needs all three (python -m arm_jax.launch sets them)")
  kwargs: dict[str, Any] = dict(
      heartbeat_timeout_seconds=_int_env("ARM_JAX_HEARTBEAT_SECONDS")
      if os.environ.get("ARM_JAX_HEARTBEAT_SECONDS") else 100)
  if explicit:
    count, index = _int_env("JAX_NUM_PROCESSES"), _int_env("JAX_PROCESS_ID")
    if not 0 <= index < count:
      raise ValueError(f"JAX_PROCESS_ID={index} is outside 0..{count - 1} "
                       f"(JAX_NUM_PROCESSES={count})")
    if count == 1:
      return False
    kwargs.update(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                  num_processes=count, process_id=index)
    where = f"{os.environ['JAX_COORDINATOR_ADDRESS']}, process {index} of {count}"
  else:
    where = _detected_cluster()
    if where is None:
      return False
  # Only the CPU client reads this; TPU and GPU collectives are unaffected.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)
  logging.info("joined a multi-process run (%s): %d processes, %d local of %d devices", where,
               jax.process_count(), jax.local_device_count(), jax.device_count())
  return True


def is_main() -> bool:
  """Process 0, the one that writes files and prints."""
  return jax.process_index() == 0


def host_array(x: Any) -> np.ndarray:
  """The whole value of an array on this host, whichever processes hold its shards (a
  collective when they are not all local: every process must call it)."""
  if not isinstance(x, jax.Array) or x.is_fully_addressable:
    return np.asarray(jax.device_get(x))
  if x.is_fully_replicated:
    return np.asarray(x.addressable_data(0))
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def host_tree(tree: Any) -> Any:
  return jax.tree.map(host_array, tree)


def any_process(flag: bool) -> bool:
  """True when `flag` is true on any process (a collective with more than one process)."""
  if jax.process_count() == 1:
    return bool(flag)
  flags = multihost_utils.process_allgather(np.asarray([bool(flag)], np.int32))
  return bool(np.asarray(flags).any())


def assert_same(value: str, what: str) -> None:
  """Raises on every process unless `value` (a digest, a position) is equal on all of them:
  a run whose processes drifted apart stops instead of writing a mixed checkpoint."""
  if jax.process_count() == 1:
    return
  data = np.frombuffer(value.encode().ljust(64)[:64], np.uint8)
  everyone = np.asarray(multihost_utils.process_allgather(data)).reshape(jax.process_count(), -1)
  if (everyone != everyone[0]).any():
    values = [bytes(row).decode(errors="replace").strip() for row in everyone]
    raise RuntimeError(f"{what} differs between processes: {values}")
