"""A policy's IFEval scores: greedy responses to the 541 prompts, the offline checker, the
paper's four columns and their average (arm_jax.evaluation.ifeval_policy).

  python experiments/ifeval_policy.py [--model PATH] [--max_new_tokens 512] [--batch_size 16]
      [--limit 0] [--out runs/ifeval_smollm2]

With no --model: the shipped SmolLM2-135M-Instruct. Writes responses.jsonl (prompt, response,
tokens, truncated, strict and loose per instruction) and results.json into --out, and prints the
table, the settings and the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--model", default="", help="HF directory or .gguf; default: shipped SmolLM2")
  p.add_argument("--max_new_tokens", type=int, default=512)
  p.add_argument("--batch_size", type=int, default=16)
  p.add_argument("--limit", type=int, default=0, help="first N prompts; 0 = all 541")
  p.add_argument("--out", default="runs/ifeval_policy")
  args = p.parse_args()

  from arm_jax import assets, xla_options  # noqa: PLC0415
  xla_options.configure_process()
  from arm_jax.data import ifeval  # noqa: PLC0415
  from arm_jax.evaluation import ifeval_policy  # noqa: PLC0415
  from arm_jax.models import load_pretrained  # noqa: PLC0415
  from arm_jax.prompts import load_template  # noqa: PLC0415
  from arm_jax.rl.policy import Policy  # noqa: PLC0415
  from arm_jax.tokenizer import load_tokenizer  # noqa: PLC0415

  path = args.model or assets.smollm2_gguf()
  model, params = load_pretrained(path)
  tokenizer = load_tokenizer(path)
  policy = Policy("policy", model, tokenizer, load_template("judge", "judge"), params)
  inputs = ifeval.read_prompts()
  inputs = inputs[:args.limit] if args.limit else inputs
  start = time.perf_counter()
  responses, gen_seconds = ifeval_policy.generate(
      policy, [i.prompt for i in inputs], max_new_tokens=args.max_new_tokens,
      batch_size=args.batch_size)
  result = ifeval_policy.score(inputs, [r.text for r in responses])
  seconds = time.perf_counter() - start
  settings = dict(model=path, greedy=True, chat_template=True,
                  max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                  stop="the model's eos tokens", prompts=len(inputs),
                  truncated=sum(r.truncated for r in responses),
                  mean_tokens=sum(r.tokens for r in responses) / len(responses),
                  generation_seconds=gen_seconds, total_seconds=seconds)
  os.makedirs(args.out, exist_ok=True)
  per_prompt = result.pop("per_prompt")
  with open(os.path.join(args.out, "responses.jsonl"), "w", encoding="utf-8") as f:
    for inp, r, verdicts in zip(inputs, responses, per_prompt):
      f.write(json.dumps(dict(key=inp.key, prompt=inp.prompt, response=r.text, tokens=r.tokens,
                              truncated=r.truncated, instructions=inp.instruction_id_list,
                              **verdicts)) + "\n")
  with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
    json.dump(dict(settings=settings, **result), f, indent=1)
  print(ifeval_policy.table(result))
  print(json.dumps(settings))
  print(f"outputs in {args.out}: responses.jsonl, results.json")


if __name__ == "__main__":
  main()
