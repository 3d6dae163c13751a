"""Generation: the shipped SmolLM2-135M-Instruct answering chat prompts, on any machine.

`python main.py --config configs/generate.py`. Swap fields from the command line, e.g.
`--config.sampling.temperature=0.7 --config.model.path=/path/to/hf_dir`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.job = "generate"
  c.seed = 0
  c.model = ml_collections.ConfigDict()
  c.model.path = ""  # "" = the shipped SmolLM2 GGUF; else an HF directory or .gguf file
  c.model.dtype = "float32"
  # Mesh over all devices: data-parallel by default; rules map logical axes onto it.
  c.mesh_shape = (-1, 1, 1)
  c.mesh_axes = ("data", "fsdp", "tensor")
  c.rules = ml_collections.FieldReference(None, field_type=tuple)  # None = arm_jax defaults
  c.sampling = ml_collections.ConfigDict()
  c.sampling.max_new_tokens = 64
  c.sampling.temperature = 0.0  # 0 = greedy
  c.sampling.top_p = 1.0
  c.sampling.top_k = 0
  c.sampling.num_samples = 1
  c.chat = True
  c.prompts = (
      "What is the capital of France? Answer in one sentence.",
      "Write a haiku about the sea.",
      "Give two tips for writing clear emails, as a numbered list.",
  )
  return c
