"""The types every layer shares: the two roles, a preference pair, a warm-start example, the
held-out split rule.

The bottom layer of the package (docs/method.md §2 for the conventions): it imports nothing from
arm_jax, so data, models, the RL stack, training, evaluation and the toy world all read the same
definitions.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import NamedTuple, Sequence, TypeVar, Union

# The two policies, in the order runs warm-start them and checkpoints list them.
ROLES = ("generator", "judge")
GENERATOR, JUDGE = ROLES

Messages = list[dict[str, str]]


@dataclasses.dataclass(frozen=True)
class PreferencePair:
  """One training or held-out comparison: `label` 0 when response_a (slot A) is preferred, 1 when
  response_b is."""
  instruction: str
  response_a: str
  response_b: str
  label: int

  def swapped(self) -> "PreferencePair":
    """The same preference shown in the other order (random swaps remove position bias)."""
    return PreferencePair(self.instruction, self.response_b, self.response_a, 1 - self.label)


class SFTExample(NamedTuple):
  """One warm-start (Stage I) example: a prompt and the completion the policy learns."""
  prompt: Union[str, Messages]  # chat messages end before the assistant turn the target fills
  target: str


def is_held_out(instruction: str, held_out_fraction: float, seed: int = 0) -> bool:
  """The held-out split, decided by a hash of the instruction's text alone: no instruction is ever
  on both sides, whatever the order, number or source of the examples."""
  digest = hashlib.sha256(f"{seed}\0{instruction}".encode()).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64 < held_out_fraction


T = TypeVar("T")


def split_by_instruction(items: Sequence[T], instruction_of, held_out_fraction: float,
                         seed: int) -> tuple[list[T], list[T]]:
  """(train, held_out) by is_held_out of each item's instruction, order kept."""
  train, held = [], []
  for item in items:
    (held if is_held_out(instruction_of(item), held_out_fraction, seed) else train).append(item)
  return train, held
