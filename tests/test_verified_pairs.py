"""Pairs from a verifiable benchmark (arm_jax.data.verified) and IFBench's offline checker
(arm_jax.data.ifbench): hand-written responses against hand-counted constraints, the pairing
rules, the command end to end into a dataset the evaluator reads, and resumable sampling."""

import json
import types

import pytest

from arm_jax import config_sections
from arm_jax.data import ifbench, verified
from arm_jax.data import pairs as pairs_lib
from arm_jax.evaluation import benchmarks

pytest.importorskip("emoji")
pytest.importorskip("syllapy")


def _checker_or_skip():
  try:
    ifbench.source_dir()
  except FileNotFoundError as err:
    pytest.skip(str(err))


def _example(key):
  return next(e for e in ifbench.read_prompts() if str(e.key) == str(key))


# --- IFBench's checker, offline ------------------------------------------------------------------

def test_ifbench_checker_loads_offline_and_checks_hand_counted_responses():
  _checker_or_skip()
  examples = ifbench.read_prompts()
  assert len(examples) == 300
  used = {i for e in examples for i in e.instruction_id_list}
  assert used <= set(ifbench.instruction_ids()) and len(used) == 58
  # key 0: kaleidoscope once, nebula twice, whisper 3, labyrinth 5, paradox 7 times
  keywords = _example(0)
  counts = {"kaleidoscope": 1, "nebula": 2, "whisper": 3, "labyrinth": 5, "paradox": 7}
  good = " ".join(f"{w} is here." for w, n in counts.items() for _ in range(n))
  assert ifbench.follow_list(keywords, good) == [True]
  assert ifbench.follow_list(keywords, good.replace("paradox is here.", "", 1)) == [False]
  # key 41: between 71 and 73 words
  words = _example(41)
  assert ifbench.follow_list(words, " ".join(["word"] * 72)) == [True]
  assert ifbench.follow_list(words, " ".join(["word"] * 70)) == [False]
  assert ifbench.follow_list(words, " ".join(["word"] * 74)) == [False]
  # key 296: no whitespace at all
  assert ifbench.follow_list(_example(296), "Yes,allsetsareclasses.") == [True]
  assert ifbench.follow_list(_example(296), "Yes, all sets are classes.") == [False]
  assert ifbench.follow_list(_example(296), "   ") == [False]  # blank never follows
  # the checker's in-place kwargs rewrite does not reach the caller's example
  assert keywords.kwargs[0]["N"] is None


def test_ifbench_instruction_needing_absent_nltk_data_is_unverifiable(monkeypatch):
  _checker_or_skip()
  monkeypatch.setattr(ifbench, "_nltk_resource", lambda kind, name: False)
  with pytest.raises(ifbench.Unverifiable, match=r"ratio:stop_words needs NLTK's stopwords"):
    ifbench.follow_list(_example(171), "A graph is a set of vertices and edges.")
  with pytest.raises(ifbench.Unverifiable, match=r"words:start_verb needs .*tagger"):
    ifbench.follow_list(_example(257), "Imagine an empire.")


# --- pairing rules -------------------------------------------------------------------------------

def test_pick_pair_by_count_prefers_more_followed_and_needs_a_difference():
  texts = ["a", "b", "c", "d"]
  follows = [[True, False], [True, True], [False, False], [True, True]]
  assert verified.pick_pair_by_count(follows, texts) == (1, 2)  # first best, first worst
  assert verified.pick_pair_by_count([[True], [True]], ["a", "b"]) is None
  assert verified.pick_pair_by_count([[True], [False]], ["a", " "]) is None  # blank rejected
  assert verified.pick_pair_by_count([[False], [True], [False]], ["a", "b", ""]) == (1, 0)


def _fake_verifier():
  """Instructions are words a response must contain; 'STOPWORDS' needs data that is absent."""
  def follow(inp, text):
    if "STOPWORDS" in inp.instruction_id_list:
      raise ifbench.Unverifiable("STOPWORDS", "a corpus")
    return [word in text for word in inp.instruction_id_list]
  return verified.Verifier("fake", lambda: "", lambda path: [], follow, "fake labels")


def _inp(prompt, ids):
  return types.SimpleNamespace(prompt=prompt, instruction_id_list=ids, kwargs=[{}] * len(ids))


