"""The planner (arm_jax.plan) on a tiny toy model and a 4-chip TPU v5p slice, compiled on this
CPU with libtpu (the "tpu" extra): every program compiles, the per-chip argument bytes of the
updates equal the shards the run's layout puts on a chip (counted here from the partition specs
by hand), and a slice too small for a program is named and fails the command."""

import dataclasses
import importlib.util
import json
import math
import os

import numpy as np
import pytest

if importlib.util.find_spec("libtpu") is None:
  if os.environ.get("CI"):
    pytest.fail("libtpu is missing: CI installs the tpu extra (README's test command)",
                pytrace=False)
  pytest.skip("the TPU compiler is not installed: pip install -e \".[tpu]\"",
              allow_module_level=True)

from arm_jax import plan  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = """
from arm_jax import config_sections
import importlib.util, os
spec = importlib.util.spec_from_file_location("toy", os.path.join({repo!r}, "configs", "toy.py"))
toy = importlib.util.module_from_spec(spec); spec.loader.exec_module(toy)

def get_config(preset=""):
  c = toy.get_config()
  if preset == "fsdp4":  # a preset, as configs/qwen3_8b.py:<slice> names one
    c.mesh_shape = (1, 4, 1)
    return c
  # Dimensions of 128 and rows of 8 per chip: TPU layouts pad none of the update's arguments.
  c.model.update(num_layers=2, hidden_size=256, num_heads=2, num_kv_heads=2, intermediate_size=256)
  c.mesh_shape = (2, 2, 1)  # data x fsdp x tensor over the slice's 4 chips
  c.warmstart.update(steps=10, batch_size=8, max_length=128)
  c.judge.update(prompts_per_step=8, group_size=4, micro_batches=2, max_new_tokens=64,
                 max_prompt_tokens=64)
  c.generator.update(prompts_per_step=4, group_size=2, micro_batches=1, max_new_tokens=16,
                     max_prompt_tokens=32)
  c.eval.update(batch_size=8, rubric_max_new_tokens=16, judge_max_new_tokens=32)
  return c
"""


