"""Synthetic-IF prompts (arm_jax.data.synthetic_if): IFEval never leaks in, constraints are
compatible and checkable, draws are reproducible per prompt, and the prompts feed the verified-
pairs command."""

import json
import random

import pytest

from arm_jax.data import ifeval, synthetic_if, verified, verifier_sft

pytest.importorskip("langdetect")


@pytest.fixture(scope="module")
def built():
  return synthetic_if.build_prompts(seed=0)


def test_every_base_instruction_is_used_once_and_no_ifeval_prompt_appears(built):
  rows, report = built
  assert report["read"] == {"alpaca_eval": 805, "arena_hard": 750, "ifbench": 300}
  assert sum(report["written"].values()) + sum(report["dropped"].values()) == 1855
  assert len(rows) == report["prompts"] >= 1800
  ifeval_prompts = [synthetic_if.normalize(e.prompt) for e in ifeval.read_prompts()]
  assert len(ifeval_prompts) == 541
  for row in rows:
    flat = synthetic_if.normalize(row["prompt"])
    assert not any(p in flat for p in ifeval_prompts), row["key"]
  assert len({r["prompt"] for r in rows}) == len(rows)


def test_a_base_instruction_holding_an_ifeval_prompt_is_dropped_and_counted(monkeypatch):
  leaked = ifeval.read_prompts()[7].prompt
  monkeypatch.setattr(synthetic_if, "base_instructions", lambda sources: iter([
      ("alpaca_eval", "0", "Please answer: " + leaked.upper()), ("alpaca_eval", "1", "Hello?"),
      ("alpaca_eval", "2", "  hello? "), ("alpaca_eval", "3", "   ")]))
  rows, report = synthetic_if.build_prompts(seed=0)
  assert [r["base_id"] for r in rows] == ["1"]
  assert report["dropped"] == {"contains_an_ifeval_prompt": 1, "duplicate": 1, "blank": 1}


def test_constraints_are_compatible_counted_and_checkable(built):
  rows, report = built
  clash = synthetic_if.conflicts()
  per_prompt = {}
  for row in rows:
    ids = row["instruction_id_list"]
    assert 1 <= len(ids) <= 3 and len(ids) == len(row["kwargs"])
    per_prompt[str(len(ids))] = per_prompt.get(str(len(ids)), 0) + 1
    for i, a in enumerate(ids):
      for b in ids[i + 1:]:
        assert b not in clash[a] and a not in clash[b], (row["key"], a, b)
  assert per_prompt == report["constraints_per_prompt"]
  assert len(report["constraints"]) == len(ifeval.instruction_ids())  # every kind is drawn
  # The checker takes every row's arguments as they are written (no exception, one bool each).
  for row in rows[:300]:
    inp = ifeval.example(row["prompt"], row["instruction_id_list"], row["kwargs"], row["key"])
    assert len(ifeval.follow_list(inp, "A short reply, with a comma.")) == len(row["kwargs"])
  # A hand-made case: no_comma alone, checked both ways.
  row = next(r for r in rows if r["instruction_id_list"] == ["punctuation:no_comma"])
  inp = ifeval.example(row["prompt"], row["instruction_id_list"], row["kwargs"])
  assert ifeval.follow_list(inp, "No commas here at all.") == [True]
  assert ifeval.follow_list(inp, "Yes, a comma.") == [False]


def test_arguments_reproduce_the_stated_constraint_whatever_the_random_state(built):
  # The checker rebuilds each instruction from its arguments; IFEval's builder can draw
  # nth_paragraph = num_paragraphs + 1 and then re-randomizes the paragraph the check reads.
  rows, report = built
  for probe in (0, 1, 2):
    random.seed(probe)
    for row in rows:
      for iid, kwargs in zip(row["instruction_id_list"], row["kwargs"]):
        assert synthetic_if.normalize(verifier_sft.describe(iid, kwargs)) in synthetic_if.normalize(
            row["prompt"]), (row["key"], iid, kwargs)
        if iid == "length_constraints:nth_paragraph_first_word":
          assert 1 <= kwargs["nth_paragraph"] <= kwargs["num_paragraphs"], (row["key"], kwargs)
  assert set(report["redrawn_arguments"]) <= {"length_constraints:nth_paragraph_first_word"}


def test_draws_depend_only_on_seed_and_base_instruction(built):
  rows, _ = built
  again, _ = synthetic_if.build_prompts(seed=0)
  assert again == rows
  arena, _ = synthetic_if.build_prompts(sources=("arena_hard",), seed=0)
  full = {(r["source"], r["base_id"]): r for r in rows}
  for r in arena[:50]:
    mine = full[("arena_hard", r["base_id"])]
    assert (r["prompt"], r["instruction_id_list"], r["kwargs"]) == (
        mine["prompt"], mine["instruction_id_list"], mine["kwargs"])
  other, _ = synthetic_if.build_prompts(seed=1, limit=50)
  assert [r["prompt"] for r in other] != [r["prompt"] for r in rows[:50]]
  with pytest.raises(ValueError, match=r"--sources: dolly; known"):
    synthetic_if.build_prompts(sources=("dolly",))


def test_the_prompts_file_feeds_the_verified_pairs_command(tmp_path):
  out = tmp_path / "prompts.jsonl"
  assert synthetic_if.main(["--out", str(out), "--limit", "20", "--sources", "alpaca_eval"]) == 0
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert len(rows) == 20
  report = json.loads((tmp_path / "prompts.report.json").read_text())
  assert report["dropped"] == {"over_limit": 805 - 20}
  # Responses: one following nothing, one following no_comma-style rules by being empty of
  # everything but a comma-free sentence; the checker decides which prompts give a pair.
  responses = tmp_path / "responses.jsonl"
  responses.write_text("".join(json.dumps({"prompt": r["prompt"], "responses": [
      "Yes, this one has a comma.", "this one has none"]}) + "\n" for r in rows))
  verified.main(["--benchmark", "ifeval", "--prompts", str(out), "--responses", str(responses),
                 "--criterion", "count", "--workdir", str(tmp_path / "work")])
  summary = json.loads((tmp_path / "work" / "verification.json").read_text())
  assert summary["prompts"] == 20 and summary["responses"] == 40
  assert summary["pairs"] + summary["skipped"].get("equal_counts", 0) == 20
  no_comma = [r for r in rows if "punctuation:no_comma" in r["instruction_id_list"]]
  assert summary["instructions"].get("punctuation:no_comma", [0, 0])[1] == 2 * len(no_comma)


def test_variants_add_other_constraint_draws_after_the_first_ones(built):
  rows, _ = built
  more, report = synthetic_if.build_prompts(seed=0, variants=2)
  assert more[:len(rows)] == [dict(r, variant=0) for r in rows]  # variants=1's prompts, first
  second = more[len(rows):]
  assert {r["variant"] for r in second} == {1}
  assert len(second) + report["dropped"].get("repeated_variant", 0) == len(rows)
  firsts = {(r["source"], r["base_id"]): r for r in rows}
  for r in second:  # the same base instruction, another draw of constraints
    first = firsts[(r["source"], r["base_id"])]
    base = first["prompt"].split("\n\n")[0]
    assert r["prompt"].startswith(base) and r["prompt"] != first["prompt"]
  assert len({synthetic_if.normalize(r["prompt"]) for r in more}) == len(more)
  with pytest.raises(ValueError, match=r"--variants=0"):
    synthetic_if.build_prompts(variants=0)
