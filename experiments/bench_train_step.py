"""Training step cost: the jitted GRPO update vs plain forward+backward, and vs transformers/torch.

SmolLM2-135M-Instruct (the shipped GGUF, dequantised to f32, the same weights everywhere), batch
8 of 512 random tokens (128 "prompt" + 384 scored "completion" tokens, no padding), f32.
Measured, each in its own subprocess so that its peak memory is its own:

  grpo         arm_jax.rl.grpo.make_update: one jitted update (mu=1: one optimizer step, beta
               0.001 against precomputed reference log-probs, micro_batches=1, random rewards,
               old log-probs = current log-probs + small noise), AdamW included
  fwd_bwd      jax.grad of the masked mean token NLL through rl.logprobs.token_logprobs (the
               same chunked head, with_entropy=True as in the update, scoring the completion
               columns only as a rollout batch does): the baseline
  full_logits  the same loss from full [batch, length, vocab] logits (model.apply ->
               log_softmax), for information
  torch        transformers' LlamaForCausalLM, the same loss (full logits -> log_softmax),
               loss.backward(), with torch.set_num_threads(threads)

Per variant: compile time (jax: lower+compile, ahead of the timed steps), then the best and
median of --repeats timed steps (block_until_ready; the first torch step is one of them).
Memory: the child's VmHWM (peak RSS), reset through /proc/self/clear_refs after loading and
compiling, so "peak" is the peak RSS while the timed steps run; "increase" is that peak minus
the RSS right after the weights (and inputs) were loaded. XLA's compiled memory analysis is
printed for the jax variants. Ratios use best times.

  python experiments/bench_train_step.py [--batch 8] [--seq_len 512] [--repeats 3]
      [--skip_torch] [--skip_full_logits] [--remat_policy dots_with_no_batch_dims|none|...]
      [--scan_layers 1|0] [--small] [--lora_rank R] [--compute_dtype bfloat16]

--lora_rank R adapts every projection with rank-R LoRA (arm_jax.models.lora): grpo and fwd_bwd
then differentiate (and grpo updates) the adapters only, as a LoRA run trains.

--small runs a tiny random Llama (written to a temporary HF directory that both arm_jax and
transformers load) at batch 4 x 64 tokens unless --batch/--seq_len say otherwise: a smoke test
(about a minute in all on 2 cores, nearly all of it XLA compiles). The last lines are
machine-readable `key: value`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

VARIANTS = ("grpo", "fwd_bwd", "full_logits", "torch")
RESULT_TAG = "BENCH_RESULT "
GB = 1e9


def _parse():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=None, help="rows (default 8; 4 with --small)")
  p.add_argument("--seq_len", type=int, default=None,
                 help="tokens per row (default 512; 64 with --small)")
  p.add_argument("--prompt_len", type=int, default=None,
                 help="unscored leading tokens (default seq_len // 4)")
  p.add_argument("--group_size", type=int, default=0,
                 help="GRPO group size (default: the largest of 8, 4, 2, 1 dividing --batch)")
  p.add_argument("--shared_prefix", type=int, default=0, choices=(0, 1),
                 help="1: the arm_jax GRPO update and forward+backward run each group's prompt "
                      "once (GRPOConfig.shared_prefix); the rows of a group always share their "
                      "prompt, as rollouts do")
  p.add_argument("--micro_batches", type=int, default=1,
                 help="the GRPO update's micro-batches (exact gradient accumulation)")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--chunk", type=int, default=128, help="time chunk of the log-prob head")
  p.add_argument("--threads", type=int, default=os.cpu_count(),
                 help="torch threads; XLA uses one per core, so keep the default to match")
  p.add_argument("--remat_policy", default="dots_with_no_batch_dims",
                 choices=("none", "full", "dots", "dots_with_no_batch_dims"),
                 help="decoder remat policy for the arm_jax variants: the default keeps the "
                      "weight matmuls' outputs and recomputes attention (measured at 8 x 512: "
                      "39 s / 4.9 GB vs 44 s / 13.3 GB with none)")
  p.add_argument("--scan_layers", type=int, choices=(0, 1), default=1,
                 help="1: the decoder's layers in one lax.scan (the library default); 0: unrolled, "
                      "one compiled body per layer")
  p.add_argument("--compute_dtype", default="float32", choices=("float32", "bfloat16"),
                 help="the arm_jax variants' matmul dtype (parameters stay float32)")
  p.add_argument("--lora_rank", type=int, default=0,
                 help="LoRA rank of the arm_jax variants (alpha 2 * rank); 0 = full fine-tuning")
  p.add_argument("--skip_torch", action="store_true")
  p.add_argument("--skip_full_logits", action="store_true")
  p.add_argument("--small", action="store_true", help="tiny random model: a smoke test")
  p.add_argument("--random_smollm2", action="store_true",
                 help="random weights of SmolLM2-135M's shape instead of the GGUF: the same "
                      "step cost where the offline package is missing (an accelerator host)")
  p.add_argument("--only", choices=VARIANTS, help=argparse.SUPPRESS)  # child mode
  p.add_argument("--checkpoint", help=argparse.SUPPRESS)  # child mode: GGUF file or HF dir
  args = p.parse_args()
  if args.batch is None:
    args.batch = 4 if args.small else 8
  if args.seq_len is None:
    args.seq_len = 64 if args.small else 512
  if args.prompt_len is None:
    args.prompt_len = args.seq_len // 4
  if not 1 <= args.prompt_len < args.seq_len:
    p.error("need 1 <= prompt_len < seq_len")
  if not args.group_size:
    args.group_size = next(g for g in (8, 4, 2, 1) if args.batch % g == 0)
  if args.batch % args.group_size:
    p.error(f"--batch {args.batch} does not split into groups of {args.group_size}")
  return args


ARGS = _parse()
CHILD_ENV = dict(os.environ)
# XLA's CPU client runs one intra-op thread per core; torch gets the same count below.
os.environ.setdefault("OMP_NUM_THREADS", str(ARGS.threads))


# ----------------------------------------------------------------------------- memory probes

def _status_kb(key: str) -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(key + ":"):
        return int(line.split()[1])
  raise KeyError(key)


def rss_bytes() -> int:
  return _status_kb("VmRSS") * 1024


def peak_rss_bytes() -> int:
  return _status_kb("VmHWM") * 1024


def reset_peak_rss() -> bool:
  """Resets VmHWM to the current RSS (Linux >= 4.0); False where the kernel refuses."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


