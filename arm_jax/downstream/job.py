"""The policy job (`config.job = "policy"`): a policy trained with the reward model by DPO,
IterDPO or online GRPO (docs/method.md §6), resumable at any step.

What it builds (`build`):
- the reward model: the rubric generator and judge of a training run (reward_model.workdir, the
  checkpoint reward_model.checkpoint names), or the untrained pair of a training config file
  (reward_model.config); the run's config rebuilds the models and the data on this job's mesh.
  With reward_model.kind "checker", IFEval's checker on the instructions the prompts carry
  (prompts.path in IFEval's format) labels instead: the oracle (arm_jax.downstream.checker);
- the policy: actor.path's weights, or the reward model's base weights (the toy's fresh
  decoder), warm-started first for actor.warmstart_steps SFT steps on both responses of every
  training pair when set (a policy from scratch must first say something);
- the prompts: the run's training instructions, a JSONL file or IFBench's (prompts.source);
- the evaluation: the builder's oracle (the toy world measures constraints itself) or IFEval.

Stages: "warmstart", "train", "done". Training is one of
- dpo / iterdpo: per iteration (1, or dpo.iterations), sample two responses per prompt (temperature
  dpo.temperature), label them with the reward model in both orders, keep the consistent pairs
  (the comparisons go to WORKDIR/pairs/iteration_K.jsonl), then dpo.epochs passes of DPO with
  the SFT term against the policy as the iteration started (its reference) with a fresh AdamW;
- grpo: grpo.steps online GRPO steps of grpo.prompts_per_step prompts, K = grpo.group_size
  rollouts each judged against the greedy response (Eq. 16), the KL reference being the policy
  at GRPO start.
The greedy responses to the evaluation prompts are scored at the start, every
eval.every_iterations iterations (dpo) or eval.every_steps steps (grpo) and at the end
(WORKDIR/eval/<unit>.jsonl holds them); records go to metrics.jsonl (and TensorBoard),
curves.png at the end.

Checkpoints (every checkpoint.every_steps optimizer steps, after the warm start, each labelling
and each iteration, and on SIGTERM) hold the policy, its optimizer state, its reference, and a JSON
position (stage, iteration, step, rubric cache, metrics offset). Prompt windows, batches and
sampling keys are functions of (seed, iteration or step), so re-running the same command after
a kill continues where the last checkpoint stopped and ends bit-identical to an uninterrupted
run. Between checkpoints, WORKDIR/generations.jsonl keeps every sampled batch (the labelling's
responses, the reward model's rubrics and judgments, the evaluations' greedy responses) as it
finishes, so the rerun does not sample those again (arm_jax.evaluation.journal).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from arm_jax import config_sections, multihost, sharding
from arm_jax.core import SFTExample
from arm_jax.data import ifeval
from arm_jax.data.readers import read_rows
from arm_jax.downstream import dpo as dpo_lib
from arm_jax.downstream import grpo as grpo_lib
from arm_jax.downstream.checker import CheckerLabeller
from arm_jax.downstream.reward_model import Comparison, RewardModel
from arm_jax.evaluation import ifeval_policy
from arm_jax.evaluation.journal import (FILENAME as JOURNAL, ScopedJournal, Stopped, fingerprint,
                                       open_journal)
from arm_jax.evaluation.runner import Generation, generate_in_batches
from arm_jax.evaluation.systems import load_train_config
from arm_jax.models import load_pretrained, lora
from arm_jax.prompts import Template, render_judge_prompt, render_rubric_prompt
from arm_jax.rl import optim
from arm_jax.rl.dpo import DPOConfig
from arm_jax.rl.grpo import make_update
from arm_jax.rl.policy import Policy
from arm_jax.rl.sft import run_sft
from arm_jax.rl.trainer import init_opt_state
from arm_jax.sampling import SamplingParams
from arm_jax.sharding import batch_axes
from arm_jax.tokenizer import load_tokenizer
from arm_jax.training import checkpoints
from arm_jax.training import setup as train_setup
from arm_jax.training.loop import RunBase, check_resume

STAGES = ("warmstart", "train", "done")
# The policy renders a prompt as one user turn of its chat template (Policy.encode); it has no
# template of the method's own.
POLICY_TEMPLATE = Template("{instruction}", "the prompt as one user turn")
_WARMUP_STEPS = 30


@dataclasses.dataclass
class PolicySetup:
  policy: Policy
  reward_model: RewardModel
  prompts: list[str]
  eval_prompts: list[str]
  # score(responses, start_responses) -> figures; None with eval.kind "none"
  score: Optional[Callable[[list[str], list[str]], dict]]
  warm_examples: list[SFTExample]
  reward_model_source: dict
  too_long: int = 0  # training prompts skipped at load (fit_prompts)


# --- building --------------------------------------------------------------------------------

def _reward_model_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The reward model's training config, on this job's mesh."""
  r = config.reward_model
  if bool(r.workdir) == bool(r.config):
    raise ValueError("set one of reward_model.workdir (a trained run) and reward_model.config (a "
                     f"training config file: its untrained pair); got workdir={r.workdir!r}, "
                     f"config={r.config!r}")
  if r.overrides and not r.config:
    raise ValueError("reward_model.overrides apply to reward_model.config; a trained run's "
                     "config.json already holds its own")
  rm_config = load_train_config(r.config, tuple(r.overrides), workdir=r.workdir,
                                section="reward_model")
  for key in ("mesh_shape", "mesh_axes", "rules"):
    rm_config[key] = config[key]
  return rm_config


