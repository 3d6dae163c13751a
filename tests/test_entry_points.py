"""main.py and `python -m arm_jax.generate` run end to end on the shipped SmolLM2."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, cwd):
  env = dict(os.environ, XLA_FLAGS="")  # one CPU device, as a user's laptop
  proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def test_main_runs_generate_config_and_writes_generations(tmp_path):
  out = _run([os.path.join(REPO, "main.py"), "--config",
              os.path.join(REPO, "configs", "generate.py"), "--workdir", str(tmp_path),
              "--config.sampling.max_new_tokens=12"], cwd=str(tmp_path))
  records = [json.loads(l) for l in open(tmp_path / "generations.jsonl")]
  assert len(records) == 3
  assert "Paris" in records[0]["completion"]  # greedy SmolLM2 answers the capital question
  assert all(r["completion"].strip() for r in records)
  assert "3 completions" in out


@pytest.mark.slow  # main.py's generate job (above) runs the same generation in the default tier
def test_generate_cli_prints_one_completion_per_prompt(tmp_path):
  out = _run(["-m", "arm_jax.generate", "--chat", "--prompt", "What is the capital of France?",
              "--prompt", "Say hello.", "--max_new_tokens", "10", "--temperature", "0.8",
              "--top_p", "0.9", "--seed", "3"], cwd=REPO)
  lines = [l for l in out.splitlines() if l.strip()]
  assert len(lines) >= 2
  assert not any("<|im_end|>" in l for l in lines)
