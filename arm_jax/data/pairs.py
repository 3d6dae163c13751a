"""Training data from files: preference pairs from a built dataset, warm-start examples from JSONL.

Pairs come from a directory written by `python -m arm_jax.data.build` (canonical records in
array_record). Only pairwise records train Rubric-ARM; best-of-n records are skipped and counted,
so a mixed dataset is usable and the loss is visible in the log. The held-out split is decided by
a hash of the instruction text (arm_jax.core.is_held_out, the toy world's rule too): no
instruction is on both sides, whatever the order, limit or size of the dataset.

Instructions: a prompt that is one user turn is its text. Any other chat (a system turn, earlier
turns) is rendered whole, one "Role: content" block per message, because the last user turn alone
may refer to what came before it ("shorten that"), and a rubric or verdict written without that
context would be judged against a different task.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

from arm_jax.data import storage
from arm_jax.data.readers import read_rows
from arm_jax.data.schema import (INVALID_UTF8, MALFORMED_JSON, NOT_AN_OBJECT, Prompt,
                                 from_example)
from arm_jax.parsing import label_index
from arm_jax.core import ROLES, PreferencePair, SFTExample, split_by_instruction


@dataclasses.dataclass(frozen=True)
class Split:
  train: list[PreferencePair]
  held_out: list[PreferencePair]
  best_of_n_skipped: int  # best-of-n records read (within the limit) and not used


def instruction_text(prompt: Prompt) -> str:
  """The instruction the rubric generator and the judge read (see the module docstring)."""
  if isinstance(prompt, str):
    return prompt
  if len(prompt) == 1 and prompt[0]["role"] == "user":
    return prompt[0]["content"]
  return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt)


def read_pairs(path: str, *, limit: int = 0,
               build_hint: str = "") -> tuple[list[PreferencePair], int]:
  """(pairs in storage order, best-of-n records skipped); `limit` > 0 caps the pairs taken.

  A directory without a built dataset raises FileNotFoundError naming it and how to build one
  (`build_hint` when the config gives one).
  """
  if not os.path.isdir(storage.dataset_dir(path)):
    hint = build_hint or f"build one with `python -m arm_jax.data.build --out {path} ...`"
    raise FileNotFoundError(f"data.path={path!r}: no dataset built by arm_jax.data.build there "
                            f"({storage.dataset_dir(path)} is missing); {hint}")
  source = storage.load_source(path)
  pairs: list[PreferencePair] = []
  best_of_n = 0
  for i in range(len(source)):
    if limit and len(pairs) >= limit:
      break
    record = from_example(source[i])
    if record.is_best_of_n:
      best_of_n += 1
      continue
    pairs.append(PreferencePair(instruction_text(record.prompt), record.response_a,
                                record.response_b, label_index(record.winner)))
  return pairs, best_of_n


def split_pairs(pairs: Sequence[PreferencePair], held_out_fraction: float,
                seed: int) -> tuple[list[PreferencePair], list[PreferencePair]]:
  """(train, held_out), disjoint by instruction."""
  return split_by_instruction(pairs, lambda p: p.instruction, held_out_fraction, seed)


def load_split(path: str, *, held_out_fraction: float, seed: int, limit: int = 0,
               build_hint: str = "") -> Split:
  """Train and held-out pairs of a built dataset; an empty side is a ValueError naming the path,
  since training needs pairs and every round ends with a held-out evaluation."""
  pairs, best_of_n = read_pairs(path, limit=limit, build_hint=build_hint)
  train, held = split_pairs(pairs, held_out_fraction, seed)
  for name, side in (("train", train), ("held-out", held)):
    if not side:
      raise ValueError(
          f"data.path={path!r}: the {name} split is empty ({len(pairs)} pairwise rows, "
          f"{best_of_n} best-of-n rows skipped, held_out_fraction={held_out_fraction}, "
          f"limit={limit}); use more rows or another held_out_fraction")
  return Split(train, held, best_of_n)


_UNREADABLE = {MALFORMED_JSON: "not JSON", NOT_AN_OBJECT: "expected an object",
               INVALID_UTF8: "not valid UTF-8"}


def _field(obj: dict, name: str, where: str) -> str:
  value = obj.get(name)
  if not isinstance(value, str) or not value.strip():
    raise ValueError(f"{where}: field {name!r} must be a non-empty string, got {value!r}")
  return value


def read_sft_jsonl(path: str) -> dict[str, list[SFTExample]]:
  """Warm-start examples by role from lines {"role": "generator"|"judge", "prompt", "target"}
  (a .jsonl, .json or .parquet file, read by arm_jax.data.readers).

  The prompt is the user message (the chat template is applied when encoding). A bad line
  raises ValueError naming file:line and the field, rather than training on less than given.
  """
  out: dict[str, list[SFTExample]] = {role: [] for role in ROLES}
  for row in read_rows(path):
    where = f"{path}:{row.line}"
    if row.skip is not None:
      what = _UNREADABLE.get(row.skip.reason, row.skip.reason)
      raise ValueError(f"{where}: {what} ({row.skip.detail}): {row.excerpt}")
    role = row.row.get("role")
    if role not in ROLES:
      raise ValueError(f"{where}: field 'role' must be one of {ROLES}, got {role!r}")
    out[role].append(SFTExample(_field(row.row, "prompt", where),
                                _field(row.row, "target", where)))
  return out
