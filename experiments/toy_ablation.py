"""The toy default over seeds, timed, and its ablations: schedule order and the judge's format
reward.

Per seed, the README command's config runs in full (`main.py --config configs/toy.py
--config.seed=S --config.data.seed=S`, workdir --out/default_seed<S>) and its wall time is
taken; that run is the judge_first variant (the paper's setting). The other variants differ
only after the warm start, so they start their RL from that run's warm-start checkpoint
(`--config.init_from=... --config.init_from_checkpoint=warm_start`, no warm-start steps), which
ends bit-identical to a full run of the variant (tests/test_train_resume.py). A finished workdir
is reused (its wall time is kept in wall_seconds.json), so re-running the script resumes or
skips. Writes --out/ablation.md and ablation.json: per seed the default's wall time, round-0 and
final held-out judge_accuracy; per variant the final judge_accuracy (mean and each seed), the
gain over round 0, the mean gradient variance of the judge and generator phases (steps where it
is defined), and the final rubric_exact and judge_evidence (arm_jax.toy.diagnostics: does the
pair of policies read).

  python experiments/toy_ablation.py [--seeds 0 1 2] [--out experiments/toy_ablation]
      [--override warmstart.steps=100 ...]

Variants: judge_first + binary format reward (the default), generator_first + binary,
judge_first without the format reward.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = {
    "judge_first": {"schedule.order": "judge_first", "rewards.format_reward": "binary"},
    "generator_first": {"schedule.order": "generator_first", "rewards.format_reward": "binary"},
    "no_format_reward": {"schedule.order": "judge_first", "rewards.format_reward": "none"},
}


def run(workdir: str, seed: int, overrides: dict) -> tuple[list[dict], float]:
  """(metrics records, wall seconds of the command); a finished workdir is not re-run and keeps
  the wall time of the run that finished it."""
  cmd = [sys.executable, os.path.join(REPO, "main.py"), "--config",
         os.path.join(REPO, "configs", "toy.py"), "--workdir", workdir, f"--config.seed={seed}",
         f"--config.data.seed={seed}"]
  cmd += [f"--config.{k}={v}" for k, v in overrides.items()]
  timing = os.path.join(workdir, "wall_seconds.json")
  if not os.path.isfile(timing):
    print(" ".join(cmd[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(timing, "w", encoding="utf-8") as f:
      json.dump({"seconds": time.perf_counter() - start, "command": cmd[1:]}, f)
  with open(timing, encoding="utf-8") as f:
    seconds = json.load(f)["seconds"]
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f], seconds


def _mean(xs):
  xs = [x for x in xs if x is not None and math.isfinite(x)]
  return statistics.fmean(xs) if xs else float("nan")


def summarise(records: list[dict]) -> dict:
  evals = [r for r in records if r["phase"] == "eval"]
  grad_var = {phase: _mean([r.get("grad_variance") for r in records if r["phase"] == phase])
              for phase in ("judge", "generator")}
  return dict(final=evals[-1]["judge_accuracy"], round0=evals[0]["judge_accuracy"],
              grad_variance_judge=grad_var["judge"],
              grad_variance_generator=grad_var["generator"],
              rubric_exact=evals[-1].get("rubric_exact"),
              judge_evidence=evals[-1].get("judge_evidence"))


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  p.add_argument("--out", default=os.path.join(REPO, "experiments", "toy_ablation"))
  p.add_argument("--override", nargs="*", default=[],
                 help="extra config overrides KEY=VALUE for every run")
  args = p.parse_args()
  extra = dict(kv.split("=", 1) for kv in args.override)
  results, defaults = {}, []
  for seed in args.seeds:
    records, seconds = run(os.path.join(args.out, f"default_seed{seed}"), seed, extra)
    defaults.append(dict(seed=seed, seconds=seconds, **summarise(records)))
  from_warm = {"warmstart.steps": 0, "warmstart.generator_steps": 0,
               "init_from_checkpoint": "warm_start"}
  for name, variant in VARIANTS.items():
    if name == "judge_first":  # the default itself
      results[name] = [{k: v for k, v in r.items() if k != "seconds"} for r in defaults]
      continue
    per_seed = []
    for seed in args.seeds:
      workdir = os.path.join(args.out, f"{name}_seed{seed}")
      overrides = {**extra, **variant, **from_warm,
                   "init_from": os.path.join(args.out, f"default_seed{seed}")}
      per_seed.append(dict(seed=seed, **summarise(run(workdir, seed, overrides)[0])))
    results[name] = per_seed
  seed_rows = ["| seed | wall time of the README config | round 0 judge_accuracy | final | gain |",
               "|---|---|---|---|---|"]
  for r in defaults:
    seed_rows.append(f"| {r['seed']} | {r['seconds']:.0f} s | {r['round0']:.3f} | "
                     f"{r['final']:.3f} | {100 * (r['final'] - r['round0']):+.1f} points |")
  rows = ["| variant | final judge_accuracy (mean) | per seed | gain over round 0 | "
          "grad variance judge | grad variance generator | rubric_exact | judge_evidence |",
          "|---|---|---|---|---|---|---|---|"]
  for name, per_seed in results.items():
    finals = [r["final"] for r in per_seed]
    gains = [r["final"] - r["round0"] for r in per_seed]
    rows.append(
        f"| {name} | {statistics.fmean(finals):.3f} | "
        f"{', '.join(f'{x:.3f}' for x in finals)} | {statistics.fmean(gains):+.3f} | "
        f"{_mean([r['grad_variance_judge'] for r in per_seed]):.3f} | "
        f"{_mean([r['grad_variance_generator'] for r in per_seed]):.3f} | "
        f"{_mean([r['rubric_exact'] for r in per_seed]):.3f} | "
        f"{_mean([r['judge_evidence'] for r in per_seed]):.3f} |")
  table = "\n".join(seed_rows) + "\n\n" + "\n".join(rows)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "ablation.md"), "w") as f:
    f.write(table + "\n")
  with open(os.path.join(args.out, "ablation.json"), "w") as f:
    json.dump(dict(default=defaults, variants=results), f, indent=1)
  print(table)


if __name__ == "__main__":
  main()
