"""Every converter on hand-written rows in its hub layout, through the builder and back."""

import hashlib
import json
import os

import pytest

from arm_jax.data import converters, schema
from arm_jax.data.build import build
from arm_jax.data.converters import ConvertOptions, convert_row, place_pair, shuffle_candidates
from arm_jax.data.storage import read_records


def _write_jsonl(path, rows):
  with open(path, "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
  return str(path)


def _content_id(source, *parts):
  """The documented id formula, restated: source + 16 hex of sha256 over the JSON parts."""
  blob = json.dumps(parts, ensure_ascii=False, sort_keys=True).encode("utf-8")
  return f"{source}-{hashlib.sha256(blob).hexdigest()[:16]}"


def _chat(*turns):
  return [{"role": role, "content": text} for role, text in turns]


def _view(record):
  """Position-free view: chosen (the preferred text) and rejected (sorted for best-of-n)."""
  if record.is_best_of_n:
    chosen = record.candidates[record.preferred]
    rejected = sorted(c for i, c in enumerate(record.candidates) if i != record.preferred)
  else:
    chosen, rejected = ((record.response_a, record.response_b) if record.winner == "A"
                        else (record.response_b, record.response_a))
  return {"id": record.id, "prompt": record.prompt, "chosen": chosen, "rejected": rejected,
          "subset": record.subset, "rubric": record.rubric, "source": record.source}


def _want(id_, prompt, chosen, rejected, source, subset="", rubric=""):
  return {"id": id_, "prompt": prompt, "chosen": chosen, "rejected": rejected, "subset": subset,
          "rubric": rubric, "source": source}


UF_PROMPT_1 = _chat(("user", "What is 2+2?"))
UF_PROMPT_2 = _chat(("user", "Hi"), ("assistant", "Hello."), ("user", "Tell a joke."))
HH_PROMPT_2 = "Human: Name a color.\n\nAssistant: Red.\n\nHuman: Another?"
HS_CONTEXT = _chat(("user", "Sort [3, 1]."))

# format -> (rows, ConvertOptions extras, records wanted, skips wanted by reason, shown), where
# shown lists (response_a, response_b, winner) for formats that keep the source's A/B order.
CASES = {
    "openrubrics": ([
        {"instruction": "Name a prime.", "response_a": "2", "response_b": "4", "winner": "A",
         "rubric": "The number must be prime."},
        {"instruction": "Capital of France?", "response_a": "Lyon", "response_b": "Paris",
         "winner": "response_b", "rubric": "Names the capital."},
        {"instruction": "Say hi.", "response_a": "hi", "response_b": "go", "winner": "Response A",
         "rubric": ""},
        {"instruction": "Say yes.", "response_a": "yes", "response_b": "no", "winner": "tie"},
        {"instruction": "Say no.", "response_a": "no", "response_b": "yes", "winner": "C"},
        {"instruction": "Say ok.", "response_a": "ok", "response_b": "  ", "winner": "A"},
    ], {}, [
        _want(_content_id("openrubrics", "Name a prime.", "2", "4"), "Name a prime.", "2", "4",
              "openrubrics", rubric="The number must be prime."),
        _want(_content_id("openrubrics", "Capital of France?", "Lyon", "Paris"),
              "Capital of France?", "Paris", "Lyon", "openrubrics", rubric="Names the capital."),
        _want(_content_id("openrubrics", "Say hi.", "hi", "go"), "Say hi.", "hi", "go",
              "openrubrics"),
    ], {"tie": 1, "bad_winner": 1, "empty_field": 1},
        {("2", "4", "A"), ("Lyon", "Paris", "B"), ("hi", "go", "A")}),
    "ultrafeedback_binarized": ([
        {"prompt": "What is 2+2?", "prompt_id": "p1", "score_chosen": 9.0, "score_rejected": 3.0,
         "chosen": UF_PROMPT_1 + _chat(("assistant", "4")),
         "rejected": UF_PROMPT_1 + _chat(("assistant", "5"))},
        {"prompt": "Hi", "prompt_id": "p2", "score_chosen": 8.0, "score_rejected": 2.0,
         "chosen": UF_PROMPT_2 + _chat(("assistant", "Knock knock.")),
         "rejected": UF_PROMPT_2 + _chat(("assistant", "No."))},
        {"prompt": "Hi", "prompt_id": "p3", "score_chosen": 8.0, "score_rejected": 2.0,
         "chosen": _chat(("user", "Hi"), ("assistant", "Hey")),
         "rejected": _chat(("user", "Yo"), ("assistant", "Hey"))},
        {"prompt": "Hi", "prompt_id": "p4", "score_chosen": 5.0, "score_rejected": 5.0,
         "chosen": _chat(("user", "Hi"), ("assistant", "Hey")),
         "rejected": _chat(("user", "Hi"), ("assistant", "Hello"))},
        {"prompt": "Hi", "prompt_id": "p5", "score_chosen": 6.0, "score_rejected": 5.0,
         "chosen": _chat(("assistant", "Hey"), ("user", "Hi")),
         "rejected": _chat(("user", "Hi"), ("assistant", "Hello"))},
    ], {}, [
        _want(_content_id("ultrafeedback_binarized", UF_PROMPT_1, "4", "5"), UF_PROMPT_1, "4", "5",
              "ultrafeedback_binarized"),
        _want(_content_id("ultrafeedback_binarized", UF_PROMPT_2, "Knock knock.", "No."),
              UF_PROMPT_2, "Knock knock.", "No.", "ultrafeedback_binarized"),
    ], {"prefix_mismatch": 1, "tie": 1, "bad_message": 1}, set()),
    "hh_rlhf": ([
        {"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?",
         "rejected": "\n\nHuman: Hi there\n\nAssistant: Go away."},
        {"chosen": f"\n\n{HH_PROMPT_2}\n\nAssistant: Blue.",
         "rejected": f"\n\n{HH_PROMPT_2}\n\nAssistant: No."},
        {"chosen": "\n\nHuman: A\n\nAssistant: B", "rejected": "\n\nHuman: C\n\nAssistant: D"},
        {"chosen": "\n\nHuman: only a question", "rejected": "\n\nHuman: only a question"},
    ], {}, [
        _want(_content_id("hh_rlhf", "Human: Hi there", "Hello! How can I help?", "Go away."),
              "Human: Hi there", "Hello! How can I help?", "Go away.", "hh_rlhf"),
        _want(_content_id("hh_rlhf", HH_PROMPT_2, "Blue.", "No."), HH_PROMPT_2, "Blue.", "No.",
              "hh_rlhf"),
    ], {"prefix_mismatch": 1, "bad_transcript": 1}, set()),
    "helpsteer3": ([
        {"domain": "code", "language": "python", "context": HS_CONTEXT, "response1": "[1, 3]",
         "response2": "[3, 1]", "overall_preference": -2},
        {"domain": "general", "language": "english", "context": _chat(("user", "Greet me.")),
         "response1": "Go.", "response2": "Hello!", "overall_preference": 1},
        {"domain": "general", "context": _chat(("user", "x")), "response1": "a",
         "response2": "b", "overall_preference": 0},
        {"domain": "general", "context": _chat(("user", "y")), "response1": "a",
         "response2": "b", "overall_preference": 5},
    ], {}, [
        _want(_content_id("helpsteer3", HS_CONTEXT, "[1, 3]", "[3, 1]"), HS_CONTEXT, "[1, 3]",
              "[3, 1]", "helpsteer3", subset="code"),
        _want(_content_id("helpsteer3", _chat(("user", "Greet me.")), "Go.", "Hello!"),
              _chat(("user", "Greet me.")), "Hello!", "Go.", "helpsteer3", subset="general"),
    ], {"tie": 1, "bad_winner": 1},
        {("[1, 3]", "[3, 1]", "A"), ("Go.", "Hello!", "B")}),
    "rewardbench": ([
        {"id": 30, "subset": "alpacaeval-easy", "prompt": "p30", "chosen": "c30",
         "rejected": "r30", "chosen_model": "m1", "rejected_model": "m2"},
        {"id": 31, "subset": "llmbar-adver-GPTOut", "prompt": "p31", "chosen": "c31",
         "rejected": "r31"},
        {"id": 32, "subset": "xstest-should-respond", "prompt": "p32", "chosen": "c32",
         "rejected": "r32"},
        {"id": 33, "subset": "hep-rust", "prompt": "p33", "chosen": "c33", "rejected": "r33"},
        {"id": 34, "subset": "anthropic_helpful", "prompt": "p34", "chosen": "c34",
         "rejected": "r34"},
    ], {}, [
        _want("30", "p30", "c30", "r30", "rewardbench", "Chat/alpacaeval-easy"),
        _want("31", "p31", "c31", "r31", "rewardbench", "Chat-Hard/llmbar-adver-GPTOut"),
        _want("32", "p32", "c32", "r32", "rewardbench", "Safety/xstest-should-respond"),
        _want("33", "p33", "c33", "r33", "rewardbench", "Reasoning/hep-rust"),
    ], {"unknown_subset": 1}, set()),
    "rewardbench2": ([
        {"id": f"rb2-{i}", "subset": subset, "prompt": f"q{i}", "chosen": [f"good{i}"],
         "rejected": [f"bad{i}a", f"bad{i}b", f"bad{i}c"], "num_correct": 1, "num_rejected": 3}
        for i, subset in enumerate(["Precise IF", "Focus", "Factuality", "Math", "Safety"])
    ] + [
        {"id": "rb2-ties", "subset": "Ties", "prompt": "Name a primary color.",
         "chosen": ["red", "blue"], "rejected": ["green"]},
    ], {}, [
        _want(f"rb2-{i}", f"q{i}", f"good{i}", [f"bad{i}a", f"bad{i}b", f"bad{i}c"],
              "rewardbench2", subset)
        for i, subset in enumerate(["Precise IF", "Focus", "Factuality", "Math", "Safety"])
    ], {"multiple_chosen": 1}, set()),
    "rmbench": ([
        {"id": 7, "domain": "chat", "prompt": "Explain rain.", "chosen": ["c0", "c1", "c2"],
         "rejected": ["r0", "r1", "r2"]},
        {"id": 8, "domain": "math", "prompt": "1+1?", "chosen": ["2", "two"],
         "rejected": ["3", "three", "III"]},
    ], {}, [
        _want(f"7:c{i}r{j}", "Explain rain.", f"c{i}", f"r{j}", "rmbench",
              "chat/" + ("normal" if i == j else "hard" if i < j else "easy"))
        for i in range(3) for j in range(3)
    ], {"bad_layout": 1}, set()),
    "ppe_ifeval": ([
        {"question_id": "q1", "prompt": "Write two words.", "response_1": "one", "response_2":
         "two words", "response_3": "three words here", "response_4": "x",
         "scores": [0.25, 1.0, 0.5, 0.0]},
        {"question_id": "q2", "prompt": "Say hi.", "response_1": "hi", "response_2": "hi!",
         "scores": [1, 1]},
        {"question_id": "q3", "prompt": "Say no.", "response_1": "no", "response_2": "nah",
         "response_3": "never", "scores": [1, 0]},
    ], {}, [
        _want("q1", "Write two words.", "two words", ["one", "three words here", "x"],
              "ppe_ifeval"),
    ], {"tie": 1, "bad_layout": 1}, set()),
    "canonical": ([
        schema.record_to_json(schema.Record(
            id="c1", prompt=_chat(("system", "Be brief."), ("user", "Hi")), response_a="Hello",
            response_b="Hi!", winner="B", source="mine", subset="s", rubric="Be kind.")),
        schema.record_to_json(schema.Record(
            id="c2", prompt="Pick one.", source="mine", candidates=("x", "y", "z"), preferred=2)),
        {"id": "c3", "prompt": "No source.", "response_a": "a", "response_b": "b",
         "winner": "A"},
    ], {}, [
        _want("c1", _chat(("system", "Be brief."), ("user", "Hi")), "Hi!", "Hello", "mine", "s",
              "Be kind."),
        _want("c2", "Pick one.", "z", ["x", "y"], "mine"),
    ], {"missing_field": 1}, set()),
    "columns": ([
        {"question": "2+3?", "answer1": "5", "answer2": "6", "label": 1, "id": "k1"},
        {"question": "2+4?", "answer1": "7", "answer2": "6", "label": 2, "id": "k2"},
        {"question": "2+5?", "answer1": "7", "answer2": "7.0", "label": 0, "id": "k3"},
        {"question": "2+6?", "answer1": "8", "label": 1, "id": "k4"},
        {"question": "2+7?", "answer1": "9", "answer2": "8", "label": 3, "id": "k5"},
    ], {"column_map": {"prompt": "question", "response_a": "answer1", "response_b": "answer2",
                       "winner": "label"},
        "winner_values": {"1": "A", "2": "B", "0": "tie"}}, [
        _want("k1", "2+3?", "5", "6", "columns"),
        _want("k2", "2+4?", "6", "7", "columns"),
    ], {"tie": 1, "missing_field": 1, "bad_winner": 1},
        {("5", "6", "A"), ("7", "6", "B")}),
}


def test_every_registered_format_has_a_case():
  assert set(CASES) == set(converters.CONVERTERS)


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_round_trip_through_builder(fmt, tmp_path):
  rows, extra, wanted, skips, shown = CASES[fmt]
  opts = ConvertOptions(source=fmt, **extra)
  report = build([_write_jsonl(tmp_path / f"{fmt}.jsonl", rows)], fmt, str(tmp_path / "out"),
                 options=opts)
  got = read_records(str(tmp_path / "out"))
  assert sorted((_view(r) for r in got), key=lambda v: v["id"]) == sorted(
      wanted, key=lambda v: v["id"])
  assert all(schema.validate(r) is None for r in got)
  if shown:
    assert {(r.response_a, r.response_b, r.winner) for r in got} == shown
  with open(os.path.join(tmp_path, "out", "build_report.json"), encoding="utf-8") as f:
    on_disk = json.load(f)
  assert on_disk == report
  assert report["rows_read"] == len(rows)
  assert report["rows_written"] == len(wanted)
  assert report["skipped_by_reason"] == skips
  assert report["rows_skipped"] == sum(skips.values())
  assert sum(len(v) for v in report["skip_examples"].values()) == sum(skips.values())


def test_canonical_round_trip_is_exact(tmp_path):
  rows = CASES["canonical"][0][:2]
  build([_write_jsonl(tmp_path / "c.jsonl", rows)], "canonical", str(tmp_path / "out"))
  got = sorted(read_records(str(tmp_path / "out")), key=lambda r: r.id)
  assert [schema.record_to_json(r) for r in got] == rows


def test_chosen_rejected_sources_use_both_positions():
  opts = ConvertOptions(source="rewardbench")
  rows = CASES["rewardbench"][0][:4]
  winners = [convert_row("rewardbench", row, opts)[0].winner for row in rows]
  # sha256("31") starts with an odd byte, "30", "32", "33" with even ones.
  assert [hashlib.sha256(str(r["id"]).encode()).digest()[0] % 2 for r in rows] == [0, 1, 0, 0]
  assert winners == ["A", "B", "A", "A"]


def test_place_pair_follows_id_parity():
  assert place_pair("30", "good", "bad") == ("good", "bad", "A")
  assert place_pair("31", "good", "bad") == ("bad", "good", "B")


def test_best_of_n_shuffle_is_stable_and_not_always_first():
  prefs = []
  for i in range(8):
    candidates, preferred = shuffle_candidates(f"id{i}", "good", ["b1", "b2", "b3"])
    assert (candidates, preferred) == shuffle_candidates(f"id{i}", "good", ["b1", "b2", "b3"])
    assert candidates[preferred] == "good" and sorted(candidates) == ["b1", "b2", "b3", "good"]
    prefs.append(preferred)
  assert len(set(prefs)) > 1


def test_rewardbench_sections_cover_the_23_subsets():
  sections = converters.REWARDBENCH_SECTIONS
  assert [len(sections[s]) for s in ("Chat", "Chat-Hard", "Safety", "Reasoning")] == [5, 6, 5, 7]
  names = [n for group in sections.values() for n in group]
  assert len(set(names)) == 23


@pytest.mark.parametrize("label,want", [
    ("A", "A"), ("b", "B"), ("response_a", "A"), ("Response B", "B"), ("model_a", "A"),
    ("Tie (bothbad)", "tie"), ("C", "bad_winner"), (1, "bad_winner")])
def test_openrubrics_winner_spellings(label, want):
  row = {"instruction": "q", "response_a": "x", "response_b": "y", "winner": label}
  (item,) = convert_row("openrubrics", row, ConvertOptions(source="openrubrics"))
  got = item.winner if isinstance(item, schema.Record) else item.reason
  assert got == {"tie": "tie"}.get(want, want)


def test_column_map_reports_skips_under_the_users_column():
  _, extra, _, _, _ = CASES["columns"]
  row = {"question": "2+6?", "answer1": "8", "label": 1}
  (skip,) = convert_row("columns", row, ConvertOptions(source="columns", **extra))
  assert skip == schema.Skip("missing_field", "answer2")


def test_ppe_accepts_column_map_for_scores():
  row = {"question_id": "q", "prompt": "p", "responses": ["a", "b", "c"],
         "correctness": [0, 0, 1]}
  opts = ConvertOptions(source="ppe_ifeval", column_map={"scores": "correctness"})
  (record,) = convert_row("ppe_ifeval", row, opts)
  assert (record.candidates, record.preferred) == (("a", "b", "c"), 2)
