"""experiments/real_lm_pipeline.py: the budget's sizes, the base-instruction splits, the stages'
bookkeeping (skip, resume, wall time over attempts, failures), the report's IFEval figures
against a plain recount, and (slow tier) every stage end to end with a tiny random model."""

import dataclasses
import functools
import importlib.util
import json
import os
import shutil
import sys
import time

import pytest

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments",
                     "real_lm_pipeline.py")
_spec = importlib.util.spec_from_file_location("real_lm_pipeline", _PATH)
pipeline = importlib.util.module_from_spec(_spec)
sys.modules["real_lm_pipeline"] = pipeline  # its dataclasses look their module up
_spec.loader.exec_module(pipeline)


# --- the budget -----------------------------------------------------------------------------------

def test_the_budget_scales_sizes_to_fit_and_no_budget_is_the_full_run():
  full = pipeline.Sizes()
  assert pipeline.plan(None) == full
  full_hours = sum(pipeline.estimate(full).values()) / 3600
  assert pipeline.plan(full_hours + 1) == full
  before = None
  least = sum(pipeline.estimate(pipeline.scaled(0.0)).values()) / 3600
  for hours in (least + 0.2, 4, 6, 9, full_hours - 0.1):
    sizes = pipeline.plan(hours)
    assert sum(pipeline.estimate(sizes).values()) <= hours * 3600
    # Within 5% of the budget: the search does not leave time unused.
    assert sum(pipeline.estimate(sizes).values()) >= 0.95 * hours * 3600 or sizes == full
    if before is not None:  # more time never means fewer prompts or steps
      assert all(getattr(sizes, k) >= getattr(before, k) for k in pipeline.SCALED)
    before = sizes
  # The fixed settings never scale.
  assert (before.samples, before.variants, before.held_out_fraction) == (
      full.samples, full.variants, full.held_out_fraction)
  with pytest.raises(ValueError, match=f"needs about {least:.1f} hours"):
    pipeline.plan(least - 0.2)


def test_size_overrides_are_typed_and_checked():
  assert pipeline.parse_sizes("rm_prompts=40, rl_fraction=0.5") == dict(rm_prompts=40,
                                                                         rl_fraction=0.5)
  for bad, message in (("rm_prompt=4", "NAME one of rm_prompts"),
                       ("rounds=two", "'two' is not an int"), ("rounds=0", "must be positive"),
                       ("rounds", "expected NAME=VALUE")):
    with pytest.raises(ValueError, match=message):
      pipeline.parse_sizes(bad)


def test_a_workdir_keeps_the_sizes_it_was_planned_with(tmp_path):
  work = str(tmp_path / "w")
  first = pipeline._load_plan(work, 6.0, {"rounds": 1})
  assert first.rounds == 1 and first == dataclasses.replace(pipeline.plan(6.0), rounds=1)
  assert pipeline._load_plan(work, None, {}) == first  # a resume
  assert pipeline._load_plan(work, 6.0, {"rounds": 1}) == first
  with pytest.raises(ValueError, match="--budget_hours 6.0, not 8.0"):
    pipeline._load_plan(work, 8.0, {})
  # A size may change until a stage that reads it starts; the change is recorded.
  os.makedirs(os.path.join(work, "stages"))
  with open(os.path.join(work, "stages", "pairs.partial.json"), "w") as f:
    json.dump({"seconds": 10.0}, f)
  second = pipeline._load_plan(work, None, {"rounds": 2})
  assert second == dataclasses.replace(first, rounds=2)
  assert pipeline._load_plan(work, None, {}) == second
  with open(os.path.join(work, "plan.json")) as f:
    assert json.load(f)["changes"] == [{"rounds": [1, 2]}]
  with pytest.raises(ValueError, match=r"rm_prompts .* pairs has started"):
    pipeline._load_plan(work, None, {"rm_prompts": first.rm_prompts + 1})
  with open(os.path.join(work, "stages", "train.json"), "w") as f:
    json.dump({"seconds": 10.0}, f)
  with pytest.raises(ValueError, match=r"rounds 2 then, 3 now, and train has started"):
    pipeline._load_plan(work, None, {"rounds": 3})


# --- the archive ---------------------------------------------------------------------------------

