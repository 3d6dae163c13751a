"""Rubric, verdict and judge-format parsing on well-formed, malformed and adversarial outputs."""

import pytest

from arm_jax.parsing import (HARD_RULE, PRINCIPLE, Criterion, judge_format_ok,
                             judge_format_problems, judge_format_score, label_index, parse_rubric,
                             parse_verdict, strip_think)

RUBRIC = """1. The response must be under 50 words. [Hard Rule]
2. The response must use a bulleted list. [Hard Rule]
3. The response should be clear and accurate. [Principle]"""

CRITERIA = (
    Criterion(1, "The response must be under 50 words.", HARD_RULE),
    Criterion(2, "The response must use a bulleted list.", HARD_RULE),
    Criterion(3, "The response should be clear and accurate.", PRINCIPLE),
)

COMPLIANCE = """--- Compliance Check ---
Identified Gatekeeper Criterion: Criterion 1: under 50 words.
"""
ANALYSIS = """--- Analysis ---
**Response A:**
- Criterion 1 [Hard Rule]: Justification: 32 words, within the limit.
- Criterion 2 [Hard Rule]: Justification: Uses three bullets.
- Criterion 3 [Principle]: Justification: Clear and correct.

**Response B:**
- Criterion 1 [Hard Rule]: Justification: 71 words, over the limit.
- Criterion 2 [Hard Rule]: Justification: Uses bullets.
- Criterion 3 [Principle]: Justification: Clear, one factual slip.
"""
FINAL = """--- Final Judgment ---
Justification: Only Response A meets the gatekeeper word limit.
Winner: Response A"""
PERFECT = f"{COMPLIANCE}\n{ANALYSIS}\n{FINAL}"

RICHER = """--- Compliance Check ---
Gatekeeper Reasoning: The request fixes a word limit, which can be counted.
Identified Gatekeeper Criterion: Criterion 1: Must be under 50 words.

--- Analysis ---
**Response A:**
- Criterion 1 [Hard Rule]: Justification: 32 words.
- Criterion 2 [Hard Rule]: Justification: Bulleted.
- Criterion 3 [Principle]: Justification: Clear.

**Response B:**
- Criterion 1 [Hard Rule]: Justification: 71 words.
- Criterion 2 [Hard Rule]: Justification: Bulleted.
- Criterion 3 [Principle]: Justification: Clear.

--- Final Judgment ---
Aggregation Summary: A passes the gatekeeper and B fails it, which decides the pair.
Justification: Response B breaks the word limit.
Winner: Response A"""


def mirror(text):
  """The same judgment of the swapped pair: blocks exchanged, winner flipped."""
  block_a = ANALYSIS[ANALYSIS.index("**Response A:**"):ANALYSIS.index("**Response B:**")]
  block_b = ANALYSIS[ANALYSIS.index("**Response B:**"):]
  swapped = ("--- Analysis ---\n" + block_b.replace("Response B", "Response A") + "\n"
             + block_a.replace("Response A", "Response B").rstrip("\n") + "\n")
  flipped = FINAL.replace("Winner: Response A", "Winner: Response B")
  return text.replace(ANALYSIS, swapped).replace(FINAL, flipped)


# --- strip_think / labels ------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("<think>Winner: Response B</think>answer", "answer"),
    ("<think>a</think>x<think>b</think>y", "xy"),
    ("reasoning</think>answer", "answer"),
    ("answer<think>cut off", "answer"),
    ("<think>\n\n</think>\n\nanswer", "\n\nanswer"),
])
def test_strip_think_keeps_only_the_answer(text, expected):
  assert strip_think(text) == expected


@pytest.mark.parametrize("label, index", [(0, 0), (1, 1), ("A", 0), ("B", 1)])
def test_label_index_maps_both_spellings(label, index):
  assert label_index(label) == index


@pytest.mark.parametrize("label", [2, -1, "a", "C", "Response A", True, None, 0.0])
def test_label_index_rejects_other_labels(label):
  with pytest.raises(ValueError, match="label"):
    label_index(label)


# --- rubrics -------------------------------------------------------------------------------------

