"""Row readers for .jsonl, .json (a list of objects) and .parquet files.

JSONL is read as bytes line by line and decoded here, so an invalid UTF-8 line or a malformed
JSON line becomes a skipped row instead of ending the file. Strings that cannot be stored as
UTF-8 (lone surrogates, from bad bytes in a .json file or from "\\ud800" escapes) are skipped as
INVALID_UTF8 as well. `line` is the 1-based line for JSONL and the 1-based row for JSON and
Parquet.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterator

from arm_jax.data.schema import INVALID_UTF8, MALFORMED_JSON, NOT_AN_OBJECT, Skip

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


def _has_lone_surrogate(value: Any) -> bool:
  if isinstance(value, str):
    try:
      value.encode("utf-8")
    except UnicodeEncodeError:
      return True
    return False
  if isinstance(value, dict):
    return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
  if isinstance(value, list):
    return any(_has_lone_surrogate(v) for v in value)
  return False


def _checked(file: str, line: int, obj: Any, excerpt: str) -> SourceRow:
  if not isinstance(obj, dict):
    return SourceRow(file, line, None, Skip(NOT_AN_OBJECT, "", type(obj).__name__), excerpt)
  if _has_lone_surrogate(obj):
    return SourceRow(file, line, None, Skip(INVALID_UTF8, "", "text is not valid UTF-8"),
                     excerpt)
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
        obj = json.loads(text)
      except json.JSONDecodeError as err:
        yield SourceRow(path, line, None, Skip(MALFORMED_JSON, "", err.msg), shown)
        continue
      yield _checked(path, line, obj, shown)


def _json(path: str) -> Iterator[SourceRow]:
  with open(path, "rb") as f:
    text = f.read().decode("utf-8", errors="surrogateescape")
  try:
    rows = json.loads(text)
  except json.JSONDecodeError as err:
    raise ValueError(f"{path}: not valid JSON ({err})") from err
  if not isinstance(rows, list):
    raise ValueError(f"{path}: expected a JSON list of objects, got {type(rows).__name__}")
  for line, obj in enumerate(rows, start=1):
    shown = _excerpt(json.dumps(obj, ensure_ascii=True))
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