def _tree(root):
  out = {}
  for base, _, names in os.walk(root):
    for name in names:
      path = os.path.join(base, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = f.read()
  return out


def test_an_archive_restores_a_workdir_on_a_fresh_machine_and_does_not_churn(tmp_path):
  work, archive, fresh = (str(tmp_path / n) for n in ("w", "archive", "fresh"))
  files = {"plan.json": b'{"sizes": {}}', "stages/pairs.partial.json": b'{"seconds": 5.0}',
           "pairs/responses.jsonl": b'{"prompt": "a"}\n{"prompt": "b"}\n{"pro',  # mid-line
           "train/checkpoints/7/state/array.bin": bytes(range(256)) * 40,
           "train/checkpoints/7.orbax-checkpoint-tmp/x": b"partial save",
           "dpo_rl/checkpoints/9/big.bin": b"\0" * 3_000_000,
           "dpo_rl/checkpoints/9/meta.json": b"{}"}
  for rel, data in files.items():
    os.makedirs(os.path.dirname(os.path.join(work, rel)), exist_ok=True)
    with open(os.path.join(work, rel), "wb") as f:
      f.write(data)
  # 4 KB parts: the 10 KB array goes in three; the big file's whole checkpoint step is left out
  # (a step missing a file could not be restored).
  sync = functools.partial(pipeline.sync_archive, max_mb=2.0, part_mb=0.004)
  out = sync(work, archive)
  assert out["copied"] == 4 and out["skipped"] == {
      "train/checkpoints/7.orbax-checkpoint-tmp/x": "temporary",
      "dpo_rl/checkpoints/9/big.bin": "3.0 MB > 2 MB",
      "dpo_rl/checkpoints/9/meta.json": "its checkpoint step dpo_rl/checkpoints/9/ has a file "
                                        "over 2 MB"}
  # the log names the left-out step once, with its big file, not each of its files
  assert pipeline.skipped_summary(out["skipped"]) == (
      "checkpoint step dpo_rl/checkpoints/9/ whole, 2 files (1 over the limit: big.bin 3.0 MB)")
  stored = _tree(archive)
  assert "pairs/responses.jsonl.gz" in stored and "plan.json.gz" in stored
  parts = sorted(n for n in stored if n.startswith("train/checkpoints/7/state/array.bin"))
  assert [n.rsplit(".", 1)[1] for n in parts] == ["part000", "part001", "part002"]
  assert b"".join(stored[n] for n in parts) == files["train/checkpoints/7/state/array.bin"]
  assert max(map(len, stored.values())) <= 4000
  # Unchanged files give the same bytes (gzip without a timestamp): nothing to commit.
  again = sync(work, archive)
  assert again["copied"] == 0 and again["unchanged"] == 4 and _tree(archive) == stored
  restored = pipeline.restore_archive(fresh, archive)
  assert restored == {"restored": 4, "present": 0}
  back = _tree(fresh)
  assert back["pairs/responses.jsonl"] == b'{"prompt": "a"}\n{"prompt": "b"}\n'  # whole lines
  assert back["train/checkpoints/7/state/array.bin"] == files["train/checkpoints/7/state/array.bin"]
  assert set(back) == {"plan.json", "stages/pairs.partial.json", "pairs/responses.jsonl",
                       "train/checkpoints/7/state/array.bin"}
  # A workdir's own files stay; a stage that finished replaces its partial record.
  with open(os.path.join(fresh, "plan.json"), "wb") as f:
    f.write(b"mine")
  os.remove(os.path.join(fresh, "stages/pairs.partial.json"))
  with open(os.path.join(fresh, "stages/pairs.json"), "wb") as f:
    f.write(b'{"seconds": 9.0}')
  assert pipeline.restore_archive(fresh, archive)["restored"] == 1  # only the partial comes back
  assert _tree(fresh)["plan.json"] == b"mine"
  os.remove(os.path.join(fresh, "stages/pairs.partial.json"))
  out = sync(fresh, archive)
  assert out["removed"] == 1 and "stages/pairs.partial.json.gz" not in _tree(archive)
  assert "stages/pairs.json.gz" in _tree(archive)
  # A changed file's new parts replace the old ones; a corrupted part is named, not restored.
  with open(os.path.join(fresh, "train/checkpoints/7/state/array.bin"), "r+b") as f:
    f.write(b"Y")
  sync(fresh, archive)
  new_parts = sorted(n for n in _tree(archive) if n.startswith("train/checkpoints/7/state/"))
  assert len(new_parts) == 3 and not set(new_parts) & set(parts)
  with open(os.path.join(archive, new_parts[1]), "r+b") as f:
    f.write(b"X")
  with pytest.raises(ValueError, match="array.bin: content does not match"):
    pipeline.restore_archive(str(tmp_path / "fresh2"), archive)


def test_a_machine_stopped_mid_sync_leaves_an_archive_that_restores(tmp_path, monkeypatch):
  work, archive = str(tmp_path / "w"), str(tmp_path / "archive")
  os.makedirs(os.path.join(work, "stages"))
  paths = {rel: os.path.join(work, rel) for rel in ("a.jsonl", "stages/b.json")}
  for rel, path in paths.items():
    with open(path, "w") as f:
      f.write(f"{rel} v1\n")
  pipeline.sync_archive(work, archive)
  for rel, path in paths.items():
    with open(path, "w") as f:
      f.write(f"{rel} v2\n")
  real, calls = pipeline._write_atomic, []

  def dies_on_third_write(path, data):  # a.jsonl.gz, the manifest, then b.json.gz: stop there
    calls.append(path)
    if len(calls) == 3:
      raise KeyboardInterrupt("machine reclaimed")
    real(path, data)

  monkeypatch.setattr(pipeline, "_write_atomic", dies_on_third_write)
  with pytest.raises(KeyboardInterrupt):
    pipeline.sync_archive(work, archive)
  monkeypatch.setattr(pipeline, "_write_atomic", real)
  fresh = str(tmp_path / "fresh")
  assert pipeline.restore_archive(fresh, archive) == {"restored": 2, "present": 0}
  back = _tree(fresh)  # the file written before the stop is new, the other still the old one
  assert back == {"a.jsonl": b"a.jsonl v2\n",
                  os.path.join("stages", "b.json"): b"stages/b.json v1\n"}
  # A file that vanishes between the listing and the read is skipped; its copy stays.
  real_getsize = os.path.getsize

  def vanish(path):
    if path.endswith("b.json"):
      raise FileNotFoundError(path)
    return real_getsize(path)

  monkeypatch.setattr(os.path, "getsize", vanish)
  out = pipeline.sync_archive(work, archive)
  assert out["skipped"] == {"stages/b.json": "vanished during the sync"} and out["removed"] == 0
  monkeypatch.setattr(os.path, "getsize", real_getsize)
  assert "stages/b.json.gz" in _tree(archive)


def test_an_orbax_checkpoint_split_into_parts_restores_on_a_fresh_machine(tmp_path):
  """A real checkpoint (TrainCheckpointer, orbax's OCDBT layout, 1.6 MB of arrays) goes through
  the archive in 0.25 MB parts and reads back equal on a fresh machine."""
  import numpy as np  # noqa: PLC0415
  from jax.tree_util import tree_map as jax_tree_map  # noqa: PLC0415
  from arm_jax.training.checkpoints import TrainCheckpointer  # noqa: PLC0415
  work, archive, fresh = (str(tmp_path / n) for n in ("w", "archive", "fresh"))
  rng = np.random.default_rng(0)
  state = {"judge": {"a": rng.standard_normal(200_000).astype(np.float32)},
           "judge_opt": {"mu": rng.standard_normal(200_000).astype(np.float32)}}
  ckpt = TrainCheckpointer(os.path.join(work, "train", "checkpoints"))
  ckpt.save(7, state, {"stage": "rl"})
  ckpt.close()
  out = pipeline.sync_archive(work, archive, part_mb=0.25)
  assert not {k: v for k, v in out["skipped"].items() if v != "temporary"}
  with open(os.path.join(archive, pipeline.ARCHIVE_MANIFEST)) as f:
    assert sum(e.get("parts", 0) for e in json.load(f)["files"].values()) >= 4
  assert max(map(len, _tree(archive).values())) <= 250_000
  pipeline.restore_archive(fresh, archive)
  back = TrainCheckpointer(os.path.join(fresh, "train", "checkpoints"), create=False)
  assert back.latest_step() == 7 and back.restore_meta(7) == {"stage": "rl"}
  import jax.numpy as jnp  # noqa: PLC0415
  restored = back.restore_state(7, jax_tree_map(jnp.asarray, state))
  back.close()
  for key in state:
    np.testing.assert_array_equal(np.asarray(restored[key][next(iter(state[key]))]),
                                  next(iter(state[key].values())))


def test_the_periodic_sync_archives_while_a_stage_runs_and_stops_with_it(tmp_path, capsys):
  work, archive = str(tmp_path / "w"), str(tmp_path / "archive")
  os.makedirs(work)
  failures = []

  def sync():
    if not failures:  # the first sync fails; the next ones carry on
      failures.append(1)
      raise OSError("disk full")
    pipeline.sync_archive(work, archive)

  with pipeline.PeriodicSync(sync, every_s=0.02):
    with open(os.path.join(work, "responses.jsonl"), "w") as f:
      f.write('{"prompt": "a"}\n')
    deadline = time.time() + 10
    while "responses.jsonl.gz" not in _tree(archive):  # os.walk of a missing dir: nothing
      assert time.time() < deadline, "the stage's file never reached the archive"
      time.sleep(0.01)
  with open(os.path.join(work, "late.json"), "w") as f:
    f.write("{}")
  time.sleep(0.1)  # stopped with the stage: no sync after it
  assert "late.json.gz" not in _tree(archive)
  assert "[archive] periodic sync failed: OSError: disk full" in capsys.readouterr().out
  with pytest.raises(SystemExit, match="--archive_every_min=-1: must be >= 0"):
    pipeline.main(["--workdir", work, "--archive", archive, "--archive_every_min", "-1"])


# --- splits by base instruction -------------------------------------------------------------------

def test_policy_prompts_share_no_base_instruction_with_the_reward_models():
  rows = [dict(prompt=f"p{b}-{v}", source=src, base_id=b, variant=v)
          for v in range(2) for src in ("alpaca_eval", "ifbench") for b in range(150)]
  rm, dpo = pipeline.split_prompts(rows, 0.3)
  assert len(rm) + len(dpo) == len(rows)
  rm_bases = {pipeline.base_of(r) for r in rm}
  dpo_bases = {pipeline.base_of(r) for r in dpo}
  assert not rm_bases & dpo_bases
  assert 0.22 < len(dpo_bases) / 300 < 0.38
  assert len(rm) == 2 * len(rm_bases)  # both variants of a base on its side
  assert rm == [r for r in rows if r in rm]  # file order kept
  assert pipeline.split_prompts(rows, 0.3) == (rm, dpo)  # the same every time


# --- stages ---------------------------------------------------------------------------------------

class _Fake(pipeline.Pipeline):
  """Stages that fail the first `fail` times, then write their attempt count."""

  def __init__(self, *args, fail=1, **kw):
    super().__init__(*args, log=lambda _: None, **kw)
    self.calls, self.fail = 0, fail

  def stage_prompts(self):
    self.calls += 1
    if self.calls <= self.fail:
      raise KeyboardInterrupt  # the user stops it
    return {"attempt": self.calls}


def test_a_stage_resumes_after_an_interruption_and_counts_every_attempts_time(tmp_path,
                                                                              monkeypatch):
  clock = iter([100.0, 103.0, 200.0, 201.0])  # attempt 1: 3 s; attempt 2: 1 s
  monkeypatch.setattr(pipeline, "STAGE_TICK_SECONDS", 60.0)  # no tick but the last
  monkeypatch.setattr(pipeline.time, "monotonic", lambda: next(clock))
  p = _Fake(str(tmp_path), pipeline.Sizes())
  with pytest.raises(KeyboardInterrupt):
    p.run("prompts")
  assert p.done("prompts") is None
  record = p.run("prompts")
  assert record["seconds"] == 4.0 and record["outputs"] == {"attempt": 2}
  assert record["attempts_seconds_before"] == 3.0
  assert not os.path.exists(tmp_path / "stages" / "prompts.partial.json")
  assert p.run("prompts") == record and p.calls == 2  # done: skipped, not rerun
  with pytest.raises(ValueError, match="unknown stage 'sample'"):
    p.run("sample")


def test_a_stages_time_leaves_out_its_stopped_command_and_gaps(tmp_path, monkeypatch):
  """SIGSTOP of a stage's command (the test suite borrowing the cores) and a gap in which the
  pipeline itself did not run are logged and left out of the stage's time."""
  import signal  # noqa: PLC0415
  import threading  # noqa: PLC0415
  monkeypatch.setattr(pipeline, "STAGE_TICK_SECONDS", 0.05)
  logs = []

  class P(pipeline.Pipeline):
    def stage_prompts(self):
      # 2 s of 0.05 s naps: a stopped process's nap ends while it is stopped, not its loop.
      self.command("prompts", ["-c", "import time\nfor _ in range(40): time.sleep(0.05)"])
      return {}

  p = P(str(tmp_path), pipeline.Sizes(), log=logs.append)

  def pause():
    while p.clock is None or p.clock.child is None:
      time.sleep(0.01)
    time.sleep(0.5)
    child = p.clock.child
    os.kill(child, signal.SIGSTOP)
    time.sleep(0.3)
    assert pipeline.process_stopped(child)
    time.sleep(2.7)  # 3 s stopped
    os.kill(child, signal.SIGCONT)

  t = threading.Thread(target=pause)
  start = time.monotonic()
  t.start()
  record = p.run("prompts")
  wall = time.monotonic() - start
  t.join()
  assert wall >= 4.5
  assert 1.5 <= record["seconds"] <= wall - 2.5, (record["seconds"], wall)
  assert any(line.startswith("[prompts] its command was stopped for 3 s") for line in logs), logs
  assert not pipeline.process_stopped(os.getpid())
  # A gap: 0.5 s counted, then 30 s in which the ticks did not come, then 0.5 s more.
  stamps = iter([0.0, 0.5, 30.5, 31.0])
  monkeypatch.setattr(pipeline.time, "monotonic", lambda: next(stamps))
  clock = pipeline.StageClock(logs.append, "train")
  for _ in range(3):
    clock.tick()
  assert clock.seconds == 1.0
  assert logs[-1] == "[train] 30 s in which this process did not run: not counted"


def test_a_failing_command_names_its_stage_and_shows_its_log(tmp_path):
  p = pipeline.Pipeline(str(tmp_path), pipeline.Sizes(), log=lambda _: None)
  with pytest.raises(RuntimeError, match=r"stage pairs failed \(exit 3\)(.|\n)*boom"):
    p.command("pairs", ["-c", "import sys; print('boom'); sys.exit(3)"])
  p.command("pairs", ["-c", "print('fine')"])
  text = (tmp_path / "logs" / "pairs.log").read_text()
  assert text.count("=== ") == 2 and "boom" in text and "fine" in text


def test_sigterm_stops_a_stage_kills_its_command_and_keeps_its_time(tmp_path):
  import signal  # noqa: PLC0415
  import subprocess  # noqa: PLC0415
  import time  # noqa: PLC0415
  # Started as a shell's background job would be: SIGINT ignored (set in the child itself: no
  # preexec_fn, which forks a process that may have JAX's threads).
  script = f"""
import importlib.util, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
spec = importlib.util.spec_from_file_location("real_lm_pipeline", {_PATH!r})
m = importlib.util.module_from_spec(spec); sys.modules["real_lm_pipeline"] = m
spec.loader.exec_module(m)
class P(m.Pipeline):
  def stage_prompts(self):
    self.command("prompts", ["-c", "import os, time; print(os.getpid(), flush=True); "
                             "time.sleep(120)"])
m.install_signal_handlers()
P({str(tmp_path)!r}, m.Sizes()).run("prompts")
"""
  proc = subprocess.Popen([sys.executable, "-c", script])
  log = tmp_path / "logs" / "prompts.log"
  deadline = time.time() + 60
  while time.time() < deadline and not (log.exists() and log.read_text().strip().split(
      "\n")[-1].isdigit()):
    time.sleep(0.2)
  child = int(log.read_text().strip().split("\n")[-1])
  time.sleep(1.0)
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=30) != 0
  with pytest.raises(ProcessLookupError):  # the stage's command is gone too
    for _ in range(50):
      os.kill(child, 0)
      time.sleep(0.1)
  partial = json.loads((tmp_path / "stages" / "prompts.partial.json").read_text())
  assert partial["seconds"] >= 1.0
  assert not (tmp_path / "stages" / "prompts.json").exists()


