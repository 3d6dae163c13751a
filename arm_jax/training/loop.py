"""The training job: SFT warm start of both policies, then alternating RL, resumable at any step.

Stages run in order: "sft_generator", "sft_judge", "rl", "done". After each step the run may
checkpoint (every `checkpoint.every_steps` steps, at each stage or phase end, and on SIGTERM);
a checkpoint holds the arrays of the current stage and a JSON position (stage, phase, step,
cached rubrics, metrics.jsonl offset, finished evals). Batches, swaps and sampling keys are
functions of (seed, phase, step), so re-running the same command continues exactly where the
last checkpoint stopped: the final parameters are bit-identical to an uninterrupted run's.

A fresh run's first record (phase "data") counts the pairs it trains and evaluates on and those
skipped at load because their prompts do not fit (arm_jax.training.setup.drop_too_long).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import signal
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from arm_jax import config_sections, multihost
from arm_jax.core import ROLES
from arm_jax.models import lora
from arm_jax.rl import heldout, optim
from arm_jax.rl.schedule import plan
from arm_jax.rl.sft import run_sft
from arm_jax.rl.trainer import AlternatingTrainer
from arm_jax.training import checkpoints
from arm_jax.training import setup as train_setup
from arm_jax.training.checkpoints import TrainCheckpointer
from arm_jax.training.metrics import MetricsWriter, Progress, plot_curves

STAGES = ("sft_generator", "sft_judge", "rl", "done")


def params_checksum(params: Any) -> str:
  """sha256 over every parameter's bytes in tree order: equal iff bit-identical."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(np.ascontiguousarray(multihost.host_array(leaf)).tobytes())
  return digest.hexdigest()[:16]


def nonfinite_leaves(tree: Any) -> list[str]:
  """The paths of the floating-point arrays in `tree` that hold a NaN or an infinity (one
jitted pass over them all, one read back)."""
  floats = [(jax.tree_util.keystr(path), leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
            if jnp.issubdtype(getattr(leaf, "dtype", np.int32), jnp.floating)]
  finite = multihost.host_array(_all_finite([leaf for _, leaf in floats])) if floats else []
  return [name for (name, _), ok in zip(floats, finite) if not ok]


@jax.jit
def _all_finite(leaves: list[jax.Array]) -> jax.Array:
  return jnp.stack([jnp.isfinite(x).all() for x in leaves])


class Preemption:
  """SIGTERM sets a flag; the loop saves after the current step and exits cleanly. With several
  processes the flag is agreed after every step (RunBase._step_done): a SIGTERM to any one
  process stops all of them at the same step."""

  def __init__(self):
    self.signalled = False  # this process got SIGTERM
    self.requested = False  # some process did, as agreed at the last step's end: stop
    self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):  # noqa: ARG002
    logging.warning("SIGTERM: saving after the current step, then exiting")
    self.signalled = True

  def agree(self) -> bool:
    """`requested` from every process's `signalled` (a collective with several processes)."""
    self.requested = multihost.any_process(self.signalled)
    return self.requested

  def restore(self):
    signal.signal(signal.SIGTERM, self._previous)


def rl_begun(meta: dict) -> bool:
  """Whether the training run at checkpoint `meta` has made an RL update: not during its warm
  start, nor at the checkpoint saved as the warm start ends (stage "rl", phase 0, step 0). A
  policy job's checkpoints (other stages) count as begun."""
  stage = meta.get("stage", "")
  if stage in ("sft_generator", "sft_judge"):
    return False
  return not (stage == "rl" and meta.get("phase") == 0 and meta.get("step") == 0)