# ----------------------------------------------------------------------------- shared inputs

def make_tokens(vocab: int):
  """Random ids [batch, seq_len] (no padding) and the scored-token mask, both numpy."""
  import numpy as np

  rng = np.random.RandomState(0)
  tokens = rng.randint(min(100, vocab // 4), vocab - min(100, vocab // 4),
                       (ARGS.batch, ARGS.seq_len)).astype(np.int32)
  # A group's rows share their prompt, as a rollout's do.
  group_first = np.arange(ARGS.batch) // ARGS.group_size * ARGS.group_size
  tokens[:, :ARGS.prompt_len] = tokens[group_first, :ARGS.prompt_len]
  loss_mask = np.zeros((ARGS.batch, ARGS.seq_len), bool)
  loss_mask[:, ARGS.prompt_len:] = True
  return tokens, loss_mask


def _times(step, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  return times


# ----------------------------------------------------------------------------- jax children

def _memory_analysis(compiled) -> dict:
  try:
    ma = compiled.memory_analysis()
  except Exception as e:  # noqa: BLE001 - not every backend implements it
    print(f"  memory_analysis unavailable: {e!r}")
    return {}
  if ma is None:
    print("  memory_analysis unavailable (None)")
    return {}
  out = {k: int(getattr(ma, f"{k}_size_in_bytes"))
         for k in ("temp", "argument", "output", "alias", "generated_code")
         if hasattr(ma, f"{k}_size_in_bytes")}
  print("  xla memory_analysis: " + ", ".join(f"{k} {v / GB:.3f} GB" for k, v in out.items()))
  return out


def run_jax(variant: str) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  from arm_jax.models import load_pretrained
  from arm_jax.rl.grpo import GRPOConfig, RolloutBatch, make_update, sequence_logprobs
  from arm_jax.rl.logprobs import SequenceBatch, token_logprobs
  from arm_jax.models import lora
  from arm_jax.rl.optim import OptimizerConfig, init_state, make_optimizer
  from arm_jax.xla_options import configure_process, jit_training

  configure_process()  # as the package's entry points do

  start = time.perf_counter()
  model, params = load_pretrained(ARGS.checkpoint, remat_policy=ARGS.remat_policy,
                                  scan_layers=bool(ARGS.scan_layers), lora_rank=ARGS.lora_rank,
                                  compute_dtype=ARGS.compute_dtype,
                                  lora_alpha=2.0 * max(ARGS.lora_rank, 1))
  cfg = model.config
  tokens, loss_mask = make_tokens(cfg.vocab_size)
  # As a rollout: the completion starts at a fixed column, so the head skips the prompt.
  seq = SequenceBatch(jnp.asarray(tokens), jnp.ones(tokens.shape, bool), jnp.asarray(loss_mask),
                      score_from=ARGS.prompt_len)
  jax.block_until_ready((params, seq))
  load_s = time.perf_counter() - start
  rss_loaded = rss_bytes()
  print(f"  {jax.devices()[0].platform} x{len(jax.devices())}, jax {jax.__version__}, remat "
        f"{cfg.remat_policy}, scan_layers {cfg.scan_layers}, lora_rank {cfg.lora_rank}, "
        f"matmuls {cfg.dtype}; "
        f"loaded in {load_s:.1f}s, rss {rss_loaded / GB:.2f} GB")
  mask_f = seq.loss_mask.astype(jnp.float32)

  if variant == "grpo":
    gcfg = GRPOConfig(group_size=ARGS.group_size, advantage="grpo", eps_low=0.2, eps_high=0.28,
                      beta=0.001, mu=1, loss_aggregation="seq_mean_token_mean",
                      micro_batches=ARGS.micro_batches, logprob_chunk=ARGS.chunk,
                      shared_prefix=bool(ARGS.shared_prefix))
    optimizer = make_optimizer(OptimizerConfig(learning_rate=1e-6))
    opt_state = init_state(optimizer, params)  # the adapters' only with --lora_rank
    logp = sequence_logprobs(model, ARGS.chunk, gcfg.prefix_rows)(params, seq)  # the reference
    rng = np.random.RandomState(1)
    noise = jnp.asarray(0.02 * rng.randn(*tokens.shape).astype(np.float32)) * mask_f
    batch = RolloutBatch(seq=seq, old_logp=logp + noise, ref_logp=logp,
                         rewards=jnp.asarray(rng.rand(ARGS.batch).astype(np.float32)))
    jax.block_until_ready((opt_state, batch))
    print(f"  GRPO: group_size {gcfg.group_size} (shared prompt {gcfg.shared_prefix}), mu {gcfg.mu}, "
          f"beta {gcfg.beta}, micro_batches "
          f"{gcfg.micro_batches}, chunk {gcfg.logprob_chunk}; AdamW lr 1e-6")
    update = make_update(model, gcfg, optimizer)
    start = time.perf_counter()
    compiled = update.lower(params, opt_state, batch).compile()
    compile_s = time.perf_counter() - start
    memory = _memory_analysis(compiled)
    state = {"params": params, "opt_state": opt_state, "metrics": None}
    del params, opt_state

    def step():
      state["metrics"] = None
      # Donated: each step consumes the previous step's params and optimizer state.
      p, s, m = compiled(state["params"], state["opt_state"], batch)
      jax.block_until_ready((p, s, m))
      state.update(params=p, opt_state=s, metrics=m)

    def summary():
      m = jax.device_get(state["metrics"])
      return dict(loss=float(m["loss"][0]), grad_norm=float(m["grad_norm"][0]),
                  kl=float(m["kl"][0]), clip_fraction=float(m["clip_fraction"][0]),
                  entropy=float(m["entropy"][0]))
  else:
    targets = seq.tokens[:, 1:]
    if variant == "fwd_bwd":
      def loss_fn(p):
        logp = token_logprobs(model, p, seq, chunk=ARGS.chunk,
                              shared_prefix=ARGS.group_size if ARGS.shared_prefix else 1)[0]
        return -(logp * mask_f).sum() / mask_f.sum()
    else:
      positions = jnp.broadcast_to(jnp.arange(ARGS.seq_len), tokens.shape)

      def loss_fn(p):
        logits = model.apply({"params": p}, seq.tokens, attention_mask=seq.attention,
                             positions=positions)
        logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
        picked = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
        m = mask_f[:, 1:]
        return -(picked * m).sum() / m.sum()
    trainable, frozen = lora.split(params)  # everything, or the adapters with --lora_rank
    fn = jit_training(jax.value_and_grad(lambda t, f: loss_fn(lora.combine(t, f))))
    start = time.perf_counter()
    compiled = fn.lower(trainable, frozen).compile()
    compile_s = time.perf_counter() - start
    memory = _memory_analysis(compiled)
    state = {"out": None}

    def step():
      state["out"] = None  # as torch's zero_grad(set_to_none=True): last step's grads go first
      out = compiled(trainable, frozen)
      jax.block_until_ready(out)
      state["out"] = out

    def summary():
      loss, grads = state["out"]
      return dict(loss=float(loss), grad_norm=float(optax.global_norm(grads)))

  peak_setup = peak_rss_bytes()
  reset_ok = reset_peak_rss()
  times = _times(step, ARGS.repeats)
  peak = peak_rss_bytes()
  return dict(times=times, compile_s=compile_s, load_s=load_s, rss_loaded=rss_loaded, peak=peak,
              peak_setup=peak_setup, reset_ok=reset_ok, memory_analysis=memory, **summary())


# ----------------------------------------------------------------------------- torch child

def run_torch() -> dict:
  # Progress bars of weight loading and GGUF de-quantisation would flood the report.
  os.environ.setdefault("TQDM_DISABLE", "1")
  os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
  import torch
  import transformers

  torch.set_num_threads(ARGS.threads)
  start = time.perf_counter()
  path = ARGS.checkpoint
  if os.path.isdir(path):
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
  else:
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32)
  hf.train()  # Llama has no dropout; train() only for the autograd-typical mode
  tokens, loss_mask = make_tokens(hf.config.vocab_size)
  ids = torch.as_tensor(tokens, dtype=torch.long)
  attention = torch.ones_like(ids)
  positions = torch.arange(ARGS.seq_len).expand(ARGS.batch, -1)
  targets = ids[:, 1:]
  mask = torch.as_tensor(loss_mask[:, 1:], dtype=torch.float32)
  load_s = time.perf_counter() - start
  rss_loaded = rss_bytes()
  print(f"  torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{torch.get_num_threads()} threads, attn {hf.config._attn_implementation}; "
        f"loaded in {load_s:.1f}s, rss {rss_loaded / GB:.2f} GB")
  state = {}

  def step():
    hf.zero_grad(set_to_none=True)
    logits = hf(input_ids=ids, attention_mask=attention, position_ids=positions).logits
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = logp.gather(-1, targets[..., None])[..., 0]
    loss = -(picked * mask).sum() / mask.sum()
    loss.backward()
    state["loss"] = loss.item()

  peak_setup = peak_rss_bytes()
  reset_ok = reset_peak_rss()
  times = _times(step, ARGS.repeats)
  peak = peak_rss_bytes()
  grad_norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in hf.parameters()
                             if p.grad is not None)).item()
  return dict(times=times, compile_s=0.0, load_s=load_s, rss_loaded=rss_loaded, peak=peak,
              peak_setup=peak_setup, reset_ok=reset_ok, memory_analysis={},
              loss=state["loss"], grad_norm=grad_norm)


