"""Offline data: the IFEval checker without NLTK downloads, pairing rules, Arena-Hard pairs."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from arm_jax.data import ifeval
from arm_jax.data.schema import validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "experiments", "build_offline_data.py")


def _load_script():
  """The script as a module (experiments/ is not a package); generation imports stay lazy."""
  spec = importlib.util.spec_from_file_location("build_offline_data", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses resolve string annotations through it
  spec.loader.exec_module(module)
  return module


bod = _load_script()


def _check(instruction_id: str, kwargs: dict, response: str) -> bool:
  return ifeval.follows_all(ifeval.example("p", [instruction_id], [kwargs]), response)


def test_offline_checker_knows_the_shipped_prompts():
  prompts = ifeval.read_prompts()
  assert len(prompts) == 541
  known = set(ifeval.instruction_ids())
  assert {"punctuation:no_comma", "change_case:english_lowercase",
          "length_constraints:number_sentences", "length_constraints:number_words"} <= known
  assert all(set(p.instruction_id_list) <= known for p in prompts)


def test_offline_no_comma():
  assert _check("punctuation:no_comma", {}, "No commas here at all.")
  assert not _check("punctuation:no_comma", {}, "Well, there is one.")


def test_offline_lowercase():
  assert _check("change_case:english_lowercase", {}, "all lower case, even here.")
  assert not _check("change_case:english_lowercase", {}, "Not all lower case.")


def test_offline_sentence_count_uses_untrained_punkt():
  kwargs = {"relation": "at least", "num_sentences": 3}
  assert _check("length_constraints:number_sentences", kwargs, "One. Two! Three?")
  assert not _check("length_constraints:number_sentences", kwargs, "One. Two")


def test_offline_word_tokenizer_for_capital_words():
  kwargs = {"capital_relation": "at least", "capital_frequency": 2}
  assert _check("change_case:capital_word_frequency", kwargs, "HELLO big WORLD, ok.")
  assert not _check("change_case:capital_word_frequency", kwargs, "HELLO world.")


def test_offline_word_count_and_blank_response():
  kwargs = {"relation": "at least", "num_words": 5}
  assert _check("length_constraints:number_words", kwargs, "one two three four five")
  assert not _check("length_constraints:number_words", kwargs, "one two")
  assert not _check("punctuation:no_comma", {}, "   ")  # strict: blank never passes


def test_offline_multi_instruction_needs_all():
  inp = ifeval.example("p", ["punctuation:no_comma", "change_case:english_lowercase"], [{}, {}])
  assert ifeval.follow_list(inp, "Hello, World") == [False, False]
  assert ifeval.follow_list(inp, "hello, world") == [False, True]
  assert ifeval.follows_all(inp, "hello world")


def test_pick_pair_needs_exactly_one_passing_side():
  texts = ["a", "b", "c", "d"]
  assert bod.pick_pair([False, True, False, True], texts) == (1, 0)
  assert bod.pick_pair([True, True, True, True], texts) is None
  assert bod.pick_pair([False, False, False, False], texts) is None
  assert bod.pick_pair([True, False, False], ["a", " ", "c"]) == (0, 2)
  assert bod.pick_pair([True, False], ["a", ""]) is None


def test_skip_reasons():
  assert bod.skip_reason([False, False], ["a", "b"]) == "no_passing_response"
  assert bod.skip_reason([True, True], ["a", "b"]) == "no_failing_response"
  assert bod.skip_reason([True, False], ["a", ""]) == "failing_responses_blank"


def test_pair_record_places_winner_by_stable_hash():
  records = [bod.pair_record(f"prompt {i}", ["punctuation:no_comma"], f"good {i}", f"bad {i}")
             for i in range(200)]
  for r in records:
    assert validate(r) is None
    assert r.source == "ifeval_verified" and r.subset == "punctuation"
    chosen = r.response_a if r.winner == "A" else r.response_b
    rejected = r.response_b if r.winner == "A" else r.response_a
    assert chosen.startswith("good") and rejected.startswith("bad")
    assert r.winner == bod.winner_side(r.id)
  share_b = sum(r.winner == "B" for r in records) / len(records)
  assert 0.35 < share_b < 0.65
  again = bod.pair_record("prompt 0", ["punctuation:no_comma"], "good 0", "bad 0")
  assert again == records[0]
  assert bod.subset_of([]) == "ifeval"


def test_ifeval_records_counts_with_fake_responses():
  prompts = ifeval.read_prompts()
  no_comma = next(p for p in prompts if p.instruction_id_list == ["punctuation:no_comma"])
  stats = bod.IfevalStats(prompts=2)
  responses = [["has, comma", "no comma here", "also no comma"], ["a, b", "c, d", "e, f"]]
  records = bod.ifeval_records([no_comma, no_comma], responses, stats)
  assert len(records) == 1 and stats.pairs == 1
  assert stats.responses == 6 and stats.responses_passing == 2
  assert stats.prompts_both_outcomes == 1 and stats.skipped == {"no_passing_response": 1}
  r = records[0]
  assert (r.response_a if r.winner == "A" else r.response_b) == "no comma here"


def test_arena_hard_pairs_from_shipped_files():
  pairs, counts = bod.arena_pairs()
  assert counts["pairs_matched"] == len(pairs) > 0
  assert counts["questions"] == (counts["pairs_matched"] + counts["unmatched_missing_answer"]
                                 + counts["unmatched_blank_answer"])
  assert len({p["id"] for p in pairs}) == len(pairs)
  for p in pairs:
    assert p["prompt"].strip() and p["response_a"].strip() and p["response_b"].strip()
    assert p["winner"] == "" and p["subset"] in ("hard_prompt", "creative_writing")


@pytest.mark.slow
def test_offline_script_end_to_end(tmp_path):
  out = tmp_path / "data"
  run = subprocess.run([sys.executable, SCRIPT, "--out", str(out), "--limit", "2", "--samples",
                        "2", "--max_new_tokens", "16"], cwd=ROOT, capture_output=True,
                       text=True, timeout=900)
  assert run.returncode == 0, run.stderr[-3000:]
  counts = json.loads(run.stdout[run.stdout.index("{\n"):])
  assert counts["ifeval"]["prompts"] == 2 and counts["ifeval"]["responses"] == 4
  with open(out / "ifeval_pairs.jsonl", encoding="utf-8") as f:
    assert sum(1 for _ in f) == counts["ifeval"]["pairs"]
  assert (out / "arena_hard_pairs.jsonl").stat().st_size > 0
  assert "Pairs written" in (out / "DATASHEET.md").read_text(encoding="utf-8")
