"""The generation journal: a rerun reuses every batch a killed run finished, samples the rest, and
ends with the outputs of an uninterrupted run; torn and foreign journals are handled in the open.

The policy is a stand-in whose texts are a function of (rows, key, sample): the journal's
contract with generate_in_batches needs no model.
"""

import json
import os
import signal
import types

import jax
import numpy as np
import pytest

from arm_jax.evaluation.journal import GenerationJournal, Stopped, fingerprint, stop_on_sigterm
from arm_jax.evaluation.runner import generate_in_batches
from arm_jax.sampling import SamplingParams

PROMPTS = [[3] * n + [n] for n in (5, 1, 7, 2, 9, 4, 6, 3, 8, 2)]  # 10 prompts: 4 batches of 3
SAMPLING = SamplingParams(max_new_tokens=8, temperature=1.0)


class Policy:
  """generate() like arm_jax.rl.policy.Policy's; counts its calls."""

  def __init__(self):
    self.calls = 0

  def generate(self, rows, sampling, key, num_samples):
    self.calls += 1
    seed = int(np.asarray(jax.random.key_data(key)).sum() % 1000)
    texts = [f"{seed}:{sum(r)}:{s}:{sampling.max_new_tokens}" for r in rows
             for s in range(num_samples)]
    return types.SimpleNamespace(lengths=np.array([len(t) for t in texts])), texts


def _run(path, fp="models-a", scope="judge|trained@5", sampling=SAMPLING, seed=0):
  journal = GenerationJournal(str(path), fp, log=lambda _: None)
  policy = Policy()
  out = generate_in_batches(policy, PROMPTS, sampling, jax.random.key(seed), 3, 2,
                            journal.scoped(scope))
  return [[(g.text, g.tokens) for g in gens] for gens in out], policy.calls, journal


def test_a_rerun_samples_nothing_and_returns_the_same(tmp_path):
  path = tmp_path / "g.jsonl"
  first, calls, journal = _run(path)
  assert calls == 4 and journal.stats()["batches_sampled"] == 4
  plain = generate_in_batches(Policy(), PROMPTS, SAMPLING, jax.random.key(0), 3, 2)
  assert first == [[(g.text, g.tokens) for g in gens] for gens in plain]  # no journal: the same
  again, calls, journal = _run(path)
  assert again == first and calls == 0
  assert journal.stats()["batches_reused"] == 4
  # Anything the outputs depend on changes the keys: nothing is reused.
  for kw in (dict(scope="judge|base"), dict(seed=1), dict(sampling=SamplingParams(9))):
    _, calls, _ = _run(path, **kw)
    assert calls == 4, kw


def test_a_killed_run_resumes_at_its_first_unfinished_batch(tmp_path):
  path = tmp_path / "g.jsonl"
  want, _, _ = _run(path)
  lines = path.read_text().splitlines(keepends=True)
  assert len(lines) == 5  # the header and four batches
  path.write_text("".join(lines[:3]) + lines[3][:40])  # two whole batches, one torn mid-write
  got, calls, journal = _run(path)
  assert got == want and calls == 2
  assert journal.stats()["torn_lines"] == 1 and journal.stats()["batches_reused"] == 2
  rows = [json.loads(line) for line in path.read_text().splitlines()]
  assert len(rows) == 5 and rows[0]["fingerprint"] == "models-a"


def test_bad_lines_are_skipped_and_counted_and_a_foreign_journal_is_kept_aside(tmp_path):
  path = tmp_path / "g.jsonl"
  want, _, _ = _run(path)
  lines = path.read_text().splitlines(keepends=True)
  path.write_text("".join(lines[:2]) + "{not json\n" + "".join(lines[3:]))
  logs = []
  journal = GenerationJournal(str(path), "models-a", log=logs.append)
  assert journal.bad_lines == 1 and len(journal.entries) == 3
  assert any("line 3: skipped" in m for m in logs)
  got, calls, _ = _run(path)
  assert got == want and calls == 1
  before = path.read_text()
  got, calls, journal = _run(path, fp="models-b")  # other models: nothing of it is reused
  assert got == want and calls == 4
  assert journal.set_aside == f"{path}.stale1"
  assert (tmp_path / "g.jsonl.stale1").read_text() == before
  assert json.loads(path.read_text().splitlines()[0])["fingerprint"] == "models-b"


def test_fingerprint_is_stable_and_order_free():
  assert fingerprint({"a": 1, "b": [2, 3]}) == fingerprint({"b": [2, 3], "a": 1})
  assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_a_stop_request_ends_after_the_batch_in_flight_is_written(tmp_path):
  """should_stop is read after each append: the batch sampled when it turned True is kept, and
  the rerun samples only the batches after it."""
  path = tmp_path / "g.jsonl"
  want, _, _ = _run(tmp_path / "whole.jsonl")
  policy, asked = Policy(), []
  journal = GenerationJournal(str(path), "models-a", log=lambda _: None,
                              should_stop=lambda: policy.calls == 2 and not asked.append(1))
  with pytest.raises(Stopped, match=r"2 batches there\): the same command resumes"):
    generate_in_batches(policy, PROMPTS, SAMPLING, jax.random.key(0), 3, 2,
                        journal.scoped("judge|trained@5"))
  assert policy.calls == 2 and len(path.read_text().splitlines()) == 3  # header + 2 batches
  got, calls, journal = _run(path)
  assert got == want and calls == 2 and journal.stats()["batches_reused"] == 2


def test_stop_on_sigterm_turns_a_sigterm_into_a_flag_and_restores_the_handler():
  before = signal.getsignal(signal.SIGTERM)
  logs = []
  with stop_on_sigterm(logs.append) as stop:
    assert not stop()
    os.kill(os.getpid(), signal.SIGTERM)  # the default handler would end this process
    assert stop() and "SIGTERM" in logs[0]
  assert signal.getsignal(signal.SIGTERM) is before


def test_with_several_processes_sigterm_keeps_its_handler(monkeypatch):
  """No journal reads the flag there (open_journal): a SIGTERM must still end the process."""
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  before = signal.getsignal(signal.SIGTERM)
  with stop_on_sigterm(lambda _: None) as stop:
    assert signal.getsignal(signal.SIGTERM) is before and not stop()
