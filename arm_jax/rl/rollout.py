"""From prompts and sampled completions to the fixed-shape batch the GRPO update consumes.

A phase step's shapes are fixed by its settings (prompt bucket, max_new_tokens, rows), so the
update compiles once per phase and both policies reuse it when their shapes agree.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from arm_jax.rl.grpo import RolloutBatch
from arm_jax.rl.logprobs import SequenceBatch
from arm_jax.sampling import SampleOutput, bucket_length


def sequence_batch(prompts: Sequence[Sequence[int]], out: SampleOutput, num_samples: int,
                   buckets: Sequence[int], pad_id: int) -> SequenceBatch:
  """[left-padded prompt | completion] rows in the sampler's prompt-major order.

  Completion tokens count up to and including the stop token (SampleOutput.lengths); what
  follows is padding, outside both the attention and the loss.
  """
  rows = [p for p in prompts for _ in range(num_samples)]
  n, new = out.tokens.shape
  if len(rows) != n:
    raise ValueError(f"{len(rows)} prompt rows for {n} completions")
  t = bucket_length(max(map(len, rows)), buckets)
  tokens = np.full((n, t + new), pad_id, np.int32)
  attention = np.zeros((n, t + new), bool)
  for i, r in enumerate(rows):
    tokens[i, t - len(r):t] = r
    attention[i, t - len(r):t] = True
  valid = np.arange(new)[None, :] < out.lengths[:, None]
  tokens[:, t:] = np.where(valid, out.tokens, pad_id)
  attention[:, t:] = valid
  loss_mask = np.zeros_like(attention)
  loss_mask[:, t:] = valid
  # Completions start at column t in every row: the head skips the prompt bucket.
  return SequenceBatch(jnp.asarray(tokens), jnp.asarray(attention), jnp.asarray(loss_mask),
                       score_from=t)


def sampler_logprobs(seq: SequenceBatch, out: SampleOutput) -> jnp.ndarray:
  """The sampler's own per-token log-probs placed at the completion positions."""
  n, total = seq.tokens.shape
  new = out.logprobs.shape[1]
  logp = np.zeros((n, total), np.float32)
  valid = np.arange(new)[None, :] < out.lengths[:, None]
  logp[:, total - new:] = np.where(valid, out.logprobs, 0.0)
  return jnp.asarray(logp)


def rollout_batch(seq: SequenceBatch, old_logp, ref_logp, rewards: np.ndarray) -> RolloutBatch:
  return RolloutBatch(seq, old_logp, ref_logp, jnp.asarray(rewards, jnp.float32))
