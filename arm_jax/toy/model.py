"""A tiny decoder for the toy world, trained from scratch (no checkpoint to download)."""

from __future__ import annotations

from typing import Any

import jax

from arm_jax import sharding
from arm_jax.models import Decoder, DecoderConfig, init_params


def decoder_config(tokenizer, *, num_layers: int = 2, hidden_size: int = 64, num_heads: int = 4,
                   num_kv_heads: int = 4, intermediate_size: int = 192,
                   **overrides) -> DecoderConfig:
  """Llama-family config sized to the toy tokenizer; tied embeddings keep the vocabulary's share
  of the parameters small. `overrides` go to DecoderConfig (scan_layers, dtype ...)."""
  return DecoderConfig(
      vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
      num_layers=num_layers, num_heads=num_heads, num_kv_heads=num_kv_heads,
      head_dim=hidden_size // num_heads, tie_word_embeddings=True, max_position_embeddings=512,
      eos_token_ids=(tokenizer.eos_token_id,), pad_token_id=tokenizer.pad_token_id,
      **overrides)


def init_model(config: DecoderConfig, seed: int = 0, *, embedding_std: float = 0.02,
               mesh=None, rules=None) -> tuple[Decoder, Any]:
  """(model, random params). The decoder's unit-variance embedding init suits an untied head;
  tied, it makes the first logits' std about sqrt(hidden_size), a sharply peaked random
  distribution, so the embedding is rescaled to `embedding_std` (GPT-2's 0.02 by default)."""
  if mesh is not None and rules is None:
    rules = sharding.DEFAULT_RULES
  model = Decoder(config, mesh=mesh, rules=tuple(rules or ()))
  params = init_params(model, jax.random.key(seed), mesh, rules)
  params = dict(params, embedding=params["embedding"] * embedding_std)
  return model, params
