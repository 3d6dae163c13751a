"""Benchmarks for the evaluator: canonical records become examples; the columns of the table in
docs/method.md §7.

A config defines benchmarks in `benchmark_specs.<name>` and selects the ones to run by name in
`benchmarks`. A spec holds:
  kind: "dataset" (records from `path`) or "held_out" (the held-out pairs of the training run
    named by `trained`, split as in training; for the toy world, whose tokenizer only knows toy
    text, this is the benchmark);
  path: a directory built by `python -m arm_jax.data.build`, or a canonical .jsonl file (lines of
    arm_jax.data.schema.record_to_json); relative paths are relative to the working directory;
  subset: "" for every record, else comma-separated names; a record is in a name when its subset
    is that name or starts with name + "/" (RewardBench's "Chat/alpacaeval-easy" is in "Chat");
  max_examples: 0 for all, else the first N selected records in storage order.

Pairwise records keep the dataset's A/B order (that is Ord-1); best-of-n records keep their
candidates and preferred index. The paper's ten columns have fixed names (PAPER_COLUMNS); any
other benchmark is appended after them in the table.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator, Sequence

import ml_collections

from arm_jax.data import storage
from arm_jax.data.readers import read_rows
from arm_jax.data.schema import Record, Skip, from_example, record_from_json, validate
from arm_jax.parsing import label_index
from arm_jax.core import PreferencePair
from arm_jax.data.pairs import instruction_text

# (benchmark name in a config, column header), in docs/method.md §7's order.
PAPER_COLUMNS = (("chat", "Chat"), ("chat_hard", "ChatH"), ("follow", "Follow"),
                 ("ppe_if", "PPE-IF"), ("info", "Info"), ("ifbench", "IFBench"), ("rmb", "RMB"),
                 ("rb2_pif", "RB2-PIF"), ("rb2_focus", "RB2-Focus"), ("hs3", "HS3"))
KINDS = ("dataset", "held_out")


@dataclasses.dataclass(frozen=True)
class Example:
  """One benchmark item: a pair (candidates = (response_a, response_b)) or a best-of-n set."""
  id: str
  benchmark: str
  subset: str
  instruction: str
  candidates: tuple[str, ...]
  preferred: int  # index into candidates
  best_of_n: bool


def column_label(name: str) -> str:
  """The table header of a benchmark: the paper's for its ten, else the name itself."""
  return dict(PAPER_COLUMNS).get(name, name)


def in_subsets(subset: str, wanted: str) -> bool:
  names = [w.strip() for w in wanted.split(",") if w.strip()]
  return not names or any(subset == n or subset.startswith(n + "/") for n in names)


def example_from_record(record: Record, benchmark: str) -> Example:
  instruction = instruction_text(record.prompt)
  if record.is_best_of_n:
    return Example(record.id, benchmark, record.subset, instruction, tuple(record.candidates),
                   record.preferred, True)
  return Example(record.id, benchmark, record.subset, instruction,
                 (record.response_a, record.response_b), label_index(record.winner), False)


def example_from_pair(pair: PreferencePair, benchmark: str, index: int) -> Example:
  return Example(f"{benchmark}-{index}", benchmark, "", pair.instruction,
                 (pair.response_a, pair.response_b), pair.label, False)


def _jsonl_records(path: str) -> Iterator[Record]:
  """Canonical JSONL; a bad line is an error naming file:line (an evaluation set that silently
  loses rows would change the score)."""
  for row in read_rows(path):
    item = Skip(row.skip.reason, row.skip.field) if row.skip else record_from_json(row.row)
    if isinstance(item, Record):
      item = validate(item) or item
    if isinstance(item, Skip):
      raise ValueError(f"{path}:{row.line}: not a canonical record ({item.reason}, field "
                       f"{item.field!r}): {row.excerpt}")
    yield item


def _dataset_records(path: str) -> Iterator[Record]:
  source = storage.load_source(path)
  for i in range(len(source)):
    yield from_example(source[i])


def _is_dataset_dir(path: str) -> bool:
  return os.path.isdir(storage.dataset_dir(path))


def check_spec(name: str, spec: ml_collections.ConfigDict, has_trained_run: bool) -> None:
  """Raises, naming the benchmark, for what would otherwise fail after the models load."""
  where = f"benchmark_specs.{name}"
  kind = spec.kind
  if kind not in KINDS:
    raise ValueError(f"{where}.kind={kind!r}; expected one of {KINDS}")
  if spec.max_examples < 0:
    raise ValueError(f"{where}.max_examples={spec.max_examples}; expected 0 (all) or more")
  if kind == "held_out":
    if not has_trained_run:
      raise ValueError(f"{where}: kind 'held_out' takes the held-out pairs of a training run; "
                       f"set trained.workdir and trained.config")
    return
  path = spec.path
  if not path:
    raise ValueError(f"{where}.path is empty; give a dataset directory built by "
                     f"`python -m arm_jax.data.build` or a canonical .jsonl file")
  if os.path.isdir(path) and not _is_dataset_dir(path):
    raise FileNotFoundError(f"{where}.path={path!r}: a directory without a built dataset "
                            f"({storage.dataset_dir(path)} is missing); build one with "
                            f"`python -m arm_jax.data.build --out {path} ...`")
  if not os.path.exists(path):
    hint = spec.build_hint or (f"build it with `python -m arm_jax.data.build --out "
                                          f"{path} ...`, or point {where}.path elsewhere")
    raise FileNotFoundError(f"{where}.path={path!r} does not exist; {hint}")
  if os.path.isfile(path) and not path.endswith((".jsonl", ".ndjson")):
    raise ValueError(f"{where}.path={path!r}: expected a built dataset directory or a canonical "
                     f".jsonl file")


def load_examples(name: str, spec: ml_collections.ConfigDict,
                  held_out: Sequence[PreferencePair] = ()) -> list[Example]:
  """The selected examples of one benchmark (check_spec first for a clear error)."""
  limit, subset = spec.max_examples, spec.subset
  if spec.kind == "held_out":
    examples = [example_from_pair(p, name, i) for i, p in enumerate(held_out)]
    examples = [e for e in examples if in_subsets(e.subset, subset)]
    return examples[:limit] if limit else examples
  records = (_dataset_records(spec.path) if _is_dataset_dir(spec.path)
             else _jsonl_records(spec.path))
  examples: list[Example] = []
  for record in records:
    if limit and len(examples) >= limit:
      break
    if in_subsets(record.subset, subset):
      examples.append(example_from_record(record, name))
  if not examples:
    raise ValueError(f"benchmark {name!r}: no records in {spec.path!r}"
                     + (f" with subset in {subset!r}" if subset else ""))
  return examples
