"""Build a canonical preference dataset from hub files: convert, validate, count, write.

  python -m arm_jax.data.build --input FILE [--input FILE ...] --format NAME --out DIR
      [--strict] [--max_tokens N --tokenizer PATH [--truncate]] [--split NAME] [--source NAME]
      [--column_map target=source,...] [--winner_values A=x,B=y[,tie=z]] [--subsets a,b|all]
      [--overwrite]

Every input row ends up written or skipped under one reason code (schema.py); rows are checked in
this order: readable line, converter, schema validation, token budget, duplicate id (the first
written occurrence of an id wins; later ones are DUPLICATE_ID). DIR/build_report.json has the
counts and the first examples of each reason. `rows_read` counts input rows; `rows_written` and
the skips count records, so a converter that expands rows (rmbench: 9 per row) writes more than
it reads.

Subsets: a record's subset names its part of a mixed source (OpenRubrics: the dataset it came
from). --subsets keeps the named ones (prefix match, case and punctuation ignored; 'all' keeps
every one); the default is the format's (converters.DEFAULT_SUBSETS: OpenRubrics' general-domain
sources, the paper's training data). Others are skipped as excluded_subset (never an error under
--strict); the report counts written and excluded records per subset.

Token budget (only with --max_tokens and a tokenizer): a response (each of response_a, response_b
or each candidate; never the prompt) longer than max_tokens tokens, counted without special
tokens, skips the record as "response_over_budget"; with --truncate it is cut to its first max_tokens
tokens instead (an exact prefix of the text, cut at the token's end offset) and the record counts
as truncated.

Output: DIR/rubric_arm_preferences/1.0.0/ (tfds array_record files; read them with
storage.make_dataset(DIR, ...) or storage.read_records(DIR)) and DIR/build_report.json.

Atomicity: the dataset is written into a hidden staging directory next to DIR and renamed to DIR
only after everything, build_report.json included, is complete; a failure (a --strict skip, no
valid rows, any error) removes the staging directory, so DIR either holds a finished dataset or is
untouched.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from typing import Any, Iterator, Sequence

from arm_jax.data.converters import (CONVERTERS, DEFAULT_SUBSETS, ConvertOptions, convert_row,
                                     parse_pairs, subset_selected, winner_values)
from arm_jax.data.readers import SourceRow, read_rows
from arm_jax.data.schema import (DUPLICATE_ID, EXCLUDED_SUBSET, OVER_BUDGET, Record, Skip,
                                 validate)
from arm_jax.data.storage import DATASET_NAME, VERSION, write_dataset

REPORT_NAME = "build_report.json"
EXAMPLES_PER_REASON = 3


class BuildError(Exception):
  """A build that cannot finish: a --strict skip (naming file, line, field) or no valid rows."""


@dataclasses.dataclass
class TokenBudget:
  """The response token budget: skip over-long responses, or cut them when `truncate`."""
  tokenizer: Any
  max_tokens: int
  truncate: bool = False

  def __post_init__(self):
    if self.max_tokens < 1:
      raise ValueError(f"max_tokens must be positive, got {self.max_tokens}")

  def policy(self) -> str:
    return "truncate" if self.truncate else "skip"

  def _fit(self, text: str) -> str | None:
    """`text` when within budget; its first max_tokens tokens when truncating; else None."""
    enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= self.max_tokens:
      return text
    if not self.truncate:
      return None
    return text[:enc["offset_mapping"][self.max_tokens - 1][1]]

  def apply(self, record: Record) -> tuple[Record, bool] | Skip:
    """(record, truncated) with responses fitted to the budget, or the OVER_BUDGET skip."""
    fitted = []
    for i, text in enumerate(record.responses()):
      fit = self._fit(text)
      if fit is None:
        field = f"candidates[{i}]" if record.is_best_of_n else ("response_a", "response_b")[i]
        return Skip(OVER_BUDGET, field, f"over {self.max_tokens} tokens")
      fitted.append(fit)
    if tuple(fitted) == record.responses():
      return record, False
    return record.with_responses(tuple(fitted)), True


class _Tally:
  """Counts for build_report.json; raises BuildError on the first skip when strict."""

  def __init__(self, strict: bool):
    self.strict = strict
    self.rows_read = 0
    self.rows_written = 0
    self.rows_truncated = 0
    self.skipped: collections.Counter[str] = collections.Counter()
    self.written_by_subset: collections.Counter[str] = collections.Counter()
    self.excluded_by_subset: collections.Counter[str] = collections.Counter()
    self.examples: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)

  def skip(self, src: SourceRow, skip: Skip) -> None:
    if self.strict and skip.reason != EXCLUDED_SUBSET:  # a selection is not bad input
      field = f", field {skip.field!r}" if skip.field else ""
      detail = f" ({skip.detail})" if skip.detail else ""
      raise BuildError(f"{src.file}:{src.line}{field}: {skip.reason}{detail}")
    self.skipped[skip.reason] += 1
    if len(self.examples[skip.reason]) < EXAMPLES_PER_REASON:
      self.examples[skip.reason].append({
          "file": src.file, "line": src.line, "field": skip.field, "reason": skip.reason,
          "detail": skip.detail, "excerpt": src.excerpt})


def selected_subsets(fmt: str, opts: ConvertOptions) -> tuple[str, ...]:
  """The subsets a build keeps: --subsets, else the format's default; () = every one."""
  return tuple(opts.subsets) if opts.subsets is not None else DEFAULT_SUBSETS.get(fmt, ())