# ----------------------------------------------------------------------------- parent

def tiny_checkpoint(out_dir: str, smollm2_shape: bool = False) -> str:
  """A tiny random Llama with tied embeddings (as SmolLM2), saved as an HF directory; with
  `smollm2_shape`, SmolLM2-135M-Instruct's dimensions (its GGUF's config)."""
  import jax

  from arm_jax.models import Decoder, DecoderConfig, init_params, save_pretrained

  if smollm2_shape:
    cfg = DecoderConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30,
                        num_heads=9, num_kv_heads=3, head_dim=64, rope_theta=100000.0,
                        tie_word_embeddings=True, rms_norm_eps=1e-5,
                        max_position_embeddings=8192, bos_token_id=1, eos_token_ids=(2,),
                        pad_token_id=2)
  else:
    cfg = DecoderConfig(vocab_size=1024, hidden_size=64, intermediate_size=160, num_layers=2,
                        num_heads=4, num_kv_heads=2, head_dim=16, tie_word_embeddings=True,
                        rms_norm_eps=1e-5, bos_token_id=1, eos_token_ids=(2,), pad_token_id=0)
  model = Decoder(cfg)
  params = init_params(model, jax.random.key(0))
  # init_params draws the embedding from N(0, 1): scale it down to keep logits sane.
  params = dict(params, embedding=params["embedding"] * 0.05)
  save_pretrained(model, params, out_dir)
  return out_dir