POLICY = """
from arm_jax import config_sections

def get_config(method="iterdpo"):
  c = config_sections.policy_base()
  c.method = method
  # The reward model: the untrained pair of the tiny training config above, on this mesh.
  c.reward_model.update(workdir="", config={tiny!r}, batch_size=8, rubric_max_new_tokens=16,
                        judge_max_new_tokens=32)
  c.mesh_shape = (2, 2, 1)
  c.actor.update(warmstart_steps=10, warmstart_batch_size=8, warmstart_max_length=128)
  c.generate_batch = 4
  # Rows of 8 per chip and 128 tokens, as above: TPU layouts pad none of the updates' arguments.
  c.dpo.update(max_new_tokens=16, batch_size=32, micro_batches=2, max_length=128)
  c.grpo.update(max_new_tokens=64, prompts_per_step=8, group_size=4, micro_batches=2,
                max_prompt_tokens=64)
  c.eval.update(kind="oracle", batch_size=8, max_new_tokens=16)
  return c
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  path = tmp_path_factory.mktemp("plan") / "tiny.py"
  path.write_text(TINY.format(repo=REPO))
  config, module = plan.load_config_file(str(path))
  return str(path), config, plan.plan(config, plan.SLICES["v5p-8"], module, log=lambda _: None)


def _spec_bytes(shape, dtype, spec, mesh_shape):
  """Bytes of one shard: each dimension divided by the sizes of the mesh axes it is split on."""
  ways = 1
  for axes in spec:
    for a in (() if axes is None else (axes,) if isinstance(axes, str) else axes):
      ways *= mesh_shape[a]
  return math.prod(shape) * np.dtype(dtype).itemsize // ways


def test_every_program_compiles_and_fits(tiny):
  _, _, result = tiny
  names = {r["program"] for r in result["programs"]}
  for role in ("generator", "judge"):
    assert {f"{role}.sft", f"{role}.rollout.prefill", f"{role}.rollout.decode",
            f"{role}.update", f"{role}.reference_logprobs"} <= names
  assert {"judge.greedy_for_generator.decode", "generator.rubrics_for_judge.decode",
          "eval.rubric.decode", "eval.judge.decode"} <= names
  assert all(r["fits"] and "error" not in r for r in result["programs"]), result["programs"]
  assert result["fits"] and 0 < result["peak_bytes"] < plan.SLICES["v5p-8"].hbm_bytes
  rollout = next(r for r in result["programs"] if r["program"] == "judge.rollout.decode")
  assert (rollout["rows"], rollout["length"]) == (32, 64 + 64)  # 8 prompts x 4, bucket + new


def test_update_arguments_are_the_shards_of_params_optimizer_state_and_batch(tiny):
  _, config, result = tiny
  mesh = dict(zip(config.mesh_axes, config.mesh_shape))
  cfg = plan.decoder_config(config)
  model = plan.abstract_model(cfg, plan.topology_mesh(plan.SLICES["v5p-8"], config),
                              plan.sharding.rules_from_config(config.rules) if config.rules
                              else plan.sharding.DEFAULT_RULES)
  params = sum(_spec_bytes(x.shape, x.dtype, x.sharding.spec, mesh)
               for x in plan.jax.tree.leaves(model.params))
  # AdamW: two f32 moments per parameter, laid out as it; a count per transform (replicated).
  moments = 2 * params
  row = next(r for r in result["programs"] if r["program"] == "judge.update")
  rows, t = 8 * 4, 64 + 64
  dp = mesh["data"] * mesh["fsdp"]
  # tokens int32, attention and loss mask bool, old and reference log-probs f32, rewards f32
  batch = (rows * t * (4 + 1 + 1 + 4 + 4) + rows * 4) // dp
  counters = row["memory"]["arguments"] - (params + moments + batch)
  assert 0 <= counters <= 4096  # the optimizer's step counters: a few padded scalars
  assert row["resident_outside"]["generator.params"] == params


def test_a_slice_too_small_is_named_and_the_command_fails(tiny, tmp_path, monkeypatch, capsys):
  path, _, result = tiny
  small = dataclasses.replace(plan.SLICES["v5p-8"], hbm_bytes=result["peak_bytes"] - 1)
  monkeypatch.setitem(plan.SLICES, "v5p-8", small)
  out_path = tmp_path / "plan.json"
  # The peak program alone: the others' figures are the fixture's.
  assert plan.main(["--config", path, "--topology", "v5p-8", "--out", str(out_path),
                    "--programs", result["peak_program"]]) == 1
  assert f"does not fit on v5p-8: {result['peak_program']}" in capsys.readouterr().out
  with open(out_path) as f:
    written = json.load(f)
  assert written["fits"] is False and written["peak_program"] == result["peak_program"]
  assert [r["program"] for r in written["programs"] if not r["fits"]] == [result["peak_program"]]


def test_select_matches_names_prefixes_and_patterns_and_names_what_matches_nothing():
  names = ["judge.rollout.prefill", "judge.rollout.decode", "judge.update", "generator.update",
           "eval.judge.decode"]
  assert plan.select(names, "*.update") == ["judge.update", "generator.update"]
  assert plan.select(names, "judge.rollout, eval.judge.decode") == [
      "judge.rollout.prefill", "judge.rollout.decode", "eval.judge.decode"]
  assert plan.select(names, "judge") == names[:3]  # a prefix up to a dot, not "judge*"
  with pytest.raises(ValueError, match=r"--programs: gen\.update match no program; the run's "
                                       r"programs: judge\.rollout\.prefill"):
    plan.select(names, "*.update,gen.update")


def test_a_preset_argument_and_a_program_selection(tiny, tmp_path):
  path, _, _ = tiny
  out_path = tmp_path / "plan.json"
  # One program (each compiles for the TPU here: about 25 s on two cores).
  assert plan.main(["--config", f"{path}:fsdp4", "--topology", "v5p-8", "--programs",
                    "j*.update", "--out", str(out_path)]) == 0
  with open(out_path) as f:
    written = json.load(f)
  assert written["config"]["mesh_shape"] == [1, 4, 1]  # get_config("fsdp4")
  assert [r["program"] for r in written["programs"]] == ["judge.update"]
  assert written["selected"] == "j*.update" and written["fits"]
  with pytest.raises(FileNotFoundError, match=r"no such file"):
    plan.load_config_file(str(tmp_path / "missing.py:fsdp4"))


def test_every_known_slice_describes_its_chips():
  """Each entry of SLICES gives the TPU compiler a topology with that many devices, one per
  chip (a v4 chip's two TensorCores are one device, as v4 slices run)."""
  config = plan.config_sections.train_base()
  for name, s in plan.SLICES.items():
    config.mesh_shape, config.mesh_axes = (s.chips,), ("data",)
    mesh = plan.topology_mesh(s, config)
    assert mesh.size == s.chips, name
    kind = mesh.devices.flat[0].device_kind.lower()  # "tpu v4", "tpu v5", "tpu v5 lite", ...
    assert s.name[:2] in kind, (name, kind)


@pytest.fixture(scope="module")
def policy_plans(tiny, tmp_path_factory):
  path = tmp_path_factory.mktemp("plan") / "policy.py"
  path.write_text(POLICY.format(tiny=tiny[0]))
  out = {}
  # Every program of iterdpo; of grpo, those only it runs (its sampling and reward-model
  # programs are built by the same code at other shapes).
  for method, only in (("iterdpo", ""), ("grpo", "policy.rollout,policy.warmstart,policy.update,"
                                                 "policy.reference_logprobs")):
    config, module = plan.load_config_file(f"{path}:{method}")
    out[method] = config, plan.plan(config, plan.SLICES["v5p-8"], module, log=lambda _: None,
                                    only=only)
  return str(path), out


def test_a_policy_job_plans_each_methods_programs_beside_the_reward_model(policy_plans, tiny):
  _, plans = policy_plans
  common = {"policy.warmstart", "reward_model.rubric.prefill", "reward_model.rubric.decode",
            "reward_model.judge.prefill", "reward_model.judge.decode",
            "policy.reference_logprobs", "eval.policy.prefill", "eval.policy.decode"}
  expected = {"iterdpo": common | {"policy.sample.prefill", "policy.sample.decode",
                                   "policy.dpo_update"},
              "grpo": {"policy.warmstart", "policy.rollout.prefill", "policy.rollout.decode",
                       "policy.reference_logprobs", "policy.update"}}
  _, train_config, _ = tiny
  mesh = dict(zip(train_config.mesh_axes, train_config.mesh_shape))
  model = plan.abstract_model(plan.decoder_config(train_config),
                              plan.topology_mesh(plan.SLICES["v5p-8"], train_config),
                              plan.sharding.DEFAULT_RULES)
  params = sum(_spec_bytes(x.shape, x.dtype, x.sharding.spec, mesh)
               for x in plan.jax.tree.leaves(model.params))
  dp = mesh["data"] * mesh["fsdp"]
  for method, (config, result) in plans.items():
    rows = {r["program"]: r for r in result["programs"]}
    assert set(rows) == expected[method], method
    assert result["fits"] and all("error" not in r for r in rows.values()), method
    # actor.path "": the policy is the reward model's base model, beside its two policies.
    items = result["resident"]
    assert items["policy.params"] == items["generator.params"] == items["judge.params"] == params
    assert items["policy.opt"] >= 2 * params and items["policy.ref"] == params
    warm = rows["policy.warmstart"]["resident_outside"]
    assert warm == {"generator.params": params, "judge.params": params}
    update = rows["policy.dpo_update" if method == "iterdpo" else "policy.update"]
    beside = update["resident_outside"]
    assert "policy.params" not in beside and "policy.opt" not in beside
    assert beside["policy.ref"] == params and beside["judge.decode_copy"] > 0
    if method == "iterdpo":  # chosen and rejected: tokens int32, two bool masks; two f32 refs
      n, t = 32, 128
      batch = 2 * (n * t * (4 + 1 + 1) + n * 4) // dp
      assert rows["policy.sample.decode"]["rows"] == 2 * config.generate_batch
    else:  # 8 prompts x 4 rollouts; tokens, masks, old and reference log-probs; rewards
      n, t = 32, update["length"]
      batch = (n * t * (4 + 1 + 1 + 4 + 4) + n * 4) // dp
      assert rows["policy.rollout.decode"]["rows"] == n and t == 64 + 64  # max_prompt_tokens
    counters = update["memory"]["arguments"] - (params + 2 * params + batch)
    assert 0 <= counters <= 4096, (method, counters)


def test_a_policy_job_without_its_reward_models_config_is_refused_by_name(policy_plans, tmp_path):
  path, _ = policy_plans
  config, module = plan.load_config_file(path)
  config.reward_model.update(config="", workdir=str(tmp_path / "runs" / "rm"))
  with pytest.raises(FileNotFoundError, match=r"reward_model.workdir=.*holds no config.json "
                                              r"here .* --reward_model_config"):
    plan.plan(config, plan.SLICES["v5p-8"], module, log=lambda _: None)


def test_the_policy_is_planned_as_the_job_loads_it(policy_plans, tmp_path):
  """actor.path's config.json, with actor.dtype, compute_dtype and remat_policy (as
  load_pretrained gets them); the config file's ARCHITECTURE when the path is not here."""
  path, _ = policy_plans
  config, module = plan.load_config_file(path)
  hf = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 512,
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 1024}
  (tmp_path / "actor").mkdir()
  (tmp_path / "actor" / "config.json").write_text(json.dumps(hf))
  config.actor.update(path=str(tmp_path / "actor"), dtype="float32", compute_dtype="bfloat16",
                      remat_policy="full")
  cfg = plan.actor_config(config, module, base=None)
  assert (cfg.hidden_size, cfg.num_layers, cfg.num_kv_heads) == (64, 2, 1)
  assert (str(cfg.param_dtype), str(cfg.dtype), cfg.remat_policy) == ("float32", "bfloat16",
                                                                      "full")
  config.actor.path = str(tmp_path / "not_here")
  with pytest.raises(ValueError, match=r"actor.path=.*not_here.* defines no ARCHITECTURE"):
    plan.actor_config(config, module, base=None)
  module.ARCHITECTURE = dict(hf, hidden_size=128)
  assert plan.actor_config(config, module, base=None).hidden_size == 128
  # The checker as the labeller: no reward model on the chips, only the policy's state.
  config.actor.path = str(tmp_path / "actor")
  config.reward_model.update(kind="checker", config="")
  config.dpo.update(batch_size=32, max_length=128)
  result = plan.plan(config, plan.SLICES["v5p-8"], module, log=lambda _: None,
                     only="policy.dpo_update")
  assert set(result["resident"]) == {"policy.params", "policy.decode_copy", "policy.ref",
                                     "policy.opt"}
  assert result["fits"] and [r["program"] for r in result["programs"]] == ["policy.dpo_update"]