def _admit(item: Record | Skip, budget: TokenBudget | None, seen: set[str],
           subsets: tuple[str, ...] = ()) -> tuple[Record, bool] | Skip:
  """(record, truncated) when a converted item is to be written, else why not."""
  if isinstance(item, Skip):
    return item
  problem = validate(item)
  if problem is not None:
    return problem
  if not subset_selected(item.subset, subsets):
    return Skip(EXCLUDED_SUBSET, "subset", item.subset)
  fitted = (item, False) if budget is None else budget.apply(item)
  if isinstance(fitted, Skip):
    return fitted
  if item.id in seen:
    return Skip(DUPLICATE_ID, "id", item.id)
  return fitted


def _records(inputs: Sequence[str], fmt: str, opts: ConvertOptions, budget: TokenBudget | None,
             tally: _Tally) -> Iterator[Record]:
  """Every record to write, in input order, tallying everything that is not written."""
  seen: set[str] = set()
  subsets = selected_subsets(fmt, opts)
  for path in inputs:
    for src in read_rows(path):
      tally.rows_read += 1
      if src.skip:
        tally.skip(src, src.skip)
        continue
      for item in convert_row(fmt, src.row, opts):
        admitted = _admit(item, budget, seen, subsets)
        if isinstance(admitted, Skip):
          if admitted.reason == EXCLUDED_SUBSET:
            tally.excluded_by_subset[admitted.detail] += 1
          tally.skip(src, admitted)
          continue
        record, truncated = admitted
        seen.add(record.id)
        tally.rows_written += 1
        tally.written_by_subset[record.subset] += 1
        tally.rows_truncated += truncated
        yield record


def build(inputs: Sequence[str], fmt: str, out_dir: str, *, strict: bool = False,
          options: ConvertOptions | None = None, budget: TokenBudget | None = None,
          split: str = "train", overwrite: bool = False) -> dict[str, Any]:
  """Converts `inputs` with the `fmt` converter and writes the dataset into out_dir.

  Returns the report also written to out_dir/build_report.json. Raises BuildError for a strict
  skip or when no row is valid, ValueError for an unknown format or an unreadable file, and
  FileExistsError when out_dir holds anything and overwrite is False.
  """
  if fmt not in CONVERTERS:
    raise ValueError(f"unknown format {fmt!r}; known: {', '.join(sorted(CONVERTERS))}")
  out_dir = os.path.abspath(out_dir)
  if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
    raise FileExistsError(f"{out_dir} is not empty; pass overwrite=True / --overwrite")
  opts = options or ConvertOptions(source=fmt)
  tally = _Tally(strict)
  os.makedirs(os.path.dirname(out_dir), exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.building-",
                             dir=os.path.dirname(out_dir))
  try:
    try:
      write_dataset(_records(inputs, fmt, opts, budget, tally), staging, split)
    except AssertionError as err:  # tfds refuses a split with no examples
      if tally.rows_written:
        raise
      raise BuildError(f"no valid rows in {list(inputs)}; skipped: {dict(tally.skipped)}") from err
    shutil.rmtree(os.path.join(staging, "downloads"), ignore_errors=True)
    report = _report(inputs, fmt, opts, budget, split, tally)
    with open(os.path.join(staging, REPORT_NAME), "w", encoding="utf-8") as f:
      json.dump(report, f, indent=2)
    if os.path.isdir(out_dir):
      shutil.rmtree(out_dir)
    os.replace(staging, out_dir)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return report