def test_a_sigkilled_stage_keeps_the_time_of_its_last_heartbeat(tmp_path):
  import signal  # noqa: PLC0415
  import subprocess  # noqa: PLC0415
  import time  # noqa: PLC0415
  script = f"""
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("real_lm_pipeline", {_PATH!r})
m = importlib.util.module_from_spec(spec); sys.modules["real_lm_pipeline"] = m
spec.loader.exec_module(m)
m.HEARTBEAT_SECONDS = 0.2
class P(m.Pipeline):
  def stage_prompts(self):
    time.sleep(120)
P({str(tmp_path)!r}, m.Sizes()).run("prompts")
"""
  partial = tmp_path / "stages" / "prompts.partial.json"
  partial.parent.mkdir(parents=True)
  partial.write_text(json.dumps({"seconds": 100.0}))  # an earlier attempt's time
  proc = subprocess.Popen([sys.executable, "-c", script])
  deadline = time.time() + 60
  while time.time() < deadline and json.loads(partial.read_text())["seconds"] < 101.5:
    time.sleep(0.1)
  proc.send_signal(signal.SIGKILL)  # no handler runs
  proc.wait(timeout=30)
  seconds = json.loads(partial.read_text())["seconds"]
  assert 101.5 <= seconds < 130.0  # the earlier 100 s plus this attempt's, to the last beat
  assert not (tmp_path / "stages" / "prompts.json").exists()
  p = pipeline.Pipeline(str(tmp_path), pipeline.Sizes(), log=lambda _: None)
  p.stage_prompts = lambda: {}
  assert p.run("prompts")["attempts_seconds_before"] == seconds
  assert not partial.exists()


