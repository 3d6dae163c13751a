"""A tiny random decoder and rollout batches shared by the RL tests."""

import jax
import jax.numpy as jnp
import numpy as np

from arm_jax.models import Decoder, DecoderConfig, init_params
from arm_jax.rl.grpo import RolloutBatch
from arm_jax.rl.logprobs import SequenceBatch

TINY = DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=2,
                     num_heads=4, num_kv_heads=2, head_dim=8, tie_word_embeddings=True,
                     eos_token_ids=(1,))


def tiny_model(seed=0, **overrides):
  model = Decoder(TINY.replace(**overrides))
  return model, init_params(model, jax.random.key(seed))


def sequences(n=8, prompt=5, completion=7, seed=0) -> SequenceBatch:
  """Left-padded prompts of varied length followed by completions of varied length."""
  rng = np.random.RandomState(seed)
  t = prompt + completion
  tokens = rng.randint(2, TINY.vocab_size, (n, t)).astype(np.int32)
  attention = np.zeros((n, t), bool)
  loss_mask = np.zeros((n, t), bool)
  for i in range(n):
    p = rng.randint(2, prompt + 1)
    c = rng.randint(1, completion + 1)
    attention[i, prompt - p:prompt + c] = True
    loss_mask[i, prompt:prompt + c] = True
    tokens[i, ~attention[i]] = 0
  return SequenceBatch(jnp.asarray(tokens), jnp.asarray(attention), jnp.asarray(loss_mask))


def full_logprobs(model, params, seq: SequenceBatch) -> jax.Array:
  """Reference: log_softmax of the full [n, t, vocab] logits, target = next token."""
  positions = jnp.maximum(jnp.cumsum(seq.attention, axis=-1) - 1, 0)
  logits = model.apply({"params": params}, seq.tokens, attention_mask=seq.attention,
                       positions=positions)
  logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
  picked = jnp.take_along_axis(logp, seq.tokens[:, 1:, None], axis=-1)[..., 0]
  return jnp.concatenate([jnp.zeros((seq.tokens.shape[0], 1)), picked], axis=1), logits


def rollout(model, params, seq, rewards, *, ref_params=None, perturb=0.0, seed=1):
  """Old log-probs = current policy's plus noise (so ratios differ from 1 and clip)."""
  old, _ = full_logprobs(model, params, seq)
  old = old + perturb * jax.random.normal(jax.random.key(seed), old.shape)
  ref = None if ref_params is None else full_logprobs(model, ref_params, seq)[0]
  return RolloutBatch(seq, old, ref, jnp.asarray(rewards, jnp.float32))


def grouped_sequences(groups=3, group=4, prompt=6, completion=7, seed=0) -> SequenceBatch:
  """GRPO's layout: `group` consecutive rows share one left-padded prompt (tokens and
  attention) in the first `prompt` columns, then completions of varied length; score_from =
  prompt."""
  rng = np.random.RandomState(seed)
  n, t = groups * group, prompt + completion
  tokens = rng.randint(2, TINY.vocab_size, (n, t)).astype(np.int32)
  attention = np.zeros((n, t), bool)
  loss_mask = np.zeros((n, t), bool)
  for i in range(n):
    if i % group == 0:
      p = rng.randint(1, prompt + 1)
      prompt_tokens = tokens[i, :prompt].copy()
    tokens[i, :prompt] = prompt_tokens
    c = rng.randint(1, completion + 1)
    attention[i, prompt - p:prompt + c] = True
    loss_mask[i, prompt:prompt + c] = True
    tokens[i, ~attention[i]] = 0
  return SequenceBatch(jnp.asarray(tokens), jnp.asarray(attention), jnp.asarray(loss_mask),
                       score_from=prompt)
