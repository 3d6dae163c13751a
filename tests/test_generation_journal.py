"""The generation journal: a rerun reuses every batch a killed run finished, samples the rest, and
ends with the outputs of an uninterrupted run; torn and foreign journals are handled in the open.

The policy is a stand-in whose texts are a function of (rows, key, sample): the journal's
contract with generate_in_batches needs no model.
"""

import json
import types

import jax
import numpy as np

from arm_jax.evaluation.journal import GenerationJournal, fingerprint
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
