"""Multi-host: the tiny toy run (test_train_resume.OVERRIDES) on 2 processes x 4 CPU devices,
started by `python -m arm_jax.launch` and joined through gloo, against the same run on this
process's 8 devices (conftest.tiny_toy_run).

Bitwise equality with the one-process run is not possible: the gradient all-reduce sums the 8
devices' partial gradients in another order across processes (gloo) than within one (XLA:CPU),
so the last bits of the updates differ. The tests bound the difference instead (every record
close, the same sampled texts' accuracies, the parameters within 1e-3) and hold the 2-process
run to bitwise reproducibility: interrupted 2-process runs end with its checksums.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from arm_jax import multihost
from arm_jax.launch import _free_port
from test_train_resume import OVERRIDES, SFT_STEPS, TOY, records, trajectory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = [sys.executable, "-m", "arm_jax.launch", "--processes", "2", "--devices_per_process",
          "4"]
# Checkpoints every 20 steps instead of every step (each multi-process save waits for both
# processes): how often a run saves changes none of its records or parameters.
TRAIN_ARGS = ["--config", TOY] + [f"--config.{k}={v}" for k, v in
                                  dict(OVERRIDES, **{"checkpoint.every_steps": 20}).items()]
_JOIN = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def _env(**extra):
  env = {k: v for k, v in os.environ.items() if k not in _JOIN}
  env.update({"ARM_JAX_HEARTBEAT_SECONDS": "20", **extra})
  return env


def start(log_path, *args):
  """`python -m arm_jax.launch ... -- args` (main.py), its output appended to log_path."""
  log = open(log_path, "ab")  # noqa: SIM115  closed by finish()
  proc = subprocess.Popen(LAUNCH + ["--"] + list(args), stdout=log,
                          stderr=subprocess.STDOUT, env=_env(), cwd=REPO)
  proc.log = log
  return proc


def finish(proc, timeout=900):
  try:
    return proc.wait(timeout=timeout)
  finally:
    proc.log.close()


def children(proc):
  """{JAX_PROCESS_ID: pid} of the launcher's processes."""
  with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
    pids = [int(p) for p in f.read().split()]
  out = {}
  for pid in pids:
    with open(f"/proc/{pid}/environ", "rb") as f:
      env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
    out[int(env[b"JAX_PROCESS_ID"])] = pid
  return out


def wait_for_step(proc, workdir, step, timeout=600):
  """Blocks until metrics.jsonl has a record at global_step >= step."""
  path = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + timeout
  while time.time() < deadline:
    assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before step {step}"
    if os.path.exists(path):
      with open(path) as f:
        if any(json.loads(line).get("global_step", -1) >= step for line in f if line.strip()):
          return
    time.sleep(0.2)
  raise TimeoutError(f"no record at step {step} within {timeout}s")


def identity(record):
  """Which record it is: (phase, role, round, phase index, step, global step)."""
  return tuple(record.get(k) for k in ("phase", "role", "round", "phase_index", "step",
                                       "global_step"))


def final_params(workdir):
  """Both policies of the newest checkpoint, as numpy arrays."""
  directory = os.path.join(workdir, "checkpoints")
  step = max(int(s) for s in os.listdir(directory) if s.isdigit())
  path = os.path.join(directory, str(step), "state")
  checkpointer = ocp.PyTreeCheckpointer()
  tree = checkpointer.metadata(path).item_metadata.tree
  args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  state = checkpointer.restore(path, restore_args=args)
  return {role: state[role] for role in ("generator", "judge")}


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
  """(workdir, done record, wall seconds, launcher output) of the uninterrupted 2 x 4 run."""
  root = tmp_path_factory.mktemp("two_processes")
  workdir, log = str(root / "run"), str(root / "launch.log")
  t0 = time.time()
  code = finish(start(log, *TRAIN_ARGS, "--workdir", workdir))
  seconds = time.time() - t0
  with open(log, errors="replace") as f:
    output = f.read()
  assert code == 0, output[-3000:]
  return workdir, records(workdir)[-1], seconds, output


@pytest.mark.slow  # a two-process training run (~150 s on CI); the evaluator and the probes below
# run on two processes in the default tier
def test_two_processes_match_one_process(two_processes, tiny_toy_run):
  workdir, done, seconds, output = two_processes
  one_dir, one_done = tiny_toy_run
  assert "[0] " in output and "[1] " in output  # both processes' lines, prefixed
  two, one = trajectory(workdir), trajectory(one_dir)
  assert [identity(r) for r in two] == [identity(r) for r in one]  # the same records, in order
  for a, b in zip(two, one):
    assert a.keys() == b.keys()
    for k in a:
      if k.endswith("_checksum"):
        continue
      if isinstance(a[k], float) and isinstance(b[k], float):
        assert math.isclose(a[k], b[k], rel_tol=1e-2, abs_tol=1e-5), (identity(a), k, a[k], b[k])
      else:
        assert a[k] == b[k], (identity(a), k, a[k], b[k])
  diffs = {}
  p2, p1 = final_params(workdir), final_params(one_dir)
  for role in ("generator", "judge"):
    diffs[role] = max(jax.tree.leaves(jax.tree.map(lambda x, y: float(np.abs(x - y).max()),
                                                   p2[role], p1[role])))
    scale = max(float(np.abs(x).max()) for x in jax.tree.leaves(p1[role]))
    assert 0 < diffs[role] < 1e-3 * scale, (role, diffs[role], scale)
  print(f"\n2 x 4 processes: {seconds:.0f}s, max |param difference| vs 1 x 8: {diffs}")


