"""The paper end to end on a real pretrained LM, offline: Synthetic-IF pairs labelled by IFEval's
checker, SmolLM2-135M-Instruct trained as a rubric reward model (Stage I SFT from the verifier,
then alternating GRPO), the reward model evaluated, and a policy DPO'd with it, scored on IFEval.

  python experiments/real_lm_pipeline.py --workdir runs/real_lm [--budget_hours 12]
      [--stages pairs,split] [--model PATH] [--dry_run]

--budget_hours scales the run (prompts sampled, SFT and RL steps, evaluation pairs, DPO prompts)
to the time given, from per-unit costs measured on a 2-core CPU (COSTS); --dry_run prints the
sizes and each stage's estimate without running anything. The sizes are fixed in
WORKDIR/plan.json at the first start: a later call resumes with them (a different budget is an
error that says so).

Stages, in order (each runs one command, logged to WORKDIR/logs/<stage>.log; a finished stage
writes WORKDIR/stages/<stage>.json with its wall time and is skipped afterwards; an interrupted
one is rerun and resumes where its command resumes: sampling per batch (data, evaluation, DPO's
labelling and IFEval), training and DPO from their checkpoints, and its time adds up over
attempts: a running stage writes its time so far every minute, so even a SIGKILL loses at most
that; commands share JAX's persistent compilation cache in WORKDIR/xla_cache, so a resumed
stage does not compile its programs again):
  prompts       Synthetic-IF prompts (arm_jax.data.synthetic_if), their base instructions split
                into the reward model's and the policy's (DPO prompts are fresh: no base
                instruction of theirs is in the reward model's data)
  pairs         SmolLM2 samples on the reward model's prompts, labelled by the checker
                (arm_jax.data.verified), split by base instruction into train and held-out
  ifeval_pairs  the same on IFEval's own prompts: the second reward-model benchmark
  split         training pairs split by base instruction into an SFT part, rewritten as the
                verifier's rubrics and judgments (arm_jax.data.verifier_sft), and an RL part
  train         main.py with configs/smollm2_synthetic_if.py: SFT, then alternating GRPO
  evaluate_rm   arm_jax.evaluate with configs/evaluate_synthetic_if.py, one run per (benchmark,
                system) cell, merged
  dpo_checker, dpo_sft, dpo_rl
                IterDPO of SmolLM2 on the DPO prompts (configs/policy_smollm2.py) labelled by the
                checker (the oracle), the SFT-only pair and the RL-trained pair; IFEval's 541
                prompts score the base policy (once, in dpo_checker) and each DPO'd one
  report        WORKDIR/report.md and report.json: the datasheet's numbers, the reward-model
                table, IFEval with bootstrap intervals and paired differences from the base,
                each stage's wall time and the measured per-unit costs
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import gzip
import hashlib
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

STAGES = ("prompts", "pairs", "ifeval_pairs", "split", "train", "evaluate_rm", "dpo_checker",
          "dpo_sft", "dpo_rl", "report")
DEPENDS = {"prompts": (), "pairs": ("prompts",), "ifeval_pairs": (), "split": ("pairs",),
           "train": ("split",), "evaluate_rm": ("train", "ifeval_pairs"),
           "dpo_checker": ("prompts",), "dpo_sft": ("train",), "dpo_rl": ("train",),
           "report": ()}
HEARTBEAT_SECONDS = 60.0  # how often a running stage writes its time so far
STAGE_TICK_SECONDS = 1.0  # how often its clock looks whether its command is stopped
LABELLERS = {"dpo_checker": "checker", "dpo_sft": "sft", "dpo_rl": "rl"}
# The reward-model table's rows (configs/evaluate_synthetic_if.py), one evaluator run each.
EVAL_SYSTEMS = ("trained", "sft", "prompted", "direct")


# --- sizes and the budget -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Sizes:
  """Everything the budget scales, and the fixed settings beside it."""
  rm_prompts: int = 2600  # reward-model prompts sampled (at ~53% pairs per prompt)
  ifeval_prompts: int = 320  # IFEval prompts sampled for the second benchmark (~170 pairs)
  sft_judge_steps: int = 180  # ~1 epoch of the SFT part's judge rows (2 per pair), batch 8
  sft_generator_steps: int = 90  # ~1 epoch of its rubrics
  rounds: int = 2
  steps_per_phase: int = 20
  eval_pairs: int = 200  # per benchmark
  dpo_iterations: int = 3
  dpo_prompts: int = 256  # per iteration: ~1/3 give a pair the labeller keeps
  ifeval_eval_prompts: int = 541
  # Fixed:
  variants: int = 2  # constraint draws per base instruction
  dpo_base_fraction: float = 0.3  # base instructions kept for the policy's prompts
  held_out_fraction: float = 0.17  # of the reward model's pairs by base: >= 200 held out
  rl_fraction: float = 0.4  # of its training pairs, by base instruction, for RL (rest: SFT)
  samples: int = 4
  max_new_tokens: int = 384
  batch_prompts: int = 16
  # Longer prompts (Arena-Hard's long pastes: 176 of its 1035 over 600 tokens) are dropped and
  # counted: a judge row holds the prompt and two responses, and must stay within 2048 tokens.
  max_prompt_tokens: int = 512


# Scaled sizes and the least each may shrink to (a run below these shows nothing).
SCALED = {"rm_prompts": 160, "ifeval_prompts": 48, "sft_judge_steps": 20,
          "sft_generator_steps": 10, "steps_per_phase": 2, "eval_pairs": 16, "dpo_prompts": 32,
          "ifeval_eval_prompts": 48}

# The DPO runs' settings beside configs/policy_smollm2.py's (the paper's Table 10 for a 7B
# policy): a 135M policy and a few hundred pairs move at a higher rate and two epochs.
DPO_FLAGS = ("--config.dpo.learning_rate=5e-6", "--config.dpo.epochs=2")

# Sizes that may be 0: no IFEval-verified benchmark (the evaluation reads the held-out pairs only).
OPTIONAL = ("ifeval_prompts",)

# Seconds per unit with SmolLM2-135M on the 2-core CPUs of docs/results.md (AMD EPYC, Intel
# Xeon), from this pipeline's stages (report.md gives each run's own figures).
COSTS = {
    "sample_prompt": 9.5,  # 4 samples x up to 384 tokens, 16 prompts per call: the lower end of
    # what calls measured (docs/results.md: they vary with their prompts)
    "sft_judge_step": 95.0,  # 8 rows of 400-1900 tokens, in two halves: the median step of the
    # 2026-12 run's judge warm start (docs/results.md)
    "sft_generator_step": 40.0,  # 8 rows of ~400 tokens: the median of that run's 90 steps
    "rl_step": 110.0,  # one GRPO update, 8 rollouts, either policy (generation included): the
    # 2026-12 run's medians were 96-124 s (judge) and 112-132 s (generator) per round
    "round_eval": 180.0,  # the run's greedy held-out curve, 18 pairs: 169-187 s in that run
    "eval_pair": 30.0,  # one pair, four systems, three orders, five votes for the trained one
    "dpo_prompt": 6.0,  # two samples + both orders judged by the reward model + the update
    "dpo_prompt_checker": 2.5,  # two samples + the checker + the update
    "ifeval_prompt": 2.2,  # one greedy response of up to 512 tokens (half reach 512)
    "fixed": 300.0,  # per stage: start-up and compilation
    "eval_cell": 120.0,  # one evaluator run's start-up and compiles (estimated, not measured)
}


def estimate(s: Sizes) -> dict[str, float]:
  """Seconds per stage for these sizes, from COSTS."""
  c = COSTS
  rl_steps = s.rounds * 2 * s.steps_per_phase
  dpo = s.dpo_iterations * s.dpo_prompts
  return {
      "prompts": 30.0,
      "pairs": c["fixed"] + s.rm_prompts * c["sample_prompt"],
      "ifeval_pairs": c["fixed"] + s.ifeval_prompts * c["sample_prompt"],
      "split": 60.0,
      "train": (c["fixed"] + s.sft_judge_steps * c["sft_judge_step"] +
                s.sft_generator_steps * c["sft_generator_step"] + rl_steps * c["rl_step"] +
                (1 + s.rounds) * c["round_eval"]),
      "evaluate_rm": (c["fixed"] + (2 if s.ifeval_prompts else 1) * (
          s.eval_pairs * c["eval_pair"] + len(EVAL_SYSTEMS) * c["eval_cell"])),
      "dpo_checker": (c["fixed"] + dpo * c["dpo_prompt_checker"] +
                      2 * s.ifeval_eval_prompts * c["ifeval_prompt"]),
      "dpo_sft": c["fixed"] + dpo * c["dpo_prompt"] + s.ifeval_eval_prompts * c["ifeval_prompt"],
      "dpo_rl": c["fixed"] + dpo * c["dpo_prompt"] + s.ifeval_eval_prompts * c["ifeval_prompt"],
      "report": 5.0,
  }


def scaled(scale: float) -> Sizes:
  """The full sizes times `scale` (0 < scale <= 1), none below its least (SCALED)."""
  full = Sizes()
  return dataclasses.replace(full, **{
      k: max(least, int(round(getattr(full, k) * scale))) for k, least in SCALED.items()})


def plan(budget_hours: Optional[float]) -> Sizes:
  """The largest sizes whose estimate fits `budget_hours` (the full ones when they fit or with no
  budget); an error names the least budget when even the least sizes do not fit."""
  if budget_hours is None:
    return Sizes()
  budget = budget_hours * 3600
  if sum(estimate(Sizes()).values()) <= budget:
    return Sizes()
  least = scaled(0.0)
  need = sum(estimate(least).values())
  if need > budget:
    raise ValueError(f"--budget_hours {budget_hours:g}: the smallest run this pipeline makes "
                     f"needs about {need / 3600:.1f} hours on a 2-core CPU (COSTS)")
  lo, hi = 0.0, 1.0
  for _ in range(40):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if sum(estimate(scaled(mid)).values()) <= budget else (lo, mid)
  return scaled(lo)


# --- the prompts' base split ----------------------------------------------------------------------

def base_of(row: dict) -> str:
  """A Synthetic-IF row's base instruction: its source and base_id (its prompt without them)."""
  return f"{row['source']}/{row['base_id']}" if "base_id" in row else row["prompt"]