def test_label_pairs_counts_every_prompt_by_outcome():
  examples = [_inp("p1", ["x:a", "y:b"]), _inp("p2", ["x:a"]), _inp("p3", ["x:a"]),
              _inp("p4", ["x:a"]), _inp("p5", ["STOPWORDS"]), _inp("p6", ["x:a"])]
  responses = {"p1": ["x:a only", "x:a and y:b"], "p2": ["x:a", "x:a too"],
               "p3": ["nothing", "none"], "p4": ["x:a", "  "], "p5": ["text", "more"]}
  records, stats = verified.label(examples, responses, _fake_verifier(), "all")
  assert [r.prompt for r in records] == ["p1"]
  r = records[0]
  chosen = r.response_a if r.winner == "A" else r.response_b
  assert chosen == "x:a and y:b" and r.source == "fake_sampled" and r.subset == "x"
  assert stats.skipped == {"no_failing_response": 1, "no_passing_response": 1,
                           "failing_responses_blank": 1, "unverifiable:STOPWORDS": 1,
                           "no_responses": 1}
  assert (stats.prompts, stats.prompts_with_responses, stats.responses, stats.pairs) == (
      6, 5, 8, 1)
  assert stats.responses_following_all == 1 + 2 + 0 + 1
  assert stats.instructions == {"x:a": [5, 8], "y:b": [1, 2]}
  by_count, count_stats = verified.label(examples, responses, _fake_verifier(), "count")
  assert [x.prompt for x in by_count] == ["p1"]  # p4's other response is blank
  assert count_stats.skipped["equal_counts"] == 3  # p2, p3, p4


# --- the command ---------------------------------------------------------------------------------

def test_command_labels_responses_into_a_dataset_the_evaluator_reads(tmp_path, capsys):
  _checker_or_skip()
  keyword_good = " ".join(f"{w} is here." for w, n in (
      ("kaleidoscope", 1), ("nebula", 2), ("whisper", 3), ("labyrinth", 5), ("paradox", 7))
      for _ in range(n))
  prompts = {str(e.key): e.prompt for e in ifbench.read_prompts()}
  rows = [  # one row per prompt with a list, and llm-eval-framework's one row per response
      {"prompt": prompts["0"], "responses": ["No keywords at all.", keyword_good]},
      {"prompt": prompts["41"], "response": " ".join(["word"] * 72)},
      {"prompt": prompts["41"], "response": " ".join(["word"] * 10)},
      {"prompt": prompts["296"], "responses": ["all one word", "neither has none"]},
      {"prompt": "not an IFBench prompt", "responses": ["a", "b"]},
      {"response": "no prompt"},
  ]
  path = tmp_path / "responses.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
  out = tmp_path / "ifbench"
  assert verified.main(["--benchmark", "ifbench", "--responses", str(path), "--workdir",
                        str(tmp_path / "work"), "--out", str(out)]) == 0
  summary = json.loads((out / "verification.json").read_text())
  assert summary["pairs"] == 2 and summary["rows_written"] == 2
  assert summary["skipped"]["no_passing_response"] == 1  # key 296: both have whitespace
  assert summary["skipped"]["no_responses"] == 300 - 3
  assert summary["unreadable_rows"] == {"no_prompt_or_responses": 1, "not_json": 1}
  assert summary["responses_for_other_prompts"] == 1
  assert summary["pairs_by_subset"] == {"count": 2}
  assert "| count:word_count_range | 1 | 2 | 0.500 |" in (out / "DATASHEET.md").read_text()
  # The paper's IFBench column reads it, the verified response as the preferred one.
  spec = config_sections.paper_benchmarks().ifbench
  spec.path = str(out)
  benchmarks.check_spec("ifbench", spec, has_trained_run=False)
  examples = benchmarks.load_examples("ifbench", spec)
  assert sorted(ex.candidates[ex.preferred] for ex in examples) == sorted(
      [keyword_good, " ".join(["word"] * 72)])
  assert {ex.candidates[1 - ex.preferred] for ex in examples} == {
      "No keywords at all.", " ".join(["word"] * 10)}


