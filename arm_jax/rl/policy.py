"""A policy as the schedule sees it: model, weights, optimizer state, sampler, prompt template.

Rubric generator and judge are two `Policy` values. Which one trains is which one's
(params, opt_state) the phase passes into the shared update; the idle optimizer state can be
moved to host memory meanwhile (optim.offload / onload).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax

from arm_jax.models.decoder import Decoder
from arm_jax.prompts import Template, as_chat
from arm_jax.sampling import Sampler, SamplingParams, completions_text


@dataclasses.dataclass
class Policy:
  name: str
  model: Decoder
  tokenizer: Any
  template: Template
  params: Any
  opt_state: Any = None
  ref_params: Any = None  # frozen KL reference; None when beta == 0
  sampler: Sampler | None = None

  def __post_init__(self):
    if self.sampler is None:
      stop = list(self.model.config.eos_token_ids)
      eos = self.tokenizer.eos_token_id
      if eos is not None and eos not in stop:
        stop.append(eos)
      self.sampler = Sampler(self.model, stop_ids=stop, pad_id=self.pad_id)

  @property
  def pad_id(self) -> int:
    return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

  def encode(self, texts: Sequence[str]) -> list[list[int]]:
    """User turns rendered by the chat template (Qwen3 thinking disabled)."""
    ids = []
    for text in texts:
      out = self.tokenizer.apply_chat_template(as_chat(text), add_generation_prompt=True,
                                               enable_thinking=False)
      ids.append(list(out["input_ids"] if hasattr(out, "keys") else out))
    return ids

  def room(self, new_tokens: int, max_prompt_tokens: int = 0) -> int:
    """The longest prompt, in tokens, after which this policy can still write `new_tokens`: within
    the model's positions, the sampler's largest length bucket and `max_prompt_tokens` (0 = no
    limit of its own)."""
    room = min(self.model.config.max_position_embeddings - new_tokens, max(self.sampler.buckets))
    return min(room, max_prompt_tokens) if max_prompt_tokens > 0 else room

  def fit(self, texts: Sequence[str], room: int) -> list[bool]:
    """Whether each user turn encodes (`encode`) to at most `room` tokens. A token holds at least
    one byte, so only texts whose UTF-8 length plus the chat template's could exceed `room` are
    encoded to count."""
    empty = self.encode([""])[0]
    overhead = len(empty) + len(self.tokenizer.decode(empty).encode())
    return [len(text.encode()) + overhead <= room or len(self.encode([text])[0]) <= room
            for text in texts]

  def generate(self, prompts: Sequence[Sequence[int]], sampling: SamplingParams, key: jax.Array,
               num_samples: int = 1):
    out = self.sampler(self.params, prompts, sampling, key, num_samples=num_samples)
    return out, completions_text(self.tokenizer, out)
