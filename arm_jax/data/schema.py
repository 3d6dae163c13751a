"""The canonical preference record every converter produces and the dataset stores.

A record is either pairwise or best-of-n, never both, so a consumer never has to guess which
fields carry the label:

* pairwise: `response_a`, `response_b` and `winner` ("A": response_a, the response shown
  first, is preferred; "B": response_b is), `candidates` empty and `preferred` -1;
* best-of-n: `candidates` (two or more) and `preferred` (index of the preferred candidate),
  `response_a`, `response_b` and `winner` empty.

`prompt` is plain text or a chat, a list of {"role", "content"} messages; it is stored as a JSON
string plus the `prompt_is_chat` flag so the list comes back exactly. `subset` and `rubric` are
"" when the source has none. Skips carry a reason code (the constants below) and a field name,
which is what build_report.json counts and quotes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Mapping, Union

Message = dict[str, str]
Prompt = Union[str, list[Message]]

MISSING_FIELD = "missing_field"
EMPTY_FIELD = "empty_field"
BAD_TYPE = "bad_type"
BAD_WINNER = "bad_winner"
BAD_MESSAGE = "bad_message"
BAD_PREFERRED = "bad_preferred"
BAD_LAYOUT = "bad_layout"
TIE = "tie"
PREFIX_MISMATCH = "prefix_mismatch"
BAD_TRANSCRIPT = "bad_transcript"
UNKNOWN_SUBSET = "unknown_subset"
MULTIPLE_CHOSEN = "multiple_chosen"
INVALID_UTF8 = "invalid_utf8"
MALFORMED_JSON = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
NUMBER_TOO_LONG = "number_too_long"  # an integer over Python's int-from-text digit limit
NESTING_TOO_DEEP = "nesting_too_deep"
EXCLUDED_SUBSET = "excluded_subset"  # a subset (origin dataset) the build does not select  # deeper than the JSON parser's recursion limit
DUPLICATE_ID = "duplicate_id"
OVER_BUDGET = "response_over_budget"


@dataclasses.dataclass(frozen=True)
class Record:
  """One canonical preference example (see the module docstring for the two layouts)."""
  id: str
  prompt: Prompt
  response_a: str = ""
  response_b: str = ""
  winner: str = ""
  source: str = ""
  subset: str = ""
  rubric: str = ""
  candidates: tuple[str, ...] = ()
  preferred: int = -1

  @property
  def is_best_of_n(self) -> bool:
    return bool(self.candidates)

  def responses(self) -> tuple[str, ...]:
    """The texts a token budget applies to: the candidates, or the two responses."""
    return self.candidates if self.is_best_of_n else (self.response_a, self.response_b)

  def with_responses(self, texts: tuple[str, ...]) -> Record:
    """The same record with `responses()` replaced, in the same order (used to truncate)."""
    if self.is_best_of_n:
      return dataclasses.replace(self, candidates=tuple(texts))
    return dataclasses.replace(self, response_a=texts[0], response_b=texts[1])


@dataclasses.dataclass(frozen=True)
class Skip:
  """Why a row (or one record of it) is not written: a reason code and the offending field."""
  reason: str
  field: str
  detail: str = ""


def content_id(source: str, *parts: Any) -> str:
  """A stable id for sources without one: `source-` + 16 hex of sha256 over the JSON content.

  The parts are the prompt and the responses in the source's own order (chosen before rejected),
  so the id does not depend on how a converter later places them.
  """
  blob = json.dumps(parts, ensure_ascii=False, sort_keys=True).encode("utf-8")
  return f"{source}-{hashlib.sha256(blob).hexdigest()[:16]}"


def _check_prompt(prompt: Any) -> Skip | None:
  if isinstance(prompt, str):
    return None if prompt.strip() else Skip(EMPTY_FIELD, "prompt")
  if not isinstance(prompt, list):
    return Skip(BAD_TYPE, "prompt", "expected text or a list of messages")
  if not prompt:
    return Skip(EMPTY_FIELD, "prompt")
  for message in prompt:
    if (not isinstance(message, dict) or set(message) != {"role", "content"}
        or not isinstance(message["role"], str) or not message["role"]
        or not isinstance(message["content"], str)):
      return Skip(BAD_MESSAGE, "prompt", "messages are {'role': str, 'content': str}")
  return None


def _check_text(record: Record, name: str) -> Skip | None:
  value = getattr(record, name)
  if not isinstance(value, str):
    return Skip(BAD_TYPE, name, "expected text")
  return None


def _check_best_of_n(record: Record) -> Skip | None:
  if record.response_a or record.response_b or record.winner:
    return Skip(BAD_LAYOUT, "candidates", "best-of-n records leave response_a/b and winner empty")
  if len(record.candidates) < 2:
    return Skip(BAD_LAYOUT, "candidates", "best-of-n needs at least two candidates")
  for text in record.candidates:
    if not isinstance(text, str):
      return Skip(BAD_TYPE, "candidates", "expected text")
    if not text.strip():
      return Skip(EMPTY_FIELD, "candidates")
  if isinstance(record.preferred, bool) or not isinstance(record.preferred, int):
    return Skip(BAD_TYPE, "preferred", "expected an integer index")
  if not 0 <= record.preferred < len(record.candidates):
    return Skip(BAD_PREFERRED, "preferred", f"{record.preferred} outside the candidates")
  return None


def _check_pair(record: Record) -> Skip | None:
  for name in ("response_a", "response_b"):
    if not getattr(record, name).strip():
      return Skip(EMPTY_FIELD, name)
  if record.winner not in ("A", "B"):
    return Skip(BAD_WINNER, "winner", f"{record.winner!r} is not 'A' or 'B'")
  if record.preferred != -1:
    return Skip(BAD_LAYOUT, "preferred", "pairwise records keep preferred at -1")
  return None


def validate(record: Record) -> Skip | None:
  """The first problem with `record` as a Skip (reason code, field), or None when it is valid."""
  for name in ("id", "response_a", "response_b", "winner", "source", "subset", "rubric"):
    problem = _check_text(record, name)
    if problem:
      return problem
  for name in ("id", "source"):
    if not getattr(record, name).strip():
      return Skip(EMPTY_FIELD, name)
  problem = _check_prompt(record.prompt)
  if problem:
    return problem
  if not isinstance(record.candidates, tuple):
    return Skip(BAD_TYPE, "candidates", "expected a tuple of texts")
  return _check_best_of_n(record) if record.is_best_of_n else _check_pair(record)


def record_to_json(record: Record) -> dict[str, Any]:
  """The canonical JSON object (one line of canonical JSONL) for `record`."""
  out = dataclasses.asdict(record)
  out["candidates"] = list(record.candidates)
  return out


def record_from_json(obj: Mapping[str, Any]) -> Record | Skip:
  """Reads a canonical JSON object; the inverse of record_to_json. Validate the result."""
  for name in ("id", "prompt", "source"):
    if obj.get(name) is None:
      return Skip(MISSING_FIELD, name)
  candidates = obj.get("candidates") or []
  if not isinstance(candidates, list):
    return Skip(BAD_TYPE, "candidates", "expected a list of texts")
  preferred = obj.get("preferred", -1)
  fields = {name: "" if obj.get(name) is None else obj[name] for name in
            ("response_a", "response_b", "winner", "subset", "rubric")}
  return Record(id=obj["id"], prompt=obj["prompt"], source=obj["source"],
                candidates=tuple(candidates), preferred=preferred, **fields)


def to_example(record: Record) -> dict[str, Any]:
  """The stored feature dict: the prompt as text, a chat prompt as JSON with the flag set."""
  is_chat = isinstance(record.prompt, list)
  prompt = json.dumps(record.prompt, ensure_ascii=False) if is_chat else record.prompt
  return {"id": record.id, "prompt": prompt, "prompt_is_chat": is_chat,
          "response_a": record.response_a, "response_b": record.response_b,
          "winner": record.winner, "source": record.source, "subset": record.subset,
          "rubric": record.rubric, "candidates": list(record.candidates),
          "preferred": record.preferred}


def _text(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def from_example(example: Mapping[str, Any]) -> Record:
  """A Record from a stored feature dict (tfds hands back text as bytes); inverse of to_example."""
  prompt = _text(example["prompt"])
  return Record(
      id=_text(example["id"]),
      prompt=json.loads(prompt) if bool(example["prompt_is_chat"]) else prompt,
      response_a=_text(example["response_a"]), response_b=_text(example["response_b"]),
      winner=_text(example["winner"]), source=_text(example["source"]),
      subset=_text(example["subset"]), rubric=_text(example["rubric"]),
      candidates=tuple(_text(c) for c in example["candidates"]),
      preferred=int(example["preferred"]))
