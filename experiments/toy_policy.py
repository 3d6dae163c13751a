"""A toy policy trained with a toy reward model, by (Iter)DPO or online GRPO, measured by the
world's oracle.

The policy is the toy decoder warm-started (SFT) on both responses of every training pair, so it
meets some of an instruction's constraints. The reward model is a toy training run's pair (the
README run: `python main.py --config configs/toy.py --workdir runs/toy`), from the checkpoint
named by --checkpoint (latest = after the last round; warm_start = round 0, a weaker judge).
--method dpo: each iteration samples two responses for --prompts training instructions, labels
them with the reward model in both orders, keeps the consistent pairs and trains DPO with the
SFT term (arm_jax.downstream.dpo); --iterations 3 is IterDPO. --method grpo: --steps online GRPO
steps of --prompts_per_step instructions, K = --group_size rollouts each, rewarded against the
greedy response in both orders (arm_jax.downstream.grpo), evaluated every --eval_every steps.
After the warm start and after every iteration (or evaluation step) the greedy responses to
every held-out instruction are scored by the oracle (arm_jax.toy.policy_eval): the share of
constraints met, and the win rate against the warm-started policy.

  python experiments/toy_policy.py --run runs/toy [--checkpoint latest] [--method dpo]
      [--iterations 1] [--prompts 4096] [--out runs/toy_policy]
  python experiments/toy_policy.py --run runs/toy --method grpo --steps 100
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--run", default="runs/toy", help="the reward model's training workdir")
  p.add_argument("--checkpoint", default="latest", help="latest, warm_start, round:R, step:N")
  p.add_argument("--method", choices=("dpo", "grpo"), default="dpo")
  p.add_argument("--iterations", type=int, default=1, help="1 = DPO, 3 = the paper's IterDPO")
  p.add_argument("--steps", type=int, default=100, help="grpo: optimizer steps")
  p.add_argument("--prompts_per_step", type=int, default=16, help="grpo")
  p.add_argument("--group_size", type=int, default=6, help="grpo: K rollouts per prompt")
  p.add_argument("--grpo_beta", type=float, default=0.001, help="grpo: KL weight")
  p.add_argument("--eval_every", type=int, default=25, help="grpo")
  p.add_argument("--prompts", type=int, default=512, help="training instructions per iteration")
  p.add_argument("--warm_steps", type=int, default=300, help="policy warm-start SFT steps")
  p.add_argument("--learning_rate", type=float, default=1e-4)
  p.add_argument("--beta", type=float, default=0.1)
  p.add_argument("--sft_weight", type=float, default=0.2)
  p.add_argument("--epochs", type=int, default=2)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", default="runs/toy_policy")
  args = p.parse_args()

  from arm_jax import xla_options  # noqa: PLC0415
  xla_options.configure_process()
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415

  from arm_jax.core import SFTExample  # noqa: PLC0415
  from arm_jax.downstream import dpo, grpo  # noqa: PLC0415
  from arm_jax.downstream.reward_model import RewardModel  # noqa: PLC0415
  from arm_jax.evaluation.runner import generate_in_batches  # noqa: PLC0415
  from arm_jax.rl import optim  # noqa: PLC0415
  from arm_jax.rl.dpo import DPOConfig  # noqa: PLC0415
  from arm_jax.rl.grpo import GRPOConfig, make_update  # noqa: PLC0415
  from arm_jax.rl.phases import PhaseConfig  # noqa: PLC0415
  from arm_jax.rl.policy import Policy  # noqa: PLC0415
  from arm_jax.rl.sft import run_sft  # noqa: PLC0415
  from arm_jax.sampling import SamplingParams  # noqa: PLC0415
  from arm_jax.toy import policy_eval  # noqa: PLC0415
  from arm_jax.training import checkpoints  # noqa: PLC0415
  from arm_jax.training import setup as train_setup  # noqa: PLC0415

  start = time.perf_counter()
  run_config = checkpoints.read_config(args.run)
  setup = train_setup.build(run_config)
  model, tokenizer = setup.judge.model, setup.judge.tokenizer
  policy = Policy("policy", model, tokenizer, setup.judge.template,
                  jax.tree.map(jnp.copy, setup.generator.params))
  warm = [SFTExample(pair.instruction, r) for pair in setup.train
          for r in (pair.response_a, pair.response_b)]
  policy.params, _, _ = run_sft(
      model, policy.params, tokenizer, warm, batch_size=32, max_length=128, pad_multiple=16,
      optimizer_config=optim.OptimizerConfig(learning_rate=1e-3, warmup_steps=30),
      steps=args.warm_steps, seed=args.seed, log_fn=lambda *_: None)

  held = [pair.instruction for pair in setup.held_out]
  greedy = SamplingParams(max_new_tokens=16, greedy=True)

  def respond() -> list[str]:
    out = generate_in_batches(policy, policy.encode(held), greedy, jax.random.key(0), 64, 1)
    return [g[0].text for g in out]

  start_responses = respond()
  rows = [dict(iteration=0, **policy_eval.constraint_share(held, start_responses),
               win_rate_vs_start=0.5)]
  print(json.dumps(rows[-1]), flush=True)

  step = checkpoints.resolve(args.run, args.checkpoint)
  rm_params, _ = checkpoints.restore_policies(
      args.run, {"generator": setup.generator.params, "judge": setup.judge.params}, step)
  e = run_config.eval
  reward_model = RewardModel(
      Policy("generator", model, tokenizer, setup.generator.template, rm_params["generator"]),
      Policy("judge", model, tokenizer, setup.judge.template, rm_params["judge"]),
      rubric_max_new_tokens=e.rubric_max_new_tokens,
      judge_sampling=SamplingParams(e.judge_max_new_tokens, temperature=1.0),
      batch_size=e.batch_size, seed=args.seed)
  train_prompts = [pair.instruction for pair in setup.train]

  def evaluated(figures: dict) -> dict:
    responses = respond()
    return dict(figures, **policy_eval.constraint_share(held, responses),
                win_rate_vs_start=policy_eval.oracle_win_rate(held, responses, start_responses))

  if args.method == "dpo":
    cfg = dpo.IterationConfig(
        dpo=DPOConfig(beta=args.beta, sft_weight=args.sft_weight),
        optimizer=optim.OptimizerConfig(learning_rate=args.learning_rate),
        sampling=SamplingParams(max_new_tokens=16, temperature=1.0), batch_size=16,
        epochs=args.epochs, generate_batch=64, max_length=128, seed=args.seed)
    for it in range(1, args.iterations + 1):
      first = ((it - 1) * args.prompts) % len(train_prompts)
      prompts = (train_prompts * 2)[first:first + args.prompts]
      figures = dpo.dpo_iteration(policy, reward_model, prompts, cfg, iteration=it,
                                  log_fn=lambda f: print(json.dumps(f), flush=True))
      rows.append(evaluated(figures))
      print(json.dumps(rows[-1]), flush=True)
  else:
    gcfg = GRPOConfig(group_size=args.group_size, beta=args.grpo_beta, mu=2)
    phase = PhaseConfig(gcfg, SamplingParams(max_new_tokens=16, temperature=1.0),
                        args.prompts_per_step)
    optimizer = optim.make_optimizer(optim.OptimizerConfig(learning_rate=args.learning_rate))
    policy.opt_state = optimizer.init(policy.params)
    policy.ref_params = jax.tree.map(jnp.copy, policy.params) if args.grpo_beta else None
    update = make_update(model, gcfg, optimizer)
    recent = []
    for step in range(1, args.steps + 1):
      first = ((step - 1) * args.prompts_per_step) % len(train_prompts)
      prompts = (train_prompts * 2)[first:first + args.prompts_per_step]
      recent.append(grpo.grpo_step(policy, reward_model, phase, update, prompts,
                                   jax.random.fold_in(jax.random.key(args.seed), step)))
      if step % args.eval_every == 0 or step == args.steps:
        means = {k: sum(m[k] for m in recent) / len(recent)
                 for k in ("reward_mean", "consistency_rate", "flat_groups", "kl")
                 if k in recent[0]}
        rows.append(evaluated(dict(iteration=step, **means)))
        print(json.dumps(rows[-1]), flush=True)
        recent = []
  os.makedirs(args.out, exist_ok=True)
  result = dict(args=vars(args), reward_model_step=step, held_out=len(held), rows=rows,
                seconds=time.perf_counter() - start)
  with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
  print(f"| {'iteration' if args.method == 'dpo' else 'step'} | constraint share | all met | "
        "win rate vs start | kept pairs | consistency |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['iteration']} | {100 * r['constraint_share']:.1f} | {100 * r['all_met']:.1f} | "
          f"{100 * r['win_rate_vs_start']:.1f} | {r.get('kept', '-')} | "
          f"{r.get('consistency_rate', float('nan')):.3f} |")
  print(f"{result['seconds']:.0f}s; outputs in {args.out}")


if __name__ == "__main__":
  main()