def test_held_out_split_keeps_each_base_instructions_variants_together(tmp_path):
  """Two prompts (variants) per base instruction, each asking for no commas: the response
  without one is preferred; with --held_out_fraction every base is on one side only."""
  pytest.importorskip("langdetect")
  bases = [f"Describe item number {i} of the catalogue." for i in range(30)]
  rows, responses = [], []
  for i, base in enumerate(bases):
    for variant, tail in enumerate(("Do not use any commas.", "Avoid every comma, please.")):
      prompt = f"{base}\n\n{tail}"
      rows.append({"key": len(rows), "prompt": prompt, "source": "alpaca_eval",
                   "base_id": str(i), "variant": variant,
                   "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]})
      responses.append({"prompt": prompt, "responses": ["It is red, and round.",
                                                        f"It is red and round {i}."]})
  prompts = tmp_path / "prompts.jsonl"
  prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
  answers = tmp_path / "responses.jsonl"
  answers.write_text("".join(json.dumps(r) + "\n" for r in responses))
  out, work = tmp_path / "out", tmp_path / "work"
  assert verified.main(["--benchmark", "ifeval", "--prompts", str(prompts), "--responses",
                        str(answers), "--criterion", "count", "--held_out_fraction", "0.3",
                        "--workdir", str(work), "--out", str(out)]) == 0
  sides = {name: [json.loads(line) for line in (work / f"pairs_{name}.jsonl").open()]
           for name in ("train", "held_out")}
  base_of = {r["prompt"]: r["base_id"] for r in rows}
  seen = {name: {base_of[p["prompt"]] for p in side} for name, side in sides.items()}
  assert not seen["train"] & seen["held_out"] and seen["train"] | seen["held_out"] == {
      str(i) for i in range(30)}
  assert 3 <= len(seen["held_out"]) <= 16  # 30 bases at 0.3
  for side in sides.values():
    assert all(len(p["response_" + p["winner"].lower()]) > 0 and
               "," not in p["response_" + p["winner"].lower()] for p in side)
    assert len(side) == 2 * len({base_of[p["prompt"]] for p in side})  # both variants
  summary = json.loads((out / "verification.json").read_text())
  assert summary["split"]["held_out"] == {"pairs": len(sides["held_out"]),
                                          "base_instructions": len(seen["held_out"])}
  assert summary["split"]["by"] == "source/base_id"
  assert summary["rows_written"] == 60
  for name in ("train", "held_out"):  # each side is a dataset the trainer and evaluator read
    assert len(pairs_lib.read_pairs(str(out / name))[0]) == len(sides[name])
  assert "split by source/base_id" in (out / "DATASHEET.md").read_text()


@pytest.mark.slow
def test_sampling_appends_resumes_and_refuses_other_settings(tmp_path):
  from arm_jax import assets  # noqa: PLC0415
  try:
    assets.smollm2_gguf()
  except FileNotFoundError as err:
    pytest.skip(str(err))
  work = tmp_path / "work"
  args = ["--benchmark", "ifeval", "--limit", "3", "--samples", "2", "--max_new_tokens", "12",
          "--batch_prompts", "2", "--workdir", str(work)]
  try:
    verified.main(args)
  except SystemExit:  # 12 tokens rarely satisfy IFEval: no pair is a valid outcome here
    pass
  lines = (work / "responses.jsonl").read_text().splitlines()
  assert len(lines) == 3 and all(len(json.loads(x)["responses"]) == 2 for x in lines)
  # A second run samples nothing again (the file is unchanged), a third one with more prompts
  # samples only the new one.
  before = (work / "responses.jsonl").read_text()
  try:
    verified.main(args)
  except SystemExit:
    pass
  assert (work / "responses.jsonl").read_text() == before
  try:
    verified.main([*args[:2], "--limit", "4", *args[4:]])
  except SystemExit:
    pass
  after = (work / "responses.jsonl").read_text()
  assert after.startswith(before) and len(after.splitlines()) == 4
  with pytest.raises(ValueError, match=r"--seed: the file has 0, this run 1"):
    verified.main([*args, "--seed", "1"])


def test_the_datasheet_gives_the_longer_response_baseline():
  """Chosen lengths 10, 3, 5 against rejected 4, 8, 5: longer in 1 of 3, one tie, so a judge
  that prefers length scores (1 + 0.5) / 3 = 50.0%; the sides the records put them on do not
  matter."""
  records = [verified.pair_record("s", f"p{i}", [], "x" * c, "y" * r)
             for i, (c, r) in enumerate(((10, 4), (3, 8), (5, 5)))]
  assert {r.winner for r in records} == {"A", "B"}  # both sides are exercised
  text = verified.length_summary(records)
  assert text.endswith("the chosen one is longer in 1 of 3 pairs (1 ties): preferring the "
                       "longer response scores 50.0%")
  assert text.startswith("chosen median 5, p90 10; rejected median 5, p90 8")
