"""Jobs that main.py runs, selected by `config.job`."""

from __future__ import annotations

import json
import os
import time

import ml_collections
from absl import logging

from arm_jax import assets, config_sections, multihost
from arm_jax import sharding as sharding_lib
from arm_jax.downstream.job import run_policy
from arm_jax.evaluate import run_evaluate
from arm_jax.generate import generate_texts, sampling_from_flags
from arm_jax.models import load_pretrained
from arm_jax.tokenizer import load_tokenizer
from arm_jax.training.loop import run_train


def run_generate(config: ml_collections.ConfigDict, workdir: str) -> list[dict]:
  """Loads the model into the config's mesh, generates for each prompt, writes JSONL."""
  path = config.model.path or assets.smollm2_gguf()
  mesh, rules = sharding_lib.mesh_and_rules(config)
  start = time.time()
  model, params = load_pretrained(path, dtype=config.model.dtype, mesh=mesh, rules=rules)
  tokenizer = load_tokenizer(path)
  logging.info("loaded %s (%.1fM params) on mesh %s in %.1fs", path,
               model.config.num_params / 1e6, dict(mesh.shape), time.time() - start)
  s = config.sampling
  sampling = sampling_from_flags(s.max_new_tokens, s.temperature, s.top_p, s.top_k)
  start = time.time()
  texts = generate_texts(model, params, tokenizer, list(config.prompts), sampling, config.seed,
                         config.chat, s.num_samples)
  seconds = time.time() - start
  records = [{"prompt": config.prompts[i // s.num_samples], "sample": i % s.num_samples,
              "completion": text} for i, text in enumerate(texts)]
  if not multihost.is_main():  # every process holds the same texts; process 0 writes them
    return records
  for r in records:
    print(f"### {r['prompt']}\n{r['completion']}\n")
  os.makedirs(workdir, exist_ok=True)
  out = os.path.join(workdir, "generations.jsonl")
  with open(out, "w") as f:
    for r in records:
      f.write(json.dumps(r) + "\n")
  print(f"{len(records)} completions in {seconds:.1f}s (including compilation) -> {out}")
  return records


JOBS = {"generate": run_generate, "train": run_train, "evaluate": run_evaluate,
        "policy": run_policy}


def run(config: ml_collections.ConfigDict, workdir: str):
  """Validates the config (arm_jax.config_sections: unknown keys, types, allowed values), then
  runs its job; nothing loads before the config is accepted."""
  config = config_sections.validate(config)
  return JOBS[config.job](config, workdir)
