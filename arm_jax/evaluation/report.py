"""The evaluator's outputs: the docs/method.md §7 table as Markdown and CSV, every number as JSON,
per-example predictions as JSONL, and a bar chart.

Table layout: docs/method.md §7's columns in its order (Chat ... HS3), then Avg, then any other
benchmark in the order the config names them. A cell is the accuracy (%) in the table order
(Mixed unless the config runs other orders only); benchmarks not evaluated are "-" in Markdown
and empty in CSV. Avg is the unweighted mean over the benchmarks this row evaluated, which
matches the paper's Avg only when all ten paper columns are present (said in a footnote). Each
system is one row; a system with votes k > 1 adds a "<name> voting@k" row.
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any, Optional, Sequence

from arm_jax.evaluation.benchmarks import PAPER_COLUMNS, column_label
from arm_jax.evaluation.metrics import ORDER_LABELS

FILES = {"markdown": "results.md", "csv": "results.csv", "json": "results.json",
         "predictions": "predictions.jsonl", "plot": "results.png"}


def table_order(orders: Sequence[str]) -> str:
  return "mixed" if "mixed" in orders else orders[0]


def columns(benchmarks: Sequence[str]) -> list[str]:
  """Benchmark names in table order: the paper's ten, "Avg", then the others as configured."""
  paper = [name for name, _ in PAPER_COLUMNS]
  return paper + ["Avg"] + [b for b in benchmarks if b not in paper]


def table_rows(results: dict, benchmarks: Sequence[str], order: str) -> list[dict]:
  """[{"system": label, "cells": {benchmark: accuracy or None, "Avg": mean}}] in row order."""
  rows = []
  for name, system in results["systems"].items():
    variants = [(name, "accuracy")]
    if system["votes"] > 1:
      variants.append((f"{name} voting@{system['votes']}", "voting_accuracy"))
    for label, key in variants:
      cells: dict[str, Optional[float]] = {}
      for b in benchmarks:
        run = system["benchmarks"].get(b)
        cells[b] = None if run is None else run["orders"][order][key]
      evaluated = [v for v in cells.values() if v is not None]
      cells["Avg"] = sum(evaluated) / len(evaluated) if evaluated else None
      rows.append(dict(system=label, cells=cells))
  return rows


def _pct(value: Optional[float], empty: str, digits: int = 1) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return empty
  return f"{100 * value:.{digits}f}"


