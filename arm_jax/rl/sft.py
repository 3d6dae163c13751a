"""Stage I warm start: supervised fine-tuning with next-token NLL on the target tokens only.

Encoding (text at the edge): prompt = the chat template with the generation prompt (a plain
string becomes one user message), target = its tokens plus the token that ends an assistant
turn, so the model learns to stop exactly where the sampler stops. Rows are right-padded to a
multiple of `pad_multiple` (few distinct shapes, few recompiles); the decoder takes positions
from the attention mask, so right padding is as valid as the left padding rollouts use.
Examples that do not fit `max_length` are truncated (target cut, prompt kept whole) or skipped,
and every one is listed in an `EncodeReport`: nothing is dropped without a count.

The update mirrors grpo.py: micro-batches accumulate f32 gradients of loss *sums* and divide by
the whole batch's denominator, so any micro-batch split gives the un-split gradient.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from arm_jax import multihost
from arm_jax import sharding as sharding_lib
from arm_jax.core import Messages, SFTExample
from arm_jax.models.checkpoint import param_shardings
from arm_jax.models.decoder import Decoder
from arm_jax.rl import losses, optim
from arm_jax.rl.logprobs import SequenceBatch, token_logprobs
from arm_jax.rl.optim import (OptimizerConfig, learning_rate_schedule, make_optimizer,
                              opt_state_shardings)

_PROBE = "SFTENDPROBE"


class Row(NamedTuple):
  tokens: list[int]  # prompt then target
  prompt_len: int


@dataclasses.dataclass(frozen=True)
class EncodeReport:
  """What encoding did with each example (indices into the examples given)."""
  examples: int
  kept: tuple[int, ...]  # the example behind each row, in row order
  truncated: tuple[int, ...]  # kept, target cut to fit (so it also lost its end token)
  skipped: tuple[int, ...]  # no row: too long, or no room/no prompt token to predict from
  target_tokens: int  # loss tokens kept
  target_tokens_cut: int  # loss tokens lost to truncation

  def summary(self) -> str:
    return (f"{len(self.kept)}/{self.examples} examples encoded, {len(self.truncated)} "
            f"truncated ({self.target_tokens_cut} target tokens cut), {len(self.skipped)} "
            f"skipped; {self.target_tokens} target tokens")


def _ids(encoded: Any) -> list[int]:
  """apply_chat_template returns a list or (transformers >= 5) a BatchEncoding."""
  return list(encoded["input_ids"] if isinstance(encoded, Mapping) else encoded)


def prompt_ids(tokenizer, prompt: str | Messages, chat: bool) -> list[int]:
  if not chat:
    if not isinstance(prompt, str):
      raise ValueError("chat=False needs string prompts; chat messages need chat=True")
    return list(tokenizer.encode(prompt))
  messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
  return _ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))


def end_token_id(tokenizer, chat: bool) -> int:
  """The token the target ends with: what closes an assistant turn in this chat template.

  That marker is not always eos_token (`<|eot_id|>` for Llama 3, `<end_of_turn>` for Gemma;
  `<|im_end|>` for SmolLM2 and Qwen happens to be both), so it is read off the template: render
  a one-turn conversation and take the first token after the assistant text if it is special.
  Without a chat template, or when the template puts nothing special there, eos_token_id.
  """
  if chat:
    try:
      text = tokenizer.apply_chat_template(
          [{"role": "user", "content": "u"}, {"role": "assistant", "content": _PROBE}],
          tokenize=False)
    except Exception:  # pylint: disable=broad-except  # templates may reject a bare turn
      text = ""
    if _PROBE in text:
      tail = tokenizer.encode(text.split(_PROBE)[-1], add_special_tokens=False)
      special = set(tokenizer.all_special_ids) | {
          i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
      if tail and tail[0] in special:
        return int(tail[0])
  if tokenizer.eos_token_id is None:
    raise ValueError("the tokenizer has neither a turn-end token nor an eos token to end targets")
  return int(tokenizer.eos_token_id)


def _fit(prompt: list[int], target: list[int], max_length: int, truncate: str) -> list[int] | None:
  """The target tokens that fit after the prompt, or None when the example gets no row."""
  if not prompt:
    return None  # position 0 is never predicted, so a target there could not be learned
  room = max_length - len(prompt)
  if len(target) <= room:
    return target
  return target[:room] if truncate == "target" and room > 0 else None


def tokenize_sft(tokenizer, examples: Sequence[SFTExample], *, max_length: int, chat: bool = True,
                 truncate: str = "target") -> tuple[list[Row], EncodeReport]:
  """Token rows (unpadded) for the examples that fit, and the report of those that did not."""
  if truncate not in ("target", "skip"):
    raise ValueError(f"truncate={truncate!r}; expected 'target' or 'skip'")
  end = end_token_id(tokenizer, chat)
  rows, kept, truncated, skipped = [], [], [], []
  tokens_kept = tokens_cut = 0
  for i, ex in enumerate(examples):
    prompt = prompt_ids(tokenizer, ex.prompt, chat)
    target = list(tokenizer.encode(ex.target, add_special_tokens=False)) + [end]
    fitted = _fit(prompt, target, max_length, truncate)
    if fitted is None:
      skipped.append(i)
      continue
    if len(fitted) < len(target):
      truncated.append(i)
      tokens_cut += len(target) - len(fitted)
    rows.append(Row(prompt + fitted, len(prompt)))
    kept.append(i)
    tokens_kept += len(fitted)
  report = EncodeReport(len(examples), tuple(kept), tuple(truncated), tuple(skipped), tokens_kept,
                        tokens_cut)
  return rows, report


def target_window(rows: Sequence[Row], multiple: int) -> int:
  """The longest target among `rows`, rounded up to `multiple`: a score_width that holds every
  row's target (pad_rows), fixed for a run so that it adds no shapes to compile."""
  return -(-max(len(r.tokens) - r.prompt_len for r in rows) // multiple) * multiple


def pad_rows(rows: Sequence[Row], *, multiple: int = 64, max_length: int | None = None,
             score_width: int = 0) -> SequenceBatch:
  """Right-padded numpy SequenceBatch, length rounded up to `multiple` (capped at max_length).

  score_width > 0: the head scores only that many columns from each row's first target token
  (SequenceBatch.score_width), when that is fewer than the row length's; every row's target
  must fit in it.
  """
  longest = max(len(r.tokens) for r in rows)
  length = -(-longest // multiple) * multiple
  if max_length is not None:
    length = max(min(length, max_length), longest)
  for i, row in enumerate(rows):
    if score_width and len(row.tokens) - row.prompt_len > score_width:
      raise ValueError(f"row {i}: its target of {len(row.tokens) - row.prompt_len} tokens does "
                       f"not fit score_width={score_width}")
  tokens = np.zeros((len(rows), length), np.int32)  # pad ids never matter: attention masks them
  attention = np.zeros((len(rows), length), bool)
  loss_mask = np.zeros((len(rows), length), bool)
  for i, row in enumerate(rows):
    tokens[i, :len(row.tokens)] = row.tokens
    attention[i, :len(row.tokens)] = True
    loss_mask[i, row.prompt_len:len(row.tokens)] = True
  width = score_width if 0 < score_width < length - 1 else 0  # else: every column from 1
  return SequenceBatch(tokens, attention, loss_mask, score_width=width)


def encode_sft(tokenizer, examples: Sequence[SFTExample], *, max_length: int, chat: bool = True,
               truncate: str = "target",
               pad_multiple: int = 64) -> tuple[SequenceBatch, EncodeReport]:
  """All examples that fit as one padded numpy batch, with the report of what was cut/skipped."""
  rows, report = tokenize_sft(tokenizer, examples, max_length=max_length, chat=chat,
                              truncate=truncate)
  if not rows:
    raise ValueError(f"no example fits max_length={max_length}: {report.summary()}")
  return pad_rows(rows, multiple=pad_multiple, max_length=max_length), report


@dataclasses.dataclass(frozen=True)
class SFTConfig:
  loss_aggregation: str = "token_mean"  # see losses.AGGREGATIONS; token_mean is the usual SFT
  micro_batches: int = 1
  logprob_chunk: int = 128
  # Weight of each prompt token's NLL relative to a completion token's (OpenAI's legacy
  # fine-tuning `prompt_loss_weight`; TRL's completion_only_loss=False is 1.0). 0 = the usual
  # completion-only SFT. The logged nll_per_token stays the completion's.
  prompt_loss_weight: float = 0.0

  def __post_init__(self):
    losses.aggregation(self.loss_aggregation)
    if self.micro_batches < 1 or self.logprob_chunk < 1:
      raise ValueError("micro_batches and logprob_chunk must be >= 1")
    if not self.prompt_loss_weight >= 0.0:
      raise ValueError(f"prompt_loss_weight={self.prompt_loss_weight} must be >= 0")


def loss_weights(batch: SequenceBatch, prompt_loss_weight: float = 0.0) -> jax.Array:
  """Per-token weights of the SFT loss [n, t]: 1 on completion tokens, `prompt_loss_weight` on
  prompt tokens after each row's first (nothing precedes the first to predict it from) and from
  column score_from on (token_logprobs scores no earlier column), 0 on padding."""
  weights = batch.loss_mask.astype(jnp.float32)
  if prompt_loss_weight:
    later = jnp.cumsum(batch.attention, axis=1) > 1
    later &= (jnp.arange(batch.tokens.shape[1]) >= batch.score_from)[None]
    prompt = batch.attention & ~batch.loss_mask & later
    weights = weights + prompt_loss_weight * prompt.astype(jnp.float32)
  return weights


def sft_loss(model: Decoder, cfg: SFTConfig, params: Any, batch: SequenceBatch,
             totals: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(NLL sum of these rows under the aggregation, aux); `totals` are the whole batch's."""
  if cfg.prompt_loss_weight and batch.score_width:
    raise ValueError("prompt_loss_weight > 0 scores prompt tokens, which a score_width window "
                     "leaves out: pad the rows without score_width")
  logp, _ = token_logprobs(model, params, batch, chunk=cfg.logprob_chunk, with_entropy=False)
  weights = loss_weights(batch, cfg.prompt_loss_weight)
  loss_sum, _ = losses.aggregation(cfg.loss_aggregation)(-logp * weights, weights, *totals)
  nll = jnp.where(batch.loss_mask, -logp, 0.0)
  return loss_sum, dict(nll=nll.sum(), tokens=batch.loss_mask.sum().astype(jnp.float32))


def make_sft_update(model: Decoder, cfg: SFTConfig, optimizer: optax.GradientTransformation, *,
                    shardings: tuple[Any, Any] | None = None, donate: bool = True):
  """Jitted `update(params, opt_state, batch)`; `shardings` = (params, opt_state) shardings."""
  aggregate = losses.aggregation(cfg.loss_aggregation)

  def update(params, opt_state, batch: SequenceBatch):
    n, m = batch.tokens.shape[0], cfg.micro_batches
    if n % m:
      raise ValueError(f"batch of {n} rows does not split into {m} micro-batches")
    mask = loss_weights(batch, cfg.prompt_loss_weight)
    totals = (jnp.float32(n), jnp.maximum(mask.sum(), 1.0))
    _, denom = aggregate(jnp.zeros(mask.shape, jnp.float32), mask, *totals)
    grad_fn, train, _ = optim.value_and_grad(
        lambda p, mb: sft_loss(model, cfg, p, mb, totals), params)

    def body(acc, mb):
      (loss_sum, aux), g = grad_fn(train, mb)
      acc = jax.tree.map(lambda a, x: a + x.astype(jnp.float32), acc, g)
      return acc, dict(aux, loss_sum=loss_sum)

    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), train)
    micro = jax.tree.map(lambda x: optim.split_micro_batches(x, m), batch)
    acc, aux = jax.lax.scan(body, zeros, micro)
    grads = jax.tree.map(lambda x: x / denom, acc)  # micro sums / whole-batch denominator
    grad_norm = optax.global_norm(grads)
    loss = aux["loss_sum"].sum() / denom
    finite = optim.finite_step(loss, grad_norm)
    params, opt_state = optim.apply_gradients(optimizer, grads, opt_state, params, finite)
    tokens = aux["tokens"].sum()
    metrics = dict(loss=loss, grad_norm=grad_norm, tokens=tokens,
                   skipped_nonfinite=1.0 - finite.astype(jnp.float32),
                   nll_per_token=aux["nll"].sum() / jnp.maximum(tokens, 1.0))
    return params, opt_state, metrics

  return optim.jit_update(update, shardings, donate)


@dataclasses.dataclass(frozen=True)
class SFTHistory:
  steps: list[dict[str, float]]  # per step: step, epoch, loss, grad_norm, tokens, lr, seconds...
  encoding: EncodeReport
  rows_dropped_per_epoch: int  # the incomplete final batch of each epoch (reshuffled each epoch)


def _epoch_order(rows: int, seed: int, epoch: int, lengths: Sequence[int] | None = None,
                 batch_size: int = 1, length_groups: int = 0) -> np.ndarray:
  """The epoch's row order, batch after batch: a permutation from (seed, epoch). With
  length_groups k > 1, each run of k batches of that permutation is sorted by row length and cut
  into batches, whose order is then shuffled (HF's group_by_length): a batch holds rows of
  similar lengths, so less of it is padding; the rows left for the incomplete final batch stay
  last."""
  order = np.random.default_rng((seed, epoch)).permutation(rows)
  if length_groups <= 1 or lengths is None:
    return order
  full = rows // batch_size * batch_size
  lengths = np.asarray(lengths)
  batches = []
  for start in range(0, full, batch_size * length_groups):
    part = order[start:min(start + batch_size * length_groups, full)]
    part = part[np.argsort(-lengths[part], kind="stable")]
    batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
  shuffle = np.random.default_rng((seed, epoch, 1)).permutation(len(batches))
  return np.concatenate([batches[i] for i in shuffle] + [order[full:]])


def _placement(model: Decoder, optimizer, params, batch_size: int, mesh: Mesh | None, rules,
               opt_state: Any = None):
  """(opt_state, update shardings, batch sharding); the batch must split evenly over data axes.

  A given (restored) opt_state is kept; otherwise a fresh one is laid out like the params.
  """
  if mesh is None:
    return (optim.init_state(optimizer, params) if opt_state is None else opt_state), None, None
  rules = rules or sharding_lib.DEFAULT_RULES
  dp = math.prod(mesh.shape[a] for a in sharding_lib.batch_axes(mesh, rules))
  if batch_size % dp:
    raise ValueError(f"batch_size {batch_size} does not divide over {dp} data-parallel devices")
  p_sh = param_shardings(model, mesh, rules)
  o_sh = opt_state_shardings(optimizer, params, p_sh, NamedSharding(mesh, P()))
  if opt_state is None:
    opt_state = jax.jit(lambda p: optim.init_state(optimizer, p), out_shardings=o_sh)(params)
  return opt_state, (p_sh, o_sh), sharding_lib.data_sharding(mesh, rules, 2)


# (model, SFT settings, optimizer settings) -> jitted update.
_SFT_UPDATES: dict[Any, Callable] = {}


def run_sft(model: Decoder, params: Any, tokenizer, examples: Sequence[SFTExample], *,
            optimizer_config: OptimizerConfig, batch_size: int, max_length: int,
            sft_config: SFTConfig = SFTConfig(), steps: int | None = None,
            epochs: int | None = None, seed: int = 0, mesh: Mesh | None = None, rules=None,
            chat: bool = True, truncate: str = "target", pad_multiple: int = 64,
            log_fn: Callable[[str], None] = print, opt_state: Any = None, start_step: int = 0,
            on_step: Callable[[int, Any, Any, dict], bool] | None = None,
            length_groups: int = 0) -> tuple[Any, Any, SFTHistory]:
  """SFT for `steps` steps or `epochs` epochs (default one); returns (params, opt_state, history).

  Resuming: pass the saved params and opt_state with start_step; batches are a function of
  (seed, step), so the continued run equals an uninterrupted one. on_step(step, params,
  opt_state, metrics) runs after each step; returning True stops there (preemption).

  `params` are donated (pass a copy to keep them). Each epoch reshuffles the rows with
  (seed, epoch) and drops its incomplete final batch rather than pad it with empty rows, so
  every step sees batch_size real rows; the dropped count is in the history. A cosine schedule
  with total_steps=0 spans this run. `seconds` of a step include compiling a new padded length.
  length_groups k > 1 batches rows of similar length together (_epoch_order).
  """
  if steps is not None and epochs is not None:
    raise ValueError("pass steps or epochs, not both")
  rows, report = tokenize_sft(tokenizer, examples, max_length=max_length, chat=chat,
                              truncate=truncate)
  per_epoch = len(rows) // batch_size
  if per_epoch == 0:
    raise ValueError(f"{len(rows)} encoded rows do not fill one batch of {batch_size}: "
                     f"{report.summary()}")
  total = steps if steps is not None else (epochs or 1) * per_epoch
  if optimizer_config.schedule == "cosine" and not optimizer_config.total_steps:
    optimizer_config = dataclasses.replace(optimizer_config, total_steps=total)
  optimizer = make_optimizer(optimizer_config)
  lr = learning_rate_schedule(optimizer_config)
  opt_state, shardings, data = _placement(model, optimizer, params, batch_size, mesh, rules,
                                          opt_state)
  key = (model, sft_config, optimizer_config)
  if key not in _SFT_UPDATES:  # shared by runs in one process (resume, tests, notebooks)
    _SFT_UPDATES[key] = make_sft_update(model, sft_config, optimizer, shardings=shardings)
  update = _SFT_UPDATES[key]
  history = SFTHistory([], report, len(rows) % batch_size)
  lengths = [len(r.tokens) for r in rows] if length_groups > 1 else None
  # Completion-only loss: the head (vocab-wide logits) runs over a window of each row's target
  # columns, not its prompt's (SequenceBatch.score_width).
  window = 0 if sft_config.prompt_loss_weight else target_window(rows, pad_multiple)
  log_fn(f"sft: {report.summary()}; {per_epoch} steps per epoch, "
         f"{history.rows_dropped_per_epoch} rows per epoch dropped (incomplete batch); "
         + (f"the head scores a {window}-column window per row" if window else
            "the head scores every column (prompt_loss_weight > 0)"))
  order, order_epoch = None, -1
  for step in range(start_step, total):
    epoch, k = divmod(step, per_epoch)
    if epoch != order_epoch:  # once per epoch, not per step
      order, order_epoch = _epoch_order(len(rows), seed, epoch, lengths, batch_size,
                                        length_groups), epoch
    picked = order[k * batch_size:(k + 1) * batch_size]
    batch = pad_rows([rows[i] for i in picked], multiple=pad_multiple, max_length=max_length,
                     score_width=window)
    batch = jax.device_put(batch, data) if data is not None else jax.tree.map(jnp.asarray, batch)
    start = time.perf_counter()
    params, opt_state, metrics = update(params, opt_state, batch)
    metrics = {name: float(v) for name, v in multihost.host_tree(metrics).items()}
    history.steps.append(dict(metrics, step=step, epoch=epoch, learning_rate=float(lr(step)),
                              length=batch.tokens.shape[1], seconds=time.perf_counter() - start))
    log_fn(f"sft step {step}: loss {metrics['loss']:.4f} grad_norm {metrics['grad_norm']:.3f} "
           f"tokens {int(metrics['tokens'])} ({history.steps[-1]['seconds']:.2f}s)")
    if on_step is not None and on_step(step, params, opt_state, history.steps[-1]):
      break
  return params, opt_state, history
