"""Generation: the shipped SmolLM2-135M-Instruct answering chat prompts, on any machine.

`python main.py --config configs/generate.py`. Swap fields from the command line, e.g.
`--config.sampling.temperature=0.7 --config.model.path=/path/to/hf_dir`.
"""

import ml_collections

from arm_jax import config_sections


def get_config() -> ml_collections.ConfigDict:
  c = config_sections.generate_base()
  c.model.path = ""  # "" = the shipped SmolLM2 GGUF; else an HF directory or .gguf file
  c.sampling.max_new_tokens = 64
  c.sampling.temperature = 0.0  # 0 = greedy
  c.chat = True
  c.prompts = (
      "What is the capital of France? Answer in one sentence.",
      "Write a haiku about the sea.",
      "Give two tips for writing clear emails, as a numbered list.",
  )
  return c
