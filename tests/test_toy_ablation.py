"""experiments/toy_ablation.py's per-run summary against hand-computed figures."""

import importlib.util
import math
import os

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments",
                     "toy_ablation.py")
_spec = importlib.util.spec_from_file_location("toy_ablation", _PATH)
toy_ablation = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy_ablation)


def test_summary_takes_round_0_and_the_last_eval_and_averages_defined_variances():
  records = [
      {"phase": "sft", "loss": 1.0},
      {"phase": "eval", "round": 0, "judge_accuracy": 0.6, "rubric_exact": 0.1},
      {"phase": "judge", "grad_variance": 1.0}, {"phase": "judge", "grad_variance": None},
      {"phase": "judge", "grad_variance": 3.0}, {"phase": "generator", "grad_variance": 0.5},
      {"phase": "eval", "round": 1, "judge_accuracy": 0.65},
      {"phase": "generator", "grad_variance": float("nan")},
      {"phase": "eval", "round": 2, "judge_accuracy": 0.7, "rubric_exact": 0.9,
       "judge_evidence": 0.8},
      {"phase": "done"}]
  assert toy_ablation.summarise(records) == dict(
      final=0.7, round0=0.6, grad_variance_judge=2.0, grad_variance_generator=0.5,
      rubric_exact=0.9, judge_evidence=0.8)
  no_reading = toy_ablation.summarise(records[:7])
  assert no_reading["final"] == 0.65 and no_reading["judge_evidence"] is None
  assert math.isnan(toy_ablation.summarise(records[1:2] + records[6:7])["grad_variance_judge"])