def read_prompts(path: str) -> list[str]:
  """The "prompt" of every line of a JSONL file (prompts.path, or IFBench's file); a bad line is
  an error naming it."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"prompts.path={path!r}: no such file")
  prompts = []
  for row in read_rows(path):
    if row.skip is not None:
      raise ValueError(f"{path}:{row.line}: {row.skip.reason} ({row.skip.detail}): "
                       f"{row.excerpt}")
    if not isinstance(row.row.get("prompt"), str):
      raise ValueError(f"{path}:{row.line}: expected an object with a string field 'prompt'")
    prompts.append(row.row["prompt"])
  if not prompts:
    raise ValueError(f"prompts.path={path!r} holds no prompt")
  return prompts


def _scorer(config: ml_collections.ConfigDict, setup,
            model_kind: str) -> tuple[list[str], Optional[Callable]]:
  e = config.eval
  if e.kind == "none":
    return [], None
  if e.kind == "oracle":
    if not e.at_start:
      raise ValueError("eval.at_start=False with eval.kind='oracle': the oracle scores a policy "
                       "against the starting policy's responses, so the start is evaluated")
    if setup.policy_oracle is None:
      raise ValueError(f"eval.kind='oracle': the reward model's builder (model.kind="
                       f"{model_kind!r}) has no oracle of a policy; use 'ifeval' or 'none'")
    prompts = [pair.instruction for pair in setup.held_out]
    prompts = prompts[:e.max_prompts] if e.max_prompts else prompts
    oracle = setup.policy_oracle
    return prompts, lambda responses, start: oracle(prompts, responses, start)
  inputs = ifeval.read_prompts()
  inputs = inputs[:e.max_prompts] if e.max_prompts else inputs

  def score(responses, start):  # noqa: ARG001  IFEval scores a policy on its own
    return ifeval_policy.score(inputs, responses)

  return [inp.prompt for inp in inputs], score


def _build_checker(config: ml_collections.ConfigDict) -> PolicySetup:
  """reward_model.kind 'checker': the policy of actor.path, labelled by IFEval's checker on the
  instructions of prompts.path (arm_jax.downstream.checker)."""
  a, r, p = config.actor, config.reward_model, config.prompts
  bad = []
  if r.workdir or r.config:
    bad.append(f"reward_model.workdir={r.workdir!r} and reward_model.config={r.config!r} must "
               "be '' (the checker is no model)")
  if not a.path:
    bad.append("actor.path must name the policy's weights (there is no reward model's base "
               "model to start from)")
  if p.source != "jsonl" or not p.path:
    bad.append(f"prompts.source={p.source!r}: 'jsonl' with prompts.path in IFEval's format "
               "(instruction_id_list and kwargs per row), e.g. python -m "
               "arm_jax.data.synthetic_if --out FILE")
  if a.warmstart_steps > 0:
    bad.append(f"actor.warmstart_steps={a.warmstart_steps}: 0 (the checker has no training "
               "pairs to warm-start on)")
  if config.eval.kind == "oracle":
    bad.append("eval.kind='oracle' is a reward-model builder's (the toy world's): use 'ifeval' "
               "or 'none'")
  if bad:
    raise ValueError("reward_model.kind='checker': " + "; ".join(bad))
  read_prompts(p.path)  # a missing file or a row without a prompt is named before weights load
  try:
    examples = ifeval.read_prompts(p.path)
  except (KeyError, TypeError, ValueError) as e:
    raise ValueError(f"prompts.path={p.path!r}: every row needs key, prompt, "
                     f"instruction_id_list and kwargs (IFEval's format) for the checker ({e!r})"
                     ) from e
  examples = examples[:p.limit] if p.limit else examples
  mesh, rules = sharding.mesh_and_rules(config)
  model, params = load_pretrained(a.path, dtype=a.dtype, mesh=mesh, rules=rules,
                                  compute_dtype=a.compute_dtype or a.dtype,
                                  remat_policy=a.remat_policy,
                                  **config_sections.lora_overrides(a))
  check_batches(config, model)
  policy = Policy("policy", model, load_tokenizer(a.path), POLICY_TEMPLATE, params)
  grpo = config.method == "grpo"
  new_tokens = config.grpo.max_new_tokens if grpo else config.dpo.max_new_tokens
  room = policy.room(new_tokens, config.grpo.max_prompt_tokens if grpo else 0)
  prompts = [e.prompt for e, ok in zip(examples, policy.fit([e.prompt for e in examples], room))
             if ok]
  too_long = len(examples) - len(prompts)
  if not prompts:
    raise ValueError(f"no prompt of {p.path} fits the policy's context ({too_long} too long)")
  eval_prompts, score = _scorer(config, None, "checker")
  _check_eval_prompts(policy, eval_prompts, config.eval.max_new_tokens)
  return PolicySetup(policy, CheckerLabeller(examples), prompts, eval_prompts, score, [],
                     dict(kind="checker", prompts=os.path.abspath(p.path)), too_long)


def build(config: ml_collections.ConfigDict) -> PolicySetup:
  """The reward model, the policy, the prompts and the evaluation of a validated policy config;
  data and prompt files are checked before weights load where the builder allows."""
  for name in config.plugins:
    try:
      importlib.import_module(name)
    except ImportError as e:
      raise ValueError(f"plugins: cannot import {name!r} ({e})") from e
  if config.reward_model.kind == "checker":
    return _build_checker(config)
  r = config.reward_model
  rm_config = _reward_model_config(config)
  kind = config.prompts.source
  prompts = (read_prompts(config.prompts.path) if kind == "jsonl" else
             read_prompts(ifeval.ifbench_prompts_path()) if kind == "ifbench" else None)
  setup = train_setup.build(rm_config)
  model, tokenizer = setup.generator.model, setup.generator.tokenizer
  base = setup.generator.params  # the run's starting weights (the builder's)
  source = dict(config=r.config) if r.config else dict(workdir=r.workdir)
  if r.workdir:
    step = checkpoints.resolve(r.workdir, r.checkpoint, key="reward_model.checkpoint")
    params, _ = checkpoints.restore_policies(
        r.workdir, {"generator": setup.generator.params, "judge": setup.judge.params}, step,
        key="reward_model.workdir")
    source["step"] = step
  else:
    params = {"generator": setup.generator.params, "judge": setup.judge.params}
  e = rm_config.eval
  reward_model = RewardModel(
      Policy("generator", model, tokenizer, setup.generator.template, params["generator"]),
      Policy("judge", model, tokenizer, setup.judge.template, params["judge"]),
      rubric_max_new_tokens=r.rubric_max_new_tokens or e.rubric_max_new_tokens,
      judge_sampling=SamplingParams(r.judge_max_new_tokens or e.judge_max_new_tokens,
                                    temperature=r.judge_temperature or 1.0,
                                    greedy=r.judge_temperature == 0),
      batch_size=r.batch_size or e.batch_size, seed=int(config.seed))
  a = config.actor
  if a.path:
    actor_model, actor_params = load_pretrained(
        a.path, dtype=a.dtype, mesh=model.mesh, rules=model.rules,
        compute_dtype=a.compute_dtype or a.dtype, remat_policy=a.remat_policy,
        **config_sections.lora_overrides(a))
    actor_tokenizer = load_tokenizer(a.path)
  else:
    actor_model, actor_tokenizer = model, tokenizer
    actor_params = jax.tree.map(jnp.copy, base)  # the policy's updates donate their params
  check_batches(config, actor_model)
  policy = Policy("policy", actor_model, actor_tokenizer, POLICY_TEMPLATE, actor_params)
  if prompts is None:
    prompts = list(dict.fromkeys(pair.instruction for pair in setup.train))
  prompts = prompts[:config.prompts.limit] if config.prompts.limit else prompts
  grpo = config.method == "grpo"
  new_tokens = config.grpo.max_new_tokens if grpo else config.dpo.max_new_tokens
  prompts, too_long = fit_prompts(policy, reward_model, prompts, new_tokens,
                                  config.grpo.max_prompt_tokens if grpo else 0)
  if too_long:
    logging.warning("skipped %d of %d prompts that do not fit the policy's or the reward model's "
                    "context with the configured generation lengths", too_long,
                    too_long + len(prompts))
  if not prompts:
    raise ValueError(f"no prompt fits the context ({too_long} too long); lower the generation "
                     "lengths (dpo/grpo.max_new_tokens, reward_model.*_max_new_tokens)")
  eval_prompts, score = _scorer(config, setup, rm_config.model.kind)
  _check_eval_prompts(policy, eval_prompts, config.eval.max_new_tokens)
  warm = [SFTExample(pair.instruction, response) for pair in setup.train
          for response in (pair.response_a, pair.response_b)]
  # The builder's starting weights are the policy's (copied above) or not needed: at paper
  # scale two 8B copies that would otherwise stay on the mesh beside the reward model's.
  setup.generator.params = setup.judge.params = base = None
  return PolicySetup(policy, reward_model, prompts, eval_prompts, score, warm, source, too_long)


def fit_prompts(policy: Policy, reward_model: RewardModel, prompts: list[str],
                new_tokens: int, max_prompt_tokens: int = 0) -> tuple[list[str], int]:
  """(the prompts that fit, how many did not): the policy's prompt must be at most
  `max_prompt_tokens` (0 = no limit of its own) and leave room for a response of `new_tokens`;
  the reward model's rubric prompt for its longest rubric, and its judge prompt, holding that
  rubric and two such responses, for its longest judgment (Policy.room).
  Checked at load: a prompt that cannot fit would fail at the same step after every resume."""
  rm = reward_model
  rubric_new, judge_new = rm.rubric_max_new_tokens, rm.judge_sampling.max_new_tokens
  fits = zip(
      policy.fit(prompts, policy.room(new_tokens, max_prompt_tokens)),
      rm.generator.fit([render_rubric_prompt(rm.generator.template, p) for p in prompts],
                       rm.generator.room(rubric_new)),
      rm.judge.fit([render_judge_prompt(rm.judge.template, p, "", "", "") for p in prompts],
                   rm.judge.room(judge_new) - rubric_new - 2 * new_tokens))
  kept = [p for p, ok in zip(prompts, fits) if all(ok)]
  return kept, len(prompts) - len(kept)


def _check_eval_prompts(policy: Policy, prompts: list[str], new_tokens: int) -> None:
  """Evaluation prompts are a fixed set (skipping one would change the score): one that does not
  fit is an error at load."""
  room = policy.room(new_tokens)
  for i, ok in enumerate(policy.fit(prompts, room)):
    if not ok:
      raise ValueError(f"evaluation prompt {i} of {len(prompts)} is over {room} tokens, the "
                       f"policy's room for a prompt with eval.max_new_tokens={new_tokens}; lower "
                       "eval.max_new_tokens or set eval.max_prompts")


def iteration_config(config: ml_collections.ConfigDict) -> dpo_lib.IterationConfig:
  d = config.dpo
  return dpo_lib.IterationConfig(
      dpo=DPOConfig(beta=d.beta, sft_weight=d.sft_weight, micro_batches=d.micro_batches),
      optimizer=optim.OptimizerConfig(learning_rate=d.learning_rate,
                                      weight_decay=d.weight_decay, max_grad_norm=d.max_grad_norm),
      sampling=SamplingParams(max_new_tokens=d.max_new_tokens, temperature=d.temperature),
      batch_size=d.batch_size, epochs=d.epochs, generate_batch=config.generate_batch,
      max_length=d.max_length, pad_multiple=d.pad_multiple, seed=int(config.seed))


def optimizer_config(config: ml_collections.ConfigDict) -> optim.OptimizerConfig:
  """The policy's AdamW settings: grpo's, or dpo's (each iteration starts a fresh state)."""
  if config.method == "grpo":
    return train_setup.optimizer_config(config.grpo)
  return iteration_config(config).optimizer


