"""The toy preference world: instructions with explicit, checkable constraints and response pairs.

An instruction names a topic and states 2-4 constraints drawn from six kinds (use a word, do not
use a word, start with a word, end with a word, at most / at least N words); the words of word
constraints come from CONSTRAINT_WORDS. Responses are short sequences of lexicon words, and the
preferred one satisfies strictly more constraints than the other, so the label is ground truth
that `satisfied` recomputes from text alone. The topic is
never a constraint word and never checked: a rubric that turns it into a rule is wrong, which
gives the rubric generator a realistic mistake to unlearn.

Everything is a pure function of a seed: instance i of a stream comes from the generator seeded
with (seed, i), so a stream's prefix does not depend on how long it is.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import numpy as np

from arm_jax.core import PreferencePair, is_held_out, split_by_instruction
from arm_jax.parsing import small_int

# Content words only: none of them is a word of the templates or output formats, so a
# constraint word never coincides with structure the judge must read.
LEXICON = tuple("""
apple river stone moon tiger cloud garden bread candle forest window mountain ocean pencil rabbit
silver winter summer thunder violin lemon desert island bridge castle mirror feather honey lantern
meadow needle orange pepper rocket shadow spider tomato valley wagon whale button carpet dragon
engine falcon ginger hammer jacket kettle ladder marble nickel onion parrot quartz ribbon saddle
tunnel velvet walnut anchor basket cactus dolphin eagle fossil glacier harbor igloo jungle kitten
lizard magnet napkin oyster pillow planet puzzle rainbow salmon sponge turtle village wizard zebra
yogurt coffee pebble comet breeze red blue green quiet bright gentle brave calm swift tiny huge
golden silent happy sleepy wild warm cold shiny soft runs jumps sings glows falls grows shines
sleeps flies swims dances waits
""".split())
TOPICS = LEXICON[:8]
# The words that word constraints name (disjoint from the topics; fillers may use any word).
# A small set on purpose: telling whether a word occurs in response A or in B is what a
# from-scratch judge learns last, and it learns it sooner the fewer words it must track
# (measured on the toy judge after 600 warm-start steps: 49% of block-A evidence right with 16
# words, 57% with 8; chance 25%).
CONSTRAINT_WORDS = LEXICON[8:16]
KINDS = ("include", "avoid", "start", "end", "at_most", "at_least")
WORD_KINDS = ("include", "avoid", "start", "end")
MIN_WORDS, MAX_WORDS = 2, 12  # response length range; length constraints fall inside it
MIN_COUNT, MAX_COUNT = 3, 10  # the N of "at most / at least N words"

_INSTRUCTION = {"include": "Use {w}.", "avoid": "Do not use {w}.", "start": "Start with {w}.",
                "end": "End with {w}.", "at_most": "Use at most {n} words.",
                "at_least": "Use at least {n} words."}
_CRITERION = {"include": "The response uses {w}", "avoid": "The response does not use {w}",
              "start": "The response starts with {w}", "end": "The response ends with {w}",
              "at_most": "The response has at most {n} words",
              "at_least": "The response has at least {n} words"}


@dataclasses.dataclass(frozen=True)
class Constraint:
  kind: str  # one of KINDS
  word: str = ""  # the word of a word kind
  count: int = 0  # the N of a length kind

  def holds(self, words: Sequence[str]) -> bool:
    """Ground truth on a response split into words."""
    checks = {"include": lambda: self.word in words, "avoid": lambda: self.word not in words,
              "start": lambda: bool(words) and words[0] == self.word,
              "end": lambda: bool(words) and words[-1] == self.word,
              "at_most": lambda: len(words) <= self.count,
              "at_least": lambda: len(words) >= self.count}
    return checks[self.kind]()

  @property
  def instruction(self) -> str:
    return _INSTRUCTION[self.kind].format(w=self.word, n=self.count)

  @property
  def criterion(self) -> str:
    """The rubric item's text, without number or tag."""
    return _CRITERION[self.kind].format(w=self.word, n=self.count)


def satisfied(constraints: Sequence[Constraint], response: str) -> list[bool]:
  """Which constraints the response meets: the toy world's only notion of quality."""
  words = response.split()
  return [c.holds(words) for c in constraints]


def instruction_text(topic: str, constraints: Sequence[Constraint]) -> str:
  return " ".join([f"Write about {topic}."] + [c.instruction for c in constraints])


