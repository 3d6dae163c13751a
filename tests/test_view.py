"""arm_jax.evaluation.view: the HTML page of an evaluation, its rows' flags against hand-labelled
predictions, escaping, and (with Chromium installed) the filters run in a real browser."""

import html.parser
import json
import os
import shutil
import subprocess

import pytest

from arm_jax.evaluation import view


def _p(system, id_, order, shown, label, verdicts, subset="s1", rubric="1. Be kind. [Principle]"):
  cands = {"e1": ["good answer", "bad <script>alert(1)</script> answer"],
           "e2": ["first", "second"], "e3": ["x", "y"]}[id_]
  correct = all(v[0] == lab for v, lab in zip(verdicts, label))
  return dict(system=system, id=id_, benchmark="bench", subset=subset, order=order,
              instruction=f"Instruction {id_} & <b>", candidates=cands, preferred=0,
              rubric=rubric, shown=shown, label=label,
              judgments=[[f"--- Final Judgment ---\nWinner: Response {x}" if x else "rambling"
                          for x in v] for v in verdicts],
              verdicts=verdicts, votes=[v[0] for v in verdicts], correct=correct,
              voted_correct=None)


# Hand-labelled: e1 right in every order; e2 always says A (right in Ord-1, wrong in Ord-2 and
# in Mixed, which showed it as Ord-2 did): wrong and an order disagreement; e3 has no verdict in
# Mixed and Ord-1: wrong, a parse failure, not a disagreement (one order did not parse). The
# direct judge ran Mixed only on e1, right.
PREDICTIONS = [
    _p("trained", "e1", "mixed", [[1, 0]], ["B"], [["B"]]),
    _p("trained", "e1", "ord1", [[0, 1]], ["A"], [["A"]]),
    _p("trained", "e1", "ord2", [[1, 0]], ["B"], [["B"]]),
    _p("trained", "e2", "mixed", [[1, 0]], ["B"], [["A"]]),
    _p("trained", "e2", "ord1", [[0, 1]], ["A"], [["A"]]),
    _p("trained", "e2", "ord2", [[1, 0]], ["B"], [["A"]]),
    _p("trained", "e3", "mixed", [[0, 1]], ["A"], [[None]], subset="s2"),
    _p("trained", "e3", "ord1", [[0, 1]], ["A"], [[None]], subset="s2"),
    _p("trained", "e3", "ord2", [[1, 0]], ["B"], [["B"]], subset="s2"),
    _p("direct", "e1", "mixed", [[0, 1]], ["A"], [["A"]], rubric=None),
]
RESULTS = {"table": {"order": "mixed", "columns": ["bench", "Avg"], "rows": [
    {"system": "trained", "cells": {"bench": 1 / 3, "Avg": 1 / 3}},
    {"system": "direct", "cells": {"bench": 1.0, "Avg": 1.0}}]}}


@pytest.fixture()
def evaluation(tmp_path):
  (tmp_path / "results.json").write_text(json.dumps(RESULTS))
  lines = [json.dumps(p) for p in PREDICTIONS]
  lines.insert(3, "{not json")
  (tmp_path / "predictions.jsonl").write_text("\n".join(lines) + "\n")
  return tmp_path


def test_rows_and_their_flags_match_the_hand_labels(evaluation, capsys):
  results, rows, skipped = view.load(str(evaluation))
  assert skipped == {"not_json": 1}
  assert "predictions.jsonl:4: skipped" in capsys.readouterr().err
  flags = {(r.system, r.id): (r.wrong, r.order_disagreement, r.parse_failure) for r in rows}
  assert flags == {("trained", "e1"): (False, False, False),
                   ("trained", "e2"): (True, True, False),
                   ("trained", "e3"): (True, False, True),
                   ("direct", "e1"): (False, False, False)}
  assert [list(r.by_order) for r in rows][:1] == [["mixed", "ord1", "ord2"]]


def test_the_page_escapes_what_models_and_data_wrote(evaluation):
  text = view.page(str(evaluation))
  assert "<script>alert(1)</script>" not in text
  assert "bad &lt;script&gt;alert(1)&lt;/script&gt; answer" in text
  assert "Instruction e1 &amp; &lt;b&gt;" in text
  assert text.count("<div class='row") == 4
  # The verdicts marked against the label: e2's Ord-2 "Winner: Response A" is red.
  assert "<mark class='bad'>Winner: Response A</mark>" in text
  assert "<mark class='ok'>Winner: Response B</mark>" in text
  assert text.count("no verdict parsed") == 2
  assert "<td>33.3</td>" in text and "<td>100.0</td>" in text  # the summary table
  assert "Unreadable prediction lines skipped" in text


def test_the_command_writes_the_page_and_names_a_directory_without_an_evaluation(evaluation,
                                                                                  tmp_path):
  assert view.main(["--workdir", str(evaluation)]) == 0
  assert (evaluation / "view.html").read_text().startswith("<!DOCTYPE html>")
  with pytest.raises(SystemExit, match="is not an evaluation directory: no results.json, "
                                       "predictions.jsonl"):
    view.main(["--workdir", str(tmp_path / "nothing")])


class _Rows(html.parser.HTMLParser):
  """Rows of a dumped DOM: (id, hidden); and the #shown count."""

  def __init__(self):
    super().__init__()
    self.rows, self.shown, self._in_shown = {}, None, False

  def handle_starttag(self, tag, attrs):
    a = dict(attrs)
    if tag == "div" and "row" in (a.get("class") or "").split():
      self.rows[a["id"]] = "display: none" in (a.get("style") or "")
    self._in_shown = a.get("id") == "shown"

  def handle_data(self, data):
    if self._in_shown:
      self.shown, self._in_shown = int(data), False


def _browser():
  for name in ("chromium", "chromium-browser", "google-chrome"):
    if shutil.which(name):
      return shutil.which(name)
  pytest.skip("no Chromium (apt-get install chromium): the page's filters are not run")


@pytest.mark.parametrize("hash_,visible", [
    ("", {"r0", "r1", "r2", "r3"}),
    ("#wrong=1", {"r1", "r2"}),
    ("#disagree=1", {"r1"}),
    ("#parse=1", {"r2"}),
    ("#subset=s2", {"r2"}),
    ("#system=direct", {"r3"}),
    ("#wrong=1&subset=s1", {"r1"}),
    ("#wrong=1&system=direct", set()),
])
def test_filters_in_a_headless_browser_show_the_rows_they_select(evaluation, hash_, visible):
  browser = _browser()
  path = view.write(str(evaluation))
  out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                        "--dump-dom", "file://" + os.path.abspath(path) + hash_],
                       capture_output=True, text=True, timeout=120, check=True).stdout
  parsed = _Rows()
  parsed.feed(out)
  assert len(parsed.rows) == 4
  assert {r for r, hidden in parsed.rows.items() if not hidden} == visible
  assert parsed.shown == len(visible)
