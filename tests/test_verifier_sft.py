"""Warm-start data written by the IFEval checker (arm_jax.data.verifier_sft): the rubric and the
judgment parse in the project's formats (arm_jax.parsing as the reference), the per-criterion
lines are the checker's results, both orders are taught, and the file is warmstart.path's."""

import json

import pytest

from arm_jax import parsing
from arm_jax.data import ifeval, pairs, synthetic_if, verified, verifier_sft

pytest.importorskip("langdetect")


@pytest.fixture(scope="module")
def labelled():
  rows, _ = synthetic_if.build_prompts(limit=40)
  responses = {r["prompt"]: ["Yes, this one has a comma.", "this one has none"] for r in rows}
  examples = [ifeval.example(r["prompt"], r["instruction_id_list"], r["kwargs"], r["key"])
              for r in rows]
  records, _ = verified.label(examples, responses, verified.verifier("ifeval"), "count")
  assert len(records) >= 5
  return rows, records


def test_rubric_and_judgments_parse_and_carry_the_checkers_results(labelled):
  rows, records = labelled
  lines, counts = verifier_sft.examples(rows, records)
  assert counts == {"pairs": len(records), "not_in_prompts": 0, "tie_or_unlabelled": 0}
  assert [x["role"] for x in lines] == ["generator", "judge", "judge"] * len(records)
  by_prompt = {r["prompt"]: r for r in rows}
  for k, rec in enumerate(records):
    gen, stored, swapped = lines[3 * k:3 * k + 3]
    row = by_prompt[rec.prompt]
    rubric = parsing.parse_rubric(gen["target"])
    assert rubric.well_formed, rubric.problems
    tags = [c.tag for c in rubric.criteria]
    n = len(row["instruction_id_list"])
    assert tags == [parsing.HARD_RULE] * n + [parsing.PRINCIPLE] * len(verifier_sft.PRINCIPLES)
    assert rec.prompt in gen["prompt"]  # the rubric template holds the instruction
    inp = ifeval.example(row["prompt"], row["instruction_id_list"], row["kwargs"])
    follows = {"A": ifeval.follow_list(inp, rec.response_a),
               "B": ifeval.follow_list(inp, rec.response_b)}
    for judge, first, expected in ((stored, "A", rec.winner),
                                   (swapped, "B", "B" if rec.winner == "A" else "A")):
      text = judge["target"]
      assert parsing.judge_format_problems(text, gen["target"]) == []
      assert parsing.parse_verdict(text) == expected
      shown_a = rec.response_a if first == "A" else rec.response_b
      assert judge["prompt"].index(shown_a) < judge["prompt"].index(
          rec.response_b if first == "A" else rec.response_a)
      block_a = text.split("**Response A:**")[1].split("**Response B:**")[0]
      got = ["Met:" in line for line in block_a.splitlines() if "[Hard Rule]" in line]
      assert got == follows[first]


def test_the_constraint_is_described_as_the_prompt_states_it():
  text = verifier_sft.describe("keywords:frequency",
                               {"keyword": "ocean", "frequency": 3, "relation": "at least"})
  assert "ocean" in text and "3" in text and "\n" not in text
  rows, _ = synthetic_if.build_prompts(limit=20)
  for row in rows:  # the appended description is the one regenerated from the arguments
    for iid, kwargs in zip(row["instruction_id_list"], row["kwargs"]):
      assert synthetic_if.normalize(verifier_sft.describe(iid, kwargs)) in synthetic_if.normalize(
          row["prompt"])


def test_command_writes_warmstart_lines_and_counts_what_it_cannot_use(labelled, tmp_path,
                                                                      capsys):
  rows, records = labelled
  prompts = tmp_path / "prompts.jsonl"
  prompts.write_text("".join(json.dumps(r) + "\n" for r in rows[1:]))  # one prompt missing
  from arm_jax.data.schema import record_to_json  # noqa: PLC0415
  pair_lines = [json.dumps(record_to_json(r)) for r in records] + ['{"prompt": "no id"}']
  (tmp_path / "pairs.jsonl").write_text("\n".join(pair_lines) + "\n")
  out = tmp_path / "sft.jsonl"
  assert verifier_sft.main(["--prompts", str(prompts), "--pairs", str(tmp_path / "pairs.jsonl"),
                            "--out", str(out), "--rubric_template", "rubric_generator_compact",
                            "--judge_template", "judge_compact"]) == 0
  counts = json.loads(capsys.readouterr().out)
  missing = sum(r.prompt == rows[0]["prompt"] for r in records)
  assert counts["not_in_prompts"] == missing and counts["unreadable_rows"] == 1
  sft = pairs.read_sft_jsonl(str(out))
  assert len(sft["generator"]) == len(records) - missing == counts["generator_examples"]
  assert len(sft["judge"]) == 2 * len(sft["generator"])
  assert sft["generator"][0].prompt.startswith("Write a rubric for judging answers")  # compact