def optimizer(config: ml_collections.ConfigDict):
  """The policy's AdamW (optimizer_config)."""
  return optim.make_optimizer(optimizer_config(config))


def check_batches(config: ml_collections.ConfigDict, model) -> None:
  """Every batch the job shards over the mesh's data-parallel devices splits evenly: a clear
  error at the start rather than an XLA one at the first step."""
  if model.mesh is None:
    return
  dp = int(np.prod([model.mesh.shape[a] for a in batch_axes(model.mesh, model.rules)]))
  d, g = config.dpo, config.grpo
  rows = {"dpo.batch_size / dpo.micro_batches": d.batch_size // max(d.micro_batches, 1)} \
      if config.method != "grpo" else {
          "grpo.prompts_per_step x grpo.group_size / grpo.micro_batches":
              g.prompts_per_step * g.group_size // max(g.micro_batches, 1)}
  if config.actor.warmstart_steps > 0:
    rows["actor.warmstart_batch_size"] = config.actor.warmstart_batch_size
  for name, n in rows.items():
    if n % dp:
      raise ValueError(f"{name} = {n} rows do not split over the mesh's {dp} data-parallel "
                       f"devices (mesh {dict(model.mesh.shape)}): make it a multiple of {dp}")


def window(prompts: list[str], size: int, index: int) -> list[str]:
  """The index-th run of `size` prompts, continuing cyclically where the previous one ended."""
  first = (index * size) % len(prompts)
  return [prompts[(first + i) % len(prompts)] for i in range(size)]


# --- the run ---------------------------------------------------------------------------------

def _comparison_row(c: Comparison) -> dict:
  return dict(prompt=c.prompt, response_a=c.response_a, response_b=c.response_b, rubric=c.rubric,
              first=c.first, second=c.second, judgments=list(c.judgments))


def _write_jsonl(path: str, rows: list[dict]) -> None:
  """Atomically: a killed write leaves the previous file, never half of one. Process 0 writes;
  the others hold the same rows in memory (arm_jax.multihost) and read the file only when a
  later run resumes (a multi-host workdir is shared storage, like its checkpoints)."""
  if not multihost.is_main():
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
  os.replace(path + ".tmp", path)


def _read_jsonl(path: str) -> list[dict]:
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def grpo_steps(config: ml_collections.ConfigDict, prompts: int) -> int:
  """grpo.steps, or one pass over the prompts; 0 for the DPO methods."""
  g = config.grpo
  if config.method != "grpo":
    return 0
  return g.steps or max(prompts // g.prompts_per_step, 1)


class _PolicyRun(RunBase):
  """Position, checkpoints and metrics of one policy run."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, setup: PolicySetup):
    a = config.actor
    # DPO's steps are known once each iteration's pairs are (Progress.add_total).
    super().__init__(config, workdir, a.warmstart_steps + grpo_steps(config, len(setup.prompts)),
                     "policy")
    self.setup, self.policy = setup, setup.policy
    self.meta.update(stage=STAGES[0], step=0, iteration=1, labeled=False, evals=[],
                     rubric_cache=None, method=config.method,
                     reward_model=setup.reward_model_source)
    self.warm_opt_state = None
    self._start_responses: list[str] | None = None  # the unit-0 evaluation's
    self.ref = None  # the DPO iteration's reference, or GRPO's KL reference
    self.warm_optimizer = optim.OptimizerConfig(learning_rate=a.warmstart_learning_rate,
                                                warmup_steps=_WARMUP_STEPS)
    # Sampled batches (labelling, the reward model's rubrics and judgments, evaluations) are
    # kept as they finish: a rerun after a kill samples only what its checkpoint had not
    # reached and was not yet sampled (arm_jax.evaluation.journal). Keys name the policy's
    # position (iteration, evaluation unit), whose weights a resumed run reproduces.
    # After SIGTERM the job stops once the batch it is sampling is written (run_policy): a
    # labelling or evaluation pass can outlast the grace a scheduler gives before SIGKILL.
    self.journal = open_journal(os.path.join(workdir, JOURNAL),
                                fingerprint(config.to_dict()), log=lambda m: logging.info("%s", m),
                                should_stop=lambda: self.preemption.signalled)
    if isinstance(setup.reward_model, RewardModel):
      setup.reward_model.journal = self.journal

  def _scope(self, name: str) -> ScopedJournal | None:
    return None if self.journal is None else self.journal.scoped(name)

  def _optimizer(self):
    return optimizer(self.config)

  # ------------------------------------------------------------------------- state
  def _state(self) -> dict:
    # A LoRA policy's checkpoints hold its adapters only (arm_jax.models.lora).
    state = {"policy": lora.trainable(self.policy.params)}
    if self.meta["stage"] == "warmstart" and self.warm_opt_state is not None:
      state["warm_opt"] = self.warm_opt_state
    if self.meta["stage"] == "train":
      if self.policy.opt_state is not None:
        state["opt"] = self.policy.opt_state
      if self.ref is not None:
        state["ref"] = lora.trainable(self.ref)
    return state

  def save(self) -> None:
    cache = self.setup.reward_model.rubrics
    self.meta["rubric_cache"] = [[p, g.text, g.tokens] for p, g in cache.items()]
    self._save_state(self._state())

  def _like(self, meta: dict) -> dict:
    """The arrays a checkpoint with this meta holds, as live arrays to restore into."""
    like = {"policy": lora.trainable(self.policy.params)}
    keys = set(meta["state_keys"])
    if "warm_opt" in keys:
      like["warm_opt"] = init_opt_state(optim.make_optimizer(self.warm_optimizer), self.policy)
    if "opt" in keys:
      like["opt"] = init_opt_state(self._optimizer(), self.policy)
    if "ref" in keys:
      like["ref"] = lora.trainable(self.policy.params)
    return like

  def resume(self) -> bool:
    found = self._restore(("seed", "method", "reward_model"), self._like)
    if found is None:
      return False
    step, meta, state = found
    frozen = lora.split(self.policy.params)[1]
    self.policy.params = lora.combine(state["policy"], frozen)
    self.policy.opt_state = state.get("opt")
    self.warm_opt_state = state.get("warm_opt")
    # The reference gets its own copy of a LoRA policy's base: the update donates the policy's.
    self.ref = (None if state.get("ref") is None else
                lora.combine(state["ref"], jax.tree.map(jnp.copy, frozen)))
    self.setup.reward_model.rubrics = {p: Generation(text, tokens)
                                       for p, text, tokens in meta["rubric_cache"] or []}
    self.progress.update(meta["global_step"])
    logging.info("resumed %s at checkpoint %d: stage %s, iteration %d, step %d", self.workdir,
                 step, meta["stage"], meta["iteration"], meta["step"])
    return True

  # ------------------------------------------------------------------------- evaluation
  def _eval_path(self, unit: int) -> str:
    return os.path.join(self.workdir, "eval", f"{unit:05d}.jsonl")

  def evaluate(self, unit: int) -> None:
    """Greedy responses to the evaluation prompts after `unit` iterations / steps (0 = the
    starting policy), scored and recorded once per unit."""
    e = self.config.eval
    if self.setup.score is None or unit in self.meta["evals"] or (unit == 0 and not e.at_start):
      return
    greedy = SamplingParams(max_new_tokens=e.max_new_tokens, greedy=True)
    start = time.perf_counter()
    out = generate_in_batches(self.policy, self.policy.encode(self.setup.eval_prompts), greedy,
                              jax.random.key(0), e.batch_size, 1, self._scope(f"policy@eval{unit}"))
    responses = [g[0].text for g in out]
    _write_jsonl(self._eval_path(unit), [dict(prompt=p, response=r, tokens=g[0].tokens)
                                         for p, r, g in zip(self.setup.eval_prompts, responses,
                                                            out)])
    if unit == 0:
      self._start_responses = responses
    elif self._start_responses is None and 0 in self.meta["evals"]:  # resumed: unit 0 was
      # evaluated by an earlier run
      self._start_responses = [row["response"] for row in _read_jsonl(self._eval_path(0))]
    figures = self.setup.score(responses, self._start_responses)
    # IFEval's per-kind accuracies, intervals and per-prompt verdicts go beside the responses
    side = {k: figures.pop(k) for k in ("by_kind", "ci", "per_prompt") if k in figures}
    if side and multihost.is_main():
      with open(self._eval_path(unit)[:-1], "w", encoding="utf-8") as f:
        json.dump(dict(figures, **side), f, indent=1)
    self.record(dict(figures, phase="eval", unit=unit,
                     mean_tokens=float(np.mean([g[0].tokens for g in out])),
                     seconds=time.perf_counter() - start))
    logging.info("eval after %d: %s", unit, {k: v for k, v in figures.items()
                                             if isinstance(v, float)})
    self.meta["evals"].append(unit)

  def _due(self, unit: int, last: int) -> bool:
    e = self.config.eval
    every = e.every_steps if self.config.method == "grpo" else e.every_iterations
    return unit == last or bool(every and unit % every == 0)

  # ------------------------------------------------------------------------- stages
  def warmstart(self) -> bool:
    a = self.config.actor
    if a.warmstart_steps <= 0:
      self.meta.update(stage="train", step=0)
      return True

    def on_step(step, params, opt_state, metrics):
      self.policy.params, self.warm_opt_state = params, opt_state
      self.meta["step"] = step + 1
      self.record(dict(metrics, phase="sft", step=step))
      return self._step_done()

    params = jax.tree.map(jnp.copy, self.policy.params)
    model = self.policy.model
    self.policy.params, _, _ = run_sft(
        model, params, self.policy.tokenizer, self.setup.warm_examples,
        optimizer_config=self.warm_optimizer, batch_size=a.warmstart_batch_size,
        max_length=a.warmstart_max_length, pad_multiple=16, steps=a.warmstart_steps,
        seed=int(self.config.seed), mesh=model.mesh, rules=model.rules, log_fn=logging.info,
        opt_state=self.warm_opt_state, start_step=self.meta["step"], on_step=on_step)
    if self.preemption.requested:
      return False
    self.warm_opt_state = None
    self.meta.update(stage="train", step=0)
    self.save()
    return True

  def _pairs_path(self, iteration: int) -> str:
    return os.path.join(self.workdir, "pairs", f"iteration_{iteration}.jsonl")

  def _label(self, iteration: int, cfg: dpo_lib.IterationConfig) -> dpo_lib.LabeledPairs:
    """Samples and labels the iteration's pairs; writes them; resets reference and optimizer."""
    d = self.config.dpo
    size = d.prompts_per_iteration or len(self.setup.prompts)
    prompts = window(self.setup.prompts, size, iteration - 1)
    key = jax.random.fold_in(jax.random.key(int(self.config.seed)), iteration)
    t0 = time.perf_counter()
    a, b = dpo_lib.sample_pairs(self.policy, prompts, cfg.sampling, jax.random.fold_in(key, 0),
                                cfg.generate_batch, self._scope(f"policy@label{iteration}"))
    t1 = time.perf_counter()
    pairs = dpo_lib.label_pairs(self.setup.reward_model, prompts, a, b,
                                jax.random.fold_in(key, 1))
    t2 = time.perf_counter()
    _write_jsonl(self._pairs_path(iteration), [_comparison_row(c) for c in pairs.comparisons])
    # the seconds a journal-resumed call spends include only what it sampled again
    self.record(dict(phase="label", iteration=iteration, prompts=len(prompts), **pairs.counts,
                     consistency_rate=pairs.consistency_rate, seconds_sampling=t1 - t0,
                     seconds_labelling=t2 - t1))
    self.ref = jax.tree.map(jnp.copy, self.policy.params)
    self.policy.params = jax.tree.map(jnp.copy, self.policy.params)
    self.policy.opt_state = init_opt_state(self._optimizer(), self.policy)
    self.meta.update(labeled=True, step=0)
    self.save()
    return pairs

  def _read_pairs(self, iteration: int) -> dpo_lib.LabeledPairs:
    path = self._pairs_path(iteration)
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{path} is missing but the checkpoint says iteration {iteration} "
                              "was labelled: the workdir was changed by hand")
    return dpo_lib.labeled([Comparison(r["prompt"], r["response_a"], r["response_b"],
                                       r["rubric"], r["first"], r["second"],
                                       tuple(r["judgments"])) for r in _read_jsonl(path)])

  def dpo(self) -> bool:
    cfg = iteration_config(self.config)
    iterations = 1 if self.config.method == "dpo" else self.config.dpo.iterations
    self.evaluate(0)
    while self.meta["iteration"] <= iterations:
      k = self.meta["iteration"]
      pairs = self._read_pairs(k) if self.meta["labeled"] else self._label(k, cfg)
      chosen, rejected, too_long = dpo_lib.tokenized(self.policy, pairs, cfg.max_length)
      steps = cfg.epochs * (len(chosen) // cfg.batch_size)
      if self.meta["step"] == 0:
        self.progress.add_total(steps)
        if too_long:
          logging.warning("iteration %d: %d kept pairs longer than dpo.max_length=%d skipped",
                          k, too_long, cfg.max_length)
        if not steps:
          logging.warning("iteration %d: %d usable pairs, fewer than dpo.batch_size=%d: no DPO "
                          "step, the policy is unchanged this iteration (the label record "
                          "counts why pairs were dropped)", k, len(chosen), cfg.batch_size)
      for s in range(self.meta["step"], steps):
        c, r = dpo_lib.pair_batch(chosen, rejected, cfg.batch_size, cfg.seed, k, s,
                                  cfg.pad_multiple)
        t0 = time.perf_counter()
        metrics = dpo_lib.train_step(self.policy, cfg, self.ref, c, r)  # synced: floats
        self.meta["step"] = s + 1
        self.record(dict(metrics, phase="dpo", iteration=k, step=s, pairs=len(chosen),
                         too_long=too_long, length=max(c.tokens.shape[1], r.tokens.shape[1]),
                         seconds=time.perf_counter() - t0))
        if self._step_done():
          return False
      if self._due(k, iterations):
        self.evaluate(k)
      self.meta.update(iteration=k + 1, labeled=False, step=0)
      self.ref = self.policy.opt_state = None
      self.save()
    self.meta["stage"] = "done"
    return True

  def grpo(self) -> bool:
    g = self.config.grpo
    phase = train_setup.phase_config(g)
    update = make_update(self.policy.model, phase.grpo, self._optimizer())
    if self.policy.opt_state is None:  # GRPO starts: fresh AdamW, the reference is the policy
      self.policy.params = jax.tree.map(jnp.copy, self.policy.params)
      self.policy.opt_state = init_opt_state(self._optimizer(), self.policy)
      self.ref = jax.tree.map(jnp.copy, self.policy.params) if g.beta else None
      self.save()
    self.policy.ref_params = self.ref
    steps = grpo_steps(self.config, len(self.setup.prompts))
    self.evaluate(0)
    root = jax.random.key(int(self.config.seed))
    for s in range(self.meta["step"], steps):
      prompts = window(self.setup.prompts, g.prompts_per_step, s)
      metrics = grpo_lib.grpo_step(self.policy, self.setup.reward_model, phase, update, prompts,
                                   jax.random.fold_in(root, s), self.config.generate_batch)
      self.meta["step"] = s + 1
      self.record(dict(optim.with_learning_rate(metrics, optimizer_config(self.config)),
                       phase="grpo", step=s))
      if self._due(s + 1, steps):
        self.evaluate(s + 1)
      if self._step_done():
        return False
    self.meta["stage"] = "done"
    return True


def run_policy(config: ml_collections.ConfigDict, workdir: str) -> dict | None:
  """Runs (or resumes) the policy job; returns the final "done" record, None when preempted."""
  config = config_sections.validate(config)
  checkpoints.quiet_orbax()
  check_resume(config, workdir)
  setup = build(config)
  run = _PolicyRun(config, workdir, setup)
  try:
    if not run.resume():
      run.record(dict(phase="data", prompts=len(setup.prompts), too_long=setup.too_long,
                      eval_prompts=len(setup.eval_prompts)))
    checkpoints.write_config(config, workdir)
    if run.meta["stage"] == "done":
      logging.info("%s already finished", workdir)
      return run.finish({"policy": run.policy.params})
    if run.meta["stage"] == "warmstart" and not run.warmstart():
      return None
    train = run.grpo if config.method == "grpo" else run.dpo
    if run.meta["stage"] == "train" and not train():
      return None
    return run.finish({"policy": run.policy.params})
  except Stopped as stopped:  # mid-sampling: the journal holds what the last checkpoint lacks
    logging.warning("preempted: %s", stopped)
    return None
  finally:
    run.close()