def split_prompts(rows: Sequence[dict], dpo_fraction: float,
                  seed: int = 7) -> tuple[list[dict], list[dict]]:
  """(reward model's rows, policy's rows), by a hash of the base instruction (all variants of a
  base on one side), file order kept."""
  from arm_jax.core import is_held_out  # pylint: disable=import-outside-toplevel
  rm, dpo = [], []
  for row in rows:
    (dpo if is_held_out(base_of(row), dpo_fraction, seed) else rm).append(row)
  return rm, dpo


def read_jsonl(path: str) -> list[dict]:
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path: str, rows: Sequence[dict]) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
  os.replace(tmp, path)


# --- the archive: a run's durable files across machines -----------------------------------------

# Files an archive stores gzipped (text); anything else is stored as it is.
_TEXT = (".jsonl", ".json", ".log", ".md", ".txt", ".csv")
ARCHIVE_MANIFEST = "MANIFEST.json"
# Larger files (a full model's checkpoint: 0.5 GB and more for SmolLM2) are skipped and named,
# and with them the rest of their checkpoint step, which could not be restored without them.
ARCHIVE_MAX_MB = 100.0
# Stored files over this are split into parts (a LoRA run's checkpoint holds one 48 MB data
# file): every stored file stays small enough for any git host.
ARCHIVE_PART_MB = 20.0
_STEP_DIR = re.compile(r"^(.*/)?checkpoints/\d+/")
# The compilation cache under WORKDIR: compiled for this machine's CPU and rebuilt on any other,
# so never archived.
COMPILATION_CACHE = "xla_cache"


def _archived_name(rel: str) -> str:
  return rel + ".gz" if rel.endswith(_TEXT) else rel


def _stored_names(rel: str, entry: dict) -> list[str]:
  """The archive's files that hold `rel`: one, or its parts, named by the content's sha256 so
  that a sync stopped midway never overwrites the parts the manifest still names."""
  name = _archived_name(rel)
  parts = entry.get("parts", 0)
  if not parts:
    return [name]
  return [f"{name}.{entry['sha256'][:16]}.part{i:03d}" for i in range(parts)]


def _write_atomic(path: str, data: bytes) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "wb") as f:
    f.write(data)
  os.replace(path + ".tmp", path)


