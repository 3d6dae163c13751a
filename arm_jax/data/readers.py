"""Row readers for .jsonl, .json (a list of objects) and .parquet files.

JSONL is read as bytes line by line and decoded here, so an invalid UTF-8 line or a malformed
JSON line becomes a skipped row instead of ending the file. Strings that cannot be stored as
UTF-8 (lone surrogates, from bad bytes in a .json file or from "\\ud800" escapes) are skipped as
INVALID_UTF8 as well. So is a row with an integer longer than Python converts from text
(`sys.get_int_max_str_digits()`: NUMBER_TOO_LONG, in .json files too) or, in JSONL, nested deeper
than the parser's recursion limit (NESTING_TOO_DEEP; a .json file is one document, so there it is
an error naming the file). `line` is the 1-based line for JSONL and the 1-based row for JSON and
Parquet.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, Iterator

from arm_jax.data.schema import (INVALID_UTF8, MALFORMED_JSON, NESTING_TOO_DEEP, NOT_AN_OBJECT,
                                 NUMBER_TOO_LONG, Skip)

EXTENSIONS = (".jsonl", ".ndjson", ".json", ".parquet")
_EXCERPT_CHARS = 120


@dataclasses.dataclass(frozen=True)
class SourceRow:
  """One input row: the parsed object, or the Skip that stopped it, plus where it came from."""
  file: str
  line: int
  row: dict[str, Any] | None
  skip: Skip | None
  excerpt: str


def _excerpt(text: str) -> str:
  text = text.strip()
  return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."


class _LongNumber(str):
  """An integer's digits that int() refuses (over the interpreter's limit): the row is skipped."""


def _parse_int(digits: str) -> Any:
  limit = sys.get_int_max_str_digits()
  return _LongNumber(digits) if limit and len(digits.lstrip("-")) > limit else int(digits)


def _loads(text: str) -> Any:
  return json.loads(text, parse_int=_parse_int)


def _problem(value: Any) -> Skip | None:
  """The first long number or string that is not valid UTF-8 (a lone surrogate) in `value`,
  walked without recursion."""
  stack = [value]
  while stack:
    v = stack.pop()
    if isinstance(v, _LongNumber):
      return Skip(NUMBER_TOO_LONG, "", f"an integer of {len(v.lstrip('-'))} digits")
    if isinstance(v, str):
      try:
        v.encode("utf-8")
      except UnicodeEncodeError:
        return Skip(INVALID_UTF8, "", "text is not valid UTF-8")
    elif isinstance(v, dict):
      stack.extend(v.keys())
      stack.extend(v.values())
    elif isinstance(v, list):
      stack.extend(v)
  return None


def _checked(file: str, line: int, obj: Any, excerpt: str) -> SourceRow:
  if not isinstance(obj, dict):
    return SourceRow(file, line, None, Skip(NOT_AN_OBJECT, "", type(obj).__name__), excerpt)
  problem = _problem(obj)
  if problem is not None:
    return SourceRow(file, line, None, problem, excerpt)
  return SourceRow(file, line, obj, None, excerpt)


def _jsonl(path: str) -> Iterator[SourceRow]:
  with open(path, "rb") as f:
    for line, raw in enumerate(f, start=1):
      if not raw.strip():
        continue
      shown = _excerpt(raw.decode("utf-8", errors="replace"))
      try:
        text = raw.decode("utf-8")
      except UnicodeDecodeError as err:
        yield SourceRow(path, line, None, Skip(INVALID_UTF8, "", str(err)), shown)
        continue
      try:
        obj = _loads(text)
      except json.JSONDecodeError as err:
        yield SourceRow(path, line, None, Skip(MALFORMED_JSON, "", err.msg), shown)
        continue
      except RecursionError:
        yield SourceRow(path, line, None, Skip(NESTING_TOO_DEEP, "", "nested deeper than "
                                               f"{sys.getrecursionlimit()} levels"), shown)
        continue
      yield _checked(path, line, obj, shown)


def _json(path: str) -> Iterator[SourceRow]:
  with open(path, "rb") as f:
    text = f.read().decode("utf-8", errors="surrogateescape")
  try:
    rows = _loads(text)
  except json.JSONDecodeError as err:
    raise ValueError(f"{path}: not valid JSON ({err})") from err
  except RecursionError as err:
    raise ValueError(f"{path}: nested deeper than {sys.getrecursionlimit()} levels, which the "
                     "JSON parser cannot read (as .jsonl, only the rows that are would be "
                     "skipped)") from err
  if not isinstance(rows, list):
    raise ValueError(f"{path}: expected a JSON list of objects, got {type(rows).__name__}")
  for line, obj in enumerate(rows, start=1):
    try:
      shown = _excerpt(json.dumps(obj, ensure_ascii=True))
    except (RecursionError, ValueError):
      shown = "(not shown)"
    yield _checked(path, line, obj, shown)


def _parquet(path: str) -> Iterator[SourceRow]:
  import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel

  line = 0
  for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
    for obj in batch.to_pylist():
      line += 1
      yield _checked(path, line, obj, _excerpt(json.dumps(obj, ensure_ascii=False, default=str)))


def read_rows(path: str) -> Iterator[SourceRow]:
  """The rows of one input file, by extension; a file that cannot be read at all raises."""
  if not os.path.isfile(path):
    raise FileNotFoundError(path)
  ext = os.path.splitext(path)[1].lower()
  if ext in (".jsonl", ".ndjson"):
    return _jsonl(path)
  if ext == ".json":
    return _json(path)
  if ext == ".parquet":
    return _parquet(path)
  raise ValueError(f"{path}: unsupported extension {ext!r}; expected one of {EXTENSIONS}")