def _finite(value: Any) -> Any:
  """JSON without NaN/Infinity (not valid JSON): non-finite floats become null."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: _finite(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_finite(v) for v in value]
  return value


def write_csv(path: str, rows: Sequence[dict], cols: Sequence[str]) -> None:
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["system"] + [column_label(c) for c in cols])
    for row in rows:
      writer.writerow([row["system"]] + [_pct(row["cells"].get(c), "", 2) for c in cols])


def _details(results: dict, benchmarks: Sequence[str], orders: Sequence[str]) -> list[str]:
  """Per system and benchmark: every order, position bias, voting ties, parse failures,
  lengths and time."""
  head = (["system", "benchmark", "n"] + [ORDER_LABELS[o] for o in orders] +
          ["all samples", "position bias", "vote ties", "parse fail %", "rubric tok",
           "judgment tok", "s / 100 prompts"])
  order = table_order(orders)
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for name, system in results["systems"].items():
    for b in benchmarks:
      run = system["benchmarks"].get(b)
      if run is None:
        continue
      by_order = run["orders"]
      accs = []
      for o in orders:
        text = _pct(by_order[o]["accuracy"], "-")
        if system["votes"] > 1:
          text += f" (vote {_pct(by_order[o]['voting_accuracy'], '-')})"
        accs.append(text)
      bias = run["position_bias"]
      ties = (", ".join(f"{ORDER_LABELS[o]} {by_order[o]['vote_ties']}" for o in orders)
              if system["votes"] > 1 else "-")
      fails = ", ".join(f"{_pct(by_order[o]['parse_failure_rate'], '-')}" for o in orders)
      rubric = "-" if run["rubric_tokens_mean"] is None else f"{run['rubric_tokens_mean']:.0f}"
      lines.append("| " + " | ".join(
          [name, column_label(b), str(run["examples"])] + accs +
          [_pct(by_order[order]["judgment_accuracy"], "-"),
           _pct(bias["accuracy"], "-", 2) if bias else "-", ties, fails, rubric,
           f"{run['judgment_tokens_mean']:.0f}", f"{run['seconds_per_100']:.1f}"]) + " |")
  return lines


def write_markdown(path: str, results: dict, rows: Sequence[dict], cols: Sequence[str],
                   benchmarks: Sequence[str], orders: Sequence[str]) -> None:
  order = table_order(orders)
  evaluated = [column_label(b) for b in benchmarks]
  lines = ["# Reward-model evaluation", "",
           f"Pairwise accuracy (%), order {ORDER_LABELS[order]}, "
           f"seed {results['settings']['seed']}.",
           "", "| system | " + " | ".join(column_label(c) for c in cols) + " |",
           "|" + "---|" * (len(cols) + 1)]
  for row in rows:
    lines.append(f"| {row['system']} | " + " | ".join(_pct(row["cells"].get(c), "-")
                                                     for c in cols) + " |")
  lines += ["", f"- Avg: unweighted mean over the benchmarks evaluated here "
                f"({', '.join(evaluated)}); \"-\" = not evaluated. The paper's Avg is over all ten "
                "paper columns, so the two compare only when all ten are present.",
            "- Best-of-n benchmarks (RewardBench2): an example counts only when the preferred "
            "candidate wins every pairwise comparison against the others.",
            "- voting@k: majority of k judge samples on one rubric; unparseable samples abstain; "
            "a tie (also: no parsed sample) counts as wrong.",
            "- Unparseable verdicts count as wrong. Times include compilation."]
  lines += [f"- Warning: {w}" for w in results["settings"]["warnings"]]
  lines += ["",
            "## Details", "",
            "Accuracy (%) in each order; all samples = the share of every judge sample (all k "
            f"of each comparison, order {ORDER_LABELS[order]}) naming the preferred response, "
            "as training's held-out judge_accuracy counts; position bias = |Ord-1 - Ord-2| in "
            "points; vote ties "
            "and parse failures (%) per order; mean rubric and judgment lengths in tokens; wall "
            "time per 100 examples (rubric generation plus every judged presentation).", ""]
  lines += _details(results, benchmarks, orders)
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")


def write_plot(path: str, rows: Sequence[dict], benchmarks: Sequence[str]) -> None:
  """Grouped bars: one group per evaluated benchmark plus Avg, one bar per table row."""
  # The Agg canvas, without pyplot's global state, as arm_jax.metrics_log does.
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=import-outside-toplevel
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel

  groups = list(benchmarks) + ["Avg"]
  width = 0.8 / max(len(rows), 1)
  fig = Figure(figsize=(max(6.0, 1.5 * len(groups) + 2), 4), layout="constrained")
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  for i, row in enumerate(rows):
    values = [100 * (row["cells"][g] or 0.0) for g in groups]
    xs = [g + (i - (len(rows) - 1) / 2) * width for g in range(len(groups))]
    bars = ax.bar(xs, values, width, label=row["system"])
    ax.bar_label(bars, fmt="%.1f", fontsize="x-small")
  ax.set_xticks(range(len(groups)), [column_label(g) for g in groups])
  ax.set_ylabel("pairwise accuracy (%)")
  ax.set_ylim(0, 100)
  ax.axhline(50, color="gray", linewidth=0.8, linestyle="--")  # a coin's pairwise accuracy
  ax.legend(fontsize="small")
  fig.savefig(path, dpi=100)


def table_section(results: dict, benchmarks: Sequence[str], orders: Sequence[str]) -> dict:
  """results.json's "table": the order used, the column headers, each row's cells by header."""
  rows = table_rows(results, benchmarks, table_order(orders))
  return dict(order=table_order(orders), columns=[column_label(c) for c in columns(benchmarks)],
              rows=[dict(system=r["system"],
                         cells={column_label(k): v for k, v in r["cells"].items()})
                    for r in rows])


def write_outputs(out_dir: str, results: dict, predictions: Sequence[dict],
                  benchmarks: Sequence[str], orders: Sequence[str]) -> dict[str, str]:
  """Writes every output file into out_dir (results.json with `table_section`); returns
  {kind: path}."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {kind: os.path.join(out_dir, name) for kind, name in FILES.items()}
  cols = columns(benchmarks)
  rows = table_rows(results, benchmarks, table_order(orders))
  results = dict(results, table=table_section(results, benchmarks, orders))
  with open(paths["json"], "w", encoding="utf-8") as f:
    json.dump(_finite(results), f, indent=1, ensure_ascii=False)
  with open(paths["predictions"], "w", encoding="utf-8") as f:
    for p in predictions:
      f.write(json.dumps(_finite(p), ensure_ascii=False) + "\n")
  write_csv(paths["csv"], rows, cols)
  write_markdown(paths["markdown"], results, rows, cols, benchmarks, orders)
  write_plot(paths["plot"], rows, benchmarks)
  return paths