def test_well_formed_rubric_parses_to_its_criteria():
  rubric = parse_rubric(RUBRIC)
  assert rubric.well_formed and rubric.problems == ()
  assert rubric.criteria == CRITERIA


@pytest.mark.parametrize("text", [
    "Here is the rubric for this request:\n\n" + RUBRIC,
    RUBRIC.replace("1.", "1)").replace("2.", "2)").replace("3.", "3)"),
    RUBRIC.replace("1.", "**1.**").replace("2.", "**2**."),
    RUBRIC.replace("[Hard Rule]", "**[Hard Rule]**").replace("[Principle]", "*[Principle]*"),
    RUBRIC.replace("]", "]   ").replace("\n", "  \n"),
    RUBRIC.replace("]", "]."),
    RUBRIC.replace("[Hard Rule]", "[hard rule]"),
    "<think>\n1. Something else entirely.\n</think>\n\n" + RUBRIC,
    RUBRIC + "\n\nThese criteria cover the explicit limits first.",
    RUBRIC.replace("must be under", "must be\nunder"),
])
def test_rubric_tolerates_surface_noise(text):
  rubric = parse_rubric(text)
  assert rubric.problems == ()
  assert [(c.index, c.tag) for c in rubric.criteria] == [(c.index, c.tag) for c in CRITERIA]
  assert [c.text.strip("*") for c in rubric.criteria] == [c.text for c in CRITERIA]


def test_rubric_to_text_round_trips():
  rubric = parse_rubric("Preamble.\n" + RUBRIC.replace("1.", "**1.**"))
  assert rubric.to_text() == RUBRIC
  assert parse_rubric(rubric.to_text()) == rubric


def test_rubric_keeps_unicode_text():
  text = "1. The response must stay ≤ 50 mots, en français — sans emoji 🚫. [Hard Rule]"
  (criterion,) = parse_rubric(text).criteria
  assert criterion.text == "The response must stay ≤ 50 mots, en français — sans emoji 🚫."


@pytest.mark.parametrize("text, problem", [
    ("", "no numbered items"),
    ("The response must be short. [Hard Rule]", "no numbered items"),
    ("<think>\n1. The response must be short. [Hard Rule]\n</think>", "no numbered items"),
    (RUBRIC.replace(" [Principle]", ""), "item 3: no [Hard Rule]/[Principle] tag"),
    (RUBRIC.replace("2. The response must", "2. It must"), "item 2: does not start with"),
    (RUBRIC.replace("2. The response must", "2. The responses must"), "item 2: does not start"),
    (RUBRIC.replace("3.", "4."), "numbering is not 1..3"),
    (RUBRIC.replace("1.", "0."), "numbering is not 1..3"),
    (RUBRIC.replace("2. The response must use a bulleted list. [Hard Rule]",
                    "2. [Hard Rule] The response must use a bulleted list."),
     "item 2: the tag is not at the end"),
    (RUBRIC.replace("[Principle]", "[Principle] [Hard Rule]"), "item 3: more than one tag"),
    ("1. The response should be clear. [Principle]\n2. The response must be short. [Hard Rule]",
     "item 2: [Hard Rule] after a [Principle]"),
])
def test_malformed_rubric_says_why(text, problem):
  rubric = parse_rubric(text)
  assert not rubric.well_formed
  assert any(problem in p for p in rubric.problems), rubric.problems


def test_untagged_item_is_kept_with_no_tag():
  rubric = parse_rubric(RUBRIC.replace(" [Principle]", ""))
  assert rubric.criteria[2] == Criterion(3, "The response should be clear and accurate.", None)


# --- verdicts ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, verdict", [
    (PERFECT, "A"),
    ("Winner: Response B", "B"),
    ("  Winner:   Response A  ", "A"),
    ("**Winner:** Response A", "A"),
    ("**Winner: Response B**", "B"),
    ("Winner: *Response A*", "A"),
    ("Winner: Response B.", "B"),
    ("### Winner: Response B", "B"),
    ("WINNER: response a", "A"),
    ("Analysis says the Winner: is unclear.\nWinner: Response B", "B"),
    ("<think>Winner: Response A</think>\nWinner: Response B", "B"),
    ("Réponse analysée — très bien ✓\nWinner:\u00a0Response A", "A"),
])
def test_verdict_comes_from_the_single_winner_line(text, verdict):
  assert parse_verdict(text) == verdict