_JIT_PROGRAM = """
from arm_jax import xla_options
xla_options.configure_process()
import jax, jax.numpy as jnp
def f(x):
  for _ in range(20):
    x = jnp.tanh(x @ x.T) @ x
  return x.sum()
print(float(jax.jit(jax.grad(f))(jnp.ones((64, 64)) / 64).sum()))
"""


def test_a_commands_programs_go_to_the_compilation_cache_and_a_rerun_loads_them(
    tmp_path, monkeypatch):
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # cache every program
  work, archive = tmp_path / "w", tmp_path / "a"
  p = pipeline.Pipeline(str(work), pipeline.Sizes(), log=lambda _: None)
  cache = work / pipeline.COMPILATION_CACHE
  p.command("prompts", ["-c", _JIT_PROGRAM])
  entries = sorted(os.listdir(cache))
  assert entries  # the program was written to WORKDIR/xla_cache
  stamps = {e: os.path.getmtime(cache / e) for e in entries}
  p.command("prompts", ["-c", _JIT_PROGRAM])  # a new process: loads what the first compiled
  assert sorted(os.listdir(cache)) == entries
  assert {e: os.path.getmtime(cache / e) for e in entries} == stamps
  out = pipeline.sync_archive(str(work), str(archive))
  assert not any(rel.startswith("xla_cache") for rel in json.loads(
      (archive / pipeline.ARCHIVE_MANIFEST).read_text())["files"])
  assert not any(rel.startswith("xla_cache") for rel in out["skipped"])  # not even named
  # '' turns it off; a JAX_COMPILATION_CACHE_DIR the user set wins.
  off = pipeline.Pipeline(str(work), pipeline.Sizes(), log=lambda _: None, compilation_cache="")
  assert "JAX_COMPILATION_CACHE_DIR" not in off.command_env()
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
  assert p.command_env()["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "mine")


def test_stages_that_need_others_say_so(tmp_path):
  work = str(tmp_path / "w")
  with pytest.raises(SystemExit, match="stage train needs split done first"):
    pipeline.main(["--workdir", work, "--stages", "train"])
  with pytest.raises(SystemExit, match="unknown sample"):
    pipeline.main(["--workdir", work, "--stages", "sample"])
  with pytest.raises(SystemExit, match="--config.KEY=VALUE flags only"):
    pipeline.main(["--workdir", work, "--stages", "report", "--train_flags=--rounds=1"])


# --- the report -----------------------------------------------------------------------------------

def _side(per_prompt):
  from arm_jax.evaluation import ifeval_policy  # noqa: PLC0415
  counts = ifeval_policy._counts(per_prompt)
  figures = ifeval_policy._figures(counts.sum(axis=0))
  out = dict(zip(ifeval_policy.FIGURES, map(float, figures)))
  return dict(out, ci=ifeval_policy.bootstrap(per_prompt), per_prompt=per_prompt)


def test_the_report_compares_each_dpo_policy_with_the_base_on_the_same_prompts(tmp_path):
  p = pipeline.Pipeline(str(tmp_path), pipeline.Sizes(), log=lambda _: None)
  base = [dict(strict=[i % 3 == 0], loose=[i % 2 == 0]) for i in range(30)]
  better = [dict(strict=[i % 3 == 0 or i < 6], loose=[i % 2 == 0 or i < 6]) for i in range(30)]
  evals = {}
  for name, unit, per_prompt in (("dpo_checker", 0, base), ("dpo_checker", 1, better),
                                 ("dpo_rl", 1, better), ("dpo_sft", 1, base)):
    path = tmp_path / f"{name}_{unit}.json"
    path.write_text(json.dumps(_side(per_prompt)))
    evals.setdefault(name, []).append(str(path))
  for stage, seconds in (("prompts", 3.0), ("dpo_checker", 50.0), ("dpo_sft", 20.0),
                         ("dpo_rl", 30.0)):
    record = dict(stage=stage, seconds=seconds, outputs=dict(evals=evals.get(stage, [])))
    (tmp_path / "stages" / f"{stage}.json").write_text(json.dumps(record))
  # The RL labeller's job kept 2 of 8 pairs in iteration 1 and 0 of 8 in iteration 2 (its
  # metrics.jsonl); the SFT labeller's stage has no job left, only its stage record's labels.
  (tmp_path / "dpo_rl").mkdir()
  (tmp_path / "dpo_rl" / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in (
      dict(phase="dpo", iteration=1, step=0, loss=0.69),
      dict(phase="label", iteration=1, prompts=8, kept=2, identical=1, unparseable=1,
           inconsistent=4, consistency_rate=2 / 6, seconds_sampling=61.4,
           seconds_labelling=120.6),
      dict(phase="label", iteration=2, prompts=8, kept=0, identical=0, unparseable=8,
           inconsistent=0, consistency_rate=float("nan")))) + "\n")
  record = json.loads((tmp_path / "stages" / "dpo_sft.json").read_text())
  record["outputs"]["labels"] = [dict(iteration=1, prompts=8, kept=5, identical=0,
                                      unparseable=0, inconsistent=3, consistency_rate=5 / 8),
                                 dict(iteration=2, pairs=None, kept=4, inconsistent=4)]  # older
  (tmp_path / "stages" / "dpo_sft.json").write_text(json.dumps(record))
  report = pipeline.build_report(p)
  assert report["total_seconds"] == 103.0
  assert [x["kept"] for x in report["dpo_labels"]["rl"]] == [2, 0]
  assert "checker" not in report["dpo_labels"]  # its stage record has no labels, its job no dir
  assert list(report["ifeval"]) == ["base", "checker", "sft", "rl"]
  # The recount: `better` follows 4 more of 30 prompts' strict instructions (0, 3 were already
  # followed, 1, 2, 4, 5 are new) and 3 more loose ones (1, 3, 5).
  rl = report["ifeval"]["rl"]["vs_base"]
  assert rl["prompt_strict"]["difference"] == pytest.approx(4 / 30)
  assert rl["prompt_loose"]["difference"] == pytest.approx(3 / 30)
  assert rl["average"]["difference"] == pytest.approx((4 / 30 * 2 + 3 / 30 * 2) / 4)
  assert rl["average"]["low"] > 0
  sft = report["ifeval"]["sft"]
  assert sft["vs_base"]["average"] == dict(difference=0.0, low=0.0, high=0.0)
  assert sft["vs_checker"]["average"]["difference"] == pytest.approx(-rl["average"]["difference"])
  text = pipeline.report_markdown(report)
  assert "| rl | 46.7 [" in text and "| +11.7 [" in text and "| total | 103 |" in text
  # The RL-labelled policy equals the checker's here; the SFT-labelled one is 11.7 below it.
  lines = {line.split(" | ")[0]: line for line in text.splitlines()}
  assert lines["| rl"].endswith("| +11.7 [+3.3, +23.3] | +0.0 [+0.0, +0.0] |")
  assert lines["| sft"].endswith("| +0.0 [+0.0, +0.0] | -11.7 [-23.3, -3.3] |")
  assert lines["| base"].endswith("|  |  |")
  assert "| rl | 1 | 8 | 2 | 1 | 1 | 4 | 33.3 | 61 | 121 |" in text
  assert "| rl | 2 | 8 | 0 | 0 | 8 | 0 | - | - | - |" in text  # nothing judged: no rate
  assert "| sft | 1 | 8 | 5 | 0 | 0 | 3 | 62.5 | - | - |" in text
  assert "| sft | 2 | - | 4 | - | - | 4 | - | - | - |" in text  # an older record lacks keys


