"""Text generation from the command line and from configs.

  python -m arm_jax.generate [--model PATH] [--chat] --prompt TEXT [--prompt TEXT ...]
      --max_new_tokens N [--temperature T --top_p P --top_k K --seed S]

With no --model it uses the shipped SmolLM2-135M-Instruct GGUF. Temperature 0 is greedy.
"""

from __future__ import annotations

from typing import Sequence

import jax
from absl import app, flags

from arm_jax import assets, xla_options
from arm_jax.models import load_pretrained
from arm_jax.sampling import (  # noqa: F401  encode_prompts, stop_ids_for: re-exported
    Sampler, SamplingParams, completions_text, encode_prompts, stop_ids_for)
from arm_jax.tokenizer import load_tokenizer


def generate_texts(model, params, tokenizer, prompts: Sequence[str], sampling: SamplingParams,
                   seed: int = 0, chat: bool = True, num_samples: int = 1) -> list[str]:
  sampler = Sampler(model, stop_ids=stop_ids_for(tokenizer, model),
                    pad_id=tokenizer.pad_token_id or 0)
  out = sampler(params, encode_prompts(tokenizer, prompts, chat), sampling,
                jax.random.key(seed), num_samples=num_samples)
  return completions_text(tokenizer, out)


def sampling_from_flags(max_new_tokens: int, temperature: float, top_p: float,
                        top_k: int) -> SamplingParams:
  greedy = temperature == 0
  return SamplingParams(max_new_tokens=max_new_tokens, greedy=greedy,
                        temperature=1.0 if greedy else temperature, top_p=top_p, top_k=top_k)


def _define_flags():
  flags.DEFINE_string("model", None, "HF directory or .gguf file (default: shipped SmolLM2)")
  flags.DEFINE_bool("chat", False, "render each prompt as a user turn of the chat template")
  flags.DEFINE_multi_string("prompt", None, "prompt text; repeat for a batch", required=True)
  flags.DEFINE_integer("max_new_tokens", 64, "tokens to generate per prompt")
  flags.DEFINE_float("temperature", 0.0, "sampling temperature; 0 = greedy")
  flags.DEFINE_float("top_p", 1.0, "nucleus sampling mass")
  flags.DEFINE_integer("top_k", 0, "keep only the k most likely tokens (0 = off)")
  flags.DEFINE_integer("seed", 0, "PRNG seed")


def main(argv):
  del argv
  xla_options.configure_process()
  f = flags.FLAGS
  path = f.model or assets.smollm2_gguf()
  model, params = load_pretrained(path)
  tokenizer = load_tokenizer(path)
  sampling = sampling_from_flags(f.max_new_tokens, f.temperature, f.top_p, f.top_k)
  for text in generate_texts(model, params, tokenizer, f.prompt, sampling, f.seed, f.chat):
    print(text)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