@pytest.mark.slow  # shares the two-process training run
def test_two_process_records_are_written_once(two_processes):
  rs = records(two_processes[0])
  ids = [identity(r) for r in rs]
  assert len(ids) == len(set(ids)) and rs[-1]["phase"] == "done"
  assert os.path.isfile(os.path.join(two_processes[0], "config.json"))
  assert os.path.isfile(os.path.join(two_processes[0], "curves.png"))


@pytest.mark.slow  # the default tier SIGKILLs a one-process run (test_train_resume.py)
def test_sigterm_to_one_process_then_sigkill_of_both_resume_exactly(two_processes, tmp_path):
  """SIGTERM to process 1 alone during the warm start: both save at the same step and exit 0.
  The same command again, SIGKILL of both processes in the middle of the judge phase. Once more
  to the end: the uninterrupted 2-process checksums and records."""
  ref_dir, ref_done, _, _ = two_processes
  workdir, log = str(tmp_path / "run"), str(tmp_path / "launch.log")
  command = [*TRAIN_ARGS, "--workdir", workdir]

  proc = start(log, *command)
  wait_for_step(proc, workdir, 30)  # the generator's warm start: steps 1-40
  os.kill(children(proc)[1], signal.SIGTERM)
  assert finish(proc) == 0
  with open(log, errors="replace") as f:
    saved = {line[:4]: line.rsplit("saved at global step ", 1)[1].split(",")[0]
             for line in f if "preempted: saved at global step" in line}
  assert sorted(saved) == ["[0] ", "[1] "] and len(set(saved.values())) == 1, saved
  step = int(saved["[0] "])
  assert 30 <= step < SFT_STEPS
  assert max(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))
             if s.isdigit()) == step
  assert records(workdir)[-1]["global_step"] == step - 1  # a step's record precedes its count

  proc = start(log, *command)
  wait_for_step(proc, workdir, SFT_STEPS + 1)  # judge phase: global steps 81-82
  for pid in children(proc).values():
    os.kill(pid, signal.SIGKILL)
  assert finish(proc) != 0
  assert records(workdir)[-1]["phase"] != "done"

  assert finish(start(log, *command)) == 0
  assert records(workdir)[-1] == ref_done
  assert trajectory(workdir) == trajectory(ref_dir)  # each record once, bit-identical


