"""Templates: shipped and user files load, render verbatim, and ask for the format parsing reads."""

import pytest

from arm_jax.parsing import judge_format_problems, parse_rubric, parse_verdict
from arm_jax.prompts import (SHIPPED, Template, as_chat, load_template, render_judge_prompt,
                             render_rubric_prompt, swap_pair)

BRACES = "Return {} or {{x}} and {instruction}, as in f'{name!r}' or {\"k\": [1]}."


@pytest.mark.parametrize("name", ["rubric_generator", "rubric_generator_compact"])
def test_shipped_rubric_templates_render_the_instruction_verbatim(name):
  template = load_template(name)
  assert template.fields == {"instruction"}
  prompt = render_rubric_prompt(template, BRACES)
  assert prompt.count(BRACES) == 1
  assert "[Hard Rule]" in prompt and "[Principle]" in prompt and "The response" in prompt


@pytest.mark.parametrize("name", ["judge", "judge_compact"])
def test_shipped_judge_templates_render_every_field_verbatim(name):
  values = {"instruction": BRACES + " I", "rubric": "{rubric} {{response_a}}",
            "response_a": "A: {response_b}", "response_b": "B: }{ {{ }}"}
  prompt = render_judge_prompt(load_template(name), **values)
  for value in values.values():
    assert prompt.count(value) == 1
  assert prompt.index(values["response_a"]) < prompt.index(values["response_b"])


def test_compact_templates_are_shorter():
  for name in ("rubric_generator", "judge"):
    assert len(load_template(f"{name}_compact").text) < len(load_template(name).text) / 2


@pytest.mark.parametrize("name", ["rubric_generator", "rubric_generator_compact"])
def test_rubric_template_example_is_a_well_formed_rubric(name):
  rubric = parse_rubric(load_template(name).text)
  assert rubric.well_formed and len(rubric.criteria) >= 2, rubric.problems


@pytest.mark.parametrize("name, rubric", [
    ("judge", "1. The response must be short. [Hard Rule]\n2. The response should be kind. "
              "[Principle]"),
    ("judge_compact", "1. The response must be short. [Hard Rule]"),
])
def test_judge_template_skeleton_is_the_parsed_format(name, rubric):
  """The format shown to the judge, with a real Winner line, passes the format check."""
  text = load_template(name).text
  skeleton = text[text.index("--- Compliance Check ---"):text.index("Winner:")]
  assert judge_format_problems(skeleton + "Winner: Response A", rubric) == []
  assert parse_verdict(skeleton + text[text.index("Winner:"):].split("\n")[0]) is None


def test_template_braces_follow_str_format():
  template = Template("{{literal}} {instruction} }}{{")
  assert template.fields == {"instruction"}
  assert render_rubric_prompt(template, "{x}") == "{literal} {x} }{"


def test_user_template_file_loads(tmp_path):
  path = tmp_path / "mine.txt"
  path.write_text("Rate {response_a} vs {response_b} on {rubric} for {instruction}.\n\n",
                  encoding="utf-8")
  template = load_template(str(path), kind="judge")
  assert template.source == str(path)
  assert render_judge_prompt(template, "i", "r", "a", "b") == "Rate a vs b on r for i."


def test_missing_template_file_names_the_path(tmp_path):
  path = str(tmp_path / "nope.txt")
  with pytest.raises(FileNotFoundError, match="nope.txt"):
    load_template(path)
  with pytest.raises(FileNotFoundError, match="'judge_tiny'.*judge_compact"):
    load_template("judge_tiny")


def test_missing_and_unknown_placeholders_are_named(tmp_path):
  path = tmp_path / "judge.txt"
  path.write_text("{instruction} {rubric} {response_a} {answer}", encoding="utf-8")
  with pytest.raises(ValueError, match=r"missing placeholder\(s\) \{response_b\}.*"
                                       r"unknown placeholder\(s\) \{answer\}"):
    load_template(str(path), kind="judge")
  with pytest.raises(ValueError, match=r"unknown placeholder\(s\) \{answer\}"):
    load_template(str(path))
  with pytest.raises(ValueError, match=r"rubric template .*unknown placeholder\(s\) "
                                       r"\{response_a\}, \{response_b\}, \{rubric\}"):
    render_rubric_prompt(load_template("judge"), "x")
  with pytest.raises(ValueError, match=r"missing placeholder\(s\) \{rubric\}"):
    render_judge_prompt(Template("{instruction} {response_a} {response_b}"), "i", "r", "a", "b")


def test_unknown_kind_is_rejected():
  with pytest.raises(ValueError, match="kind"):
    load_template("judge", kind="policy")


def test_shipped_names_are_all_loadable():
  assert {load_template(name).source for name in SHIPPED} == set(SHIPPED)


def test_as_chat_builds_messages():
  assert as_chat("hi") == [{"role": "user", "content": "hi"}]
  assert as_chat("hi", system="be fair") == [{"role": "system", "content": "be fair"},
                                             {"role": "user", "content": "hi"}]


@pytest.mark.parametrize("winner, flipped", [(0, 1), (1, 0), ("A", 1), ("B", 0)])
def test_swap_pair_swaps_responses_and_flips_the_label(winner, flipped):
  assert swap_pair("first", "second", winner) == ("second", "first", flipped)


def test_swap_pair_twice_is_the_identity_on_the_preference():
  a, b, label = swap_pair(*swap_pair("x", "y", "B"))
  assert (a, b, label) == ("x", "y", 1)


def test_swap_pair_rejects_bad_labels():
  with pytest.raises(ValueError, match="label"):
    swap_pair("x", "y", "tie")


def test_swapped_render_puts_each_response_in_the_other_slot():
  template = load_template("judge_compact")
  a, b, _ = swap_pair("ALPHA", "BETA", 0)
  prompt = render_judge_prompt(template, "i", "r", a, b)
  assert prompt.index("BETA") < prompt.index("ALPHA")
