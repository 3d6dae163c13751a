"""experiments/toy_ablation.py's per-run summary against hand-computed figures."""

import importlib.util
import json
import math
import os

import pytest

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments",
                     "toy_ablation.py")
_spec = importlib.util.spec_from_file_location("toy_ablation", _PATH)
toy_ablation = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy_ablation)


def test_summary_takes_round_0_and_the_last_eval_and_averages_defined_variances():
  records = [
      {"phase": "sft", "loss": 1.0},
      {"phase": "eval", "round": 0, "judge_accuracy": 0.6, "rubric_exact": 0.1},
      {"phase": "judge", "grad_variance": 1.0}, {"phase": "judge", "grad_variance": None},
      {"phase": "judge", "grad_variance": 3.0}, {"phase": "generator", "grad_variance": 0.5},
      {"phase": "eval", "round": 1, "judge_accuracy": 0.65},
      {"phase": "generator", "grad_variance": float("nan")},
      {"phase": "eval", "round": 2, "judge_accuracy": 0.7, "rubric_exact": 0.9,
       "judge_evidence": 0.8},
      {"phase": "done"}]
  assert toy_ablation.summarise(records) == dict(
      final=0.7, round0=0.6, grad_variance_judge=2.0, grad_variance_generator=0.5,
      rubric_exact=0.9, judge_evidence=0.8)
  no_reading = toy_ablation.summarise(records[:7])
  assert no_reading["final"] == 0.65 and no_reading["judge_evidence"] is None
  assert math.isnan(toy_ablation.summarise(records[1:2] + records[6:7])["grad_variance_judge"])


_PROBE_PATH = os.path.join(os.path.dirname(_PATH), "toy_warmstart_probe.py")
_probe_spec = importlib.util.spec_from_file_location("toy_warmstart_probe", _PROBE_PATH)
warmstart_probe = importlib.util.module_from_spec(_probe_spec)
_probe_spec.loader.exec_module(warmstart_probe)


