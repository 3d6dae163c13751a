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
