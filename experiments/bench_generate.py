"""Greedy generation throughput: arm_jax vs transformers/torch, and this machine's roofline.

SmolLM2-135M-Instruct (the shipped GGUF, dequantised to f32, the same weights in both),
prompts of exactly 128 tokens, exactly 128 new tokens (no stop token can end a row early),
batch 8 and 32, the same number of threads for XLA and torch.

Roofline of one whole call: prefill FLOPs / measured matmul throughput, plus for each decode
step the larger of (parameter + KV-cache bytes) / measured memory bandwidth and
FLOPs / measured skinny-matmul throughput. The reported fraction is roofline time / measured.
Each side runs in its own subprocess: torch's OpenMP threads, once started, keep competing
with XLA's for the same cores (measured: 57.8 -> 49.5 tok/s at batch 8 in a shared process).

  python experiments/bench_generate.py [--batches 8,32] [--repeats 2] [--dtype bfloat16]
      [--skip_torch]

--dtype loads arm_jax's weights in that dtype (its matmuls run in it); transformers stays in
float32, so with bfloat16 the "equal tokens" figure measures bf16's drift from f32 greedy.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

PROMPT_LEN = NEW_TOKENS = 128


def _parse():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batches", default="8,32")
  p.add_argument("--repeats", type=int, default=2)
  p.add_argument("--threads", type=int, default=os.cpu_count(),
                 help="torch threads; XLA uses one per core, so keep the default to match")
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                 help="arm_jax's parameter and matmul dtype")
  p.add_argument("--skip_torch", action="store_true", help="arm_jax only")
  p.add_argument("--only", choices=["arm_jax", "torch"], help=argparse.SUPPRESS)
  p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
  p.add_argument("--tokens_out", help=argparse.SUPPRESS)
  return p.parse_args()


ARGS = _parse()
# XLA's CPU client runs one intra-op thread per core; torch gets the same count below.
os.environ.setdefault("OMP_NUM_THREADS", str(ARGS.threads))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from arm_jax import assets, xla_options  # noqa: E402
from arm_jax.models import load_pretrained  # noqa: E402
from arm_jax.sampling import Sampler, SamplingParams  # noqa: E402

xla_options.configure_process()  # as the package's entry points do


def _best_time(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def measure_machine():
  """Matmul throughput (prefill-shaped and skinny) and memory bandwidth, in XLA on this CPU."""
  def flops_per_s(m, k, n):
    a = jnp.ones((m, k), jnp.float32)
    b = jnp.ones((k, n), jnp.float32)
    f = jax.jit(lambda a, b: a @ b)
    f(a, b).block_until_ready()
    t = _best_time(lambda: f(a, b).block_until_ready(), 5)
    return 2 * m * k * n / t

  big = flops_per_s(1024, 576, 1536)
  skinny = {b: flops_per_s(b, 576, 1536) for b in (8, 32)}
  x = jnp.ones((64 * 1024 * 1024,), jnp.float32)  # 256 MiB, far past the caches
  f = jax.jit(jnp.sum)
  f(x).block_until_ready()
  bw = x.nbytes / _best_time(lambda: f(x).block_until_ready(), 5)
  return big, skinny, bw


def roofline_seconds(cfg, batch, big, skinny, bw):
  e, f, h, k, d, l, v = (cfg.hidden_size, cfg.intermediate_size, cfg.num_heads,
                         cfg.num_kv_heads, cfg.head_dim, cfg.num_layers, cfg.vocab_size)
  layer_params = l * (e * (h + 2 * k) * d + h * d * e + 3 * e * f)
  prefill = 2 * batch * PROMPT_LEN * layer_params + 2 * batch * e * v  # logits at last position
  prefill += 4 * batch * l * h * d * PROMPT_LEN * PROMPT_LEN / 2  # causal attention
  total = prefill / big
  param_bytes = 4 * (layer_params + v * e)
  for step in range(NEW_TOKENS):
    slots = PROMPT_LEN + step
    cache_bytes = 4 * 2 * l * batch * k * slots * d
    flops = 2 * batch * (layer_params + v * e) + 4 * batch * l * h * d * slots
    total += max((param_bytes + cache_bytes) / bw, flops / skinny[batch if batch in skinny else 32])
  return total


def _prompts(batch: int, vocab: int) -> np.ndarray:
  return np.random.RandomState(batch).randint(100, vocab - 100, (batch, PROMPT_LEN))


def _child() -> None:
  """One side, one batch size: prints `first_s best_s` and saves the generated tokens."""
  path = assets.smollm2_gguf()
  if ARGS.only == "arm_jax":
    model, params = load_pretrained(path, dtype=ARGS.dtype)
    vocab = model.config.vocab_size
    # No stop token: an id outside the vocabulary can never be emitted.
    sampler = Sampler(model, stop_ids=[vocab], pad_id=0)
    sp = SamplingParams(max_new_tokens=NEW_TOKENS, greedy=True)
    prompts = _prompts(ARGS.batch, vocab).tolist()
    run = lambda: sampler(params, prompts, sp, jax.random.key(0))  # noqa: E731
    start = time.perf_counter()
    out = run()
    first = time.perf_counter() - start
    assert (out.lengths == NEW_TOKENS).all()
    tokens = out.tokens
  else:
    import torch
    import transformers

    torch.set_num_threads(ARGS.threads)
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32).eval()
    ids = torch.as_tensor(_prompts(ARGS.batch, hf.config.vocab_size))
    # generate() runs under torch.no_grad() itself.
    run = lambda: hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids),  # noqa: E731
                              max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                              do_sample=False, pad_token_id=0)
    start = time.perf_counter()
    tokens = run()[:, PROMPT_LEN:].numpy()
    first = time.perf_counter() - start
  best = _best_time(run, ARGS.repeats)
  np.save(ARGS.tokens_out, tokens)
  print(f"RESULT {first} {best}")


def _run_child(side: str, batch: int, tokens_out: str) -> tuple[float, float, np.ndarray]:
  cmd = [sys.executable, os.path.abspath(__file__), "--only", side, "--batch", str(batch),
         "--repeats", str(ARGS.repeats), "--threads", str(ARGS.threads),
         "--tokens_out", tokens_out, "--dtype", ARGS.dtype]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  if proc.returncode or not lines:
    raise RuntimeError(f"{side} batch {batch} failed:\n{proc.stderr[-3000:]}")
  first, best = map(float, lines[-1].split()[1:])
  return first, best, np.load(tokens_out)


def main():
  model, _ = load_pretrained(assets.smollm2_gguf())
  big, skinny, bw = measure_machine()
  print(f"threads: {ARGS.threads}; jax {jax.__version__}; each side in its own process")
  print(f"machine: matmul {big / 1e9:.1f} GFLOP/s, skinny matmul b8 {skinny[8] / 1e9:.1f} / "
        f"b32 {skinny[32] / 1e9:.1f} GFLOP/s, memory bandwidth {bw / 1e9:.1f} GB/s")
  speedups = {}
  with tempfile.TemporaryDirectory() as tmp:
    for batch in [int(b) for b in ARGS.batches.split(",")]:
      first, ours, our_tokens = _run_child("arm_jax", batch, os.path.join(tmp, "a.npy"))
      roof = roofline_seconds(model.config, batch, big, skinny, bw)
      tok = batch * NEW_TOKENS
      line = (f"batch {batch}: arm_jax ({ARGS.dtype}) {tok / ours:.1f} new tok/s "
              f"({ours:.2f}s/call, compile {max(first - ours, 0):.1f}s); roofline (f32) "
              f"{tok / roof:.1f} new tok/s ({roof:.2f}s/call), arm_jax reaches {roof / ours:.0%}")
      if not ARGS.skip_torch:
        _, theirs, ref_tokens = _run_child("torch", batch, os.path.join(tmp, "t.npy"))
        speedups[batch] = theirs / ours
        line += (f"; transformers {tok / theirs:.1f} new tok/s ({theirs:.2f}s/call), greedy "
                 f"tokens equal to transformers: {(ref_tokens == our_tokens).mean():.1%}")
      print(line, flush=True)
  for batch, s in speedups.items():
    print(f"generate_speedup_vs_transformers_b{batch}: {s:.2f}")


if __name__ == "__main__":
  _child() if ARGS.only else main()