def run_child(variant: str, checkpoint: str) -> dict | None:
  cmd = [sys.executable, os.path.abspath(__file__), "--only", variant, "--checkpoint", checkpoint,
         "--batch", str(ARGS.batch), "--seq_len", str(ARGS.seq_len),
         "--prompt_len", str(ARGS.prompt_len), "--group_size", str(ARGS.group_size),
         "--repeats", str(ARGS.repeats), "--chunk", str(ARGS.chunk),
         "--threads", str(ARGS.threads), "--scan_layers", str(ARGS.scan_layers),
         "--lora_rank", str(ARGS.lora_rank), "--compute_dtype", ARGS.compute_dtype,
         "--shared_prefix", str(ARGS.shared_prefix), "--micro_batches", str(ARGS.micro_batches)]
  if ARGS.remat_policy is not None:
    cmd += ["--remat_policy", ARGS.remat_policy]
  print(f"[{variant}] subprocess", flush=True)
  start = time.perf_counter()
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1, env=CHILD_ENV)
  result = None
  for line in proc.stdout:
    if line.startswith(RESULT_TAG):
      result = json.loads(line[len(RESULT_TAG):])
    else:
      print(line, end="", flush=True)
  rc = proc.wait()
  if rc != 0 or result is None:
    print(f"[{variant}] FAILED (exit status {rc})", flush=True)
    return None
  print(f"[{variant}] done in {time.perf_counter() - start:.0f}s wall", flush=True)
  return result


