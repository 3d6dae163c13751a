"""Bad input, skip accounting, --strict, the token budget, file types and the CLI."""

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers

from arm_jax.data.build import BuildError, TokenBudget, build
from arm_jax.data.converters import ConvertOptions
from arm_jax.data.storage import read_records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = "[UNK] q a b c one two three four five six seven".split()


def _row(id_, **over):
  row = {"id": id_, "instruction": "q", "response_a": "a", "response_b": "b", "winner": "A"}
  row.update(over)
  return json.dumps(row).encode("utf-8")


# (line bytes, expected reason or None for a written row); line numbers are 1-based positions.
MIXED = [
    (_row("g1"), None),
    (json.dumps({"id": "m1", "instruction": "q", "response_a": "a", "winner": "A"}).encode(),
     "missing_field"),
    (_row("e1", instruction=""), "empty_field"),
    (_row("w1", winner="C"), "bad_winner"),
    (_row("t1", winner="tie"), "tie"),
    (b'{"id": "u1", "instruction": "caf\xe9", "response_a": "a", "response_b": "b"}',
     "invalid_utf8"),
    (b'{"id": "j1", "instruction": "q",', "malformed_json"),
    (_row("g1", response_a="other"), "duplicate_id"),
    (_row("o1", response_b="one two three four five six seven"), "response_over_budget"),
    (b"   ", None),  # blank lines are not rows
    (_row("g2", winner="response_b"), None),
    (b"[1, 2]", "not_an_object"),
    (_row("s1", response_a="\ud800"), "invalid_utf8"),  # JSON escape of a lone surrogate
    (_row("n1")[:-1] + b', "votes": ' + b"9" * 5000 + b"}", "number_too_long"),
    (b'{"id": "d1", "instruction": "q", "x": ' + b"[" * 100000 + b"]" * 100000 + b"}",
     "nesting_too_deep"),
]
MIXED_COUNTS = {"missing_field": 1, "empty_field": 1, "bad_winner": 1, "tie": 1,
                "invalid_utf8": 2, "malformed_json": 1, "duplicate_id": 1,
                "response_over_budget": 1, "not_an_object": 1, "number_too_long": 1,
                "nesting_too_deep": 1}


def _write_mixed(tmp_path):
  path = tmp_path / "mixed.jsonl"
  path.write_bytes(b"\n".join(line for line, _ in MIXED) + b"\n")
  return str(path)


def _tokenizer():
  """A word-level tokenizer: one token per whitespace-separated word of WORDS."""
  backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
  backend.pre_tokenizer = pre_tokenizers.Whitespace()
  return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


def test_mixed_file_counts_every_reason(tmp_path):
  path = _write_mixed(tmp_path)
  report = build([path], "openrubrics", str(tmp_path / "out"),
                 budget=TokenBudget(_tokenizer(), max_tokens=5))
  assert report["skipped_by_reason"] == MIXED_COUNTS
  assert report["rows_read"] == 14 and report["rows_written"] == 2
  assert report["rows_skipped"] == 12 and report["rows_truncated"] == 0
  assert report["token_budget"]["policy"] == "skip"
  assert sorted(r.id for r in read_records(str(tmp_path / "out"))) == ["g1", "g2"]
  examples = report["skip_examples"]
  assert [(e["line"], e["field"]) for e in examples["invalid_utf8"]] == [(6, ""), (13, "")]
  assert (examples["missing_field"][0]["line"], examples["missing_field"][0]["field"]) == (
      2, "response_b")
  assert examples["response_over_budget"][0]["field"] == "response_b"
  assert examples["duplicate_id"][0]["line"] == 8
  assert examples["malformed_json"][0]["excerpt"] == '{"id": "j1", "instruction": "q",'
  assert examples["number_too_long"][0]["detail"] == "an integer of 5000 digits"
  assert [examples[r][0]["line"] for r in ("number_too_long", "nesting_too_deep")] == [14, 15]
  assert all(e["file"] == path for group in examples.values() for e in group)


def test_a_json_file_skips_a_long_number_row_and_names_itself_when_too_deep(tmp_path):
  path = tmp_path / "rows.json"
  path.write_bytes(b"[" + _row("g1") + b", " + _row("n1")[:-1] + b', "n": -' + b"1" * 5000
                   + b"}]")
  report = build([str(path)], "openrubrics", str(tmp_path / "out"))
  assert report["skipped_by_reason"] == {"number_too_long": 1} and report["rows_written"] == 1
  path.write_bytes(b"[" + _row("g1") + b", " + b"[" * 100000 + b"]" * 100000 + b"]")
  with pytest.raises(ValueError, match=r"rows\.json: nested deeper than"):
    build([str(path)], "openrubrics", str(tmp_path / "out2"))


def test_skip_examples_keep_the_first_three(tmp_path):
  path = tmp_path / "ties.jsonl"
  path.write_bytes(b"\n".join([_row("g")] + [_row(f"t{i}", winner="tie") for i in range(5)]))
  report = build([str(path)], "openrubrics", str(tmp_path / "out"))
  assert report["skipped_by_reason"] == {"tie": 5}
  assert [e["line"] for e in report["skip_examples"]["tie"]] == [2, 3, 4]


def test_strict_names_file_line_and_field_and_leaves_nothing(tmp_path):
  path = _write_mixed(tmp_path)
  out = tmp_path / "out"
  with pytest.raises(BuildError, match=r"mixed\.jsonl:2, field 'response_b': missing_field"):
    build([path], "openrubrics", str(out), strict=True)
  assert sorted(os.listdir(tmp_path)) == ["mixed.jsonl"]