def test_reward_model_rows_take_mixed_voting_orders_and_bias_from_the_evaluators_results():
  results = {"systems": {
      "trained": {"votes": 5, "benchmarks": {"synthetic_if": {
          "examples": 40, "position_bias": {"accuracy": 0.1, "voting_accuracy": 0.05},
          "orders": {"mixed": dict(accuracy=0.8, voting_accuracy=0.85, parse_failure_rate=0.02),
                     "ord1": dict(accuracy=0.85), "ord2": dict(accuracy=0.75)}}}},
      "direct": {"votes": 1, "benchmarks": {"synthetic_if": {
          "examples": 40, "position_bias": None,
          "orders": {"mixed": dict(accuracy=0.5, parse_failure_rate=0.5)}}}}}}
  rows = pipeline.reward_model_rows(results)
  assert rows == [
      dict(system="trained", benchmark="synthetic_if", examples=40, votes=5, mixed=0.8,
           voting=0.85, ord1=0.85, ord2=0.75, position_bias=0.1, parse_failure_rate=0.02),
      dict(system="direct", benchmark="synthetic_if", examples=40, votes=1, mixed=0.5,
           voting=None, ord1=None, ord2=None, position_bias=None, parse_failure_rate=0.5)]
  text = pipeline.report_markdown(dict(sizes={}, stages={"report": None}, total_seconds=0.0,
                                       reward_model=rows))
  assert "| trained | synthetic_if | 40 | 80.0 | 85.0 | 85.0 | 75.0 | 10.0 | 2.0 |" in text
  assert "| direct | synthetic_if | 40 | 50.0 |  | - | - | - | 50.0 |" in text


