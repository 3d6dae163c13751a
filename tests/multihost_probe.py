"""Run by tests/test_multihost.py under `python -m arm_jax.launch`: arm_jax.multihost's reads and
agreements across processes, printed as one JSON line per process for the test to check.

argv[1] = the process that raises its flag for any_process (-1: none).
"""

import json
import sys

from arm_jax import multihost


def main() -> None:
  joined = multihost.initialize()
  import jax  # noqa: PLC0415  after initialize, as main.py does
  import jax.numpy as jnp  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415
  from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: PLC0415

  from arm_jax import sharding as sharding_lib  # noqa: PLC0415
  from arm_jax.training.loop import params_checksum  # noqa: PLC0415

  mesh = sharding_lib.make_mesh((-1, 1, 1))
  rows = np.arange(8 * 3, dtype=np.int32).reshape(8, 3)  # every process holds the whole batch
  placed = jax.device_put(rows, NamedSharding(mesh, P(("data", "fsdp"))))
  doubled = jax.jit(lambda x: x * 2)(placed)  # still split over both processes' devices
  total = jax.jit(jnp.sum)(placed)  # replicated
  flag_owner = int(sys.argv[1])
  print(json.dumps(dict(
      joined=joined, process=jax.process_index(), processes=jax.process_count(),
      local_devices=jax.local_device_count(), devices=jax.device_count(),
      local_rows=sorted({int(i) for s in placed.addressable_shards
                         for i in np.arange(8)[s.index[0]]}),
      doubled=multihost.host_array(doubled).tolist(), total=int(multihost.host_array(total)),
      any_flag=multihost.any_process(jax.process_index() == flag_owner),
      checksum=params_checksum({"w": doubled}), main=multihost.is_main())), flush=True)
  multihost.assert_same("equal everywhere", "a test value")
  try:
    multihost.assert_same(f"process {jax.process_index()}", "a test value")
  except RuntimeError as e:
    print(json.dumps(dict(process=jax.process_index(), mismatch=str(e))), flush=True)


if __name__ == "__main__":
  main()