def test_truncate_policy_cuts_to_the_budget(tmp_path):
  path = tmp_path / "long.jsonl"
  path.write_bytes(b"\n".join([
      _row("l1", response_a="one two  three four five", response_b="six"),
      _row("l2", response_a="one", response_b="two")]))
  report = build([str(path)], "openrubrics", str(tmp_path / "out"),
                 budget=TokenBudget(_tokenizer(), max_tokens=3, truncate=True))
  assert (report["rows_written"], report["rows_truncated"], report["rows_skipped"]) == (2, 1, 0)
  assert report["token_budget"]["policy"] == "truncate"
  got = {r.id: (r.response_a, r.response_b) for r in read_records(str(tmp_path / "out"))}
  assert got == {"l1": ("one two  three", "six"), "l2": ("one", "two")}


def test_json_and_parquet_inputs_share_ids_across_files(tmp_path):
  def chat(question, answer):
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
  rows = [{"prompt": f"Q{i}", "prompt_id": f"p{i}", "score_chosen": 8.0, "score_rejected": 1.0,
           "chosen": chat(f"Q{i}", "y"), "rejected": chat(f"Q{i}", "n")} for i in range(3)]
  pq.write_table(pa.Table.from_pylist(rows), tmp_path / "uf.parquet")
  (tmp_path / "uf.json").write_text(json.dumps(rows[1:] + [{"prompt": "no chats"}]))
  report = build([str(tmp_path / "uf.parquet"), str(tmp_path / "uf.json")],
                 "ultrafeedback_binarized", str(tmp_path / "out"))
  assert (report["rows_read"], report["rows_written"]) == (6, 3)
  assert report["skipped_by_reason"] == {"duplicate_id": 2, "missing_field": 1}
  assert report["skip_examples"]["missing_field"][0]["line"] == 3
  prompts = sorted(r.prompt[0]["content"] for r in read_records(str(tmp_path / "out")))
  assert prompts == ["Q0", "Q1", "Q2"]


def test_output_directory_rules(tmp_path):
  path = tmp_path / "one.jsonl"
  path.write_bytes(_row("g1"))
  out = tmp_path / "out"
  build([str(path)], "openrubrics", str(out))
  with pytest.raises(FileExistsError):
    build([str(path)], "openrubrics", str(out))
  path.write_bytes(_row("g2"))
  build([str(path)], "openrubrics", str(out), overwrite=True)
  assert [r.id for r in read_records(str(out))] == ["g2"]
  path.write_bytes(_row("t", winner="tie"))
  with pytest.raises(BuildError, match="no valid rows"):
    build([str(path)], "openrubrics", str(tmp_path / "empty"))
  assert sorted(os.listdir(tmp_path)) == ["one.jsonl", "out"]


def test_cli_strict_fails_then_builds_with_tokenizer_dir(tmp_path):
  path = _write_mixed(tmp_path)
  _tokenizer().save_pretrained(tmp_path / "tok")
  run = [sys.executable, "-m", "arm_jax.data.build", "--input", path, "--format", "openrubrics",
         "--out", str(tmp_path / "out")]
  env = {**os.environ, "PYTHONPATH": REPO}
  strict = subprocess.run(run + ["--strict"], capture_output=True, text=True, env=env, check=False)
  assert strict.returncode == 1
  assert f"{path}:2, field 'response_b': missing_field" in strict.stderr
  assert not (tmp_path / "out").exists()
  ok = subprocess.run(run + ["--max_tokens", "5", "--tokenizer", str(tmp_path / "tok")],
                      capture_output=True, text=True, env=env, check=False)
  assert ok.returncode == 0, ok.stderr
  with open(tmp_path / "out" / "build_report.json", encoding="utf-8") as f:
    report = json.load(f)
  assert report["skipped_by_reason"] == MIXED_COUNTS and report["rows_written"] == 2
  assert report["token_budget"]["max_tokens"] == 5


def test_openrubrics_keeps_its_general_domain_sources_and_counts_each(tmp_path):
  """The default selection drops MegaScience and Medical-o1; --subsets all keeps them; a row
  without a source is kept; the report counts written and excluded records per source."""
  sources = ["UltraFeedback", "magpie_pro", "Skywork-Preference", "HelpSteer2", "OffsetBias",
             "Synthetic-IF", "MegaScience", "Medical-o1", "UltraFeedback", ""]
  rows = [_row(f"r{i}", **({"source": s} if s else {})) for i, s in enumerate(sources)]
  path = tmp_path / "openrubrics.jsonl"
  path.write_bytes(b"\n".join(rows) + b"\n")
  report = build([str(path)], "openrubrics", str(tmp_path / "general"))
  assert report["written_by_subset"] == {"": 1, "HelpSteer2": 1, "OffsetBias": 1,
                                         "Skywork-Preference": 1, "Synthetic-IF": 1,
                                         "UltraFeedback": 2, "magpie_pro": 1}
  assert report["excluded_by_subset"] == {"MegaScience": 1, "Medical-o1": 1}
  assert report["skipped_by_reason"] == {"excluded_subset": 2} and report["rows_written"] == 8
  everything = build([str(path)], "openrubrics", str(tmp_path / "all"),
                     options=ConvertOptions(source="openrubrics", subsets=()), strict=True)
  assert everything["rows_written"] == 10 and everything["subsets_selected"] == "all"
  only = build([str(path)], "openrubrics", str(tmp_path / "medical"), strict=True,
               options=ConvertOptions(source="openrubrics", subsets=("medical",)))
  assert only["written_by_subset"] == {"": 1, "Medical-o1": 1}
  assert sorted(r.subset for r in read_records(str(tmp_path / "medical"))) == ["", "Medical-o1"]