def _refuse_changes(workdir: str, meta: dict, config: ml_collections.ConfigDict) -> None:
  """A ValueError naming each fingerprinted key whose value differs from the run's in `meta`
  (config_sections.fingerprint; checkpoints written before fingerprints are not checked)."""
  begun = config.get("job") != "train" or rl_begun(meta)
  changes = (config_sections.resume_changes(meta["config"], config, rl_begun=begun)
             if "config" in meta else [])
  if changes:
    before_rl = "" if begun else (
        f", and before its first RL update also {', '.join(config_sections.BEFORE_RL_KEYS)}")
    raise ValueError(
        f"{workdir} holds a run started with another config, and resuming it with this one "
        f"would not continue it: {'; '.join(changes)}. Set these back, or use another "
        f"--workdir for a new run (a resume may change only "
        f"{', '.join(config_sections.RESUMABLE_KEYS)}: arm_jax.config_sections.RESUMABLE_KEYS"
        f"{before_rl})")


def check_resume(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses to resume the run in `workdir` with a config that changes its fingerprint, before
  anything loads or is written (config.json stays as it is). Reads the position of the newest
  checkpoint that reads back; a workdir without one is a fresh run and passes."""
  directory = os.path.join(workdir, checkpoints.CHECKPOINTS_DIR)
  if not os.path.isdir(directory):
    return
  ckpt = TrainCheckpointer(directory, create=False)
  try:
    for step in reversed(ckpt.all_steps()):
      try:
        meta = ckpt.restore_meta(step)
      except (OSError, ValueError, KeyError):
        continue  # RunBase._restore sets it aside and says so
      _refuse_changes(workdir, meta, config)
      return
  finally:
    ckpt.close()


class RunBase:
  """What every resumable job shares: metrics.jsonl (and TensorBoard), numbered checkpoints, the
  SIGTERM flag, a progress bar and a JSON position `meta` with a global step. Subclasses define
  save() and the stages (this module's training run; arm_jax.downstream.job's policy run)."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, total_steps: int,
               desc: str, keep_steps: tuple[int, ...] = ()):
    self.config, self.workdir = config, workdir
    self.writer = MetricsWriter(workdir, tensorboard=config.log.tensorboard)
    self.ckpt = TrainCheckpointer(os.path.join(workdir, checkpoints.CHECKPOINTS_DIR),
                                  config.checkpoint.max_to_keep, keep_steps=keep_steps)
    self.preemption = Preemption()
    self.meta: dict = dict(global_step=0, metrics_offset=0, seed=int(config.seed),
                           config=config_sections.fingerprint(config))
    self.progress = Progress(total_steps, desc)
    self.nonfinite_in_a_row = 0  # updates skipped for a non-finite loss or gradient

  def save(self) -> None:
    raise NotImplementedError

  def _save_state(self, state: dict) -> None:
    """Checkpoints `state` numbered by the global step, with the position `meta` and the
    metrics.jsonl offset a resume truncates to."""
    bad = nonfinite_leaves(state)
    if bad:
      raise FloatingPointError(f"not saving checkpoint {self.meta['global_step']}: non-finite "
                               f"values in {', '.join(bad[:5])}")
    self.meta["metrics_offset"] = self.writer.offset()  # process 0's: the one that writes
    self.meta["state_keys"] = sorted(state)
    if jax.process_count() > 1:  # processes that drifted apart must not write one checkpoint
      position = {k: v for k, v in self.meta.items() if k != "metrics_offset"}
      multihost.assert_same(hashlib.sha256(json.dumps(position, sort_keys=True, default=str)
                                           .encode()).hexdigest(), "the run's position")
    self.ckpt.save(self.meta["global_step"], state, self.meta)

  def _restore(self, same: tuple[str, ...],
               like_of: Callable[[dict], dict]) -> tuple[int, dict, dict] | None:
    """(step, meta, state) of the newest checkpoint that reads back whole, the state laid out
    as like_of(meta); adopted as this run's position with metrics.jsonl truncated to it. None
    when the workdir has no checkpoint, and then metrics.jsonl is emptied (a run that crashed
    before its first checkpoint starts again from nothing). The `same` fields of its meta must
    equal this run's (a workdir holds one run).

    A checkpoint that cannot be read (a truncated or missing file) is moved aside
    (TrainCheckpointer.set_aside, nothing is deleted) with a warning naming it, and the one
    before it is tried; when none is left the error names every one that failed."""
    failed = []
    while (step := self.ckpt.latest_step()) is not None:
      try:
        meta = self.ckpt.restore_meta(step)
      except (OSError, ValueError, KeyError) as e:
        failed.append(self._set_aside(step, e))
        continue
      for key in same:
        if meta[key] != self.meta[key]:
          raise ValueError(f"{self.workdir} holds a run with {key}={meta[key]!r}, the config "
                           f"says {self.meta[key]!r}: use another --workdir")
      _refuse_changes(self.workdir, meta, self.config)
      try:
        state = self.ckpt.restore_state(step, like_of(meta))
      except (OSError, ValueError, KeyError) as e:
        failed.append(self._set_aside(step, e))
        continue
      self.meta = meta
      # The config's fingerprint from here: the same but for keys changed before RL began.
      self.meta["config"] = config_sections.fingerprint(self.config)
      self.writer.truncate(meta["metrics_offset"])
      return step, meta, state
    if failed:
      raise RuntimeError(f"{self.workdir}: no checkpoint can be read (each was moved aside): "
                         + "; ".join(failed))
    self.writer.truncate(0)
    return None

  def _set_aside(self, step: int, error: Exception) -> str:
    where = self.ckpt.set_aside(step)
    message = f"checkpoint {step} cannot be read ({type(error).__name__}: {error}); moved to {where}"
    logging.warning("%s; resuming from the checkpoint before it", message)
    return message

  def record(self, record: dict) -> None:
    """Writes a record; an update's record (with skipped_nonfinite) also counts the updates
    skipped in a row, and checkpoint.max_nonfinite_updates of them stop the run."""
    self.writer.write(dict(record, global_step=self.meta["global_step"]))
    if "skipped_nonfinite" not in record:
      return
    if not record["skipped_nonfinite"]:
      self.nonfinite_in_a_row = 0
      return
    self.nonfinite_in_a_row += 1
    limit = self.config.checkpoint.max_nonfinite_updates
    where = ", ".join(f"{k} {record[k]}" for k in ("phase", "role", "iteration", "step")
                      if k in record)
    logging.warning("non-finite loss or gradient at %s: update skipped (%d in a row)", where,
                    self.nonfinite_in_a_row)
    if limit and self.nonfinite_in_a_row >= limit:
      raise FloatingPointError(
          f"{self.nonfinite_in_a_row} updates in a row had a non-finite loss or gradient, the "
          f"last at {where} (global step {self.meta['global_step']}); parameters are those of "
          f"the last finite update and the newest checkpoint holds no non-finite value "
          f"(checkpoint.max_nonfinite_updates={limit})")

  def _step_done(self) -> bool:
    """Counts a finished step; saves when due or preempted. True = stop now."""
    self.meta["global_step"] += 1
    self.progress.update(1)
    every = self.config.checkpoint.every_steps
    if self.preemption.agree() or (every and self.meta["global_step"] % every == 0):
      self.save()
    if self.preemption.requested:
      logging.warning("preempted: saved at global step %d, exiting; the same command resumes",
                      self.meta["global_step"])
    return self.preemption.requested

  def finish(self, checksums: dict[str, Any]) -> dict:
    """The last record: `{"phase": "done", <name>_checksum: ...}` of the given parameters, after
    a final save (a re-run truncates to here and writes it once again), then curves.png."""
    record = dict(phase="done", **{f"{name}_checksum": params_checksum(params)
                                   for name, params in checksums.items()})
    self.save()
    self.record(record)
    self.writer.close()
    if multihost.is_main():
      plot_curves(os.path.join(self.workdir, "metrics.jsonl"),
                  os.path.join(self.workdir, "curves.png"))
    return record

  def close(self) -> None:
    self.progress.close()
    self.preemption.restore()
    self.ckpt.close()
    self.writer.close()