def sync_archive(workdir: str, archive: str, max_mb: float = ARCHIVE_MAX_MB,
                 part_mb: float = ARCHIVE_PART_MB) -> dict:
  """Copies WORKDIR's files into ARCHIVE (text gzipped, deterministically: an unchanged file
  gives the same bytes, so a version-controlled archive does not churn), with a manifest of
  each file's size and sha256. A stored file over `part_mb` is split into parts. Files over
  `max_mb` are skipped and named in the result, with the rest of their checkpoint step
  (`.../checkpoints/<step>/`), as are temporary files; files the archive holds but the workdir
  no longer has are removed. WORKDIR/xla_cache (the compilation cache) is left out.
  Returns {"copied", "unchanged", "removed", "skipped": {rel: reason}, "bytes"}.

  Safe against a machine that stops mid-sync: the manifest is rewritten after each file it
  names is replaced, so an archive always restores (each file either its old or its new
  version); a file that vanishes while it is read (a checkpoint the trainer prunes) is skipped
  and its archived copy kept."""
  manifest_path = os.path.join(archive, ARCHIVE_MANIFEST)
  old = {}
  if os.path.isfile(manifest_path):
    with open(manifest_path, encoding="utf-8") as f:
      old = json.load(f)["files"]
  current = dict(old)  # what the archive holds right now, as the manifest says

  def write_manifest(entries):
    _write_atomic(manifest_path, json.dumps({"files": dict(sorted(entries.items()))},
                                            indent=0).encode())

  listed, skipped = [], {}
  for root, dirs, names in os.walk(workdir):
    if root == workdir and COMPILATION_CACHE in dirs:
      dirs.remove(COMPILATION_CACHE)  # not a durable file of the run
    dirs.sort()
    for name in sorted(names):
      src = os.path.join(root, name)
      rel = os.path.relpath(src, workdir).replace(os.sep, "/")
      if name.endswith(".tmp") or ".orbax-checkpoint-tmp" in rel:
        skipped[rel] = "temporary"
        continue
      try:
        size = os.path.getsize(src)
      except FileNotFoundError:
        skipped[rel] = "vanished during the sync"
        continue
      if size > max_mb * 1e6:
        skipped[rel] = f"{size / 1e6:.1f} MB > {max_mb:g} MB"
        continue
      listed.append((rel, src))
  # A checkpoint step without one of its files cannot be restored: it goes whole or not at all.
  too_big = {m.group(0) for rel, why in skipped.items() if why.endswith(" MB")
             for m in [_STEP_DIR.match(rel)] if m}
  files, copied, unchanged = {}, 0, 0
  for rel, src in listed:
    step = _STEP_DIR.match(rel)
    if step and step.group(0) in too_big:
      skipped[rel] = f"its checkpoint step {step.group(0)} has a file over {max_mb:g} MB"
      continue
    try:
      with open(src, "rb") as f:
        data = f.read()
    except FileNotFoundError:
      skipped[rel] = "vanished during the sync"
      continue
    if rel.endswith(".jsonl"):  # a running stage may be mid-line: its complete lines only
      data = data[:data.rfind(b"\n") + 1]
    entry = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    stored = data
    if _archived_name(rel) != rel:
      stored = gzip.compress(data, compresslevel=9, mtime=0)
    part = int(part_mb * 1e6)
    if len(stored) > part:
      entry["parts"] = -(-len(stored) // part)
    files[rel] = entry
    names = _stored_names(rel, entry)
    if old.get(rel) == entry and all(os.path.isfile(os.path.join(archive, n)) for n in names):
      unchanged += 1
      continue
    for i, n in enumerate(names):
      _write_atomic(os.path.join(archive, n), stored[i * part:(i + 1) * part] if
                    entry.get("parts") else stored)
    current[rel] = entry
    write_manifest(current)
    if rel in old:  # the old version's parts, if it had parts under other names
      for n in set(_stored_names(rel, old[rel])) - set(names):
        if os.path.isfile(os.path.join(archive, n)):
          os.remove(os.path.join(archive, n))
    copied += 1
  dropped = {r for r, why in skipped.items() if "checkpoint step" in why or why.endswith(" MB")}
  kept = {**{r: old[r] for r in old if r in skipped and r not in dropped}, **files}
  write_manifest(kept)  # before any removal: a listed file is always there
  removed = 0
  for rel in set(old) - set(kept):
    for n in _stored_names(rel, old[rel]):
      if os.path.isfile(os.path.join(archive, n)):
        os.remove(os.path.join(archive, n))
    removed += 1
  total = sum(os.path.getsize(os.path.join(archive, n)) for r, e in kept.items()
              for n in _stored_names(r, e) if os.path.isfile(os.path.join(archive, n)))
  return dict(copied=copied, unchanged=unchanged, removed=removed, skipped=skipped, bytes=total)


def restore_archive(workdir: str, archive: str) -> dict:
  """Puts every file of ARCHIVE's manifest that WORKDIR lacks back in place (a fresh machine
  resumes where the archived run stopped); files WORKDIR has are its own and stay. A file whose
  content does not match its manifest entry is an error naming it. Returns {"restored",
  "present"}."""
  manifest_path = os.path.join(archive, ARCHIVE_MANIFEST)
  if not os.path.isfile(manifest_path):
    return dict(restored=0, present=0)
  with open(manifest_path, encoding="utf-8") as f:
    files = json.load(f)["files"]
  restored = present = 0
  for rel, entry in files.items():
    dest = os.path.join(workdir, rel)
    if os.path.exists(dest):
      present += 1
      continue
    chunks = []
    for n in _stored_names(rel, entry):
      src = os.path.join(archive, n)
      if not os.path.isfile(src):
        raise FileNotFoundError(f"{manifest_path}: lists {rel} but {src} is missing")
      with open(src, "rb") as f:
        chunks.append(f.read())
    data = b"".join(chunks)
    src = os.path.join(archive, _archived_name(rel))
    if _archived_name(rel) != rel:
      data = gzip.decompress(data)
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
      raise ValueError(f"{src}: content does not match {manifest_path}'s sha256 for {rel}")
    _write_atomic(dest, data)
    restored += 1
  return dict(restored=restored, present=present)


# --- running stages -------------------------------------------------------------------------------

def process_stopped(pid: int) -> bool:
  """Whether process `pid` is stopped (SIGSTOP, Ctrl-Z): its state in /proc is T or t. False
  where /proc is missing (not Linux) or the process is gone."""
  try:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
      stat = f.read()
  except OSError:
    return False
  return stat[stat.rfind(")") + 2:][:1] in ("T", "t")


class StageClock:
  """The seconds a stage has run: wall time less the time its command was stopped (a SIGSTOP
  while something else used the cores, Ctrl-Z) and the gaps in which this process itself did
  not run (it was stopped too, or the machine slept). Each such interval is logged and left
  out, so that a stage's recorded time is what it took to compute. tick() is called every
  `tick_s` seconds; a gap is an interval over `gap_s`."""

  def __init__(self, log: Callable[[str], None], tag: str, tick_s: float = 1.0,
               gap_s: float = 10.0):
    self.log, self.tag, self.tick_s, self.gap_s = log, tag, tick_s, gap_s
    self.seconds = 0.0
    self.child: Optional[int] = None  # the running command's pid
    self._last = time.monotonic()
    self._stopped_since: Optional[float] = None

  def tick(self) -> None:
    now = time.monotonic()
    dt, self._last = now - self._last, now
    if dt > self.gap_s:
      self.log(f"[{self.tag}] {dt:.0f} s in which this process did not run: not counted")
      return
    child = self.child
    if child is not None and process_stopped(child):
      if self._stopped_since is None:
        self._stopped_since = now - dt
      return
    if self._stopped_since is not None:
      self.log(f"[{self.tag}] its command was stopped for {now - dt - self._stopped_since:.0f} "
               "s: not counted")
      self._stopped_since = None
    self.seconds += dt


class Pipeline:
  """The stages of one WORKDIR: what each runs, its bookkeeping, the report."""

  def __init__(self, workdir: str, sizes: Sizes, model: str = "",
               flags: Optional[dict[str, Sequence[str]]] = None,
               log: Callable[[str], None] = print, compilation_cache: Optional[str] = None):
    self.w = os.path.abspath(workdir)
    # JAX's persistent compilation cache for every command: a stage resumed in a new process
    # (a train stage spans sessions) loads its programs instead of compiling them again.
    # None = WORKDIR/xla_cache, '' = off; a JAX_COMPILATION_CACHE_DIR the user set wins.
    self.compilation_cache = (self.path(COMPILATION_CACHE) if compilation_cache is None
                              else compilation_cache and os.path.abspath(compilation_cache))
    self.sizes = sizes
    self.model = model
    self.flags = {k: list(v) for k, v in (flags or {}).items()}  # extra --config. flags by job
    self.log = log
    self.clock: Optional[StageClock] = None  # the running stage's
    for sub in ("stages", "logs"):
      os.makedirs(self.path(sub), exist_ok=True)

  def path(self, *parts: str) -> str:
    return os.path.join(self.w, *parts)

  def done(self, stage: str) -> Optional[dict]:
    p = self.path("stages", f"{stage}.json")
    if not os.path.isfile(p):
      return None
    with open(p, encoding="utf-8") as f:
      return json.load(f)

  def _partial_seconds(self, stage: str) -> float:
    p = self.path("stages", f"{stage}.partial.json")
    if not os.path.isfile(p):
      return 0.0
    with open(p, encoding="utf-8") as f:
      return float(json.load(f)["seconds"])

  def _write_partial(self, stage: str, seconds: float) -> None:
    path = self.path("stages", f"{stage}.partial.json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
      json.dump({"seconds": seconds}, f)
    os.replace(path + ".tmp", path)

  def run(self, stage: str) -> dict:
    """Runs `stage` unless it is done; returns its record. Wall time adds up over attempts."""
    if stage not in STAGES:
      raise ValueError(f"unknown stage {stage!r}; the stages are {', '.join(STAGES)}")
    record = self.done(stage)
    if record is not None:
      self.log(f"[{stage}] done earlier ({record['seconds']:.0f} s); skipped")
      return record
    before = self._partial_seconds(stage)
    self.clock = clock = StageClock(self.log, stage, tick_s=STAGE_TICK_SECONDS)
    ok = False
    stop = threading.Event()

    def heartbeat():  # a SIGKILL (or a lost machine) loses at most HEARTBEAT_SECONDS of time
      since = 0.0
      while not stop.wait(clock.tick_s):
        clock.tick()
        since += clock.tick_s
        if since >= HEARTBEAT_SECONDS:
          self._write_partial(stage, before + clock.seconds)
          since = 0.0

    beat = threading.Thread(target=heartbeat, daemon=True)
    beat.start()
    try:
      outputs = getattr(self, f"stage_{stage}")()
      ok = True
    finally:
      stop.set()
      beat.join()
      clock.tick()
      seconds = before + clock.seconds
      self.clock = None
      if not ok:
        self._write_partial(stage, seconds)
    record = dict(stage=stage, seconds=seconds, attempts_seconds_before=before,
                  finished=datetime.datetime.now(datetime.timezone.utc).isoformat(
                      timespec="seconds"), outputs=outputs or {})
    with open(self.path("stages", f"{stage}.json"), "w", encoding="utf-8") as f:
      json.dump(record, f, indent=1)
    if os.path.isfile(self.path("stages", f"{stage}.partial.json")):
      os.remove(self.path("stages", f"{stage}.partial.json"))
    self.log(f"[{stage}] finished in {seconds:.0f} s")
    return record

  def command_env(self) -> dict[str, str]:
    """The environment of a stage's command: this process's, unbuffered, with the compilation
    cache (unless the user set JAX_COMPILATION_CACHE_DIR)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if self.compilation_cache:
      env.setdefault("JAX_COMPILATION_CACHE_DIR", self.compilation_cache)
    return env

  def command(self, stage: str, argv: Sequence[str]) -> None:
    """Runs argv (a Python module or script, from the repository root), its output appended to
    logs/<stage>.log; a failure raises with the log's last lines."""
    argv = [sys.executable, *argv]
    log_path = self.path("logs", f"{stage}.log")
    self.log(f"[{stage}] {shlex.join(argv)}")
    with open(log_path, "a", encoding="utf-8") as f:
      f.write(f"\n=== {datetime.datetime.now(datetime.timezone.utc).isoformat()} "
              f"{shlex.join(argv)}\n")
      f.flush()
      proc = subprocess.Popen(argv, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                              env=self.command_env())
      clock = getattr(self, "clock", None)
      if clock is not None:
        clock.child = proc.pid  # its stopped time is not the stage's
      try:
        rc = proc.wait()
      finally:
        if clock is not None:
          clock.child = None
        if proc.poll() is None:  # interrupted here (KeyboardInterrupt): the command goes too
          _end(proc)
    if rc:
      with open(log_path, encoding="utf-8", errors="replace") as f:
        tail = "".join(f.readlines()[-25:])
      raise RuntimeError(f"stage {stage} failed (exit {rc}); the end of {log_path}:\n{tail}")

  # --- the stages ---------------------------------------------------------------------------------

  def stage_prompts(self) -> dict:
    s = self.sizes
    out = self.path("prompts", "all.jsonl")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    self.command("prompts", ["-m", "arm_jax.data.synthetic_if", "--out", out,
                             "--variants", str(s.variants)])
    rows = read_jsonl(out)
    kept, long_by_source = self._short_prompts(rows)
    rm, dpo = split_prompts(kept, s.dpo_base_fraction)
    write_jsonl(self.path("prompts", "reward_model.jsonl"), rm)
    write_jsonl(self.path("prompts", "policy.jsonl"), dpo)
    return dict(prompts=len(rows), over_max_prompt_tokens=sum(long_by_source.values()),
                over_max_prompt_tokens_by_source=long_by_source,
                reward_model_prompts=len(rm), policy_prompts=len(dpo),
                reward_model_bases=len({base_of(r) for r in rm}),
                policy_bases=len({base_of(r) for r in dpo}))

  def _short_prompts(self, rows: Sequence[dict]) -> tuple[list[dict], dict[str, int]]:
    """The rows whose prompt, as one user turn of the model's chat template, has at most
    max_prompt_tokens tokens; and how many were longer, by source."""
    from arm_jax import assets  # pylint: disable=import-outside-toplevel
    from arm_jax.sampling import encode_prompts  # pylint: disable=import-outside-toplevel
    from arm_jax.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel
    tokenizer = load_tokenizer(self.model or assets.smollm2_gguf())
    lengths = [len(ids) for ids in encode_prompts(tokenizer, [r["prompt"] for r in rows], True)]
    short = [n <= self.sizes.max_prompt_tokens for n in lengths]
    dropped = collections.Counter(r.get("source", "") for r, ok in zip(rows, short) if not ok)
    return [r for r, ok in zip(rows, short) if ok], dict(dropped)

  def _sample_args(self) -> list[str]:
    s = self.sizes
    return ["--samples", str(s.samples), "--max_new_tokens", str(s.max_new_tokens),
            "--temperature", "1.0", "--batch_prompts", str(s.batch_prompts),
            "--criterion", "count", *(["--model", self.model] if self.model else [])]

  def stage_pairs(self) -> dict:
    s = self.sizes
    work = self.path("pairs")
    self.command("pairs", ["-m", "arm_jax.data.verified", "--benchmark", "ifeval",
                           "--prompts", self.path("prompts", "reward_model.jsonl"),
                           "--limit", str(s.rm_prompts), *self._sample_args(),
                           "--held_out_fraction", str(s.held_out_fraction),
                           "--workdir", work, "--out", os.path.join(work, "dataset")])
    with open(os.path.join(work, "verification.json"), encoding="utf-8") as f:
      return json.load(f)

  def stage_ifeval_pairs(self) -> dict:
    if not self.sizes.ifeval_prompts:
      self.log("[ifeval_pairs] ifeval_prompts=0: no IFEval-verified benchmark")
      return {"not_run": "ifeval_prompts=0"}
    work = self.path("ifeval_pairs")
    self.command("ifeval_pairs", ["-m", "arm_jax.data.verified", "--benchmark", "ifeval",
                                  "--limit", str(self.sizes.ifeval_prompts),
                                  *self._sample_args(), "--workdir", work,
                                  "--out", os.path.join(work, "dataset")])
    with open(os.path.join(work, "verification.json"), encoding="utf-8") as f:
      return json.load(f)

  def stage_split(self) -> dict:
    from arm_jax.data import verified  # pylint: disable=import-outside-toplevel
    from arm_jax.data.build import build  # pylint: disable=import-outside-toplevel
    from arm_jax.data.schema import (  # pylint: disable=import-outside-toplevel
        record_from_json, record_to_json)
    s = self.sizes
    prompts = self.path("prompts", "reward_model.jsonl")
    records = []
    for i, row in enumerate(read_jsonl(self.path("pairs", "pairs_train.jsonl")), 1):
      r = record_from_json(row)
      if not hasattr(r, "prompt"):
        raise ValueError(f"{self.path('pairs', 'pairs_train.jsonl')}:{i}: not a pair ({r})")
      records.append(r)
    sft, rl = verified.split_records(records, verified.base_groups(prompts), s.rl_fraction,
                                     seed=11)
    os.makedirs(self.path("split"), exist_ok=True)
    for name, side in (("sft", sft), ("rl", rl)):
      write_jsonl(self.path("split", f"pairs_{name}.jsonl"), [record_to_json(r) for r in side])
    build([self.path("split", "pairs_rl.jsonl")], "canonical", self.path("split", "rl"),
          overwrite=True)
    self.command("split", ["-m", "arm_jax.data.verifier_sft", "--prompts", prompts,
                           "--pairs", self.path("split", "pairs_sft.jsonl"),
                           "--out", self.path("split", "sft.jsonl"),
                           "--rubric_template", "rubric_generator_compact",
                           "--judge_template", "judge_compact"])
    rows = read_jsonl(self.path("split", "sft.jsonl"))
    groups = verified.base_groups(prompts)
    return dict(sft_pairs=len(sft), rl_pairs=len(rl),
                sft_bases=len({groups.get(r.prompt, r.prompt) for r in sft}),
                rl_bases=len({groups.get(r.prompt, r.prompt) for r in rl}),
                sft_rows={role: sum(r["role"] == role for r in rows)
                          for role in ("generator", "judge")})

  def _train_overrides(self) -> list[str]:
    s = self.sizes
    o = [f"--config.data.path={self.path('split', 'rl')}",
         f"--config.warmstart.path={self.path('split', 'sft.jsonl')}",
         f"--config.warmstart.judge_steps={s.sft_judge_steps}",
         f"--config.warmstart.generator_steps={s.sft_generator_steps}",
         f"--config.schedule.rounds={s.rounds}",
         f"--config.schedule.steps_per_phase={s.steps_per_phase}"]
    return o + ([f"--config.model.path={self.model}"] if self.model else [])

  def stage_train(self) -> dict:
    work = self.path("train")
    self.command("train", ["main.py", "--config", "configs/smollm2_synthetic_if.py",
                           "--workdir", work, *self._train_overrides(),
                           *self.flags.get("train", ())])
    evals = [r for r in read_jsonl(os.path.join(work, "metrics.jsonl"))
             if r.get("phase") == "eval"]
    return dict(curve=[{k: r.get(k) for k in ("round", "global_step", "judge_accuracy",
                                              "verdict_rate", "pairs")} for r in evals])

  def stage_evaluate_rm(self) -> dict:
    """One evaluator run per (benchmark, system) cell, each in
    evaluate_rm/cells/<benchmark>.<system> and skipped once it has its results.json; an
    interrupted cell (or one spread over machines by --archive) resumes at its first batch
    not yet sampled (its generations.jsonl: arm_jax.evaluation.journal). The
    evaluator draws each cell's samples from a key of (seed, system, benchmark), so the cells
    equal one run of the whole table. Their results are
    merged into evaluate_rm/results.json."""
    n = self.sizes.eval_pairs
    benches = ["synthetic_if"] + (["ifeval_verified"] if self.sizes.ifeval_prompts else [])
    merged: dict[str, Any] = {"systems": {}, "benchmarks": {}, "cells": {}}
    for bench in benches:
      for system in EVAL_SYSTEMS:
        rel = os.path.join("evaluate_rm", "cells", f"{bench}.{system}")
        if not os.path.isfile(self.path(rel, "results.json")):
          self.command("evaluate_rm", [
              "-m", "arm_jax.evaluate", "--config", "configs/evaluate_synthetic_if.py",
              "--workdir", self.path(rel), f"--config.trained.workdir={self.path('train')}",
              f"--config.benchmark_specs.synthetic_if.path="
              f"{self.path('pairs', 'dataset', 'held_out')}",
              f"--config.benchmark_specs.synthetic_if.max_examples={n}",
              f"--config.benchmark_specs.ifeval_verified.path="
              f"{self.path('ifeval_pairs', 'dataset')}",
              f"--config.benchmark_specs.ifeval_verified.max_examples={n}",
              f"--config.benchmarks=('{bench}',)", f"--config.systems=('{system}',)",
              *self.flags.get("evaluate", ())])
        with open(self.path(rel, "results.json"), encoding="utf-8") as f:
          cell = json.load(f)
        row = cell["systems"][system]
        merged["systems"].setdefault(system, {**row, "benchmarks": {}})["benchmarks"][bench] = (
            row["benchmarks"][bench])
        merged["benchmarks"][bench] = cell["benchmarks"][bench]
        merged["cells"][f"{bench}.{system}"] = dict(path=rel, seconds=cell["seconds_total"])
    with open(self.path("evaluate_rm", "results.json"), "w", encoding="utf-8") as f:
      json.dump(merged, f, indent=1)
    # Paths in stage records are relative to WORKDIR: an archived run resumes anywhere.
    return {"results": os.path.join("evaluate_rm", "results.json"),
            "cells": {k: v["seconds"] for k, v in merged["cells"].items()}}

  def _dpo(self, stage: str) -> dict:
    s = self.sizes
    work = self.path(stage)
    labeller = LABELLERS[stage]
    o = ["main.py", "--config", "configs/policy_smollm2.py", "--workdir", work,
         "--config.prompts.source=jsonl",
         f"--config.prompts.path={self.path('prompts', 'policy.jsonl')}",
         f"--config.dpo.iterations={s.dpo_iterations}",
         f"--config.dpo.prompts_per_iteration={s.dpo_prompts}",
         "--config.eval.kind=ifeval", "--config.eval.every_iterations=0",
         f"--config.eval.max_prompts={s.ifeval_eval_prompts}",
         f"--config.eval.at_start={labeller == 'checker'}",  # the base scored once
         *DPO_FLAGS]
    # The policy loads the base model itself in every run: a LoRA reward model's own model
    # carries adapters, and the three policies must train alike.
    o.append(f"--config.actor.path={self.model or self._shipped()}")
    if labeller == "checker":
      o += ["--config.reward_model.kind=checker", "--config.reward_model.workdir="]
    else:
      o += [f"--config.reward_model.workdir={self.path('train')}",
            f"--config.reward_model.checkpoint={'warm_start' if labeller == 'sft' else 'latest'}"]
    self.command(stage, o + self.flags.get("policy", []))
    evals = sorted(f for f in os.listdir(os.path.join(work, "eval")) if f.endswith(".json"))
    return dict(evals=[os.path.join(stage, "eval", f) for f in evals], labels=label_rows(work))

  @staticmethod
  def _shipped() -> str:
    from arm_jax import assets  # pylint: disable=import-outside-toplevel
    return assets.smollm2_gguf()

  def stage_dpo_checker(self) -> dict:
    return self._dpo("dpo_checker")

  def stage_dpo_sft(self) -> dict:
    return self._dpo("dpo_sft")

  def stage_dpo_rl(self) -> dict:
    return self._dpo("dpo_rl")

  def stage_report(self) -> dict:
    report = build_report(self)
    with open(self.path("report.json"), "w", encoding="utf-8") as f:
      json.dump(report, f, indent=1)
    with open(self.path("report.md"), "w", encoding="utf-8") as f:
      f.write(report_markdown(report))
    return {"report": self.path("report.md")}


# --- the report -----------------------------------------------------------------------------------

LABEL_KEYS = ("iteration", "prompts", "kept", "identical", "unparseable", "inconsistent",
              "consistency_rate", "seconds_sampling", "seconds_labelling")
COUNT_KEYS = LABEL_KEYS[:6]


def label_rows(work: str) -> list[dict]:
  """A policy job's labelling records (its metrics.jsonl, phase "label"): per iteration, the
  prompts sampled and what the labeller kept or dropped (arm_jax.downstream.reward_model)."""
  return [{k: r.get(k) for k in LABEL_KEYS}
          for r in read_jsonl(os.path.join(work, "metrics.jsonl")) if r.get("phase") == "label"]


def _ifeval_side(path: str) -> dict:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def build_report(p: Pipeline) -> dict:
  """Everything report.md shows, from the stages' outputs."""
  from arm_jax.evaluation import ifeval_policy  # pylint: disable=import-outside-toplevel
  stages = {s: p.done(s) for s in STAGES if s != "report"}
  out: dict[str, Any] = {"sizes": dataclasses.asdict(p.sizes), "stages": {
      s: (r["seconds"] if r else None) for s, r in stages.items()}}
  out["total_seconds"] = sum(v for v in out["stages"].values() if v)
  for name in ("prompts", "pairs", "ifeval_pairs", "split", "train"):
    if stages[name] and "not_run" not in stages[name]["outputs"]:
      out[name] = stages[name]["outputs"]
  if stages["evaluate_rm"]:
    with open(p.path(stages["evaluate_rm"]["outputs"]["results"]), encoding="utf-8") as f:
      out["reward_model"] = reward_model_rows(json.load(f))
  labels = {}
  for stage, labeller in LABELLERS.items():
    if stages[stage]:  # the job's own records: a stage record of an older pipeline lacks keys
      metrics = p.path(stage, "metrics.jsonl")
      rows = (label_rows(p.path(stage)) if os.path.isfile(metrics)
              else [{k: r.get(k) for k in LABEL_KEYS}
                    for r in stages[stage]["outputs"].get("labels", [])])
      if rows:
        labels[labeller] = rows
  if labels:
    out["dpo_labels"] = labels
  base = stages["dpo_checker"]
  policies = {}
  if base:
    evals = [p.path(e) for e in base["outputs"]["evals"]]
    policies["base"] = _ifeval_side(evals[0])  # unit 0: the starting policy
  for stage, labeller in LABELLERS.items():
    if stages[stage]:
      policies[labeller] = _ifeval_side(p.path(stages[stage]["outputs"]["evals"][-1]))
  if policies:
    out["ifeval"] = {}
    for name, side in policies.items():
      row = {f: side[f] for f in ifeval_policy.FIGURES}
      row["prompts"] = side.get("prompts", len(side["per_prompt"]))
      row["ci"] = {f: side["ci"][f] for f in ifeval_policy.FIGURES}
      if name != "base" and "base" in policies:
        row["vs_base"] = ifeval_policy.paired_bootstrap(side["per_prompt"],
                                                        policies["base"]["per_prompt"])
      if name in ("rl", "sft") and "checker" in policies:
        row["vs_checker"] = ifeval_policy.paired_bootstrap(side["per_prompt"],
                                                           policies["checker"]["per_prompt"])
      out["ifeval"][name] = row
  # Measured per-unit costs, to recalibrate COSTS.
  st = out["stages"]
  units = {"pairs": ("sample_prompt", out.get("pairs", {}).get("prompts")),
           "ifeval_pairs": ("sample_prompt", out.get("ifeval_pairs", {}).get("prompts")),
           "evaluate_rm": ("eval_pair", len({(r["benchmark"], r["examples"]) for r in
                                             out.get("reward_model", [])}) and sum(
               {r["benchmark"]: r["examples"] for r in out.get("reward_model", [])}.values()))}
  out["per_unit_seconds"] = {f"{stage}/{name}": st[stage] / n
                             for stage, (name, n) in units.items() if st.get(stage) and n}
  return out


def reward_model_rows(results: dict) -> list[dict]:
  """arm_jax.evaluate's results.json -> one row per system and benchmark: Mixed accuracy (and
  voting@k), Ord-1, Ord-2, the position bias and the parse-failure rate of Mixed."""
  rows = []
  for name, system in results["systems"].items():
    for bench, run in system["benchmarks"].items():
      orders = run["orders"]
      mixed = orders.get("mixed", {})
      rows.append(dict(
          system=name, benchmark=bench, examples=run["examples"], votes=system["votes"],
          mixed=mixed.get("accuracy"), voting=mixed.get("voting_accuracy"),
          ord1=orders.get("ord1", {}).get("accuracy"), ord2=orders.get("ord2", {}).get("accuracy"),
          position_bias=(run.get("position_bias") or {}).get("accuracy"),
          parse_failure_rate=mixed.get("parse_failure_rate")))
  return rows


def _pct(x: Optional[float]) -> str:
  return "-" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
  """A report section: its heading, a markdown table of `rows` under `columns`, a blank line."""
  return ([f"## {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)] +
          ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""])


def report_markdown(r: dict) -> str:
  lines = ["# Rubric-ARM on SmolLM2-135M with Synthetic-IF: the pipeline's report", ""]
  lines += ["## Sizes", "", "```", json.dumps(r["sizes"]), "```", ""]
  if "pairs" in r:
    v = r["pairs"]
    lines += ["## Data", ""]
    if "prompts" in r:
      q = r["prompts"]
      lines.append(f"- Synthetic-IF prompts: {q['prompts']}; over max_prompt_tokens (dropped): "
                   f"{q.get('over_max_prompt_tokens', 0)} "
                   f"{json.dumps(q.get('over_max_prompt_tokens_by_source', {}))}; reward model "
                   f"{q['reward_model_prompts']} ({q['reward_model_bases']} bases), policy "
                   f"{q['policy_prompts']} ({q['policy_bases']} bases)")
    lines += [f"- reward-model prompts sampled: {v['prompts']}; pairs {v['pairs']} "
              f"(train {v.get('split', {}).get('train', {}).get('pairs')}, held-out "
              f"{v.get('split', {}).get('held_out', {}).get('pairs')}); without a pair: "
              f"{json.dumps(v['skipped'])}; counts per constraint kind and lengths: "
              "pairs/dataset/DATASHEET.md"]
    if "split" in r:
      lines.append(f"- training pairs: SFT {r['split']['sft_pairs']} "
                   f"({r['split']['sft_bases']} bases), RL {r['split']['rl_pairs']} "
                   f"({r['split']['rl_bases']} bases), SFT rows {r['split']['sft_rows']}")
    if "ifeval_pairs" in r:
      lines.append(f"- IFEval-verified pairs: {r['ifeval_pairs']['pairs']} from "
                   f"{r['ifeval_pairs']['prompts']} prompts")
    lines.append("")
  if "train" in r:
    lines += _table("Training curve (greedy judgments on the run's own held-out pairs; round 0 = "
                    "after the SFT warm start)",
                    ("round", "step", "pairs", "judge accuracy", "verdict rate"),
                    [(c["round"], c["global_step"], c["pairs"], _pct(c["judge_accuracy"]),
                      _pct(c["verdict_rate"])) for c in r["train"]["curve"]])
  if "reward_model" in r:
    lines += _table("Reward model (arm_jax.evaluate; pairwise accuracy %, judgments sampled at "
                    "temperature 1)",
                    ("system", "benchmark", "pairs", "Mixed", "voting", "Ord-1", "Ord-2",
                     "position bias", "parse failures"),
                    [(x["system"], x["benchmark"], x["examples"], _pct(x["mixed"]),
                      _pct(x["voting"]) if x["votes"] > 1 else "", _pct(x["ord1"]),
                      _pct(x["ord2"]), _pct(x["position_bias"]),
                      _pct(x["parse_failure_rate"])) for x in r["reward_model"]])
  if "dpo_labels" in r:
    lines += _table("DPO pairs (two samples per prompt; a pair is kept when the labeller prefers "
                    "the same response in both orders)",
                    ("labeller", "iteration", "prompts", "kept", "identical", "unparseable",
                     "inconsistent", "consistency", "sampling s", "labelling s"),
                    [(name, *("-" if x[k] is None else x[k] for k in COUNT_KEYS),
                      _pct(x["consistency_rate"]),
                      *("-" if x[k] is None else f"{x[k]:.0f}"
                        for k in ("seconds_sampling", "seconds_labelling")))
                     for name, rows in r["dpo_labels"].items() for x in rows])
  if "ifeval" in r:
    from arm_jax.evaluation import ifeval_policy  # pylint: disable=import-outside-toplevel

    def diff(row, key):
      d = row.get(key, {}).get("average")
      return (f"{100 * d['difference']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"
              if d else "")

    lines += _table("IFEval (541 prompts unless sized down; 95% bootstrap intervals over prompts, "
                    "paired for the differences)",
                    ("policy", *ifeval_policy.FIGURES, "average vs base",
                     "average vs checker (the oracle)"),
                    [(name, *[f"{_pct(row[f])} [{_pct(row['ci'][f][0])}, "
                              f"{_pct(row['ci'][f][1])}]" for f in ifeval_policy.FIGURES],
                      diff(row, "vs_base"), diff(row, "vs_checker"))
                     for name, row in r["ifeval"].items()])
  lines += _table("Wall time (2-core CPU)", ("stage", "seconds"),
                  [(s, "" if v is None else f"{v:.0f}") for s, v in r["stages"].items()] +
                  [("total", f"{r['total_seconds']:.0f}")])
  return "\n".join(lines)


# --- the command ----------------------------------------------------------------------------------

def parse_sizes(text: str) -> dict[str, Any]:
  """"rm_prompts=400,rounds=1" -> {name: value} of Sizes fields, typed as the field is."""
  out: dict[str, Any] = {}
  fields = {f.name: f.type for f in dataclasses.fields(Sizes)}
  for item in filter(None, (t.strip() for t in text.split(","))):
    name, sep, value = item.partition("=")
    if not sep or name not in fields:
      raise ValueError(f"--sizes {item!r}: expected NAME=VALUE with NAME one of "
                       f"{', '.join(fields)}")
    kind = float if fields[name] in (float, "float") else int
    try:
      out[name] = kind(value)
    except ValueError:
      raise ValueError(f"--sizes {item!r}: {value!r} is not a{'n int' if kind is int else ' float'}"
                       ) from None
    if out[name] < 0 or (out[name] == 0 and name not in OPTIONAL):
      raise ValueError(f"--sizes {item!r}: must be positive" +
                       (f" (only {', '.join(OPTIONAL)} may be 0)" if OPTIONAL else ""))
  return out


# The stages that read each size: a size may change on resume until one of them has started.
_DATA_STAGES = ("prompts", "pairs", "ifeval_pairs")
SIZE_STAGES = {
    **{k: _DATA_STAGES for k in ("rm_prompts", "variants", "dpo_base_fraction",
                                 "held_out_fraction", "samples", "max_new_tokens",
                                 "batch_prompts", "max_prompt_tokens")},
    "ifeval_prompts": ("ifeval_pairs",), "rl_fraction": ("split",),
    **{k: ("train",) for k in ("sft_judge_steps", "sft_generator_steps", "rounds",
                               "steps_per_phase")},
    "eval_pairs": ("evaluate_rm",),
    **{k: ("dpo_checker", "dpo_sft", "dpo_rl") for k in ("dpo_iterations", "dpo_prompts",
                                                         "ifeval_eval_prompts")},
}


def _started(workdir: str, stage: str) -> bool:
  return any(os.path.isfile(os.path.join(workdir, "stages", f"{stage}{suffix}.json"))
             for suffix in ("", ".partial"))


def _load_plan(workdir: str, budget_hours: Optional[float], overrides: dict[str, Any]) -> Sizes:
  """The workdir's sizes: planned at the first start, fixed after. A later --sizes may change a
  size none of whose stages (SIZE_STAGES) has started; the change is kept in plan.json."""
  path = os.path.join(workdir, "plan.json")
  if os.path.isfile(path):
    with open(path, encoding="utf-8") as f:
      saved = json.load(f)
    if budget_hours is not None and saved.get("budget_hours") != budget_hours:
      raise ValueError(f"{workdir} was planned with --budget_hours "
                       f"{saved.get('budget_hours')!r}, not {budget_hours!r}. Resume without "
                       "it, change single sizes with --sizes, or use another --workdir")
    sizes = saved["sizes"]
    changes = {k: v for k, v in overrides.items() if sizes.get(k) != v}
    late = {k: [s for s in SIZE_STAGES.get(k, STAGES) if _started(workdir, s)]
            for k in changes}
    late = {k: v for k, v in late.items() if v}
    if late:
      raise ValueError(f"{workdir} was planned with other sizes: " + "; ".join(
          f"{k} {sizes.get(k)!r} then, {changes[k]!r} now, and {', '.join(v)} has started"
          for k, v in late.items()) + ". Resume without them (or with the same), or use "
          "another --workdir")
    if changes:
      saved.setdefault("changes", []).append(
          {k: [sizes.get(k), v] for k, v in changes.items()})
      saved["sizes"] = {**sizes, **changes}
      saved["overrides"] = {**saved.get("overrides", {}), **changes}
      saved["estimate_seconds"] = estimate(Sizes(**saved["sizes"]))
      with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(saved, f, indent=1)
      os.replace(path + ".tmp", path)
    return Sizes(**saved["sizes"])
  sizes = dataclasses.replace(plan(budget_hours), **overrides)
  os.makedirs(workdir, exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(dict(budget_hours=budget_hours, overrides=overrides,
                   sizes=dataclasses.asdict(sizes), estimate_seconds=estimate(sizes)), f,
              indent=1)
  return sizes


COMMAND_GRACE_SECONDS = 600.0  # a training step, then its checkpoint, before SIGKILL


def _end(proc: subprocess.Popen, grace_s: float = COMMAND_GRACE_SECONDS) -> None:
  """SIGTERM (main.py finishes its step, saves and exits), then SIGKILL after `grace_s`."""
  proc.terminate()
  try:
    proc.wait(timeout=grace_s)
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait()


def _interrupt(signum, frame):  # noqa: ARG001
  raise KeyboardInterrupt(f"signal {signum}")


def install_signal_handlers() -> None:
  """SIGTERM (a scheduler, `kill`) and SIGINT, which a shell's background job ignores, stop the
  running stage the way Ctrl-C does: its command gets SIGTERM (a training run saves a checkpoint
  and exits; SIGKILL after COMMAND_GRACE_SECONDS) and the stage's time so far is kept."""
  signal.signal(signal.SIGTERM, _interrupt)
  signal.signal(signal.SIGINT, _interrupt)


def main(argv: Optional[Sequence[str]] = None) -> int:
  install_signal_handlers()
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", default="runs/real_lm")
  ap.add_argument("--budget_hours", type=float, default=None,
                  help="the time the whole pipeline may take here (sizes shrink to fit); default: "
                       "the full sizes (--dry_run prints their estimate). Fixed at the first "
                       "start")
  ap.add_argument("--stages", default="", help="comma-separated stages to run, in pipeline "
                  "order (each needs the ones it reads done, DEPENDS); '' = all not done yet")
  ap.add_argument("--model", default="", help="HF directory or .gguf for every model; '' = the "
                  "shipped SmolLM2-135M-Instruct")
  ap.add_argument("--sizes", default="", help="NAME=VALUE,... of Sizes fields, set after the "
                  "budget's scaling (e.g. rm_prompts=400,rounds=1)")
  for job, what in (("train", "the reward model's training (main.py, "
                     "configs/smollm2_synthetic_if.py)"),
                    ("evaluate", "the reward-model evaluation (configs/evaluate_synthetic_if.py)"),
                    ("policy", "the three DPO runs (configs/policy_smollm2.py)")):
    ap.add_argument(f"--{job}_flags", default="", help=f"extra --config. flags for {what}, "
                    f"space-separated, after the pipeline's own (write --{job}_flags=\"--config.a=1 "
                    "--config.b=2\")")
  ap.add_argument("--compilation_cache", default=None, help="JAX's persistent compilation "
                  "cache for every stage's command, so that a resumed stage does not compile "
                  "its programs again; default WORKDIR/xla_cache (never archived), '' = off")
  ap.add_argument("--dry_run", action="store_true", help="print the sizes and estimates only")
  ap.add_argument("--archive", default="", help="a directory (results/real_lm for the measured "
                  "run) that keeps the run's durable files: restored into WORKDIR at start, "
                  "brought up to date after each stage and at exit, so that a fresh machine "
                  "resumes the run where it stopped")
  ap.add_argument("--archive_every_min", type=float, default=10.0, help="also bring --archive "
                  "up to date every this many minutes while a stage runs (a reclaimed machine "
                  "never reaches the stage's end or the exit); 0 = only then")
  ap.add_argument("--archive_only", action="store_true", help="bring --archive up to date from "
                  "WORKDIR and exit (safe while the pipeline runs in another process)")
  args = ap.parse_args(argv)
  try:
    return _main(args)
  except ValueError as err:
    raise SystemExit(f"error: {err}") from None
  except KeyboardInterrupt as stop:  # Ctrl-C, SIGTERM: the stage's time and outputs are kept
    print(f"[pipeline] stopped ({stop or 'Ctrl-C'}): the same command resumes the run",
          file=sys.stderr, flush=True)
    return 130


_SYNC_LOCK = threading.Lock()  # the periodic sync and a stage's own never overlap


class PeriodicSync:
  """Runs `sync` every `every_s` seconds on a daemon thread until stopped, so that a machine
  reclaimed mid-stage (no exit, no stage end) loses at most that much of the stage's output.
  An error in one sync is printed and the next one tries again."""

  def __init__(self, sync: Callable[[], None], every_s: float):
    self._sync, self._every_s = sync, every_s
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, name="archive-sync", daemon=True)

  def _loop(self) -> None:
    while not self._stop.wait(self._every_s):
      try:
        self._sync()
      except Exception as err:  # pylint: disable=broad-except
        print(f"[archive] periodic sync failed: {type(err).__name__}: {err}", flush=True)

  def __enter__(self) -> "PeriodicSync":
    if self._every_s > 0:
      self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self._stop.set()
    if self._thread.is_alive():
      self._thread.join()


def skipped_summary(skipped: dict[str, str]) -> str:
  """sync_archive's `skipped` for a log line: a checkpoint step left out whole is one entry
  (its files over the limit and how many files it has), every other file its own; temporary
  files are not named."""
  steps: dict[str, list] = {}  # step dir: [[(file, size text) over the limit], files in all]
  others = []
  for rel, why in skipped.items():
    step = _STEP_DIR.match(rel)
    too_big = re.match(r"[\d.]+ MB > ", why) is not None
    if step and (too_big or why.startswith("its checkpoint step")):
      entry = steps.setdefault(step.group(0), [[], 0])
      entry[1] += 1
      if too_big:
        entry[0].append((rel[len(step.group(0)):], why.split(" > ")[0]))
    elif why != "temporary":
      others.append(f"{rel} ({why})")
  for step, (big, count) in steps.items():
    named = ", ".join(f"{f} {size}" for f, size in big)
    others.append(f"checkpoint step {step} whole, {count} files ({len(big)} over the limit: "
                  f"{named})")
  return "; ".join(others)


def _sync(args: argparse.Namespace) -> None:
  with _SYNC_LOCK:
    out = sync_archive(args.workdir, args.archive)
  skipped = skipped_summary(out["skipped"])
  print(f"[archive] {args.archive}: {out['copied']} files written, {out['unchanged']} unchanged, "
        f"{out['removed']} removed, {out['bytes'] / 1e6:.1f} MB in all"
        + (f"; skipped {skipped}" if skipped else ""), flush=True)


def _main(args: argparse.Namespace) -> int:
  if args.archive_only:
    if not args.archive:
      raise ValueError("--archive_only needs --archive DIR")
    _sync(args)
    return 0
  if args.archive and not args.dry_run:
    os.makedirs(args.workdir, exist_ok=True)
    out = restore_archive(args.workdir, args.archive)
    print(f"[archive] {args.archive}: {out['restored']} files restored into {args.workdir} "
          f"({out['present']} already there)", flush=True)
  if args.archive_every_min < 0:
    raise ValueError(f"--archive_every_min={args.archive_every_min:g}: must be >= 0 "
                     "(0 = sync only after each stage and at exit)")
  try:
    every_s = 60.0 * args.archive_every_min if args.archive and not args.dry_run else 0.0
    with PeriodicSync(lambda: _sync(args), every_s):
      return _run(args)
  finally:
    if args.archive and not args.dry_run:
      _sync(args)


def _run(args: argparse.Namespace) -> int:
  overrides = parse_sizes(args.sizes)
  if args.dry_run:
    sizes = dataclasses.replace(plan(args.budget_hours), **overrides)
    est = estimate(sizes)
    print(json.dumps(dataclasses.asdict(sizes), indent=1))
    for stage, seconds in est.items():
      print(f"{stage:14s} ~{seconds / 60:6.1f} min")
    print(f"{'total':14s} ~{sum(est.values()) / 3600:6.2f} h")
    return 0
  sizes = _load_plan(args.workdir, args.budget_hours, overrides)
  flags = {job: shlex.split(getattr(args, f"{job}_flags"))
           for job in ("train", "evaluate", "policy")}
  bad = [f for fl in flags.values() for f in fl if not f.startswith("--config.")]
  if bad:
    raise ValueError(f"--*_flags take --config.KEY=VALUE flags only; got {bad}")
  pipeline = Pipeline(args.workdir, sizes, args.model, flags,
                      compilation_cache=args.compilation_cache)
  wanted = [s.strip() for s in args.stages.split(",") if s.strip()] or list(STAGES)
  unknown = [s for s in wanted if s not in STAGES]
  if unknown:
    raise SystemExit(f"--stages: unknown {', '.join(unknown)}; the stages are "
                     f"{', '.join(STAGES)}")
  for stage in STAGES:
    if stage not in wanted:
      continue
    missing = [s for s in DEPENDS[stage] if not pipeline.done(s)]
    if missing:
      raise SystemExit(f"stage {stage} needs {', '.join(missing)} done first")
    pipeline.run(stage)
    if args.archive:
      _sync(args)
  return 0


if __name__ == "__main__":
  sys.exit(main())
