"""Jitted batched generation: prefill + `lax.while_loop` decode over a preallocated KV cache.

Prefill and the decode loop are two compilations (prefill gets the training-shaped compiler
options). Everything per token stays on device: sampling (greedy / temperature / top-k /
top-p), the cache write, per-row stop, and the log-prob of each emitted token under the
model's own temperature-1 distribution (what GRPO's importance ratio recomputes in training).
Prompts are left-padded to a length bucket, so only a handful of shapes ever compile.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from arm_jax import multihost
from arm_jax import sharding as sharding_lib
from arm_jax import xla_options
from arm_jax.models.config import dtype_from_name
from arm_jax.models import lora
from arm_jax.models.decoder import Decoder, KVCache, out_major_params, unstack_layers

STOP, LENGTH = 0, 1  # stop reasons
STOP_REASONS = ("stop", "length")
# Prompts are left-padded up to the next of these lengths (one compiled shape each); between 1K
# and 4K, where a judge's prompts (an instruction, a rubric, two responses) fall, the steps are
# halved, so that less of the KV cache and of a rollout's update is padding.
DEFAULT_BUCKETS = (32, 64, 128, 256, 512, 1024, 1536, 2048, 3072, 4096, 8192)


@dataclasses.dataclass(frozen=True)
class SamplingParams:
  """Static decoding settings: one compiled loop per distinct value."""

  max_new_tokens: int = 128
  greedy: bool = False
  temperature: float = 1.0
  top_p: float = 1.0
  top_k: int = 0  # 0 = off

  def __post_init__(self):
    if self.max_new_tokens < 1:
      raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
    if not self.greedy and self.temperature <= 0:
      raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature}; "
                       "use greedy=True for argmax decoding")
    if not 0 < self.top_p <= 1:
      raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
    if self.top_k < 0:
      raise ValueError(f"top_k must be >= 0, got {self.top_k}")


class SampleOutput(NamedTuple):
  """Rows are prompt-major: row i * num_samples + j is sample j of prompt i.

  tokens [n, max_new_tokens] (pad_id after the stop); logprobs [n, max_new_tokens] (0 after);
  lengths [n] count emitted tokens including the stop token; stop_reason [n] is STOP or LENGTH.
  """

  tokens: np.ndarray
  logprobs: np.ndarray
  lengths: np.ndarray
  stop_reason: np.ndarray


def filter_logits(logits: jax.Array, top_k: int, top_p: float) -> jax.Array:
  """Sets logits outside the top-k / nucleus (top-p) set to -inf; the best token always stays."""
  neg = jnp.finfo(logits.dtype).min
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, neg, logits)
  if top_p < 1.0:
    order = jnp.argsort(-logits, axis=-1)
    sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    keep_sorted = mass_before < top_p  # the smallest prefix whose mass reaches top_p
    keep = jnp.zeros_like(keep_sorted).at[
        jnp.arange(logits.shape[0])[:, None], order].set(keep_sorted)
    logits = jnp.where(keep, logits, neg)
  return logits


def _choose(logits: jax.Array, key: jax.Array, params: SamplingParams) -> jax.Array:
  if params.greedy:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  scaled = filter_logits(logits / params.temperature, params.top_k, params.top_p)
  return jax.random.categorical(key, scaled, axis=-1).astype(jnp.int32)


def _token_logprob(logits: jax.Array, token: jax.Array) -> jax.Array:
  picked = jnp.take_along_axis(logits, token[:, None], axis=-1)[:, 0]
  return picked - jax.nn.logsumexp(logits, axis=-1)


def _prefill(model: Decoder, params: Any, ids: jax.Array, mask: jax.Array):
  """The prompt's forward in the model's own parameter layout (no unrolled or output-major
  copy): a training-shaped forward, compiled with the training options. Returns the last
  position's logits, the per-layer keys/values and each row's next position."""
  b, t = ids.shape
  positions = jnp.maximum(jnp.cumsum(mask, axis=-1) - 1, 0)
  logits, (k, v) = model.apply({"params": params}, ids, attention_mask=mask, positions=positions,
                               return_kv=True, logits_at=jnp.full((b,), t - 1))
  return logits, k, v, positions[:, -1] + 1


def _decode_model(model: Decoder, unroll: bool, out_major: bool) -> Decoder:
  """The model in its decode layout: unrolled layers (one cache buffer per layer, no per-step
  slicing of stacked weights) and output-major weights (faster skinny matmuls on CPU), LoRA
  adapters merged into their weights (one matmul per projection per token, not three)."""
  cfg = model.config
  if cfg.lora_rank:
    cfg = cfg.replace(lora_rank=0)
  if unroll and cfg.scan_layers:
    cfg = cfg.replace(scan_layers=False)
  if out_major and not cfg.weights_out_major:
    cfg = cfg.replace(weights_out_major=True)
  return model if cfg == model.config else model.clone(config=cfg)


def _decode_params(model: Decoder, params: Any, unroll: bool, out_major: bool) -> Any:
  """`params` (the model's own layout) -> the layout of _decode_model(model, ...)."""
  cfg = model.config
  params = lora.merge(params, cfg)
  if unroll and cfg.scan_layers:
    params = unstack_layers(params)
  if out_major and not cfg.weights_out_major:
    params = out_major_params(params)
  return params


def _decode(model: Decoder, params: Any, logits: jax.Array, k: Any, v: Any, mask: jax.Array,
            next_pos: jax.Array, key: jax.Array, stop_ids: jax.Array, sp: SamplingParams,
            pad_id: int, num_samples: int = 1):
  """The decode loop; `model` and `params` are in the decode layout (_decode_model). The
  prefill's rows are prompts; each is repeated `num_samples` times (prompt-major) here, so a
  prompt's forward runs once however many samples it gets."""
  cfg = model.config
  stack = jnp.stack if model.config.scan_layers else tuple  # the cache layout the model reads
  if num_samples > 1:
    def rep(x):
      return jnp.repeat(x, num_samples, axis=0)
    logits, mask, next_pos = rep(logits), rep(mask), rep(next_pos)
    k = [rep(k[i]) for i in range(cfg.num_layers)]
    v = [rep(v[i]) for i in range(cfg.num_layers)]
  b, t = mask.shape
  slots = t + sp.max_new_tokens
  dt = dtype_from_name(cfg.dtype)
  shape = (b, cfg.num_kv_heads, slots, cfg.head_dim)

  def fresh(prefill):
    buf = jax.lax.dynamic_update_slice(jnp.zeros(shape, dt), prefill.astype(dt), (0, 0, 0, 0))
    return sharding_lib.constrain(buf, ("batch", "kv_heads", "cache_slots", "head_dim"),
                                  model.mesh, model.rules)

  n_layers = cfg.num_layers
  cache = KVCache(stack([fresh(k[i]) for i in range(n_layers)]),
                  stack([fresh(v[i]) for i in range(n_layers)]),
                  sharding_lib.constrain(jnp.zeros((b, slots), bool).at[:, :t].set(mask),
                                         ("batch", "cache_slots"), model.mesh, model.rules))
  done = ~mask.any(axis=-1)  # all-padding filler rows never emit
  tokens = jnp.full((b, sp.max_new_tokens), pad_id, jnp.int32)
  logprobs = jnp.zeros((b, sp.max_new_tokens), jnp.float32)
  lengths = jnp.zeros((b,), jnp.int32)
  stopped = jnp.zeros((b,), bool)

  def cond(state):
    step, _, _, done, *_ = state
    return (step < sp.max_new_tokens) & ~jnp.all(done)

  def body(state):
    step, logits, cache, done, stopped, tokens, logprobs, lengths, key = state
    key, sub = jax.random.split(key)
    token = _choose(logits, sub, sp)
    lp = _token_logprob(logits, token)
    live = ~done
    token = jnp.where(live, token, pad_id)
    tokens = jax.lax.dynamic_update_slice(tokens, token[:, None], (0, step))
    logprobs = jax.lax.dynamic_update_slice(logprobs, jnp.where(live, lp, 0.0)[:, None], (0, step))
    lengths = lengths + live
    hit_stop = live & jnp.isin(token, stop_ids)
    stopped = stopped | hit_stop
    done = done | hit_stop
    new_logits, cache = model.apply(
        {"params": params}, token[:, None], attention_mask=live[:, None],
        positions=(next_pos + step)[:, None], cache=cache, cache_index=t + step)
    return step + 1, new_logits[:, 0], cache, done, stopped, tokens, logprobs, lengths, key

  state = (jnp.int32(0), logits, cache, done, stopped, tokens, logprobs, lengths, key)
  _, _, _, _, stopped, tokens, logprobs, lengths, _ = jax.lax.while_loop(cond, body, state)
  reason = jnp.where(stopped, STOP, LENGTH).astype(jnp.int32)
  return tokens, logprobs, lengths, reason


def bucket_length(n: int, buckets: Sequence[int]) -> int:
  for b in buckets:
    if n <= b:
      return b
  raise ValueError(f"prompt of {n} tokens exceeds the largest length bucket {buckets[-1]}")


@functools.lru_cache(maxsize=64)
def _jitted_prefill(model: Decoder):
  """Prefill is a training-shaped forward (many rows per weight): XLA:CPU's Eigen GEMM is
  faster there (see xla_options), while decoding's skinny matmuls keep the defaults."""
  return xla_options.jit_training(functools.partial(_prefill, model))


@functools.lru_cache(maxsize=64)
def _jitted_decode(model: Decoder, sp: SamplingParams, pad_id: int, num_samples: int = 1):
  """One jitted loop per (decode-layout model, settings), shared by every Sampler of an equal
  model: a resumed or repeated run in the same process (tests, notebooks) reuses its
  compilations."""
  return jax.jit(functools.partial(_decode, model, sp=sp, pad_id=pad_id,
                                   num_samples=num_samples))


@functools.lru_cache(maxsize=64)
def _jitted_decode_params(model: Decoder, unroll: bool, out_major: bool):
  return jax.jit(functools.partial(_decode_params, model, unroll=unroll, out_major=out_major))


class Sampler:
  """Generation for one model; compiled loops are cached per (shape bucket, settings).

  `stop_ids` defaults to the model config's eos tokens. The batch is padded to a multiple of
  the mesh's data-parallel size with filler rows that never emit. `out_major` (default: on
  the CPU backend) decodes with output-major weights (see decoder.out_major_params).

  Decoding reads a copy of the weights in its own layout (unrolled layers, output-major on
  CPU). With `keep_decode_params` (default) the copy of the last params seen is kept, so calls
  with unchanged params (a frozen judge, evaluation, serving) skip the conversion (about 0.25 s
  a call for SmolLM2-135M on 2 cores, 6% of a 128-token batch-8 call); it costs one copy of
  the weights between calls while the params it was made from stay referenced. Params that
  changed (a policy after its update) are converted again.
  """

  def __init__(self, model: Decoder, *, stop_ids: Sequence[int] | None = None, pad_id: int = 0,
               buckets: Sequence[int] = DEFAULT_BUCKETS, unroll_layers: bool = True,
               out_major: bool | None = None, keep_decode_params: bool = True):
    self.model = model
    self.unroll_layers = unroll_layers
    self.out_major = jax.default_backend() == "cpu" if out_major is None else out_major
    self.decode_model = _decode_model(model, unroll_layers, self.out_major)
    self.keep_decode_params = keep_decode_params
    self._kept: tuple[list, Any] | None = None  # (leaves of the source params, their copy)
    self.stop_ids = tuple(model.config.eos_token_ids if stop_ids is None else stop_ids)
    if not self.stop_ids:
      raise ValueError("no stop tokens: pass stop_ids or load a config with eos_token_id")
    self.pad_id = pad_id
    self.buckets = tuple(sorted(buckets))

  def decode_params(self, params: Any) -> Any:
    """`params` in the decode layout; the kept copy when `params` are the ones it was made from
    (the same array objects: jax arrays are immutable, and a donated one is replaced by a new
    object)."""
    if self.decode_model is self.model:
      return params
    leaves = jax.tree.leaves(params)
    if self._kept is not None and len(self._kept[0]) == len(leaves) and all(
        a is b for a, b in zip(self._kept[0], leaves)):
      return self._kept[1]
    self._kept = None  # drop the stale copy before making the new one
    converted = _jitted_decode_params(self.model, self.unroll_layers, self.out_major)(params)
    if self.keep_decode_params:
      self._kept = (leaves, converted)
    return converted

  def _fn(self, sp: SamplingParams, num_samples: int = 1):
    prefill = _jitted_prefill(self.model)
    decode = _jitted_decode(self.decode_model, sp, self.pad_id, num_samples)

    def run(params, ids, mask, key, stop_ids):
      logits, k, v, next_pos = prefill(params, ids, mask)
      return decode(self.decode_params(params), logits, k, v, mask, next_pos, key, stop_ids)
    return run

  def _batch_multiple(self) -> int:
    mesh = self.model.mesh
    if mesh is None:
      return 1
    return int(np.prod([mesh.shape[a] for a in sharding_lib.batch_axes(mesh, self.model.rules)]))

  def __call__(self, params: Any, prompts: Sequence[Sequence[int]], sampling: SamplingParams,
               key: jax.Array, *, num_samples: int = 1) -> SampleOutput:
    if not prompts:
      raise ValueError("no prompts")
    if num_samples < 1:
      raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    # Each prompt is prefilled once; decoding repeats its row num_samples times.
    rows = [list(p) for p in prompts]
    if any(len(r) == 0 for r in rows):
      raise ValueError("empty prompt: every prompt needs at least one token")
    t = bucket_length(max(map(len, rows)), self.buckets)
    multiple = self._batch_multiple()
    n = len(rows) * num_samples
    b = -(-len(rows) // multiple) * multiple
    ids = np.full((b, t), self.pad_id, np.int32)
    mask = np.zeros((b, t), bool)
    for i, r in enumerate(rows):
      ids[i, t - len(r):] = r
      mask[i, t - len(r):] = True
    ids, mask = jnp.asarray(ids), jnp.asarray(mask)
    if self.model.mesh is not None:
      data = sharding_lib.data_sharding(self.model.mesh, self.model.rules)
      ids, mask = jax.device_put(ids, data), jax.device_put(mask, data)
    out = self._fn(sampling, num_samples)(params, ids, mask, key,
                                          jnp.asarray(self.stop_ids, jnp.int32))
    out = multihost.host_tree(out)  # every process gets every row
    return SampleOutput(*(x[:n] for x in out))


def encode_prompts(tokenizer, prompts: Sequence[str], chat: bool) -> list[list[int]]:
  """Token ids; with chat, each prompt is one user turn rendered by the chat template."""
  if chat:
    return [list(tokenizer.apply_chat_template([{"role": "user", "content": p}],
                                               add_generation_prompt=True)["input_ids"])
            for p in prompts]
  return [tokenizer.encode(p) for p in prompts]


def stop_ids_for(tokenizer, model) -> list[int]:
  """The model config's eos ids plus the tokenizer's eos (chat models end turns with it)."""
  ids = list(model.config.eos_token_ids)
  if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
    ids.append(tokenizer.eos_token_id)
  return ids


def completions_text(tokenizer, out: SampleOutput) -> list[str]:
  """Decoded completions without the stop token."""
  texts = []
  for row, n, reason in zip(out.tokens, out.lengths, out.stop_reason):
    keep = n - 1 if reason == STOP else n
    texts.append(tokenizer.decode(row[:keep].tolist(), skip_special_tokens=False))
  return texts
