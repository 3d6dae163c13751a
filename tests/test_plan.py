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
  assert plan.main(["--config", path, "--topology", "v5p-8", "--out", str(out_path)]) == 1
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
  assert plan.main(["--config", f"{path}:fsdp4", "--topology", "v5p-8", "--programs",
                    "*.update", "--out", str(out_path)]) == 0
  with open(out_path) as f:
    written = json.load(f)
  assert written["config"]["mesh_shape"] == [1, 4, 1]  # get_config("fsdp4")
  assert [r["program"] for r in written["programs"]] == ["generator.update", "judge.update"]
  assert written["selected"] == "*.update" and written["fits"]
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