def _parser(formats: dict[str, str]):
  patterns = [(kind, re.compile("^" + re.escape(f).replace(r"\{w\}", r"(?P<w>[a-z]+)")
                                .replace(r"\{n\}", r"(?P<n>\d+)") + "$"))
              for kind, f in formats.items()]

  def parse(text: str) -> Constraint | None:
    for kind, pattern in patterns:
      m = pattern.match(text.strip())
      n = small_int(m.groupdict().get("n") or "0") if m else -1
      if n >= 0:  # a count of more than MAX_NUMBER_DIGITS digits is no toy criterion
        return Constraint(kind, m.groupdict().get("w") or "", n)
    return None
  return parse


parse_criterion = _parser(_CRITERION)
parse_criterion.__doc__ = """The Constraint a rubric criterion's text states ("The response uses
moon"), or None for text that is no toy criterion: the inverse of Constraint.criterion."""
_parse_instruction_sentence = _parser(_INSTRUCTION)


def parse_instruction(instruction: str) -> tuple[str, tuple[Constraint, ...]]:
  """(topic, constraints) of an instruction_text: the ground truth a pair's instruction carries,
  so diagnostics need no ToyInstance. Raises ValueError on text that is not a toy instruction."""
  sentences = [s + "." for s in instruction.strip().rstrip(".").split(". ")]
  head = re.fullmatch(r"Write about ([a-z]+)\.", sentences[0])
  constraints = [_parse_instruction_sentence(s) for s in sentences[1:]]
  if head is None or any(c is None for c in constraints):
    raise ValueError(f"not a toy instruction: {instruction!r}")
  return head.group(1), tuple(constraints)


@dataclasses.dataclass(frozen=True)
class Shape:
  """How large an instance may be; the defaults are the world as it has always been. Smaller
  shapes make shorter rows (fewer criteria, shorter responses) and an easier reading task (fewer
  words to track)."""
  max_constraints: int = 4  # constraints per instruction: 2 to this
  max_words: int = MAX_WORDS  # response length: MIN_WORDS to this
  constraint_words: int = len(CONSTRAINT_WORDS)  # the first this many of CONSTRAINT_WORDS

  def __post_init__(self):
    if not 2 <= self.max_constraints <= 4:
      raise ValueError(f"max_constraints={self.max_constraints}: need 2 to 4 (distinct kinds)")
    if not self.max_constraints <= self.constraint_words <= len(CONSTRAINT_WORDS):
      raise ValueError(f"constraint_words={self.constraint_words}: need max_constraints "
                       f"({self.max_constraints}) to {len(CONSTRAINT_WORDS)}")
    least = max(MIN_WORDS, self.max_constraints) + 1
    if not least <= self.max_words <= 64:
      raise ValueError(f"max_words={self.max_words}: need {least} to 64 (room for every placed "
                       "word and a filler)")

  @property
  def words(self) -> tuple[str, ...]:
    return CONSTRAINT_WORDS[:self.constraint_words]


WORLD = Shape()


@dataclasses.dataclass(frozen=True)
class ToyInstance:
  topic: str
  constraints: tuple[Constraint, ...]
  response_a: str
  response_b: str
  label: int  # 0: response_a satisfies more constraints, 1: response_b

  @property
  def instruction(self) -> str:
    return instruction_text(self.topic, self.constraints)

  @property
  def pair(self) -> PreferencePair:
    return PreferencePair(self.instruction, self.response_a, self.response_b, self.label)


def _sample_constraints(rng: np.random.Generator, allowed: Sequence[str] = KINDS,
                        shape: Shape = WORLD) -> tuple[Constraint, ...]:
  """2 to shape.max_constraints constraints of distinct kinds and distinct words that some
  response can meet together."""
  while True:
    kinds = rng.choice(allowed, size=int(rng.integers(
        2, min(shape.max_constraints, len(allowed)) + 1)), replace=False)
    words = rng.choice(shape.words, size=len(kinds), replace=False)
    counts = {k: int(rng.integers(MIN_COUNT, MAX_COUNT + 1)) for k in ("at_most", "at_least")}
    if "at_most" in kinds and "at_least" in kinds and counts["at_least"] > counts["at_most"] - 2:
      continue
    return tuple(Constraint(str(k), str(w)) if k in WORD_KINDS
                 else Constraint(str(k), count=counts[k]) for k, w in zip(kinds, words))


def _length_range(constraints: Sequence[Constraint], meets: Sequence[bool],
                  max_words: int = MAX_WORDS) -> tuple[int, int]:
  lo, hi = MIN_WORDS, max_words
  for c, ok in zip(constraints, meets):
    if c.kind == "at_most":
      lo, hi = (lo, min(hi, c.count)) if ok else (max(lo, c.count + 1), hi)
    elif c.kind == "at_least":
      lo, hi = (max(lo, c.count), hi) if ok else (lo, min(hi, c.count - 1))
  return lo, hi