@pytest.mark.parametrize("text", [
    "",
    "I think A is better.",
    "Winner: Tie",
    "Winner: Response C",
    "Winner: Response A or B",
    "Winner: A",
    "Winner: <Response A or Response B>",
    "Winner:",
    "Winner: Response A\nWinner: Response B",
    "Winner: Response A\n**Winner:** Response A",  # repeated lines: the format demands one
    "Winner: Response A\nWinner: Tie",
    "<think>Winner: Response A</think>",
    "the Winner: Response A",
])
def test_no_verdict_without_exactly_one_valid_winner_line(text):
  assert parse_verdict(text) is None


def test_mirrored_judge_output_gives_the_other_verdict():
  mirrored = mirror(PERFECT)
  assert parse_verdict(mirrored) == "B"
  assert judge_format_ok(mirrored, RUBRIC)


# --- judge format --------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    PERFECT,
    RICHER,
    "<think>\nLet me weigh them. Winner: Response B?\n</think>\n" + PERFECT,
    PERFECT.replace("--- Analysis ---", "**--- Analysis ---**").replace("\n", "  \n"),
    PERFECT.replace("Winner: Response A", "**Winner:** Response A"),
    PERFECT.replace("[Hard Rule]:", "**[Hard Rule]**:")
    .replace("Justification:", "**Justification:**"),
    PERFECT.replace("Clear and correct.", "Clair et correct — très lisible ✓ 清楚"),
])
def test_valid_judge_outputs_pass(text):
  assert judge_format_problems(text, RUBRIC) == []
  assert judge_format_ok(text, parse_rubric(RUBRIC))
  assert judge_format_score(text, RUBRIC) == 1.0


def _move_winner_into_analysis(text):
  text = text.replace("\nWinner: Response A", "")
  return text.replace("**Response B:**", "Winner: Response A\n**Response B:**")


