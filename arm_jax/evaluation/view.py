"""What a rubric reward model wrote, as one self-contained HTML page: an evaluation's summary table,
then one row per (system, example) with the instruction, the responses (the preferred one
marked), the rubric and every judgment in every order, the verdict highlighted against the
label.

  python -m arm_jax.evaluation.view --workdir DIR [--out FILE]

DIR is an arm_jax.evaluate output directory (results.json and predictions.jsonl; a training run's
held-out pairs are evaluated into one by the benchmark kind "held_out"). The page is written to
DIR/view.html unless --out says otherwise; it loads nothing from the network.

Filters (also settable from the page's address, e.g. view.html#wrong=1&system=trained, so a view
can be shared): system, benchmark, subset, "wrong only" (the table's order judged wrongly: Mixed
when it ran, else the first order run; the first sample of each comparison), "order
disagreements" (Ord-1 and Ord-2 both ran, both parsed and preferred different responses: the
verdict followed the position, not the content) and "parse failures" (some judgment of the row
has no Winner line). The count of rows shown is kept in #shown.

In a notebook: `IPython.display.HTML(view.page(DIR))`, or `view.write(DIR)` and open the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import os
import sys
from typing import Any, Optional, Sequence

from arm_jax.evaluation.metrics import ORDER_LABELS

ORDER_NAMES = ORDER_LABELS  # order -> the table's label (Mixed, Ord-1, Ord-2)


@dataclasses.dataclass
class Row:
  """One (system, example): its predictions by order."""
  system: str
  benchmark: str
  id: str
  subset: str
  instruction: str
  candidates: list[str]
  preferred: int
  rubric: Optional[str]
  by_order: dict[str, dict]

  def table_order(self) -> str:
    return "mixed" if "mixed" in self.by_order else next(iter(self.by_order))

  @property
  def wrong(self) -> bool:
    return not self.by_order[self.table_order()]["correct"]

  @property
  def parse_failure(self) -> bool:
    return any(v is None for p in self.by_order.values() for vs in p["verdicts"] for v in vs)

  @property
  def order_disagreement(self) -> bool:
    """Ord-1 and Ord-2 each parsed and, in some comparison, picked different responses."""
    if "ord1" not in self.by_order or "ord2" not in self.by_order:
      return False
    picks = []
    for order in ("ord1", "ord2"):
      p = self.by_order[order]
      picks.append({tuple(sorted(shown)): (None if vs[0] is None else shown["AB".index(vs[0])])
                    for shown, vs in zip(p["shown"], p["verdicts"])})
    return any(picks[0][k] is not None and picks[1].get(k) is not None and
               picks[0][k] != picks[1][k] for k in picks[0])


def read_predictions(path: str) -> tuple[list[dict], dict[str, int]]:
  """The rows of predictions.jsonl, and the lines skipped by reason (each named on stderr)."""
  need = ("system", "id", "benchmark", "order", "shown", "label", "judgments", "verdicts",
          "correct")
  rows, skipped = [], {}
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as err:
        reason, detail = "not_json", str(err)
      else:
        missing = [k for k in need if not isinstance(row, dict) or k not in row]
        if not missing and "instruction" not in row:
          missing = ["instruction", "candidates"]  # written before the texts were kept
        if not missing:
          rows.append(row)
          continue
        reason, detail = "missing_fields", f"no {', '.join(missing)}"
      skipped[reason] = skipped.get(reason, 0) + 1
      print(f"{path}:{number}: skipped ({detail})", file=sys.stderr)
  return rows, skipped


def group(predictions: Sequence[dict]) -> list[Row]:
  """Rows per (system, benchmark, id), in the file's order."""
  rows: dict[tuple[str, str, str], Row] = {}
  for p in predictions:
    key = (p["system"], p["benchmark"], str(p["id"]))
    if key not in rows:
      rows[key] = Row(p["system"], p["benchmark"], str(p["id"]), p.get("subset", ""),
                      p["instruction"], list(p["candidates"]), int(p.get("preferred", -1)),
                      p.get("rubric"), {})
    rows[key].by_order[p["order"]] = p
  return list(rows.values())


def load(workdir: str) -> tuple[dict, list[Row], dict[str, int]]:
  """(results.json, rows, skipped prediction lines by reason) of an evaluation directory."""
  paths = {name: os.path.join(workdir, name) for name in ("results.json", "predictions.jsonl")}
  missing = [p for p in paths.values() if not os.path.isfile(p)]
  if missing:
    raise FileNotFoundError(f"{workdir} is not an evaluation directory: no "
                            f"{', '.join(os.path.basename(m) for m in missing)} (write one with "
                            "python -m arm_jax.evaluate --config ... --workdir DIR)")
  with open(paths["results.json"], encoding="utf-8") as f:
    results = json.load(f)
  predictions, skipped = read_predictions(paths["predictions.jsonl"])
  if not predictions:
    raise ValueError(f"{paths['predictions.jsonl']} has no readable prediction "
                     f"(skipped: {skipped})")
  return results, group(predictions), skipped