class _Run(RunBase):
  """Position, checkpoints and metrics of one training run."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, setup):
    super().__init__(config, workdir, setup.total_steps, "train",
                     keep_steps=setup.round_end_steps if config.checkpoint.keep_rounds else ())
    self.setup = setup
    self.policies = {"generator": setup.generator, "judge": setup.judge}
    self.meta.update(stage=STAGES[0], phase=0, step=0, rubric_cache=None, evals=[])
    self.trainer: AlternatingTrainer | None = None
    self.sft_opt_state = None

  # ------------------------------------------------------------------------- state
  def _state(self) -> dict:
    # A LoRA model's checkpoints hold its adapters only; the base reloads from model.path.
    state = {role: lora.trainable(p.params) for role, p in self.policies.items()}
    if self.meta["stage"].startswith("sft") and self.sft_opt_state is not None:
      state["sft_opt"] = self.sft_opt_state
    if self.meta["stage"] == "rl":
      for role, p in self.policies.items():
        if p.opt_state is not None:  # None: the warm start just ended, RL has not begun
          state[f"{role}_opt"] = p.opt_state
        if p.ref_params is not None:
          state[f"{role}_ref"] = lora.trainable(p.ref_params)
    return state

  def save(self) -> None:
    if self.trainer is not None:
      cache = self.trainer.rubric_cache
      self.meta["rubric_cache"] = None if cache is None else sorted(cache.items())
    self.meta["round_end_steps"] = list(self.setup.round_end_steps)  # for the evaluator
    self._save_state(self._state())
    if self.config.checkpoint.kept_params_only:
      self._reduce_kept()

  def _reduce_kept(self) -> None:
    """The kept checkpoints (warm start, round ends) older than the newest keep the two policies
    only: the optimizer states and KL references of a round end are for resuming from it, and a
    resume takes the newest, which has them (what it saves: docs/results.md, "the data so
    far"). The evaluator and init_from_checkpoint read policies only."""
    newest = self.meta["global_step"]
    like = {role: lora.trainable(p.params) for role, p in self.policies.items()}
    for step in self.ckpt.all_steps():
      if step == newest or step not in self.ckpt.keep_steps:
        continue
      meta = self.ckpt.restore_meta(step)
      extra = sorted(set(meta["state_keys"]) - set(like))
      if extra:
        self.ckpt.reduce(step, like, dict(meta, state_keys=sorted(like), dropped_keys=extra))
        logging.info("checkpoint %d keeps the policies only (checkpoint.kept_params_only); "
                     "dropped %s", step, ", ".join(extra))

  def _like(self, meta: dict) -> dict:
    """The arrays a checkpoint with this meta holds, as live arrays to restore into."""
    like = {role: lora.trainable(p.params) for role, p in self.policies.items()}
    keys = set(meta["state_keys"])
    if "sft_opt" in keys:
      role = meta["stage"].split("_", 1)[1]
      like["sft_opt"] = jax.jit(lambda p: optim.init_state(self.setup.sft_optimizer, p))(
          self.policies[role].params)
    if meta["stage"] == "rl":
      if self.trainer is None:
        self._make_trainer()  # fresh optimizer states: kept when the checkpoint has none
      for role, p in self.policies.items():
        if f"{role}_opt" in keys:
          like[f"{role}_opt"] = p.opt_state
        if f"{role}_ref" in keys:
          like[f"{role}_ref"] = lora.trainable(p.params)
    return like

  def resume(self) -> bool:
    found = self._restore(("seed",), self._like)
    if found is None:
      return False
    step, meta, state = found
    # self.meta is `meta` now; the run's own checkpoints from here hold everything.
    dropped = self.meta.pop("dropped_keys", None)
    if dropped:
      logging.warning("resuming from checkpoint %d, which keeps the policies only "
                      "(checkpoint.kept_params_only dropped %s): the optimizer states restart "
                      "and the KL reference is the restored policy; the run goes on, but not as "
                      "an uninterrupted one would", step, ", ".join(dropped))
    for role, p in self.policies.items():
      frozen = lora.split(p.params)[1]
      p.params = lora.combine(state[role], frozen)
      if f"{role}_opt" in state:
        p.opt_state = state[f"{role}_opt"]
      if f"{role}_ref" in state:
        # Its own copy of a LoRA model's base: the update donates the policy's.
        p.ref_params = lora.combine(state[f"{role}_ref"], jax.tree.map(jnp.copy, frozen))
      elif p.ref_params is not None:  # saved before RL began: the reference is the policy now
        p.ref_params = jax.tree.map(jnp.copy, p.params)
    self.sft_opt_state = state.get("sft_opt")
    if self.trainer is not None and meta["rubric_cache"] is not None:
      self.trainer.rubric_cache = {int(i): text for i, text in meta["rubric_cache"]}
    self.progress.update(meta["global_step"])
    logging.info("resumed %s at checkpoint %d: stage %s, phase %d, step %d", self.workdir, step,
                 meta["stage"], meta["phase"], meta["step"])
    return True

  def initialize_from(self, path: str, selector: str = "latest") -> None:
    """A fresh run starts both policies from the checkpoint `selector` names (latest,
    warm_start, round:R, step:N) of the run in `path` (its workdir or checkpoints folder);
    optimizer states and position start afresh."""
    like = {role: p.params for role, p in self.policies.items()}
    step = checkpoints.resolve(path, selector, key="init_from_checkpoint")
    state, meta = checkpoints.restore_policies(path, like, step=step, key="init_from")
    for role, p in self.policies.items():
      p.params = state[role]
    directory = checkpoints.checkpoints_dir(path, "init_from")
    self.meta["init_from"] = dict(path=directory, step=meta["checkpoint_step"])
    logging.info("both policies start from %s, checkpoint %d", directory, meta["checkpoint_step"])

  # ------------------------------------------------------------------------- evaluation
  def evaluate(self, round_: int) -> None:
    if not self.config.eval.enabled or round_ in self.meta["evals"]:
      return
    e = self.config.eval
    start = time.perf_counter()
    evaluate = functools.partial(
        heldout.judge_accuracy, self.policies["generator"], self.policies["judge"],
        self.setup.held_out, seed=int(self.config.seed),
        rubric_max_new_tokens=e.rubric_max_new_tokens,
        judge_max_new_tokens=e.judge_max_new_tokens, batch_size=e.batch_size)
    result = evaluate(judge_temperature=e.judge_temperature,
                      samples=e.samples if e.judge_temperature > 0 else 1,
                      diagnose=self.setup.eval_diagnostics)
    if e.judge_temperature > 0:  # the greedy figure too, for comparison
      greedy = evaluate(judge_temperature=0.0)
      result.update(judge_accuracy_greedy=greedy["judge_accuracy"],
                    verdict_rate_greedy=greedy["verdict_rate"])
    self.record(dict(result, phase="eval", round=round_, seconds=time.perf_counter() - start))
    logging.info("eval after round %d: judge_accuracy %.3f", round_, result["judge_accuracy"])
    self.meta["evals"].append(round_)

  # ------------------------------------------------------------------------- stages
  def sft(self, role: str) -> bool:
    """Warm start of one policy; False when preempted."""
    policy, s = self.policies[role], self.config.warmstart
    steps = train_setup.sft_steps(s, role)
    settings = train_setup.sft_settings(s, role)
    start = self.meta["step"]
    if steps <= 0:  # no warm start
      self.meta.update(stage=STAGES[STAGES.index(self.meta["stage"]) + 1], step=0)
      return True

    def on_step(step, params, opt_state, metrics):
      policy.params, self.sft_opt_state = params, opt_state
      self.meta["step"] = step + 1
      self.record(dict(metrics, phase="sft", role=role, round=0, step=step))
      return self._step_done()

    params = jax.tree.map(jnp.copy, policy.params)  # run_sft donates its params
    policy.params, _, _ = run_sft(
        policy.model, params, policy.tokenizer, self.setup.sft_examples[role],
        optimizer_config=train_setup.sft_optimizer_config(s, role),
        sft_config=settings.sft_config, batch_size=settings.batch_size,
        max_length=settings.max_length, pad_multiple=s.pad_multiple,
        steps=steps, seed=int(self.config.seed),
        mesh=policy.model.mesh, rules=policy.model.rules, log_fn=logging.info,
        opt_state=self.sft_opt_state, start_step=start, on_step=on_step,
        length_groups=s.length_groups)
    if self.preemption.requested:
      return False
    self.sft_opt_state = None
    self.meta.update(stage=STAGES[STAGES.index(self.meta["stage"]) + 1], step=0)
    self.save()
    return True

  def _make_trainer(self) -> None:
    for role, p in self.policies.items():
      if getattr(self.setup.trainer_config, role).grpo.beta and p.ref_params is None:
        p.ref_params = jax.tree.map(jnp.copy, p.params)  # the policy at RL start
    self.trainer = AlternatingTrainer(self.policies["generator"], self.policies["judge"],
                                      self.setup.trainer_config)

  def rl(self) -> bool:
    """Alternating RL from the saved position; False when preempted."""
    if self.trainer is None:
      self._make_trainer()
    if self.ckpt.latest_step() != self.meta["global_step"]:  # no warm start: keep round 0 too
      self.save()
    self.evaluate(0)
    cfg = self.setup.trainer_config
    per_step = {"judge": cfg.judge.prompts_per_step, "generator": cfg.generator.prompts_per_step}
    phases = plan(len(self.setup.train), cfg.schedule, per_step)
    last_of_round = {max(p.index for p in phases if p.round == r) for r in {p.round for p in phases}}

    def on_step(phase, step):
      self.meta.update(phase=phase.index, step=step + 1)
      return self._step_done()

    def on_phase_end(phase):
      if phase.index in last_of_round:
        self.evaluate(phase.round + 1)
      self.meta.update(phase=phase.index + 1, step=0)
      self.save()

    def log(metrics):
      if "step" not in metrics:
        logging.info("%s", metrics)
        return
      self.record(dict(metrics, phase=metrics["role"], phase_index=metrics["phase"],
                       round=metrics["round"] + 1))

    self.trainer.log_fn = log
    self.trainer.run(self.setup.train, jax.random.key(int(self.config.seed)),
                     start_phase=self.meta["phase"], start_step=self.meta["step"],
                     on_step=on_step, on_phase_end=on_phase_end)
    if self.preemption.requested:
      return False
    self.meta.update(stage="done")
    return True

def run_train(config: ml_collections.ConfigDict, workdir: str) -> dict | None:
  """Runs (or resumes) the job; returns the final "done" record, None when preempted. The config
  is validated and completed first (arm_jax.config_sections)."""
  config = config_sections.validate(config)
  checkpoints.quiet_orbax()
  check_resume(config, workdir)
  setup = train_setup.build(config)
  run = _Run(config, workdir, setup)
  try:
    if not run.resume():
      if config.init_from:
        run.initialize_from(config.init_from, config.init_from_checkpoint)
      run.record(dict(phase="data", train_pairs=len(setup.train),
                      held_out_pairs=len(setup.held_out), too_long_train=setup.too_long[0],
                      too_long_held_out=setup.too_long[1]))
    checkpoints.write_config(config, workdir)
    if run.meta["stage"] == "done":
      logging.info("%s already finished", workdir)
      return run.finish({role: p.params for role, p in run.policies.items()})
    for role in ROLES:
      if run.meta["stage"] == f"sft_{role}" and not run.sft(role):
        return None
    if run.meta["stage"] == "rl" and not run.rl():
      return None
    return run.finish({role: p.params for role, p in run.policies.items()})
  finally:
    run.close()
