"""Training metrics: a JSONL log, TensorBoard event files, curve plots and a progress bar.

metrics.jsonl is the source of truth: one flat JSON object per line, valid JSON (non-finite
floats are written as null), fsync'd per record so a killed run keeps what it logged. The
training loop stores `MetricsWriter.offset()` in each checkpoint and calls `truncate` with it
on resume, so records logged after that checkpoint do not appear twice.

TensorBoard event files are written by tensorboardX (no TensorFlow or tensorboard needed), one
scalar per numeric field, tagged "<phase>/<field>", flushed per record.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import time
from typing import Any

import numpy as np
import tqdm

_STEP_KEYS = ("global_step", "step")
_PLOTTED = ("reward_mean", "accuracy", "format_rate", "kl", "grad_variance", "loss",
            "judge_accuracy", "dpo_loss", "margin", "consistency_rate")
# A policy's evaluations (arm_jax.downstream.job), by unit (iterations or steps done).
_POLICY_EVAL = ("constraint_share", "win_rate_vs_start", "all_met", "average", "prompt_strict",
                "instruction_strict")


def _is_main_process() -> bool:
  """Imported lazily so that plotting scripts need not initialise a JAX backend."""
  import jax  # pylint: disable=import-outside-toplevel
  return jax.process_index() == 0


def _to_python(value: Any) -> Any:
  """numpy and JAX scalars (0-d arrays included) become the Python scalars json accepts."""
  if isinstance(value, np.generic) or getattr(value, "shape", None) == ():
    return value.item()
  return value


def _json_safe(value: Any) -> Any:
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _record_step(record: dict[str, Any]) -> int | None:
  for key in _STEP_KEYS:
    step = record.get(key)
    if isinstance(step, int) and not isinstance(step, bool):
      return step
  return None


def _scalars(record: dict[str, Any]) -> list[tuple[str, float]]:
  """NaN and inf stay in TensorBoard, where a diverged loss should be visible as such."""
  phase = record.get("phase", "train")
  return [(f"{phase}/{key}", float(value)) for key, value in record.items()
          if key not in _STEP_KEYS and _is_number(value)]


def _unused_path(path: str) -> str:
  """A resume within the same second must not overwrite the previous event file."""
  candidate, n = path, 0
  while os.path.exists(candidate):
    n += 1
    candidate = f"{path}.{n}"
  return candidate


class MetricsWriter:
  """Appends records to WORKDIR/metrics.jsonl and, optionally, to TensorBoard.

  Only process 0 writes; on other processes every method is a no-op (offset() is 0).
  """

  def __init__(self, workdir: str, tensorboard: bool = True):
    self._enabled = _is_main_process()
    self._tensorboard_dir = os.path.join(workdir, "tensorboard") if tensorboard else None
    self._jsonl = None
    self._events = None
    if not self._enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "ab")
    self._open_event_file()

  def _open_event_file(self) -> None:
    if self._tensorboard_dir is None:
      return
    # Imported here: tensorboardX imports torch when it is installed (over a second per start).
    from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel
    # tensorboardX warns at every non-finite scalar ("NaN or Inf found in input tensor"): once a
    # step for a metric that is undefined by design (grad_variance with one micro-batch). The
    # value is written as it is (_scalars) and metrics.jsonl has it as null, so the warning
    # says nothing the curve does not.
    logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)
    os.makedirs(self._tensorboard_dir, exist_ok=True)
    # tensorboardX names the file by the second and the host; a suffix keeps a resume within
    # the same second from overwriting the previous file.
    name = f"events.out.tfevents.{str(time.time())[:10]}.{socket.gethostname()}"
    path = _unused_path(os.path.join(self._tensorboard_dir, name))
    self._events = SummaryWriter(self._tensorboard_dir,
                                 filename_suffix=path[len(os.path.join(self._tensorboard_dir,
                                                                       name)):])

  def write(self, record: dict[str, Any]) -> None:
    """Logs one flat record; numeric fields reach TensorBoard when it has an int step."""
    if not self._enabled:
      return
    record = {key: _to_python(value) for key, value in record.items()}
    line = json.dumps({k: _json_safe(v) for k, v in record.items()}, allow_nan=False)
    self._jsonl.write(line.encode() + b"\n")
    self._jsonl.flush()
    os.fsync(self._jsonl.fileno())
    step = _record_step(record)
    scalars = _scalars(record)
    if self._events is not None and step is not None and scalars:
      now = time.time()
      for tag, value in scalars:
        self._events.add_scalar(tag, value, step, walltime=now)
      self._events.flush()

  def offset(self) -> int:
    """Byte size of metrics.jsonl; a checkpoint stores it to truncate back to on resume."""
    if not self._enabled:
      return 0
    return os.fstat(self._jsonl.fileno()).st_size

  def truncate(self, offset: int) -> None:
    """Drops the records logged after the checkpoint being resumed.

    Event files cannot be cut the same way without parsing them, so a new one is started
    instead: TensorBoard reads event files in name (time) order and, when a step goes back,
    discards the older points at or after that step, so the resumed run's values win.
    """
    if not self._enabled:
      return
    size = self.offset()
    if not 0 <= offset <= size:
      raise ValueError(f"offset {offset} is outside metrics.jsonl's {size} bytes")
    self._jsonl.truncate(offset)
    os.fsync(self._jsonl.fileno())
    if self._events is not None:
      self._events.close()
      self._open_event_file()

  def close(self) -> None:
    for f in (self._jsonl, self._events):
      if f is not None:
        f.close()

  def __enter__(self) -> MetricsWriter:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


# ---------------------------------------------------------------------------------------------
# Plots.


_READING = ("rubric_exact", "judge_restated", "judge_evidence", "judge_marks")


def _read_records(metrics_path: str) -> list[dict[str, Any]]:
  with open(metrics_path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _series(records: list[dict[str, Any]], key: str, x_key: str) -> tuple[list, list]:
  points = [(r[x_key], r[key]) for r in records
            if _is_number(r.get(x_key)) and _is_number(r.get(key))]
  return [x for x, _ in points], [y for _, y in points]


def _phase_series(train: list[dict[str, Any]], phase: str, key: str) -> tuple[list, list]:
  """A phase's (global_step, key) points; where another phase's records come between two of
  its stretches (the judge's rounds around the generator's), a NaN breaks its line so that it
  is not drawn across the other phase."""
  xs, ys, gap = [], [], False
  for r in train:
    if r.get("phase", "train") != phase:
      gap = gap or bool(xs)
      continue
    if not (_is_number(r.get("global_step")) and _is_number(r.get(key))):
      continue
    if gap:
      xs.append(r["global_step"])
      ys.append(math.nan)
      gap = False
    xs.append(r["global_step"])
    ys.append(r[key])
  return xs, ys


def _panels(records: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, tuple]]]:
  """(title, x label, {phase: (xs, ys)}) per subplot; eval is plotted per round, apart."""
  train = [r for r in records if r.get("phase") != "eval"]
  phases = list(dict.fromkeys(r.get("phase", "train") for r in train))
  panels = []
  for key in _PLOTTED:
    lines = {phase: _phase_series(train, phase, key) for phase in phases}
    lines = {phase: xy for phase, xy in lines.items() if xy[0]}
    if lines:
      panels.append((key, "global_step", lines))
  eval_records = [r for r in records if r.get("phase") == "eval"]
  evals = _series(eval_records, "judge_accuracy", "round")
  if evals[0]:
    panels.append(("eval judge_accuracy", "round", {"eval": evals}))
  reading = {key: _series(eval_records, key, "round") for key in _READING}
  reading = {key: xy for key, xy in reading.items() if xy[0]}
  if reading:  # the toy's step-by-step checks (arm_jax.toy.diagnostics)
    panels.append(("eval reading", "round", reading))
  policy = {key: _series(eval_records, key, "unit") for key in _POLICY_EVAL}
  policy = {key: xy for key, xy in policy.items() if xy[0]}
  if policy:
    panels.append(("eval policy", "iterations / steps", policy))
  return panels


def plot_curves(metrics_path: str, out_png: str) -> None:
  """One subplot per logged metric, one line per phase; raises if nothing is plottable."""
  # Imported here so that importing this module (every training run) stays cheap.
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=import-outside-toplevel
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel

  panels = _panels(_read_records(metrics_path))
  if not panels:
    raise ValueError(f"no plottable metrics in {metrics_path}")
  ncols = min(3, len(panels))
  nrows = math.ceil(len(panels) / ncols)
  fig = Figure(figsize=(5 * ncols, 3.5 * nrows), layout="constrained")
  FigureCanvasAgg(fig)
  for i, (title, x_label, lines) in enumerate(panels):
    ax = fig.add_subplot(nrows, ncols, i + 1)
    for phase, (xs, ys) in lines.items():
      ax.plot(xs, ys, marker="o" if len(xs) < 20 else None, label=phase)
    ax.set_title(title)
    ax.set_xlabel(x_label)
    ax.legend()
  os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
  fig.savefig(out_png, dpi=100)


# ---------------------------------------------------------------------------------------------
# Progress.


class Progress:
  """A tqdm bar with ETA on stderr, shown by process 0 only so hosts do not interleave."""

  def __init__(self, total: int, desc: str):
    self._bar = tqdm.tqdm(total=total, desc=desc, file=sys.stderr, mininterval=1.0,
                          dynamic_ncols=True, disable=not _is_main_process())

  def update(self, n: int = 1, **postfix: Any) -> None:
    if postfix:
      self._bar.set_postfix({k: _to_python(v) for k, v in postfix.items()}, refresh=False)
    self._bar.update(n)

  def add_total(self, n: int) -> None:
    """More steps than the bar was made with (work whose size is known only as it comes)."""
    self._bar.total = (self._bar.total or 0) + n
    self._bar.refresh()

  def close(self) -> None:
    self._bar.close()