def report(name: str, r: dict) -> None:
  best, med = min(r["times"]), statistics.median(r["times"])
  print(f"{name}_s: {best:.3f}  (best of {len(r['times'])}; median {med:.3f}; all "
        f"{', '.join(f'{t:.2f}' for t in r['times'])}; compile {r['compile_s']:.1f}s)")
  reset = "" if r["reset_ok"] else " (peak NOT reset after setup: includes loading/compile)"
  print(f"{name}_peak_memory: {r['peak'] / GB:.2f} GB peak RSS during the steps, "
        f"+{(r['peak'] - r['rss_loaded']) / GB:.2f} GB over {r['rss_loaded'] / GB:.2f} GB with "
        f"weights loaded; process peak through load/compile {r['peak_setup'] / GB:.2f} GB{reset}")
  if r["memory_analysis"]:
    print(f"{name}_xla_memory: " + ", ".join(f"{k} {v / GB:.3f} GB"
                                            for k, v in r["memory_analysis"].items()))
  extra = {k: r[k] for k in ("loss", "grad_norm", "kl", "clip_fraction", "entropy") if k in r}
  print(f"{name}_values: " + ", ".join(f"{k} {v:.6g}" for k, v in extra.items()))


def main():
  if ARGS.only:
    result = run_torch() if ARGS.only == "torch" else run_jax(ARGS.only)
    print(RESULT_TAG + json.dumps(result), flush=True)
    return

  # The parent writes the random checkpoints on the CPU, leaving an accelerator's memory to
  # the children, which see the environment as it was.
  os.environ["JAX_PLATFORMS"] = "cpu"
  variants = ["grpo", "fwd_bwd"]
  if not ARGS.skip_full_logits:
    variants.append("full_logits")
  if not ARGS.skip_torch:
    variants.append("torch")
  with tempfile.TemporaryDirectory() as tmp:
    if ARGS.small or ARGS.random_smollm2:
      checkpoint = tiny_checkpoint(os.path.join(tmp, "tiny"), smollm2_shape=ARGS.random_smollm2)
      what = ("random weights of SmolLM2-135M's shape (--random_smollm2)" if ARGS.random_smollm2
              else "tiny random Llama (--small)")
    else:
      from arm_jax import assets
      checkpoint = assets.smollm2_gguf()
      what = os.path.basename(checkpoint)
    print(f"model: {what}; batch {ARGS.batch} x {ARGS.seq_len} tokens ({ARGS.prompt_len} prompt + "
          f"{ARGS.seq_len - ARGS.prompt_len} scored), {ARGS.compute_dtype} matmuls, "
          f"{ARGS.repeats} repeats, threads {ARGS.threads} (cpu_count {os.cpu_count()})", flush=True)
    results = {v: run_child(v, checkpoint) for v in variants}

  print()
  names = {"grpo": "grpo_update", "fwd_bwd": "forward_backward",
           "full_logits": "forward_backward_full_logits", "torch": "torch_forward_backward"}
  for v in variants:
    if results[v] is not None:
      report(names[v], results[v])

  def best(v):
    r = results.get(v)
    return min(r["times"]) if r else float("nan")

  def peak(v, key="peak"):
    r = results.get(v)
    if not r:
      return float("nan")
    return (r["peak"] - (r["rss_loaded"] if key == "increase" else 0)) / GB

  if results.get("fwd_bwd") and results.get("torch"):
    ours, theirs = results["fwd_bwd"], results["torch"]
    print(f"loss arm_jax {ours['loss']:.6f} vs torch {theirs['loss']:.6f} "
          f"(|diff| {abs(ours['loss'] - theirs['loss']):.2e}); grad norm arm_jax "
          f"{ours['grad_norm']:.6f} vs torch {theirs['grad_norm']:.6f}")
  print()
  print(f"train_step_overhead_ratio: {best('grpo') / best('fwd_bwd'):.3f}")
  if not ARGS.skip_full_logits:
    print(f"full_logits_vs_chunked_time_ratio: {best('full_logits') / best('fwd_bwd'):.3f}")
  print(f"forward_backward_speedup_vs_torch: {best('torch') / best('fwd_bwd'):.3f}")
  for key, v in (("arm_jax_update", "grpo"), ("arm_jax_fwd_bwd", "fwd_bwd"),
                 ("torch_fwd_bwd", "torch")):
    print(f"peak_memory_increase_gb_{key}: {peak(v, 'increase'):.3f}")
  if not ARGS.skip_full_logits:
    print(f"peak_memory_gb_arm_jax_fwd_bwd_full_logits: {peak('full_logits'):.3f}")
  print(f"peak_memory_gb_arm_jax_update: {peak('grpo'):.3f}")
  print(f"peak_memory_gb_arm_jax_fwd_bwd: {peak('fwd_bwd'):.3f}")
  print(f"peak_memory_gb_torch_fwd_bwd: {peak('torch'):.3f}")
  if any(r is None for r in results.values()):
    sys.exit(1)


if __name__ == "__main__":
  main()