def _build_response(constraints: Sequence[Constraint], meets: Sequence[bool],
                    rng: np.random.Generator, max_words: int = MAX_WORDS) -> str | None:
  """A response meeting exactly the constraints marked in `meets`, or None when none fits.

  Filler words avoid every constraint word, so a word constraint is met only where a word is
  placed on purpose: start/end words at the ends, a used word (or a forbidden one, to break
  "do not use") at a free inner position.
  """
  lo, hi = _length_range(constraints, meets, max_words)
  placed = {c.kind: c.word for c, ok in zip(constraints, meets)
            if (c.kind in ("include", "start", "end") and ok) or (c.kind == "avoid" and not ok)}
  lo = max(lo, len(placed))
  if lo > hi:
    return None
  taken = {c.word for c in constraints if c.word}
  filler = [w for w in LEXICON if w not in taken]
  words = list(rng.choice(filler, size=int(rng.integers(lo, hi + 1))))
  if "start" in placed:
    words[0] = placed["start"]
  if "end" in placed:
    words[-1] = placed["end"]
  free = [i for i in range(len(words)) if not (i == 0 and "start" in placed)
          and not (i == len(words) - 1 and "end" in placed)]
  inner = [placed[k] for k in ("include", "avoid") if k in placed]
  if len(free) < len(inner):
    return None
  for i, word in zip(rng.choice(free, size=len(inner), replace=False), inner):
    words[int(i)] = word
  response = " ".join(str(w) for w in words)
  return response if satisfied(constraints, response) == list(meets) else None


def _pattern(n: int, k: int, rng: np.random.Generator) -> list[bool]:
  meets = [False] * n
  for i in rng.choice(n, size=k, replace=False):
    meets[int(i)] = True
  return meets


def make_instance(seed: int | Sequence[int], kinds: Sequence[str] = KINDS,
                  shape: Shape = WORLD) -> ToyInstance:
  """One instance from its own seed: constraints, a preferred response meeting k of them, a
  rejected one meeting fewer, and a random slot for the preferred one. `kinds` (at least two)
  restricts the constraint kinds, e.g. to the word checks for a smaller model; `shape` bounds
  the instance's size (a length constraint no response within it can meet is drawn again)."""
  if len(kinds) < 2 or not set(kinds) <= set(KINDS):
    raise ValueError(f"kinds={tuple(kinds)}: need at least two of {KINDS}")
  rng = np.random.default_rng(seed)
  while True:
    constraints = _sample_constraints(rng, kinds, shape)
    n = len(constraints)
    k_pref = int(rng.integers(1, n + 1))
    k_rej = int(rng.integers(0, k_pref))
    preferred = _build_response(constraints, _pattern(n, k_pref, rng), rng, shape.max_words)
    rejected = _build_response(constraints, _pattern(n, k_rej, rng), rng, shape.max_words)
    if preferred is not None and rejected is not None:
      break
  words = {c.word for c in constraints}
  topic = str(rng.choice([t for t in TOPICS if t not in words]))
  label = int(rng.integers(2))
  a, b = (preferred, rejected) if label == 0 else (rejected, preferred)
  return ToyInstance(topic, constraints, a, b, label)


def make_instances(n: int, seed: int = 0, start: int = 0,
                   kinds: Sequence[str] = KINDS, shape: Shape = WORLD) -> list[ToyInstance]:
  """Instances start..start+n-1 of the stream for `seed`."""
  kinds = tuple(kinds)
  return [make_instance((seed, i), kinds, shape) for i in range(start, start + n)]


def split(instances: Sequence[ToyInstance], held_out_fraction: float = 0.2,
          seed: int = 0) -> tuple[list[ToyInstance], list[ToyInstance]]:
  """(train, held_out), disjoint by instruction."""
  return split_by_instruction(instances, lambda i: i.instruction, held_out_fraction, seed)


def make_split(n_train: int, n_held_out: int, seed: int = 0,
               held_out_fraction: float = 0.2) -> tuple[list[ToyInstance], list[ToyInstance]]:
  """Exactly n_train and n_held_out instances, reading the seed's stream until both are full."""
  train: list[ToyInstance] = []
  held: list[ToyInstance] = []
  i = 0
  while len(train) < n_train or len(held) < n_held_out:
    inst = make_instance((seed, i))
    side, want = ((held, n_held_out) if is_held_out(inst.instruction, held_out_fraction, seed)
                  else (train, n_train))
    if len(side) < want:
      side.append(inst)
    i += 1
  return train, held