def test_warmstart_probe_figures_equal_a_recount_from_the_training_logprobs():
  """The probe's per-decision probabilities and argmax hits, recounted from token_logprobs (the
  SFT loss's own log-probs) and a plain argmax of the logits, on a tiny random toy judge."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from arm_jax.rl.logprobs import token_logprobs
  from arm_jax.rl.optim import OptimizerConfig
  from arm_jax.rl.sft import pad_rows, run_sft, tokenize_sft
  from arm_jax.toy import warmstart, world
  from arm_jax.training import setup as train_setup
  from configs import toy

  config = toy.get_config()
  for assignment in ("model.num_layers=1", "model.hidden_size=32", "model.num_heads=2",
                     "model.num_kv_heads=2", "model.intermediate_size=64",
                     "data.num_instances=200", "data.kinds=('include', 'avoid')"):
    warmstart_probe.set_field(config, assignment)
  assert config.data.kinds == ("include", "avoid") and config.model.hidden_size == 32
  train_setup._import_plugins(config)  # pylint: disable=protected-access
  built = train_setup.build(config)
  judge = built.judge
  # A few SFT steps, so that the argmax hits the frequent decisions (not all zeros).
  judge.params, _, _ = run_sft(judge.model, judge.params, judge.tokenizer,
                               built.sft_examples["judge"], batch_size=16, max_length=256,
                               optimizer_config=OptimizerConfig(learning_rate=1e-2), steps=40,
                               log_fn=lambda _: None)
  instances = world.make_instances(16, seed=3, kinds=("include", "avoid"))
  rows, _ = tokenize_sft(judge.tokenizer, warmstart.judge_examples(instances), max_length=256)
  figures = warmstart_probe.make_probe(judge, rows)(judge.params)
  assert figures["evidence"] > 0 and min(figures["marks_p"], figures["winner_p"]) > 0.05, figures

  batch = pad_rows(rows, multiple=16)
  logp, _ = token_logprobs(judge.model, judge.params, batch, with_entropy=False)
  prob = np.exp(np.asarray(logp))[:, 1:]
  targets, mask = np.asarray(batch.tokens)[:, 1:], np.asarray(batch.loss_mask)[:, 1:]
  positions = jnp.maximum(jnp.cumsum(batch.attention, -1) - 1, 0)
  logits = judge.model.apply({"params": judge.params}, jnp.asarray(batch.tokens),
                             attention_mask=jnp.asarray(batch.attention), positions=positions)
  argmax = np.asarray(jnp.argmax(logits, -1))[:, :-1]  # the decoder's own head, not the probe's
  ids = warmstart_probe.decision_tokens(judge.tokenizer)
  assert all(len(v) == len(set(v)) for v in ids.values()) and len(ids["evidence"]) == 4
  for name, kind_ids in ids.items():
    sel = mask & np.isin(targets, kind_ids)
    assert sel.sum() >= 16  # every judgment has marks, evidence and a winner
    assert figures[f"{name}_p"] == round(float(prob[sel].mean()), 3)
    assert figures[name] == round(float((argmax[sel] == targets[sel]).mean()), 3)
  with pytest.raises(KeyError, match="no field 'model.width'"):
    warmstart_probe.set_field(config, "model.width=3")


def test_a_finished_run_is_reused_with_the_wall_time_of_the_command_that_finished_it(
    tmp_path, monkeypatch):
  workdir = tmp_path / "default_seed0"
  workdir.mkdir()
  (workdir / "metrics.jsonl").write_text('{"phase": "eval", "round": 0, "judge_accuracy": 0.5}\n')
  (workdir / "wall_seconds.json").write_text('{"seconds": 321.5, "command": []}')

  def no_run(*args, **kwargs):
    raise AssertionError(f"a finished workdir was run again: {args}")

  monkeypatch.setattr(toy_ablation.subprocess, "run", no_run)
  records, seconds = toy_ablation.run(str(workdir), 0, {})
  assert seconds == 321.5 and records == [{"phase": "eval", "round": 0, "judge_accuracy": 0.5}]
  # Without the timing file the command runs (here: a stand-in that writes the records).
  calls = []

  def fake_run(cmd, check, stdout):  # noqa: ARG001
    calls.append(cmd)
    (tmp_path / "fresh" / "metrics.jsonl").write_text('{"phase": "done"}\n')

  (tmp_path / "fresh").mkdir()
  monkeypatch.setattr(toy_ablation.subprocess, "run", fake_run)
  records, seconds = toy_ablation.run(str(tmp_path / "fresh"), 1, {"schedule.rounds": 0})
  assert records == [{"phase": "done"}] and seconds >= 0.0
  assert "--config.seed=1" in calls[0] and "--config.schedule.rounds=0" in calls[0]
  assert json.loads((tmp_path / "fresh" / "wall_seconds.json").read_text())["seconds"] == seconds


def test_sampled_probe_figures_score_judgments_against_the_world():
  """Judgments written from the world's truth score 1 on every reading share and on accuracy;
  the same judgments naming the other winner keep the reading shares and score 0 accuracy;
  judgments whose evidence tags are exchanged get right exactly the tags that exchanging leaves
  unchanged ([both] and [none])."""
  from arm_jax.rl.heldout import shown_order
  from arm_jax.toy import warmstart, world

  instances = world.make_instances(24, seed=5, kinds=("include", "avoid"))
  shown = shown_order([i.pair for i in instances], seed=1)
  assert any(p.label == 1 for p in shown) and any(p.label == 0 for p in shown)
  criteria = [world.parse_instruction(p.instruction)[1] for p in shown]
  rubrics = [warmstart.rubric_text(c) for c in criteria]

  def judged(winner_of, swapped=False):
    return [warmstart.judgment_text(c, p.response_a, p.response_b, winner_of(p), swapped=swapped)
            for c, p in zip(criteria, shown)]

  right = warmstart_probe.sampled_figures(shown, rubrics, judged(lambda p: p.label))
  assert right["s_accuracy"] == 1.0
  assert right["s_restated"] == right["s_evidence"] == right["s_marks"] == 1.0
  assert right["s_marks_avoid"] == right["s_marks_include"] == 1.0
  greedy = warmstart_probe.sampled_figures(shown, rubrics, judged(lambda p: p.label), prefix="g_")
  assert greedy == {"g_" + k[2:]: v for k, v in right.items()}
  flipped = warmstart_probe.sampled_figures(shown, rubrics, judged(lambda p: 1 - p.label))
  assert flipped["s_accuracy"] == 0.0 and flipped["s_evidence"] == 1.0
  exchanged = warmstart_probe.sampled_figures(shown, rubrics, judged(lambda p: p.label, True))
  # An occurrence in both or neither response reads the same exchanged: only [A] / [B] flip.
  where = [warmstart.WHERE[warmstart.evidence(c, p.response_a.split()),
                           warmstart.evidence(c, p.response_b.split())]
           for cs, p in zip(criteria, shown) for c in cs]
  one_sided = sum(w in (" [A]", " [B]") for w in where) / len(where)
  assert 0 < one_sided < 1
  assert exchanged["s_evidence"] == round(1 - one_sided, 3)


def test_gatekeeper_split_counts_the_named_gatekeeper_and_the_evidence_after_it():
  """Half the judgments are right; the other half name a gatekeeper that is not the right one
  and exchange the evidence: the split scores the first half 1 and the second exactly the
  share of their tags that exchanging leaves unchanged ([both] and [none])."""
  from arm_jax.rl.heldout import shown_order
  from arm_jax.toy import warmstart, world

  instances = world.make_instances(40, seed=6, kinds=("include", "avoid"))
  shown = shown_order([i.pair for i in instances], seed=2)
  criteria = [world.parse_instruction(p.instruction)[1] for p in shown]
  rubrics = [warmstart.rubric_text(c) for c in criteria]
  right = [warmstart.judgment_text(c, p.response_a, p.response_b, p.label)
           for c, p in zip(criteria, shown)]
  headers = ["\n".join(t.split("\n")[:3]) + "\n" for t in right]

  def misnamed(text):
    line = text.split("\n")[1]
    other = "2" if line.endswith("1") else "1"
    return text.replace(line, line[:-1] + other, 1)

  half = len(shown) // 2
  texts = right[:half] + [misnamed(warmstart.judgment_text(c, p.response_a, p.response_b,
                                                           1 - p.label, swapped=True))
                          for c, p in zip(criteria[half:], shown[half:])]
  split = warmstart_probe.gatekeeper_split(shown, rubrics, texts, headers)
  where = [warmstart.WHERE[warmstart.evidence(c, p.response_a.split()),
                           warmstart.evidence(c, p.response_b.split())]
           for cs, p in zip(criteria[half:], shown[half:]) for c in cs]
  unchanged = sum(w in (" [both]", " [none]") for w in where) / len(where)
  assert 0 < unchanged < 1
  assert split == {"g_gatekeeper": 0.5, "g_evidence_gate_right": 1.0,
                   "g_evidence_gate_wrong": round(unchanged, 3)}