# --- HTML -------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.2em;color:#222}
table.summary{border-collapse:collapse;margin-bottom:1em}
table.summary td,table.summary th{border:1px solid #bbb;padding:.2em .6em;text-align:right}
table.summary th:first-child,table.summary td:first-child{text-align:left}
#filters{position:sticky;top:0;background:#f4f4f4;padding:.5em;border:1px solid #ccc;z-index:1}
#filters label{margin-right:1em}
.row{border:1px solid #ccc;border-left:6px solid #2a2;margin:.8em 0;padding:.5em}
.row.wrong{border-left-color:#c22}
.meta{font-size:.9em;color:#555}
.cands{display:flex;gap:.8em}
.cand{flex:1;min-width:0;background:#fafafa;border:1px solid #ddd;padding:.3em}
.cand.preferred{border-color:#2a2;background:#f3fbf3}
pre{white-space:pre-wrap;word-wrap:break-word;margin:.2em 0;font-size:.85em}
.judgment{border-top:1px dashed #ccc;margin-top:.3em}
mark.ok{background:#bfeabf}mark.bad{background:#f5b5b5}mark.none{background:#f5e0a0}
.tag{display:inline-block;padding:0 .4em;border-radius:.3em;font-size:.8em;margin-left:.3em}
.tag.bad{background:#f5b5b5}.tag.ok{background:#bfeabf}.tag.warn{background:#f5e0a0}
"""

# Filters from the controls (and the address's #key=value&... on load); rows hidden with
# style.display = "none"; the count shown in #shown.
_JS = """
(function(){
  var keys=["system","benchmark","subset","wrong","disagree","parse"];
  function control(k){return document.getElementById("f-"+k);}
  function value(k){var c=control(k);return c.type==="checkbox"?(c.checked?"1":""):c.value;}
  function apply(){
    var rows=document.querySelectorAll("div.row"),n=0;
    for(var i=0;i<rows.length;i++){
      var r=rows[i],show=true;
      for(var j=0;j<3;j++){var v=value(keys[j]);if(v&&r.dataset[keys[j]]!==v)show=false;}
      for(var j=3;j<6;j++){if(value(keys[j])&&r.dataset[keys[j]]!=="1")show=false;}
      r.style.display=show?"":"none";if(show)n++;
    }
    document.getElementById("shown").textContent=String(n);
    var h=[];for(var k=0;k<keys.length;k++){var v=value(keys[k]);if(v)h.push(keys[k]+"="+encodeURIComponent(v));}
    try{history.replaceState(null,"",h.length?"#"+h.join("&"):location.pathname+location.search);}catch(e){}
  }
  var params=location.hash.replace(/^#/,"").split("&");
  for(var i=0;i<params.length;i++){
    var kv=params[i].split("="),c=kv.length===2?control(kv[0]):null;if(!c)continue;
    var v=decodeURIComponent(kv[1]);if(c.type==="checkbox")c.checked=v==="1";else c.value=v;
  }
  for(var k=0;k<keys.length;k++)control(keys[k]).addEventListener("change",apply);
  apply();
})();
"""


def _e(text: Any) -> str:
  return html.escape("" if text is None else str(text), quote=True)


def _pct(value: Any) -> str:
  return "-" if value is None else f"{100 * value:.1f}"


def summary_table(results: dict) -> str:
  table = results.get("table")
  if not table:
    return ""
  # Columns no row evaluated (the paper's benchmarks this run did not read) are left out.
  columns = [c for c in table["columns"]
             if c == "Avg" or any(r["cells"].get(c) is not None for r in table["rows"])]
  head = "".join(f"<th>{_e(c)}</th>" for c in ["system", *columns])
  body = "".join("<tr><td>" + _e(r["system"]) + "</td>" + "".join(
      f"<td>{_pct(r['cells'].get(c))}</td>" for c in columns) + "</tr>"
                 for r in table["rows"])
  order = ORDER_NAMES.get(table.get("order", ""), table.get("order", ""))
  return (f"<p>Pairwise accuracy (%), {_e(order)} order.</p><table class='summary'>"
          f"<tr>{head}</tr>{body}</table>")


def _judgment(text: str, verdict: Optional[str], label: str) -> str:
  """The judgment with its Winner line marked: green when it names the label, red when the
  other response, amber when there is none."""
  cls = "none" if verdict is None else "ok" if verdict == label else "bad"
  lines = [_e(line) for line in (text or "").split("\n")]
  if verdict is not None:  # the last Winner line is the one parsed
    for i in range(len(lines) - 1, -1, -1):
      if lines[i].strip().lower().startswith("winner"):
        lines[i] = f"<mark class='{cls}'>{lines[i]}</mark>"
        break
  out = "\n".join(lines)
  note = "" if verdict is not None else "<mark class='none'>no verdict parsed</mark>\n"
  return f"<pre>{note}{out}</pre>"


def _row(row: Row, n: int) -> str:
  flags = dict(wrong=row.wrong, disagree=row.order_disagreement, parse=row.parse_failure)
  data = " ".join(f"data-{k}='{int(v)}'" for k, v in flags.items())
  tags = "".join(f"<span class='tag {c}'>{t}</span>" for k, t, c in (
      ("wrong", "wrong", "bad"), ("disagree", "order disagreement", "warn"),
      ("parse", "parse failure", "warn")) if flags[k]) or "<span class='tag ok'>right</span>"
  cands = "".join(
      f"<div class='cand{' preferred' if i == row.preferred else ''}'><b>Response {i + 1}"
      f"{' (preferred)' if i == row.preferred else ''}</b><pre>{_e(c)}</pre></div>"
      for i, c in enumerate(row.candidates))
  rubric = ("<i>no rubric (direct judge)</i>" if row.rubric is None else
            f"<details open><summary>Rubric</summary><pre>{_e(row.rubric)}</pre></details>")
  judged = []
  for order, p in row.by_order.items():
    for c, (shown, label) in enumerate(zip(p["shown"], p["label"])):
      head = (f"{_e(ORDER_NAMES.get(order, order))}: A = response {shown[0] + 1}, B = response "
              f"{shown[1] + 1}; label {_e(label)}; verdicts "
              f"{_e(', '.join(v or '-' for v in p['verdicts'][c]))}")
      if p.get("votes") and len(p["verdicts"][c]) > 1:
        head += f"; vote {_e(p['votes'][c])}"
      texts = "".join(_judgment(t, v, label) for t, v in zip(p["judgments"][c], p["verdicts"][c]))
      judged.append(f"<div class='judgment'><details><summary>{head}</summary>{texts}"
                    "</details></div>")
  return (f"<div class='row{' wrong' if row.wrong else ''}' id='r{n}' "
          f"data-system='{_e(row.system)}' data-benchmark='{_e(row.benchmark)}' "
          f"data-subset='{_e(row.subset)}' {data}>"
          f"<div class='meta'>{_e(row.system)} · {_e(row.benchmark)}"
          f"{' / ' + _e(row.subset) if row.subset else ''} · {_e(row.id)}{tags}</div>"
          f"<details open><summary>Instruction</summary><pre>{_e(row.instruction)}</pre>"
          f"</details><div class='cands'>{cands}</div>{rubric}{''.join(judged)}</div>")


def _select(key: str, label: str, values: Sequence[str]) -> str:
  options = "".join(f"<option value='{_e(v)}'>{_e(v)}</option>" for v in values)
  return (f"<label>{label} <select id='f-{key}'><option value=''>all</option>{options}"
          "</select></label>")


def render(results: dict, rows: Sequence[Row], title: str = "",
           skipped: Optional[dict[str, int]] = None) -> str:
  """The page: summary table, filters, rows."""
  def distinct(attr):
    return sorted({getattr(r, attr) for r in rows})

  checks = "".join(f"<label><input type='checkbox' id='f-{k}'> {t}</label>" for k, t in (
      ("wrong", "wrong only"), ("disagree", "order disagreements"),
      ("parse", "parse failures")))
  counts = (f"{sum(r.wrong for r in rows)} wrong, {sum(r.order_disagreement for r in rows)} "
            f"order disagreements, {sum(r.parse_failure for r in rows)} with parse failures")
  skipped_note = (f"<p>Unreadable prediction lines skipped: {_e(json.dumps(skipped))}</p>"
                  if skipped else "")
  return (
      "<!DOCTYPE html><html><head><meta charset='utf-8'>"
      f"<title>{_e(title or 'rubric reward model: evaluation')}</title>"
      f"<style>{_CSS}</style></head><body>"
      f"<h1>{_e(title or 'What the reward model wrote')}</h1>{summary_table(results)}"
      f"{skipped_note}<div id='filters'>{_select('system', 'system', distinct('system'))}"
      f"{_select('benchmark', 'benchmark', distinct('benchmark'))}"
      f"{_select('subset', 'subset', distinct('subset'))}{checks}"
      f"<span><b id='shown'>{len(rows)}</b> of {len(rows)} rows shown ({counts})</span></div>"
      + "".join(_row(r, i) for i, r in enumerate(rows)) +
      f"<script>{_JS}</script></body></html>")


def page(workdir: str) -> str:
  results, rows, skipped = load(workdir)
  return render(results, rows, title=f"Evaluation in {os.path.abspath(workdir)}",
                skipped=skipped)


def write(workdir: str, out: str = "") -> str:
  """Writes the page (default DIR/view.html); returns its path."""
  out = out or os.path.join(workdir, "view.html")
  text = page(workdir)
  tmp = out + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, out)
  return out


def main(argv: Optional[Sequence[str]] = None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--workdir", required=True, help="an arm_jax.evaluate output directory")
  ap.add_argument("--out", default="", help="the HTML file; '' = WORKDIR/view.html")
  args = ap.parse_args(argv)
  try:
    path = write(args.workdir, args.out)
  except (FileNotFoundError, ValueError) as err:
    raise SystemExit(f"error: {err}") from None
  print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
