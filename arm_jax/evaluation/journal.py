"""A generation journal: a job's sampled batches on disk, so that a rerun after an interruption
resumes at the first batch it had not finished, with the outputs an uninterrupted run would
have had.

`generate_in_batches` (arm_jax.evaluation.runner) asks the journal for each batch before it
samples it and appends each batch it samples: one JSON line with the batch's key, texts, token
counts and wall time. The key is a sha256 of everything the outputs are a function of in that
call: the caller's scope (which weights: e.g. "judge|trained@200"), the batch's prompt tokens,
the sampling settings, the samples per prompt and the batch's PRNG key (sampling is a function
of the key). What the scope does not name (which model files, which training run) goes in the
journal's fingerprint, on its first line: a journal with another fingerprint is set aside
(renamed, not deleted) and a new one started.

A job asked to stop (SIGTERM) stops once its batch in flight is written: the journal reads its
`should_stop` after each append and raises `Stopped` when it says so, so nothing sampled is lost
(the evaluator installs the handler with `stop_on_sigterm`; the policy job passes its own
preemption flag). A batch whose line was cut by a kill mid-write is sampled again: the torn tail
is counted, logged and cut off so that appends stay whole lines. Lines that do not parse
elsewhere are skipped and counted. One process writes; with several processes (multi-host) a
journal is not used, since each process would have to skip the same batches (the jobs then
resume at their own checkpoints as before).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import threading
from typing import Any, Callable, Iterator, Optional, Sequence

import jax
import numpy as np

FORMAT = "arm_jax.generation_journal/1"
FILENAME = "generations.jsonl"  # a job's journal, in its workdir


def fingerprint(*parts: Any) -> str:
  """A stable sha256 of JSON-able parts (dict keys sorted, unknown objects by str)."""
  blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
  return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Stopped(Exception):
  """The job was asked to stop and its last sampled batch is written: the same command resumes
  after it."""


@contextlib.contextmanager
def stop_on_sigterm(log: Callable[[str], None] = print) -> Iterator[Callable[[], bool]]:
  """While inside: SIGTERM sets a flag instead of killing the process; yields the flag's reader
  (a journal's should_stop). The previous handler comes back on exit. Off the main thread, where
  Python cannot take signals, and with several processes, which keep no journal (open_journal)
  to read the flag, the handler is left as it is and the reader stays False."""
  got = threading.Event()
  if threading.current_thread() is not threading.main_thread() or jax.process_count() > 1:
    yield got.is_set
    return

  def handle(signum, frame):  # noqa: ARG001
    log("SIGTERM: stopping once the batch being sampled is written to the journal")
    got.set()

  previous = signal.signal(signal.SIGTERM, handle)
  try:
    yield got.is_set
  finally:
    signal.signal(signal.SIGTERM, previous)


@dataclasses.dataclass(frozen=True)
class Entry:
  texts: list[str]
  lengths: list[int]
  seconds: float


class GenerationJournal:
  """An append-only JSONL of sampled batches (see the module docstring)."""

  def __init__(self, path: str, fingerprint_: str,
               log: Callable[[str], None] = print,
               should_stop: Optional[Callable[[], bool]] = None):
    self.path = path
    self.fingerprint = fingerprint_
    self.log = log
    self.should_stop = should_stop
    self.entries: dict[str, Entry] = {}
    self.reused = self.written = 0
    self.torn = self.bad_lines = 0
    self.set_aside: Optional[str] = None
    if os.path.exists(path):
      self._load()
    if not os.path.exists(path):
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
      with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"format": FORMAT, "fingerprint": fingerprint_}) + "\n")

  def _load(self):
    with open(self.path, "rb") as f:
      data = f.read()
    keep = data.rfind(b"\n") + 1  # a kill mid-append leaves a line without its newline
    if keep < len(data):
      self.torn = 1
      self.log(f"{self.path}: its last line was cut off mid-write ({len(data) - keep} bytes); "
               "that batch is sampled again")
      with open(self.path, "r+b") as f:
        f.truncate(keep)
      data = data[:keep]
    lines = data.decode("utf-8", errors="replace").splitlines()
    try:
      header = json.loads(lines[0]) if lines else {}
    except json.JSONDecodeError:
      header = {}
    if header.get("format") != FORMAT or header.get("fingerprint") != self.fingerprint:
      n = 1
      while os.path.exists(f"{self.path}.stale{n}"):
        n += 1
      self.set_aside = f"{self.path}.stale{n}"
      os.replace(self.path, self.set_aside)
      self.log(f"{self.path}: written for other models or settings (fingerprint "
               f"{str(header.get('fingerprint'))[:12]}, this run's {self.fingerprint[:12]}); "
               f"kept as {self.set_aside}, a new journal started")
      return
    for number, line in enumerate(lines[1:], start=2):
      try:
        row = json.loads(line)
        self.entries[row["key"]] = Entry(list(row["texts"]), [int(x) for x in row["lengths"]],
                                         float(row["seconds"]))
      except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        self.bad_lines += 1
        self.log(f"{self.path}, line {number}: skipped ({type(e).__name__}: {e})")
    self.log(f"{self.path}: {len(self.entries)} sampled batches to reuse")

  def scoped(self, scope: str) -> "ScopedJournal":
    return ScopedJournal(self, scope)

  def get(self, key: str) -> Optional[Entry]:
    entry = self.entries.get(key)
    if entry is not None:
      self.reused += 1
    return entry

  def put(self, key: str, entry: Entry):
    self.entries[key] = entry
    line = json.dumps({"key": key, "texts": entry.texts, "lengths": entry.lengths,
                       "seconds": entry.seconds}, ensure_ascii=False)
    with open(self.path, "a", encoding="utf-8") as f:
      f.write(line + "\n")
      f.flush()
      os.fsync(f.fileno())
    self.written += 1
    if self.should_stop is not None and self.should_stop():
      raise Stopped(f"stopped as asked once a sampled batch was written to {self.path} "
                    f"({len(self.entries)} batches there): the same command resumes after them")

  def stats(self) -> dict:
    return dict(path=self.path, batches_reused=self.reused, batches_sampled=self.written,
                torn_lines=self.torn, bad_lines=self.bad_lines, set_aside=self.set_aside)


@dataclasses.dataclass(frozen=True)
class ScopedJournal:
  """A journal's view for one caller: its scope is part of every key."""
  journal: GenerationJournal
  scope: str

  def key(self, rows: Sequence[Sequence[int]], sampling: Any, key: jax.Array,
          num_samples: int) -> str:
    return fingerprint(self.scope, [list(map(int, r)) for r in rows],
                       dataclasses.asdict(sampling), num_samples,
                       np.asarray(jax.random.key_data(key)).tolist())

  def get(self, key: str) -> Optional[Entry]:
    return self.journal.get(key)

  def put(self, key: str, entry: Entry):
    self.journal.put(key, entry)


def open_journal(path: str, fingerprint_: str, log: Callable[[str], None] = print,
                 should_stop: Optional[Callable[[], bool]] = None
                 ) -> Optional[GenerationJournal]:
  """The journal at `path`, or None with several processes (see the module docstring)."""
  if jax.process_count() > 1:
    log(f"{jax.process_count()} processes: no generation journal; an interrupted run resumes "
        "at its checkpoints only")
    return None
  return GenerationJournal(path, fingerprint_, log, should_stop)