def test_evidence_judgments_parse_and_each_result_is_the_checkers(labelled):
  rows, records = labelled
  lines, _ = verifier_sft.examples(rows, records, with_evidence=True)
  by_prompt = {r["prompt"]: r for r in rows}
  for k, rec in enumerate(records):
    gen, stored = lines[3 * k:3 * k + 2]
    text = stored["target"]
    assert parsing.judge_format_problems(text, gen["target"]) == []
    assert parsing.parse_verdict(text) == rec.winner
    row = by_prompt[rec.prompt]
    inp = ifeval.example(row["prompt"], row["instruction_id_list"], row["kwargs"])
    block_a = text.split("**Response A:**")[1].split("**Response B:**")[0]
    hard = [line for line in block_a.splitlines() if "[Hard Rule]" in line]
    assert [line.endswith(", so it is met.") for line in hard] == ifeval.follow_list(
        inp, rec.response_a)
    expected = [verifier_sft.evidence(i, a, rec.response_a)
                for i, a in zip(row["instruction_id_list"], row["kwargs"])]
    assert [line.split("Justification: ", 1)[1].rsplit(", so it is", 1)[0].lower()
            for line in hard] == [e.lower() for e in expected]


@pytest.mark.parametrize("iid, kwargs, response, expected", [
    ("detectable_content:number_placeholders", {"num_placeholders": 2},
     "Call [name] at [phone] or [email] now [x].",
     '4 placeholders in square brackets: "[name]", "[phone]", "[email]", ...'),
    ("punctuation:no_comma", {}, "Paris is big, old and lovely",
     'a comma in "Paris is big, old and"'),
    ("punctuation:no_comma", {}, "No commas here.", "no comma"),
    ("detectable_format:title", {}, "<<  >>\n<<A Day Out>> text", 'the title "<<A Day Out>>"'),
    ("detectable_format:title", {}, "A Day Out", "no title in <<double angular brackets>>"),
    ("startend:end_checker", {"end_phrase": "Any other questions?"},
     "one two three four five six seven eight nine ten",
     'it ends with "... three four five six seven eight nine ten"'),
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"},
     "Four words are here.", "4 words"),
    ("keywords:letter_frequency", {"letter": "e", "let_frequency": 3, "let_relation": "at least"},
     "Eerie eel", 'the letter "e" appears 5 times'),
    ("keywords:existence", {"keywords": ["ocean", "sky"]}, "The Ocean is blue.",
     '"ocean" appears; "sky" is missing'),
    ("keywords:forbidden_words", {"forbidden_words": ["red", "blue"]}, "A blue sky, bluer sea.",
     '"blue" appears'),
    ("startend:quotation", {}, ' "quoted" ', "it starts with '\"' and ends with '\"'"),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```',
     "the whole response parses as JSON"),
    ("change_case:english_lowercase", {}, "all lower but One", 'a capital letter in "One"'),
    ("detectable_content:postscript", {"postscript_marker": "P.S."},
     "Body.\nP.S. see you soon at the lake house tonight", 'a postscript line "P.S. see you soon '
     'at the lake house ..."'),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Section 1\nhi\nSection 2\nyo", "2 sections marked Section X"),
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"}, "First.\n\nThen more.",
     '2 paragraphs separated by blank lines; paragraph 2 starts with "Then"'),
])
def test_evidence_quotes_or_counts_what_the_check_reads(iid, kwargs, response, expected):
  assert verifier_sft.evidence(iid, kwargs, response) == expected


def test_every_ifeval_instruction_has_evidence_and_others_are_an_error():
  registry = ifeval.checker_module("instructions_registry")
  rows, _ = synthetic_if.build_prompts(limit=400)
  kwargs = {i: k for r in rows for i, k in zip(r["instruction_id_list"], r["kwargs"])}
  assert set(kwargs) == set(registry.INSTRUCTION_DICT)  # the prompts draw every instruction
  for iid, k in kwargs.items():
    assert verifier_sft.evidence(iid, k, "Some words, here.\n\nMore [x] *y*.")
  with pytest.raises(ValueError, match="keywords:made_up"):
    verifier_sft.evidence("keywords:made_up", {}, "text")


def test_counted_evidence_and_the_rule_give_the_checkers_result():
  """For rules that compare a count with a threshold, the count the evidence states decides the
  rule exactly as IFEval's checker does (an independent implementation of the same reading)."""
  import random  # noqa: PLC0415
  import re  # noqa: PLC0415
  rng = random.Random(0)
  pieces = ["word", "[slot]", "*bold*", "Section 1", "e", "ocean", "\n* item", "\n- item", ".",
            "Yes!", "\n\n", "***", "OK"]
  rules = [
      ("detectable_content:number_placeholders", {"num_placeholders": 2}, lambda n: n >= 2),
      ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, lambda n: n >= 2),
      ("detectable_format:number_bullet_lists", {"num_bullets": 2}, lambda n: n == 2),
      ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
       lambda n: n >= 2),
      ("keywords:frequency", {"keyword": "ocean", "frequency": 2, "relation": "less than"},
       lambda n: n < 2),
      ("keywords:letter_frequency", {"letter": "e", "let_frequency": 4, "let_relation":
                                     "at least"}, lambda n: n >= 4),
      ("length_constraints:number_words", {"num_words": 8, "relation": "at least"},
       lambda n: n >= 8),
      ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"},
       lambda n: n < 3),
      ("change_case:capital_word_frequency", {"capital_frequency": 2,
                                              "capital_relation": "at least"}, lambda n: n >= 2),
  ]
  for _ in range(60):
    response = " ".join(rng.choice(pieces) for _ in range(rng.randint(1, 14)))
    for iid, kwargs, rule in rules:
      inp = ifeval.example("p", [iid], [kwargs])
      count = int(re.search(r"\d+", verifier_sft.evidence(iid, kwargs, response)).group())
      assert rule(count) == ifeval.follow_list(inp, response)[0], (iid, response)