def _report(inputs: Sequence[str], fmt: str, opts: ConvertOptions, budget: TokenBudget | None,
            split: str, tally: _Tally) -> dict[str, Any]:
  return {
      "format": fmt, "source": opts.source, "split": split, "inputs": list(inputs),
      "dataset": f"{DATASET_NAME}/{VERSION}",
      "rows_read": tally.rows_read, "rows_written": tally.rows_written,
      "rows_skipped": sum(tally.skipped.values()),
      "skipped_by_reason": dict(sorted(tally.skipped.items())),
      "rows_truncated": tally.rows_truncated,
      "subsets_selected": list(selected_subsets(fmt, opts)) or "all",
      "written_by_subset": dict(sorted(tally.written_by_subset.items())),
      "excluded_by_subset": dict(sorted(tally.excluded_by_subset.items())),
      "token_budget": None if budget is None else {
          "max_tokens": budget.max_tokens, "policy": budget.policy(),
          "applies_to": "each response or candidate, not the prompt; special tokens not counted",
          "over_budget": "truncated to max_tokens" if budget.truncate
                         else f"row skipped as {OVER_BUDGET}"},
      "skip_examples": dict(sorted(tally.examples.items())),
  }


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m arm_jax.data.build", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--input", action="append", required=True, help=".jsonl, .json or .parquet")
  p.add_argument("--format", required=True, choices=sorted(CONVERTERS))
  p.add_argument("--out", required=True, help="build directory (must be empty or absent)")
  p.add_argument("--strict", action="store_true", help="the first skipped row is an error")
  p.add_argument("--max_tokens", type=int, help="response token budget (needs --tokenizer)")
  p.add_argument("--tokenizer", help="HF tokenizer directory or .gguf file")
  p.add_argument("--truncate", action="store_true", help="cut over-budget responses, not skip")
  p.add_argument("--split", default="train")
  p.add_argument("--source", help="record source name (default: the format name)")
  p.add_argument("--column_map", default="", help="target=source_column,...")
  p.add_argument("--winner_values", default="", help="A=value,B=value[,tie=value]")
  p.add_argument("--subsets", default=None,
                 help="comma-separated subsets (source datasets) to keep; 'all' = every one; "
                      "default: the format's (openrubrics: its general-domain sources)")
  p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
  return p


def main(argv: Sequence[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  if (args.max_tokens is None) != (args.tokenizer is None):
    _parser().error("--max_tokens and --tokenizer go together")
  if args.truncate and args.max_tokens is None:
    _parser().error("--truncate needs --max_tokens")
  try:
    budget = None
    if args.max_tokens is not None:
      from arm_jax.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel

      budget = TokenBudget(load_tokenizer(args.tokenizer), args.max_tokens, args.truncate)
    opts = ConvertOptions(source=args.source or args.format,
                          column_map=parse_pairs(args.column_map),
                          winner_values=winner_values(args.winner_values),
                          subsets=None if args.subsets is None else
                          () if args.subsets == "all" else
                          tuple(x.strip() for x in args.subsets.split(",") if x.strip()))
    report = build(args.input, args.format, args.out, strict=args.strict, options=opts,
                   budget=budget, split=args.split, overwrite=args.overwrite)
  except (BuildError, ValueError, FileExistsError, FileNotFoundError) as err:
    print(f"error: {err}", file=sys.stderr)
    return 1
  print(json.dumps({k: report[k] for k in ("rows_read", "rows_written", "rows_skipped",
                                           "skipped_by_reason", "rows_truncated",
                                           "written_by_subset")}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
