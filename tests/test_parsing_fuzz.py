"""Parsers and rewards never raise on what a model may write: random text over the formats'
own pieces, numbers of thousands of digits where the formats put a number, and nesting hundreds
of thousands of levels deep. Each output is checked for its type and range, and the adversarial
numbers for how they are read (no criterion, no count)."""

import math
import random

import pytest

from arm_jax import parsing, rewards
from arm_jax.downstream.reward_model import Comparison, online_reward, preference
from arm_jax.toy import diagnostics, world
from test_parsing import PERFECT, RUBRIC

BIG = "9" * 5000  # over Python's 4300-digit limit on int(str)
PIECES = ["1.", "2)", "**3.**", "- ", "[Hard Rule]", "[Principle]", "[hard rules]",
          "The response", "--- Compliance Check ---", "--- Analysis ---",
          "--- Final Judgment ---", "**Response A:**", "**Response B:**", "Response A",
          "Winner:", "Winner: Response B", "Identified Gatekeeper Criterion:",
          "- Criterion 1 [Hard Rule]: Justification: ", "Justification: x", ": yes", ": no",
          "<think>", "</think>", "A meets 2, B meets 1.", "\n", "\n\n", "*", "_", "#", ">",
          "[", "]", "(", ")", "{", "}", BIG, "0", "-1", "\u00e9\u4e2d", "\x00", "\t", " "]


def _random_text(rng, n):
  return "".join(rng.choice(PIECES) if rng.random() < 0.7 else chr(rng.randrange(32, 0x3000))
                 for _ in range(n))


ADVERSARIAL = [
    "",
    f"{BIG}. The response uses moon. [Hard Rule]",
    f"- Criterion {BIG} [Hard Rule]: Justification: x: yes",
    PERFECT.replace("Criterion 2", f"Criterion {BIG}"),
    PERFECT + f"\nA meets {BIG}, B meets {BIG}.",
    f"**Response A:**\n- Criterion {BIG} [Hard Rule]: Justification: The response uses moon "
    f"[A]: yes\nA meets {BIG}, B meets 0.\nWinner: Response A",
    "The response has at least " + BIG + " words",
    "[" * 200_000 + "]" * 200_000,
    "<think>" * 50_000 + "Winner: Response A" + "</think>" * 50_000,
    "> " * 100_000 + "Winner: Response A",
    "*" * 200_000 + "Winner: Response B",
    "\n".join(["1. The response " + "(" * 1000 + " [Hard Rule]"] * 200),
    "- " * 100_000 + "Criterion 1: Justification: x",
    "Winner:" + " " * 100_000 + "Response A" + " " * 100_000 + "x",
    "1" * 100_000 + ". " + "The response " * 1000 + "[Principle]",
]


def _texts():
  rng = random.Random(0)
  return ADVERSARIAL + [_random_text(rng, rng.randrange(1, 400)) for _ in range(300)]


PAIR = world.make_instance(0).pair  # a toy pair: the diagnostics read its instruction


def _check_everything(text):
  """Every parser and reward on `text` in every role it can take; outputs in range."""
  assert isinstance(parsing.strip_think(text), str)
  rubric = parsing.parse_rubric(text)
  assert all(isinstance(c.index, int) for c in rubric.criteria)
  assert parsing.parse_verdict(text) in ("A", "B", None)
  for shown in (RUBRIC, text):
    score = parsing.judge_format_score(text, shown)
    assert 0.0 <= score <= 1.0
    assert parsing.judge_format_ok(text, shown) == (not parsing.judge_format_problems(text, shown))
    for fmt in rewards.FORMAT_REWARDS:
      r = rewards.judge_reward(text, shown, 0, format_reward=fmt)
      assert math.isfinite(r.total) and r.verdict in ("A", "B", None)
  g = rewards.generator_reward(text, 1, rubric=text, validity_weight=0.5, brevity_weight=0.1)
  assert math.isfinite(g.total)
  batch = rewards.judge_rewards([text, PERFECT], [text, RUBRIC], [0, 1])
  assert all(map(math.isfinite, batch["total"]))
  c = Comparison(text, text, "other", text, parsing.parse_verdict(text), None, (text, text))
  assert preference(c)[1] in ("kept", "identical", "unparseable", "inconsistent")
  assert 0.0 <= online_reward(c) <= 1.0
  world.parse_criterion(text)  # a rubric's criterion (parse_instruction reads data, not output)
  figures = diagnostics.evaluate([PAIR, PAIR], [text, RUBRIC], [text, text])
  assert all(0.0 <= v <= 1.0 for v in figures.values())


@pytest.mark.parametrize("index", range(len(ADVERSARIAL)))
def test_adversarial_text_never_raises(index):
  _check_everything(ADVERSARIAL[index])


def test_random_text_over_the_formats_pieces_never_raises():
  for text in _texts()[len(ADVERSARIAL):]:
    _check_everything(text)


def test_a_number_of_thousands_of_digits_is_no_criterion_and_no_count():
  rubric = parsing.parse_rubric(f"{BIG}. The response uses moon. [Hard Rule]")
  assert [c.index for c in rubric.criteria] == [-1] and not rubric.well_formed
  assert parsing.parse_rubric(f"{'9' * 9}. The response x. [Hard Rule]").criteria[0].index == \
      999_999_999  # MAX_NUMBER_DIGITS digits are still a number
  # A judgment line for criterion BIG is an extra line, not a match for criterion 2.
  problems = parsing.judge_format_problems(PERFECT.replace("Criterion 2", f"Criterion {BIG}"),
                                           RUBRIC)
  assert "Response A: Criterion 2: missing line" in problems
  assert world.parse_criterion(f"The response has at least {BIG} words") is None
  assert parsing.small_int("0042") == 42 and parsing.small_int(BIG) == -1
