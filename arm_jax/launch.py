"""Local multi-process runs: `python -m arm_jax.launch --processes 2 --devices_per_process 4 --
--config configs/toy.py --workdir runs/toy2`.

Starts N copies of main.py (or of `--module`, e.g. arm_jax.evaluate) on this machine, joined as
one JAX run through the variables arm_jax.multihost reads (JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID). For tests and debugging of the multi-host path on a CPU
(each process gets `--devices_per_process` host devices) and for one host with several GPUs
(`--gpus_per_process` splits CUDA_VISIBLE_DEVICES). A pod slice needs none of this: the same
command runs on every host (docs/multihost.md).

Each output line is prefixed with its process index ("[1] ..."). SIGTERM and SIGINT are passed
to every process (a SIGTERM makes the run save and exit 0: arm_jax.training.loop.Preemption).
When a process fails the others are killed at once (any collective they wait in can no longer
finish; checkpoints are written atomically, so the newest complete one stays) and the launcher
exits with the first failure's code; 0 only when every process exits 0.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

_REPO_MAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "main.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
  if "--" in argv:
    split = argv.index("--")
    own, rest = argv[:split], argv[split + 1:]
  else:
    own, rest = argv, []
  p = argparse.ArgumentParser(prog="python -m arm_jax.launch", description=__doc__.split("\n")[0])
  p.add_argument("--processes", type=int, required=True, help="how many processes to start")
  p.add_argument("--devices_per_process", type=int, default=None,
                 help="CPU devices per process (XLA_FLAGS=--xla_force_host_platform_device_count)")
  p.add_argument("--gpus_per_process", type=int, default=None,
                 help="GPUs per process: process i sees GPUs i*N .. i*N+N-1")
  p.add_argument("--port", type=int, default=None, help="coordinator port (default: a free one)")
  p.add_argument("--module", default=None,
                 help="run `python -m MODULE` instead of main.py (e.g. arm_jax.evaluate)")
  p.add_argument("--script", default=_REPO_MAIN, help="the script to run (default: main.py)")
  args = p.parse_args(own)
  if args.processes < 1:
    p.error(f"--processes={args.processes}: expected 1 or more")
  for name in ("devices_per_process", "gpus_per_process"):
    if getattr(args, name) is not None and getattr(args, name) < 1:
      p.error(f"--{name}={getattr(args, name)}: expected 1 or more")
  if args.module is None and not os.path.isfile(args.script):
    p.error(f"--script={args.script!r} does not exist (main.py is found next to the arm_jax "
            "package of a source checkout; pass --script or --module)")
  return args, rest


def _environment(args: argparse.Namespace, index: int, port: int) -> dict[str, str]:
  env = dict(os.environ, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
             JAX_NUM_PROCESSES=str(args.processes), JAX_PROCESS_ID=str(index),
             PYTHONUNBUFFERED="1")
  if args.devices_per_process is not None:
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join(
        flags + [f"--xla_force_host_platform_device_count={args.devices_per_process}"])
  if args.gpus_per_process is not None:
    n = args.gpus_per_process
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(index * n, index * n + n))
  return env


def _pump(stream, prefix: bytes, out, lock: threading.Lock) -> None:
  """Copies a child's output line by line, each line prefixed with its process index (and each
  carriage return's redraw within a line: progress bars)."""
  for line in iter(stream.readline, b""):
    with lock:
      out.write(prefix + re.sub(rb"\r(?!\n)", b"\r" + prefix, line))
      out.flush()
  stream.close()


def launch(argv: list[str]) -> int:
  args, rest = _parse(argv)
  port = args.port or _free_port()
  command = [sys.executable] + (["-m", args.module] if args.module else [args.script]) + rest
  lock = threading.Lock()
  children: list[subprocess.Popen] = []
  pumps: list[threading.Thread] = []
  for i in range(args.processes):
    child = subprocess.Popen(command, env=_environment(args, i, port), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
    children.append(child)
    t = threading.Thread(target=_pump, args=(child.stdout, f"[{i}] ".encode(),
                                             sys.stdout.buffer, lock), daemon=True)
    t.start()
    pumps.append(t)

  def forward(signum, frame):  # noqa: ARG001
    for c in children:
      if c.poll() is None:
        c.send_signal(signum)
  previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
  failed: tuple[int, int] | None = None  # (process, exit code) of the first failure
  try:
    while any(c.poll() is None for c in children):
      for i, c in enumerate(children):
        if failed is None and c.poll() not in (None, 0):
          failed = (i, c.returncode)
          with lock:
            sys.stdout.write(f"[launch] process {i} exited with {c.returncode}: stopping the "
                             "others\n")
            sys.stdout.flush()
          for other in children:
            if other.poll() is None:
              os.killpg(other.pid, signal.SIGKILL)
      time.sleep(0.1)
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
  for t in pumps:
    t.join(timeout=5)
  if failed is None:
    failed = next(((i, c.returncode) for i, c in enumerate(children) if c.returncode), None)
  if failed is None:
    return 0
  code = failed[1]
  return code if code > 0 else 128 - code  # killed by signal S: 128 + S, as a shell reports


def main() -> None:
  sys.exit(launch(sys.argv[1:]))


if __name__ == "__main__":
  main()