BREAKS = {
    "compliance header": (lambda t: t.replace("--- Compliance Check ---\n", ""),
                          "'--- Compliance Check ---' section"),
    "analysis header": (lambda t: t.replace("--- Analysis ---\n", ""),
                        "'--- Analysis ---' section"),
    "final header": (lambda t: t.replace("--- Final Judgment ---\n", ""),
                     "'--- Final Judgment ---' section"),
    "repeated header": (lambda t: t + "\n--- Analysis ---", "'--- Analysis ---' section"),
    "section order": (lambda t: f"{ANALYSIS}\n{COMPLIANCE}\n{FINAL}", "section order"),
    "gatekeeper line": (lambda t: t.replace("Identified Gatekeeper Criterion: Criterion 1: under "
                                            "50 words.\n", ""), "Identified Gatekeeper Criterion"),
    "empty gatekeeper": (lambda t: t.replace(": Criterion 1: under 50 words.", ":"),
                         "Identified Gatekeeper Criterion"),
    "response A header": (lambda t: t.replace("**Response A:**\n", ""), "Response A"),
    "response B header": (lambda t: t.replace("**Response B:**\n", ""), "Response B"),
    "blocks swapped": (lambda t: t.replace("**Response A:**", "**Response X:**")
                       .replace("**Response B:**", "**Response A:**")
                       .replace("**Response X:**", "**Response B:**"), "Response B:**' block"),
    "missing criterion line": (lambda t: t.replace(
        "- Criterion 2 [Hard Rule]: Justification: Uses bullets.\n", ""),
                               "Response B: Criterion 2: missing line"),
    "wrong tag": (lambda t: t.replace("- Criterion 3 [Principle]: Justification: Clear and",
                                      "- Criterion 3 [Hard Rule]: Justification: Clear and"),
                  "Response A: Criterion 3: tag [Hard Rule] should be [Principle]"),
    "missing tag": (lambda t: t.replace("- Criterion 1 [Hard Rule]: Justification: 71",
                                        "- Criterion 1: Justification: 71"),
                    "Response B: Criterion 1: no [Hard Rule]/[Principle] tag"),
    "missing justification": (lambda t: t.replace("Justification: Uses three", "Uses three"),
                              "Response A: Criterion 2: no 'Justification:'"),
    "empty justification": (lambda t: t.replace("Justification: Uses three bullets.",
                                                "Justification:"),
                            "Response A: Criterion 2: no 'Justification:'"),
    "extra criterion": (lambda t: t.replace("Clear and correct.\n", "Clear and correct.\n"
                                            "- Criterion 4 [Principle]: Justification: Fine.\n"),
                        "Response A: extra line for Criterion 4"),
    "duplicate criterion": (lambda t: t.replace("Clear and correct.\n", "Clear and correct.\n"
                                                "- Criterion 3 [Principle]: Justification: x\n"),
                            "Response A: Criterion 3: 2 lines"),
    "overall justification": (lambda t: t.replace(
        "Justification: Only Response A meets the gatekeeper word limit.\n", ""),
                              "overall 'Justification:' line"),
    "missing winner": (lambda t: t.replace("\nWinner: Response A", ""), "'Winner:' line: missing"),
    "tie": (lambda t: t.replace("Winner: Response A", "Winner: Tie"), "'Winner:' line: 'Tie'"),
    "two winners": (lambda t: t + "\nWinner: Response B", "'Winner:' line: 2 lines"),
    "repeated winner": (lambda t: t + "\nWinner: Response A", "'Winner:' line: 2 lines"),
    "winner in analysis": (_move_winner_into_analysis, "'Winner:' line: before the Final"),
}


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_each_broken_requirement_fails_and_is_named(name):
  mutate, problem = BREAKS[name]
  text = mutate(PERFECT)
  assert text != PERFECT
  problems = judge_format_problems(text, RUBRIC)
  assert not judge_format_ok(text, RUBRIC)
  assert judge_format_score(text, RUBRIC) < 1.0
  assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("name, lost", [
    ("compliance header", 2), ("analysis header", 2), ("final header", 2),  # + section order
    ("response A header", 2),  # + its criterion lines
    ("gatekeeper line", 1), ("overall justification", 1), ("missing winner", 1), ("tie", 1),
    ("winner in analysis", 1),
])
def test_a_lost_line_costs_only_the_requirements_it_carries(name, lost):
  mutate, _ = BREAKS[name]
  assert judge_format_score(mutate(PERFECT), RUBRIC) == pytest.approx((11 - lost) / 11)


def test_graded_criteria_score_counts_lines_met():
  one_missing = BREAKS["missing criterion line"][0](PERFECT)
  assert judge_format_score(one_missing, RUBRIC) == pytest.approx((10 + 2 / 3) / 11)
  one_extra = BREAKS["extra criterion"][0](PERFECT)
  assert judge_format_score(one_extra, RUBRIC) == pytest.approx((10 + 3 / 4) / 11)


@pytest.mark.parametrize("text", ["", "Winner: Response A", "<think>" + PERFECT + "</think>"])
def test_empty_or_bare_outputs_fail(text):
  assert not judge_format_ok(text, RUBRIC)
  assert judge_format_score(text, RUBRIC) <= 1 / 11


def test_format_follows_the_rubric_it_is_given():
  two_items = "\n".join(RUBRIC.splitlines()[:2])
  assert any("extra line for Criterion 3" in p for p in judge_format_problems(PERFECT, two_items))
  four_items = RUBRIC + "\n4. The response should be polite. [Principle]"
  assert any("Criterion 4: missing line" in p for p in judge_format_problems(PERFECT, four_items))


def test_untagged_rubric_item_accepts_any_tag():
  assert judge_format_ok(PERFECT, RUBRIC.replace(" [Principle]", ""))


def test_well_formatted_output_always_has_a_verdict():
  for text in (PERFECT, RICHER, mirror(PERFECT)):
    assert judge_format_ok(text, RUBRIC) and parse_verdict(text) is not None
  for name in ("two winners", "repeated winner", "tie", "missing winner"):
    text = BREAKS[name][0](PERFECT)
    assert parse_verdict(text) is None and not judge_format_ok(text, RUBRIC)
