"""array_record storage read back through grain: seeded order, host shards, mid-epoch resume."""

import json
import os

import pytest

from arm_jax.data import schema
from arm_jax.data.build import build
from arm_jax.data.storage import dataset_dir, load_source, make_dataset, read_records, write_dataset

N_ROWS = 23  # not a multiple of the 4 simulated hosts nor of the batch size


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("storage")
  rows = [schema.record_to_json(schema.Record(
      id=f"r{i:02d}", prompt=f"prompt {i}", response_a=f"a{i}", response_b=f"b{i}",
      winner="AB"[i % 2], source="test")) for i in range(N_ROWS)]
  path = os.path.join(root, "rows.jsonl")
  with open(path, "w", encoding="utf-8") as f:
    f.write("".join(json.dumps(r) + "\n" for r in rows))
  out = os.path.join(root, "out")
  build([path], "canonical", out)
  return out


def _ids(ds):
  return [r.id for r in ds]


def test_files_are_array_record_and_readable_by_tfds(built):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  files = os.listdir(dataset_dir(built))
  assert any(".array_record-" in f for f in files) and "dataset_info.json" in files
  assert len(load_source(built)) == N_ROWS
  source = tfds.data_source("rubric_arm_preferences", data_dir=built, split="train")
  assert sorted(schema.from_example(source[i]).id for i in range(len(source))) == [
      f"r{i:02d}" for i in range(N_ROWS)]


def test_seeded_order_is_a_deterministic_permutation(built):
  first = _ids(make_dataset(built, seed=7, process_index=0, process_count=1))
  assert first == _ids(make_dataset(built, seed=7, process_index=0, process_count=1))
  assert sorted(first) == [f"r{i:02d}" for i in range(N_ROWS)]
  assert first != _ids(make_dataset(built, seed=8, process_index=0, process_count=1))
  stored = [r.id for r in read_records(built)]
  assert _ids(make_dataset(built, seed=None, process_index=0, process_count=1)) == stored


def test_host_shards_are_disjoint_and_cover_every_row(built):
  shards = [_ids(make_dataset(built, seed=3, process_index=i, process_count=4)) for i in range(4)]
  assert [len(s) for s in shards] == [6, 6, 6, 5]
  flat = [i for shard in shards for i in shard]
  assert len(set(flat)) == len(flat) == N_ROWS
  full = _ids(make_dataset(built, seed=3, process_index=0, process_count=1))
  assert shards[1] == full[1::4]


@pytest.mark.parametrize("k", [0, 5, 22])
def test_resume_mid_epoch_neither_repeats_nor_skips(built, k):
  ds = make_dataset(built, seed=11, process_index=0, process_count=1)
  uninterrupted = _ids(ds)
  it = iter(ds)
  head = [next(it).id for _ in range(k)]
  state = it.get_state()
  fresh = iter(make_dataset(built, seed=11, process_index=0, process_count=1))
  fresh.set_state(state)
  assert head + [r.id for r in fresh] == uninterrupted


def test_every_epoch_reshuffles_and_still_covers_every_row_across_hosts(built):
  streams = [_ids(make_dataset(built, seed=5, process_index=i, process_count=4, num_epochs=2))
             for i in range(4)]
  sizes = [6, 6, 6, 5]
  assert [len(s) for s in streams] == [2 * n for n in sizes]
  for epoch in (0, 1):
    rows = [i for s, n in zip(streams, sizes) for i in s[epoch * n:(epoch + 1) * n]]
    assert len(set(rows)) == len(rows) == N_ROWS
  assert [s[:n] for s, n in zip(streams, sizes)] != [s[n:] for s, n in zip(streams, sizes)]


def test_resume_on_a_host_shard_with_batches_across_epochs(built):
  def make():
    return make_dataset(built, seed=5, process_index=2, process_count=4, batch_size=4,
                        num_epochs=2)
  uninterrupted = [[r.id for r in batch] for batch in make()]
  assert [len(b) for b in uninterrupted] == [4, 4, 4]  # 6 rows x 2 epochs
  assert sum(uninterrupted, []) == _ids(make_dataset(built, seed=5, process_index=2,
                                                     process_count=4, num_epochs=2))
  it = iter(make())
  head = [[r.id for r in next(it)], [r.id for r in next(it)]]  # the second spans both epochs
  fresh = iter(make())
  fresh.set_state(it.get_state())
  assert head + [[r.id for r in batch] for batch in fresh] == uninterrupted


def test_bad_process_index_is_rejected(built):
  with pytest.raises(ValueError, match="process_index 4"):
    make_dataset(built, process_index=4, process_count=4)


def test_chat_prompt_and_candidates_survive_storage(tmp_path):
  chat = [{"role": "user", "content": "héllo \u2603"}, {"role": "assistant", "content": ""},
          {"role": "user", "content": "again"}]
  records = [schema.Record(id="x", prompt=chat, source="t", candidates=("p", "q"), preferred=1),
             schema.Record(id="y", prompt='[{"role": "user"}]', response_a="a", response_b="b",
                           winner="A", source="t", subset="s", rubric="r")]
  write_dataset(records, str(tmp_path))
  assert sorted(read_records(str(tmp_path)), key=lambda r: r.id) == records


def test_hosts_default_to_the_jax_process(built):
  import jax  # pylint: disable=import-outside-toplevel

  assert (jax.process_index(), jax.process_count()) == (0, 1)
  assert _ids(make_dataset(built, seed=3)) == _ids(
      make_dataset(built, seed=3, process_index=0, process_count=1))
