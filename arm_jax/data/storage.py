"""array_record storage through tensorflow-datasets, read back with grain, no TensorFlow needed.

Writing: `PreferenceDataset` is a tfds GeneratorBasedBuilder whose features (Text, Scalar and
Sequence(Text)) encode with numpy only, and file_format="array_record" writes through the
array_record package, so `download_and_prepare` runs without TensorFlow. A build directory holds
`rubric_arm_preferences/1.0.0/` (dataset_info.json, features.json, the array_record shards).

Reading: `load_source` opens that directory with tfds.builder_from_directory(...).as_data_source,
a random-access source, and `make_dataset` wraps it in grain: a seeded global shuffle, then host
`process_index` takes every `process_count`-th row of the shuffled order, so hosts sharing a seed
see disjoint shards that together cover every row once per epoch (shard sizes differ by at most one
row; trainers that need equal step counts per host should size steps from the smallest shard).
With several epochs the whole order is reshuffled each epoch, so a host's rows change between
epochs while every epoch still covers each row exactly once across hosts.
The iterator of the returned IterDataset has get_state()/set_state(), so a run resumes mid-epoch
on exactly the next row.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np
import tensorflow_datasets as tfds

from arm_jax.data.schema import Record, from_example, to_example

if TYPE_CHECKING:
  import grain

DATASET_NAME = "rubric_arm_preferences"
VERSION = "1.0.0"


def features() -> tfds.features.FeaturesDict:
  """The stored features; all of them encode and decode without TensorFlow."""
  text = tfds.features.Text
  return tfds.features.FeaturesDict({
      "id": text(), "prompt": text(), "prompt_is_chat": tfds.features.Scalar(dtype=np.bool_),
      "response_a": text(), "response_b": text(), "winner": text(), "source": text(),
      "subset": text(), "rubric": text(), "candidates": tfds.features.Sequence(text()),
      "preferred": tfds.features.Scalar(dtype=np.int64),
  })


class RubricArmPreferences(tfds.core.GeneratorBasedBuilder):
  """Writes canonical records (already converted and validated) into one split.

  Records are keyed by id, which must be unique; tfds orders the stored rows by a hash of the key.
  """
  VERSION = tfds.core.Version(VERSION)

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> None:
    """No source path: tfds only uses it to find URL checksums (this builder downloads nothing),
    and resolving it for a builder inside a package needs `importlib_resources`, which tfds
    4.9.10 imports lazily but does not install."""
    return None

  def __init__(self, *, records: Iterable[Record] = (), split: str = "train", **kwargs):
    self._records = records
    self._split = split
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, features=features(),
                                 description="Rubric-ARM canonical preference records.")

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download: the records come from the converters
    return {self._split: self._generate_examples()}

  def _generate_examples(self) -> Iterator[tuple[str, dict]]:
    for record in self._records:
      yield record.id, to_example(record)


def write_dataset(records: Iterable[Record], data_dir: str, split: str = "train") -> str:
  """Writes `records` as array_record under data_dir; returns the dataset version directory."""
  builder = RubricArmPreferences(records=records, split=split, data_dir=data_dir,
                                 file_format="array_record")
  builder.download_and_prepare(download_dir=os.path.join(data_dir, "downloads"))
  return os.fspath(builder.data_dir)


def dataset_dir(build_dir: str) -> str:
  """The tfds version directory inside a directory written by `build`."""
  return os.path.join(build_dir, DATASET_NAME, VERSION)


def load_source(build_dir: str, split: str = "train"):
  """The raw tfds random-access source (feature dicts, text as bytes) of a built dataset."""
  return tfds.builder_from_directory(dataset_dir(build_dir)).as_data_source(split=split)


def read_records(build_dir: str, split: str = "train") -> list[Record]:
  """Every record in storage order; for evaluation sets and checks, not for training loops."""
  source = load_source(build_dir, split)
  return [from_example(source[i]) for i in range(len(source))]


def make_dataset(build_dir: str, *, split: str = "train", seed: int | None = 0,
                 process_index: int | None = None, process_count: int | None = None,
                 batch_size: int | None = None, drop_remainder: bool = False,
                 num_epochs: int | None = 1) -> grain.IterDataset:
  """This host's stream of Records (lists of Records when batch_size is set).

  seed=None keeps storage order; num_epochs=None repeats forever, reshuffling every epoch.
  process_index / process_count default to jax.process_index() / jax.process_count().
  Resume: `it = iter(ds)`, save `it.get_state()`, later `it = iter(ds); it.set_state(state)`.
  """
  # Imported here: grain pulls in jax, which building a dataset does not need.
  import grain  # pylint: disable=import-outside-toplevel

  if process_index is None or process_count is None:
    import jax  # pylint: disable=import-outside-toplevel

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} outside 0..{process_count - 1}")
  ds = grain.MapDataset.source(load_source(build_dir, split))
  if seed is not None:
    ds = ds.shuffle(seed=seed)
  ds = ds[process_index::process_count]
  if num_epochs != 1:
    ds = ds.repeat(num_epochs)
  ds = ds.map(from_example)
  if batch_size is not None:
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, batch_fn=list)
  return ds.to_iter_dataset()