# --- end to end, tiny --------------------------------------------------------------------------------

@pytest.mark.slow  # every stage with a tiny random model: a few minutes on 2 cores
def test_every_stage_runs_end_to_end_with_a_tiny_model(tmp_path, monkeypatch):
  """The stages' commands fit together. A random model's 16-token samples almost never differ
  in how many constraints they follow, so the reward model's prompts and their samples are
  written here (the sampler resumes from them): 24 prompts whose four responses follow 2, 0, 1
  and 1 of their two constraints, one pair each."""
  pytest.importorskip("langdetect")
  from arm_jax import assets  # noqa: PLC0415
  from arm_jax.tokenizer import load_tokenizer  # noqa: PLC0415
  from test_configs import _tiny_hf_dir  # noqa: PLC0415
  try:
    gguf = assets.smollm2_gguf()
  except FileNotFoundError as err:
    pytest.skip(str(err))
  model = _tiny_hf_dir(tmp_path / "model", 0, load_tokenizer(gguf))
  work = tmp_path / "run"
  # The stages' processes see this machine's one CPU device, as a user's would, not the
  # suite's 8 host devices.
  monkeypatch.delenv("XLA_FLAGS", raising=False)
  sizes = ("rm_prompts=24,ifeval_prompts=0,sft_judge_steps=2,sft_generator_steps=2,rounds=1,"
           "steps_per_phase=1,eval_pairs=3,dpo_iterations=1,dpo_prompts=8,"
           "ifeval_eval_prompts=4,max_new_tokens=16,batch_prompts=16,held_out_fraction=0.3,"
           "rl_fraction=0.5")
  argv = ["--workdir", str(work), "--model", model, "--sizes", sizes,
          "--train_flags=--config.data.held_out_fraction=0.5 --config.warmstart.batch_size=2 "
          "--config.warmstart.max_length=512 --config.warmstart.generator_max_length=256 "
          "--config.judge.max_new_tokens=8 --config.generator.max_new_tokens=8 "
          "--config.eval.max_pairs=2 --config.eval.rubric_max_new_tokens=8 "
          "--config.eval.judge_max_new_tokens=8 --config.checkpoint.every_steps=0 "
          "--config.warmstart.warmup_steps=0",
          "--evaluate_flags=--config.system_specs.trained.votes=2",
          "--policy_flags=--config.dpo.max_new_tokens=8 --config.dpo.batch_size=2 "
          "--config.eval.max_new_tokens=8 --config.generate_batch=8 "
          "--config.reward_model.rubric_max_new_tokens=8 "
          "--config.reward_model.judge_max_new_tokens=8"]
  assert pipeline.main([*argv, "--stages", "prompts"]) == 0
  rows = [dict(key=i, prompt=f"Write about topic {i}. Use lowercase letters only and no commas.",
               instruction_id_list=["change_case:english_lowercase", "punctuation:no_comma"],
               kwargs=[{}, {}], source="test", base_id=i, variant=0) for i in range(24)]
  pipeline.write_jsonl(str(work / "prompts" / "reward_model.jsonl"), rows)
  os.makedirs(work / "pairs")
  pipeline.write_jsonl(str(work / "pairs" / "responses.jsonl"), [
      dict(prompt=r["prompt"], responses=["all lowercase words here", "Has, Commas And Caps",
                                          "all lowercase, with a comma", "No commas but Caps"])
      for r in rows])
  (work / "pairs" / "responses.meta.json").write_text(json.dumps(dict(
      model=model, samples=4, max_new_tokens=16, temperature=1.0, top_p=1.0, seed=0, chat=1,
      dtype="float32")))
  archive = str(tmp_path / "archive")
  assert pipeline.main([*argv, "--archive", archive]) == 0
  report = json.loads((work / "report.json").read_text())
  assert report["pairs"]["pairs"] == 24 and report["pairs"]["responses_following_all"] == 24
  split = report["pairs"]["split"]
  assert split["train"]["pairs"] + split["held_out"]["pairs"] == 24
  assert report["split"]["sft_pairs"] + report["split"]["rl_pairs"] == split["train"]["pairs"]
  assert report["split"]["sft_rows"] == dict(generator=report["split"]["sft_pairs"],
                                             judge=2 * report["split"]["sft_pairs"])
  assert all(report["stages"][s] > 0 for s in pipeline.STAGES if s != "report")
  assert list(report["ifeval"]) == ["base", "checker", "sft", "rl"]
  assert all(report["ifeval"][name]["prompts"] == 4 for name in report["ifeval"])
  rm = {(r["system"], r["benchmark"]): r for r in report["reward_model"]}
  assert set(rm) == {(s, "synthetic_if") for s in ("trained", "sft", "prompted", "direct")}
  assert all(r["examples"] == min(3, split["held_out"]["pairs"]) for r in rm.values())
  assert rm["trained", "synthetic_if"]["votes"] == 2
  assert "## IFEval" in (work / "report.md").read_text()

  def stamps():
    return {s: os.path.getmtime(work / "stages" / f"{s}.json") for s in pipeline.STAGES}

  before = stamps()  # a rerun finds every stage done
  assert pipeline.main(["--workdir", str(work)]) == 0
  assert stamps() == before
  # On a fresh machine the archive brings the run back: nothing reruns, and the report rebuilt
  # there from the restored files is the same.
  fresh = tmp_path / "fresh"
  assert pipeline.main(["--workdir", str(fresh), "--archive", archive]) == 0
  for s in pipeline.STAGES:
    assert (fresh / "stages" / f"{s}.json").read_text() == (
        work / "stages" / f"{s}.json").read_text()
  os.remove(fresh / "stages" / "report.json")
  shutil.rmtree(work)  # nothing may be read from the old place
  assert pipeline.main(["--workdir", str(fresh), "--stages", "report"]) == 0
  again = json.loads((fresh / "report.json").read_text())
  assert again["ifeval"] == report["ifeval"] and again["reward_model"] == report["reward_model"]


def test_the_skipped_summary_keeps_every_other_reason():
  skipped = {"a/checkpoints/5/x/y": "130.0 MB > 100 MB", "a/checkpoints/5/z": "its checkpoint "
             "step a/checkpoints/5/ has a file over 100 MB", "a/checkpoints/5/w": "150.2 MB > "
             "100 MB", "logs/big.log": "120.0 MB > 100 MB", "s.json": "vanished during the sync",
             "t/tmp": "temporary"}
  assert pipeline.skipped_summary(skipped) == (
      "logs/big.log (120.0 MB > 100 MB); s.json (vanished during the sync); checkpoint step "
      "a/checkpoints/5/ whole, 3 files (2 over the limit: x/y 130.0 MB, w 150.2 MB)")