def test_evaluate_on_two_processes_equals_one(tiny_toy_run, tmp_path):
  """`python -m arm_jax.evaluate` of the one-process run, on 2 x 4 and on 1 x 8 processes (the
  run is test_train_resume.py's too: conftest.py keeps both files on one xdist worker)."""
  args = ["--config", os.path.join(REPO, "configs", "evaluate_toy.py"),
          f"--config.trained.workdir={tiny_toy_run[0]}",
          "--config.benchmark_specs.held_out.max_examples=4", "--config.batch_size=8",
          "--config.system_specs.trained.votes=2"]
  outs = {}
  for n in (1, 2):
    out = str(tmp_path / f"eval{n}")
    cmd = [sys.executable, "-m", "arm_jax.launch", "--processes", str(n),
           "--devices_per_process", str(8 // n), "--module", "arm_jax.evaluate", "--",
           *args, f"--workdir={out}"]
    done = subprocess.run(cmd, env=_env(), cwd=REPO, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    with open(os.path.join(out, "results.json")) as f:
      outs[n] = json.load(f)
    assert (done.stdout.count("[0] outputs in "), done.stdout.count("[1] outputs in ")) == (1, 0)
  # One process keeps a generation journal; two do not (arm_jax.evaluation.journal).
  assert sorted(os.listdir(tmp_path / "eval2")) == sorted(
      set(os.listdir(tmp_path / "eval1")) - {"generations.jsonl"})
  assert "journal" not in outs[2] and outs[1].pop("journal")["batches_sampled"] > 0

  def numbers(value):
    """Everything but wall times (and the markdown table, which shows them)."""
    if isinstance(value, dict):
      return {k: numbers(v) for k, v in value.items()
              if not k.startswith("seconds") and k != "table"}
    return [numbers(v) for v in value] if isinstance(value, list) else value
  assert numbers(outs[2]) == numbers(outs[1])
  assert numbers(outs[2])["systems"]["trained"]["benchmarks"]["held_out"]["examples"] > 0
  predictions = {n: [numbers(json.loads(line)) for line in
                     (tmp_path / f"eval{n}" / "predictions.jsonl").read_text().splitlines()]
                 for n in (1, 2)}
  assert predictions[2] == predictions[1] and predictions[1]  # the same rubrics and judgments


# --- the pieces, without a training run ----------------------------------------------------------

def _probe(processes, flag_owner):
  cmd = [sys.executable, "-m", "arm_jax.launch", "--processes", str(processes),
         "--devices_per_process", str(8 // processes), "--script",
         os.path.join(REPO, "tests", "multihost_probe.py"), "--", str(flag_owner)]
  done = subprocess.run(cmd, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=300,
                        check=False)
  assert done.returncode == 0, done.stdout[-3000:]
  lines = [json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines()
           if line[3:4] == " " and line[4:5] == "{"]
  return ({d["process"]: d for d in lines if "joined" in d},
          {d["process"]: d["mismatch"] for d in lines if "mismatch" in d})


def test_host_reads_and_agreement_across_processes():
  """Two processes: each places its half of a batch, and every host read (a split array, a
  replicated one, a checksum) gives every process the whole value the one-process run gives."""
  two, mismatch = _probe(2, flag_owner=1)
  one, _ = _probe(1, flag_owner=-1)
  assert sorted(two) == [0, 1] and all(d["joined"] for d in two.values())
  assert [two[i]["local_rows"] for i in (0, 1)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
  expected = (np.arange(24).reshape(8, 3) * 2).tolist()
  for d in (two[0], two[1], one[0]):
    assert d["doubled"] == expected and d["total"] == 276
    assert d["checksum"] == one[0]["checksum"]
  assert two[0]["any_flag"] and two[1]["any_flag"]  # process 1 raised it: both see it
  assert not one[0]["any_flag"] and not one[0]["joined"]
  assert [two[0]["main"], two[1]["main"]] == [True, False]
  assert sorted(mismatch) == [0, 1] and "['process 0', 'process 1']" in mismatch[0]


def test_launcher_fails_when_a_process_fails(tmp_path):
  """A process that exits non-zero stops the other (which would wait forever in a collective)
  and the launcher reports the failure: without that the launcher would wait for the other's
  two-minute sleep and the call's timeout would fail the test."""
  script = tmp_path / "fail_one.py"
  script.write_text("import os, sys, time\n"
                    "if os.environ['JAX_PROCESS_ID'] == '1':\n  sys.exit(3)\n"
                    "time.sleep(120)\n")
  done = subprocess.run(LAUNCH + ["--script", str(script)], env=_env(), capture_output=True,
                        text=True, timeout=60, check=False)
  assert done.returncode == 3
  assert "[launch] process 1 exited with 3" in done.stdout


def test_initialize_reads_the_environment(monkeypatch):
  for k in _JOIN + ("TPU_WORKER_HOSTNAMES", "SLURM_JOB_ID"):
    monkeypatch.delenv(k, raising=False)
  assert multihost.initialize() is False  # nothing set: one process
  monkeypatch.setenv("JAX_NUM_PROCESSES", "1")
  monkeypatch.setenv("JAX_PROCESS_ID", "0")
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1")
  assert multihost.initialize() is False  # one process of one: nothing to join
  monkeypatch.setenv("JAX_PROCESS_ID", "2")
  with pytest.raises(ValueError, match=r"JAX_PROCESS_ID=2 is outside 0..0"):
    multihost.initialize()
  monkeypatch.setenv("JAX_PROCESS_ID", "x")
  with pytest.raises(ValueError, match=r"JAX_PROCESS_ID='x': expected a whole number"):
    multihost.initialize()
  monkeypatch.delenv("JAX_COORDINATOR_ADDRESS")
  with pytest.raises(ValueError, match="JAX_COORDINATOR_ADDRESS not"):
    multihost.initialize()


def test_launcher_rejects_bad_arguments():
  for args, message in ((["--processes", "0"], "--processes=0: expected 1 or more"),
                        (["--processes", "2", "--script", "/nonexistent.py"],
                         "--script='/nonexistent.py' does not exist")):
    done = subprocess.run([sys.executable, "-m", "arm_jax.launch", *args], capture_output=True,
                          text=True, env=_env(), timeout=60, check=False)
    assert done.returncode == 2 and message in done.stderr, done.stderr


@pytest.mark.slow  # waits for the heartbeat timeout
def test_a_killed_process_makes_the_other_exit_without_a_launcher(tmp_path):
  """No launcher (a pod slice): SIGKILL of process 1 makes process 0 exit non-zero within the
  heartbeat timeout instead of waiting in a collective forever."""
  workdir = str(tmp_path / "run")
  procs = []
  env = _env(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{_free_port()}", JAX_NUM_PROCESSES="2",
             ARM_JAX_HEARTBEAT_SECONDS="10",
             XLA_FLAGS="--xla_force_host_platform_device_count=4")
  for i in range(2):
    procs.append(subprocess.Popen([sys.executable, os.path.join(REPO, "main.py"), *TRAIN_ARGS,
                                   "--workdir", workdir], env=dict(env, JAX_PROCESS_ID=str(i)),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO))
  try:
    wait_for_step(procs[0], workdir, 20)
    procs[1].kill()
    assert procs[0].wait(timeout=120) != 0  # a hang would raise TimeoutExpired here
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()

