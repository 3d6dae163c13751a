"""SFT: encoding with the SmolLM2 chat template, the exact gradient, and runs on 1 and 8 devices."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from arm_jax import assets, sharding
from arm_jax.models import Decoder, init_params
from arm_jax.rl.optim import OptimizerConfig
from arm_jax.core import SFTExample
from arm_jax.rl.logprobs import SequenceBatch, token_logprobs
from arm_jax.rl.sft import (Row, SFTConfig, encode_sft, make_sft_update, pad_rows, run_sft,
                            target_window)
from arm_jax.tokenizer import load_tokenizer
from rl_fixtures import TINY, full_logprobs, sequences, tiny_model

EXAMPLES = [
    SFTExample("Write a rubric for a haiku.", "1. Three lines.\n2. Syllables 5-7-5."),
    SFTExample([{"role": "system", "content": "You judge."},
                {"role": "user", "content": "Which is better, A or B?"}], "Winner: A"),
    SFTExample("Say nothing.", ""),
]


@pytest.fixture(scope="module")
def tokenizer():
  return load_tokenizer(assets.smollm2_gguf())


def _masked(batch, row):
  return np.asarray(batch.tokens[row])[np.asarray(batch.loss_mask[row])]


def test_encode_scores_target_and_turn_end_only(tokenizer):
  batch, report = encode_sft(tokenizer, EXAMPLES, max_length=200)
  end = tokenizer.convert_tokens_to_ids("<|im_end|>")
  assert report.kept == (0, 1, 2) and not report.truncated and not report.skipped
  assert batch.tokens.shape[1] % 64 == 0
  for row, ex in enumerate(EXAMPLES):
    messages = [{"role": "user", "content": ex.prompt}] if isinstance(ex.prompt, str) else ex.prompt
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]
    real = int(batch.attention[row].sum())
    assert batch.attention[row, :real].all() and not batch.attention[row, real:].any()
    np.testing.assert_array_equal(batch.tokens[row, :len(prompt)], prompt)
    assert not batch.loss_mask[row, :len(prompt)].any()
    target = _masked(batch, row)
    assert target[-1] == end and tokenizer.decode(target[:-1]) == ex.target
    assert batch.loss_mask[row].sum() == real - len(prompt)
  assert report.target_tokens == int(batch.loss_mask.sum())
  plain, _ = encode_sft(tokenizer, EXAMPLES[:1], max_length=200, chat=False)
  np.testing.assert_array_equal(plain.tokens[0, :plain.attention[0].sum()],
                                tokenizer.encode(EXAMPLES[0].prompt + EXAMPLES[0].target) + [end])


def test_encode_counts_truncated_and_skipped(tokenizer):
  long = SFTExample("Hi", "word " * 100)
  huge_prompt = SFTExample("word " * 100, "ok")
  examples = [SFTExample("Hi", "Fine."), long, huge_prompt]
  prompt_len = len(tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}],
                                                 add_generation_prompt=True)["input_ids"])
  max_length = prompt_len + 20
  batch, report = encode_sft(tokenizer, examples, max_length=max_length)
  assert report.kept == (0, 1) and report.truncated == (1,) and report.skipped == (2,)
  assert batch.tokens.shape[1] == max_length  # rounding up to 64 is capped at max_length
  assert batch.loss_mask[1].sum() == 20 and batch.attention[1].all()
  assert tokenizer.decode(_masked(batch, 1)) == " ".join(["word"] * 20)  # no turn-end token
  assert report.target_tokens_cut == len(tokenizer.encode("word " * 100)) + 1 - 20
  _, report = encode_sft(tokenizer, examples, max_length=max_length, truncate="skip")
  assert report.kept == (0,) and report.skipped == (1, 2) and not report.truncated


AGGREGATIONS = ("token_mean", "seq_mean_token_mean")
LR = 2.0 ** 10  # params are O(1): a small SGD step would drown the gradient in f32 rounding


@pytest.fixture(scope="module")
def tiny():
  """A tiny random model, a batch, and the plain-JAX NLL gradient for both aggregations."""
  model, params = tiny_model()
  seq = sequences(n=8)

  def loss_fn(p, agg):
    logp, _ = full_logprobs(model, p, seq)
    mask = seq.loss_mask.astype(jnp.float32)
    nll = -logp * mask
    if agg == "token_mean":
      return nll.sum() / mask.sum()
    return (nll.sum(1) / jnp.maximum(mask.sum(1), 1)).mean()

  reference = jax.jit(lambda p: {a: jax.value_and_grad(loss_fn)(p, a) for a in AGGREGATIONS})
  return model, params, seq, reference(params)


def _sgd_step_matches(model, cfg, params, seq, loss, want):
  """One SGD update = -LR * `want` (the reference gradient) and logs `loss`; its metrics."""
  sgd = optax.sgd(LR)
  new, _, metrics = make_sft_update(model, cfg, sgd, donate=False)(params, sgd.init(params), seq)
  got = jax.tree.map(lambda a, b: (a - b) / LR, params, new)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    scale = float(np.abs(np.asarray(w)).max())
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5 * scale, rtol=0)
  np.testing.assert_allclose(float(metrics["loss"]), float(loss), rtol=1e-5)
  return metrics


@pytest.mark.parametrize("agg,micro_batches", [("token_mean", 1), ("token_mean", 2),
                                               ("seq_mean_token_mean", 2)])
def test_update_gradient_matches_full_logits_reference(tiny, agg, micro_batches):
  """SGD step = -LR * gradient; two micro-batches accumulate to the un-split gradient."""
  model, params, seq, reference = tiny
  loss, want = reference[agg]
  cfg = SFTConfig(loss_aggregation=agg, micro_batches=micro_batches, logprob_chunk=4)
  metrics = _sgd_step_matches(model, cfg, params, seq, loss, want)
  assert float(metrics["tokens"]) == float(seq.loss_mask.sum())


def _windowed(seq, width):
  return SequenceBatch(seq.tokens, seq.attention, seq.loss_mask, score_width=width)


@pytest.mark.parametrize("width", [7, 9])
def test_target_window_scores_the_same_and_nothing_else(tiny, width):
  """score_width: log-probs equal the full logits' on every target token, are 0 outside each
  row's window (its first target column on, moved left to end at the last column), and the
  update's gradient is the reference's. The fixture's targets start at column 5 of 12 and run
  up to 7 tokens: width 9 would run past the end, so its windows start at column 3."""
  model, params, seq, reference = tiny
  logp, entropy = token_logprobs(model, params, _windowed(seq, width), chunk=4)
  full, _ = full_logprobs(model, params, seq)
  start = min(5, seq.tokens.shape[1] - width)
  inside = np.zeros(seq.tokens.shape, bool)
  inside[:, start:start + width] = True
  np.testing.assert_allclose(np.asarray(logp)[inside], np.asarray(full)[inside], atol=1e-5)
  assert not np.asarray(logp)[~inside].any() and not np.asarray(entropy)[~inside].any()
  _, unwindowed = token_logprobs(model, params, seq, chunk=4)
  np.testing.assert_allclose(np.asarray(entropy)[inside], np.asarray(unwindowed)[inside],
                             atol=1e-5)
  loss, want = reference["token_mean"]
  cfg = SFTConfig(micro_batches=2, logprob_chunk=4)
  _sgd_step_matches(model, cfg, params, _windowed(seq, width), loss, want)
  with pytest.raises(ValueError, match="prompt_loss_weight"):
    make_sft_update(model, SFTConfig(prompt_loss_weight=0.5), optax.sgd(1.0), donate=False)(
        params, (), _windowed(seq, width))
  with pytest.raises(ValueError, match="score_width=12"):
    token_logprobs(model, params, _windowed(seq, 12))


def test_pad_rows_window_holds_every_target():
  """pad_rows keeps a score_width only when it is narrower than the row, and names a row whose
  target does not fit it; target_window is the longest target rounded up."""
  rows = [Row([5] * 10 + [6] * 3, 10), Row([5] * 4 + [6] * 9, 4)]
  assert target_window(rows, 4) == 12 and target_window(rows, 16) == 16
  assert pad_rows(rows, multiple=16, score_width=12).score_width == 12
  assert pad_rows(rows, multiple=16, score_width=16).score_width == 0  # all 15 columns from 1
  assert pad_rows(rows, multiple=16).score_width == 0
  with pytest.raises(ValueError, match="row 1: its target of 9 tokens does not fit score_width=8"):
    pad_rows(rows, multiple=16, score_width=8)


@pytest.mark.parametrize("agg", AGGREGATIONS)
def test_prompt_loss_weight_scores_prompt_tokens_after_the_first(tiny, agg):
  """prompt_loss_weight w: completion tokens weigh 1, prompt tokens w, except each row's first
  real token (nothing to predict it from); the hand-built reference picks them by position."""
  model, params, seq, _ = tiny
  w = 0.25
  weights = np.asarray(seq.loss_mask, np.float32)
  for i, row in enumerate(np.asarray(seq.attention)):
    real = np.flatnonzero(row)
    prompt = [j for j in real[1:] if not seq.loss_mask[i, j]]
    weights[i, prompt] = w

  def loss_fn(p):
    nll = -full_logprobs(model, p, seq)[0] * weights
    if agg == "token_mean":
      return nll.sum() / weights.sum()
    return (nll.sum(1) / weights.sum(1)).mean()

  loss, want = jax.jit(jax.value_and_grad(loss_fn))(params)
  cfg = SFTConfig(loss_aggregation=agg, micro_batches=2, logprob_chunk=4, prompt_loss_weight=w)
  metrics = _sgd_step_matches(model, cfg, params, seq, loss, want)
  # The logged NLL and token count stay the completion's.
  logp = np.asarray(full_logprobs(model, params, seq)[0])
  mask = np.asarray(seq.loss_mask)
  np.testing.assert_allclose(float(metrics["nll_per_token"]), -logp[mask].mean(), rtol=1e-5)
  assert float(metrics["tokens"]) == mask.sum()
  with pytest.raises(ValueError, match="prompt_loss_weight"):
    SFTConfig(prompt_loss_weight=-1.0)


def test_run_on_8_device_mesh_matches_one_device_and_learns(tokenizer):
  """Five steps on one repeated batch of 8 (AdamW 1e-2): same losses and params on a
  (2, 2, 2) mesh as on one device, and the loss falls."""
  cfg = TINY.replace(vocab_size=max(49152, len(tokenizer)))
  mesh = sharding.make_mesh((2, 2, 2))
  rules = sharding.DEFAULT_RULES
  eight = Decoder(cfg, mesh=mesh, rules=rules)
  p8 = init_params(eight, jax.random.key(0), mesh, rules)
  p1 = jax.tree.map(jnp.asarray, jax.device_get(p8))  # the same init on the default device
  examples = [SFTExample(f"Rubric for task {i}?", f"Criterion {i}: be correct and brief.")
              for i in range(9)]
  logs = []
  kw = dict(optimizer_config=OptimizerConfig(learning_rate=1e-2, eps=1e-6),
            sft_config=SFTConfig(micro_batches=2), batch_size=8, max_length=64, steps=5, seed=3,
            pad_multiple=16, log_fn=logs.append)  # rows of 48 columns, a 16-column target window
  p1, _, h1 = run_sft(Decoder(cfg), p1, tokenizer, examples, **kw)
  p8, _, h8 = run_sft(eight, p8, tokenizer, examples, mesh=mesh, rules=rules, **kw)
  assert sum("the head scores a 16-column window per row" in line for line in logs) == 2
  assert h1.rows_dropped_per_epoch == 1 and [s["epoch"] for s in h1.steps] == [0, 1, 2, 3, 4]
  for a, b in zip(h1.steps, h8.steps, strict=True):
    assert np.isfinite(a["loss"]) and a["tokens"] == b["tokens"] > 0
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-5)
  losses = [s["loss"] for s in h1.steps]
  assert losses[-1] < 0.8 * losses[0], losses
  assert len(p8["embedding"].sharding.device_set) == 8
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5, rtol=0)


def test_length_groups_batch_alike_rows_cover_each_row_once_and_pad_less():
  """_epoch_order with length_groups: still each row once per epoch (the incomplete batch's rows
  last), the same order for the same (seed, epoch), and far less padding than random batches
  on a spread of lengths (counted here: sum over batches of batch_size x its longest row)."""
  import numpy as np  # noqa: PLC0415

  from arm_jax.rl.sft import _epoch_order  # noqa: PLC0415
  rng = np.random.default_rng(0)
  lengths = rng.integers(300, 1500, size=203)
  bs = 8

  def padded(order):
    return sum(bs * max(lengths[order[i:i + bs]]) for i in range(0, 200, bs))

  for epoch in range(3):
    plain = _epoch_order(203, 5, epoch)
    grouped = _epoch_order(203, 5, epoch, lengths, bs, 16)
    assert sorted(grouped.tolist()) == list(range(203))
    assert grouped[200:].tolist() == plain[200:].tolist()  # the dropped rows stay the dropped
    np.testing.assert_array_equal(grouped, _epoch_order(203, 5, epoch, lengths, bs, 16))
    batches = [grouped[i:i + bs] for i in range(0, 200, bs)]
    # Every batch's rows come from one run of 16 batches of the plain order, sorted.
    runs = [set(plain[i:i + bs * 16].tolist()) for i in range(0, 200, bs * 16)]
    assert all(any(set(b.tolist()) <= r for r in runs) for b in batches)
    assert padded(grouped) < 0.8 * padded(plain)
  assert not np.array_equal(_epoch_order(203, 5, 0, lengths, bs, 16),
                            _epoch_order(203, 5, 1, lengths, bs, 16))
  np.testing.assert_array_equal(_epoch_order(203, 5, 0, lengths, bs, 0), _epoch_order(203, 5, 0))
