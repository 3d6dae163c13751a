"""The shipped training configs, and dataset-backed training data (arm_jax.data.pairs).

qwen3_8b is checked at paper scale without a download or a pod: the Qwen3-8B architecture from
its public config.json, the train state as jax.eval_shape, the config's mesh as an AbstractMesh.
"""

import dataclasses
import importlib.util
import json
import math
import os
import types

import flax.linen as nn
import jax
import numpy as np
import pytest
from jax.sharding import AbstractMesh, NamedSharding, PartitionSpec as P

from arm_jax import assets, config_sections, sharding
from arm_jax.downstream import job as policy_job
from arm_jax.data import pairs as train_data
from arm_jax.training import setup as train_setup
from arm_jax.data.build import build as build_dataset
from arm_jax.models import Decoder, DecoderConfig
from arm_jax.models.checkpoint import abstract_params
from arm_jax.rl import optim
from arm_jax.core import is_held_out

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROLES = ("generator", "judge")


def _module(name: str):
  spec = importlib.util.spec_from_file_location(f"config_{name}",
                                                os.path.join(ROOT, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


# --- qwen3_8b at paper scale ---------------------------------------------------------------------

PRESETS = ("v5p-128", "v6e-64", "v4-128", "v5e-256")


def _qwen3_8b(preset: str = ""):
  module = _module("qwen3_8b")
  config = module.get_config(preset)
  m = config.model
  cfg = DecoderConfig.from_hf(module.QWEN3_8B_CONFIG_JSON, param_dtype=m.dtype,
                              dtype=m.compute_dtype,
                              remat_policy=m.remat_policy)
  return config, cfg


def test_qwen3_8b_presets_are_the_slices_and_unknown_ones_are_named():
  assert tuple(_module("qwen3_8b").PRESETS) == PRESETS
  default, _ = _qwen3_8b()
  assert default.to_dict() == _qwen3_8b("v5p-128")[0].to_dict()
  with pytest.raises(ValueError, match=r"configs/qwen3_8b.py:v3-8: no preset.*v5e-256"):
    _module("qwen3_8b").get_config("v3-8")


def test_qwen3_8b_architecture_is_the_public_one():
  _, cfg = _qwen3_8b()
  got = (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size, cfg.num_layers, cfg.num_heads,
         cfg.num_kv_heads, cfg.head_dim, cfg.qk_norm, cfg.tie_word_embeddings, cfg.rope_theta,
         cfg.rms_norm_eps, cfg.architecture, cfg.param_dtype, cfg.dtype)
  assert got == (151936, 4096, 12288, 36, 32, 8, 128, True, False, 1e6, 1e-6, "qwen3",
                 "float32", "bfloat16")
  assert 8.1e9 < cfg.num_params < 8.3e9  # "Qwen3-8B": 8.2B parameters


def _unevenly_sharded(shape, spec: P, mesh) -> list[str]:
  bad = []
  for dim, axes in enumerate(tuple(spec) + (None,) * (len(shape) - len(spec))):
    axes = () if axes is None else ((axes,) if isinstance(axes, str) else tuple(axes))
    ways = math.prod(mesh.shape[a] for a in axes)
    if shape[dim] % ways:
      bad.append(f"dim {dim} (size {shape[dim]}) over {axes} ({ways} ways)")
  return bad


def _sharded_bytes(state: dict, mesh) -> tuple[dict, dict, list[str]]:
  """Per entry of {name: (abstract tree, shardings)}: bytes on one device, bytes in all, and
  every dimension its mesh axes do not divide."""
  per_device, total, uneven = {}, {}, []

  def count(name, leaf, s):
    uneven.extend(f"{name}: {b}" for b in _unevenly_sharded(leaf.shape, s.spec, mesh))
    per_device[name] = per_device.get(name, 0) + (
        math.prod(s.shard_shape(leaf.shape)) * leaf.dtype.itemsize)
    total[name] = total.get(name, 0) + math.prod(leaf.shape) * leaf.dtype.itemsize

  for name, (tree, shardings) in state.items():
    jax.tree.map(lambda leaf, s, name=name: count(name, leaf, s), tree, shardings)
  return per_device, total, uneven


@pytest.mark.parametrize("preset", PRESETS)
def test_qwen3_8b_train_state_shards_evenly(preset):
  """Every array of the train state splits evenly over its mesh axes. Whether the run fits the
  chip is the planner's question (python -m arm_jax.plan, tests/test_plan.py; each preset's
  plan is in docs/results.md): the train state is the smaller part of its memory."""
  config, cfg = _qwen3_8b(preset)
  mesh = AbstractMesh(tuple(config.mesh_shape), tuple(config.mesh_axes))
  assert mesh.size == config.device.chips == {"v5e-256": 256}.get(preset, 64)
  rules = sharding.rules_from_config(config.rules)
  boxed = abstract_params(Decoder(cfg))  # jax.eval_shape of init, with logical axis names
  params = nn.unbox(boxed)
  # strict: a dimension that its mesh axes do not divide is an error, never a silent replica.
  param_sh = nn.unbox(sharding.tree_shardings(boxed, mesh, rules, strict=True))
  tc = train_setup.trainer_config(config)
  state = {}
  for role in ROLES:
    opt = optim.make_optimizer(getattr(tc, f"{role}_optimizer"))
    state[role] = (params, param_sh)
    state[f"{role}_opt"] = (jax.eval_shape(opt.init, params), optim.opt_state_shardings(
        opt, params, param_sh, NamedSharding(mesh, P())))
    if getattr(tc, role).grpo.beta:
      state[f"{role}_ref"] = (params, param_sh)
  assert sorted(state) == ["generator", "generator_opt", "generator_ref", "judge", "judge_opt",
                           "judge_ref"]
  per_device, total, uneven = _sharded_bytes(state, mesh)
  assert not uneven, uneven
  # Parameters and both AdamW moments are split fsdp x tensor ways (16, 64 or 256), replicated
  # over data; only the norm scales (0.01% of the bytes) are split fewer ways or replicated.
  ways = config.mesh_shape[1] * config.mesh_shape[2]
  for name in state:
    assert per_device[name] == pytest.approx(total[name] / ways, rel=1e-3), name
  assert total["judge"] == cfg.num_params * 4  # f32 parameters


@pytest.mark.parametrize("preset", PRESETS)
def test_qwen3_8b_batches_split_over_the_data_parallel_devices(preset):
  config, _ = _qwen3_8b(preset)
  mesh = AbstractMesh(tuple(config.mesh_shape), tuple(config.mesh_axes))
  dp = math.prod(mesh.shape[a] for a in sharding.batch_axes(mesh, config.rules))
  assert dp == {"v5e-256": 32}.get(preset, 16)
  tc = train_setup.trainer_config(config)
  for phase, rows in ((tc.judge, 224), (tc.generator, 288)):  # completions per step (docs/method.md §4)
    assert phase.prompts_per_step * phase.grpo.group_size == rows
    assert rows % phase.grpo.micro_batches == 0
    assert (rows // phase.grpo.micro_batches) % dp == 0
  assert config.eval.batch_size % dp == 0
  assert all(train_setup.sft_settings(config.warmstart, role).batch_size % dp == 0
             for role in ROLES)


@pytest.mark.parametrize("preset", PRESETS)
def test_qwen3_8b_has_the_paper_hyperparameters(preset):
  config, _ = _qwen3_8b(preset)
  tc = train_setup.trainer_config(config)
  assert (tc.schedule.rounds, tc.schedule.order, tc.schedule.epochs_per_phase) == (
      3, "judge_first", 1.0)
  for phase, group, new_tokens in ((tc.judge, 7, 1024), (tc.generator, 6, 512)):
    g = phase.grpo
    assert (g.group_size, g.eps_low, g.eps_high, g.beta, g.mu) == (group, 0.2, 0.28, 0.001, 2)
    assert (phase.sampling.max_new_tokens, phase.sampling.temperature,
            phase.sampling.top_p) == (new_tokens, 1.0, 1.0)
  for opt in (tc.judge_optimizer, tc.generator_optimizer):
    assert (opt.learning_rate, opt.schedule) == (1e-6, "constant")
  assert config.model.kind == "pretrained"
  assert (config.model.dtype, config.model.compute_dtype) == ("float32", "bfloat16")
  # Rubric-RM's SFT (the paper's Stage I): generator 8e-6 / 128 / 3072, judge 5e-6 / 64 / 6144
  assert [train_setup.sft_settings(config.warmstart, r) for r in ROLES] == [
      train_setup.SFTSettings(8e-6, 128, 3072), train_setup.SFTSettings(5e-6, 64, 6144)]


# --- policy_qwen2_5_7b: the downstream job at paper scale ----------------------------------------

def _abstract_model(cfg, mesh, rules):
  boxed = abstract_params(Decoder(cfg))
  return nn.unbox(boxed), nn.unbox(sharding.tree_shardings(boxed, mesh, rules, strict=True))


def test_policy_qwen2_5_7b_and_the_qwen3_8b_reward_model_share_the_mesh_and_shard_evenly():
  """The policy (Qwen2.5-7B-Instruct: params, AdamW moments, DPO / KL reference) and the reward
  model's two Qwen3-8B policies on the same 64-chip mesh: even shards, and the state alone under
  the chip's HBM. Whether every program fits beside it is the planner's to say
  (`python -m arm_jax.plan --config configs/policy_qwen2_5_7b.py`, docs/results.md)."""
  module = _module("policy_qwen2_5_7b")
  config = config_sections.validate(module.get_config())
  rm_config, rm_cfg = _qwen3_8b()
  assert config.reward_model.workdir == "runs/qwen3_8b"  # configs/qwen3_8b.py's run
  # One mesh: the job puts the reward model's run on the policy config's mesh and rules.
  assert (config.mesh_shape, config.mesh_axes, config.rules) == (
      rm_config.mesh_shape, rm_config.mesh_axes, rm_config.rules)
  a = config.actor
  cfg = DecoderConfig.from_hf(module.QWEN2_5_7B_INSTRUCT_CONFIG_JSON, param_dtype=a.dtype,
                              dtype=a.compute_dtype)
  assert (cfg.architecture, cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size,
          cfg.num_layers, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.qk_norm,
          cfg.tie_word_embeddings) == ("qwen2", 152064, 3584, 18944, 28, 28, 4, 128, False,
                                       False)
  assert 7.5e9 < cfg.num_params < 7.7e9  # "Qwen2.5-7B": 7.6B parameters
  mesh = AbstractMesh(tuple(config.mesh_shape), tuple(config.mesh_axes))
  rules = sharding.rules_from_config(config.rules)
  params, param_sh = _abstract_model(cfg, mesh, rules)
  rm_params, rm_sh = _abstract_model(rm_cfg, mesh, rules)
  state = {"generator": (rm_params, rm_sh), "judge": (rm_params, rm_sh),
           "policy": (params, param_sh), "policy_ref": (params, param_sh)}
  for method in ("iterdpo", "grpo"):
    config.method = method
    opt = policy_job.optimizer(config)
    state[f"policy_opt_{method}"] = (jax.eval_shape(opt.init, params), optim.opt_state_shardings(
        opt, params, param_sh, NamedSharding(mesh, P())))
  per_device, total, uneven = _sharded_bytes(state, mesh)
  assert not uneven, uneven
  ways = config.mesh_shape[1] * config.mesh_shape[2]
  for name in state:
    assert per_device[name] == pytest.approx(total[name] / ways, rel=1e-3), name
  assert total["policy"] == cfg.num_params * 4 and total["judge"] == rm_cfg.num_params * 4
  for name in ("policy_opt_grpo", "policy_opt_iterdpo"):  # two moments (and step counters)
    assert total[name] == pytest.approx(2 * total["policy"], rel=1e-6)
  device_bytes = sum(v for k, v in per_device.items() if k != "policy_opt_grpo")
  hbm = config.device.hbm_bytes_per_chip
  assert device_bytes < hbm


def test_policy_qwen2_5_7b_batches_split_and_hyperparameters_are_table_10s():
  module = _module("policy_qwen2_5_7b")
  config = config_sections.validate(module.get_config())
  mesh = AbstractMesh(tuple(config.mesh_shape), tuple(config.mesh_axes))
  model = types.SimpleNamespace(mesh=mesh, rules=config.rules)
  for method in ("iterdpo", "grpo"):
    config.method = method
    policy_job.check_batches(config, model)  # raises when a batch does not split 16 ways
  dp = math.prod(mesh.shape[ax] for ax in sharding.batch_axes(mesh, config.rules))
  assert config.eval.batch_size % dp == 0 and config.generate_batch % dp == 0
  d, g = config.dpo, config.grpo
  assert (d.beta, d.sft_weight, d.learning_rate, d.batch_size, d.iterations) == (
      0.1, 0.2, 8e-7, 64, 3)
  assert (g.group_size, g.prompts_per_step * g.group_size, g.learning_rate, g.beta, g.mu,
          g.eps_low, g.eps_high, g.temperature) == (6, 288, 5e-7, 0.001, 2, 0.2, 0.28, 1.0)
  bad = config_sections.validate(module.get_config())
  bad.dpo.batch_size = 40
  with pytest.raises(ValueError, match=r"dpo.batch_size / dpo.micro_batches = 10 rows do not "
                                       r"split over the mesh's 16 data-parallel devices"):
    policy_job.check_batches(bad, model)


# --- smollm2 and toy: configs construct without a model ------------------------------------------

@pytest.mark.parametrize("name", ["toy", "smollm2", "qwen3_8b"])
def test_trainer_config_constructs(name):
  config = _module(name).get_config()
  tc = train_setup.trainer_config(config)
  assert tc.schedule.order == "judge_first"
  assert tc.judge.prompts_per_step >= 1 and tc.generator.prompts_per_step >= 1


def test_smollm2_config_runs_one_step_of_each_phase_without_sft():
  config = _module("smollm2").get_config()
  assert (config.model.kind, config.model.path, config.model.dtype) == (
      "pretrained", "", "float32")
  assert (config.data.kind, config.data.path) == ("dataset", "data/offline/ifeval_verified")
  assert (config.templates.rubric, config.templates.judge) == ("", "")  # the full templates
  assert config.warmstart.steps == 0
  assert (config.schedule.rounds, config.schedule.steps_per_phase) == (1, 1)
  assert config.judge.group_size == config.generator.group_size == 2


def test_missing_dataset_names_the_path_and_the_command(tmp_path):
  config = _module("smollm2").get_config()
  config.data.path = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match=r"nowhere.*build_offline_data\.py --out"):
    train_setup.build(config)


def test_unsupported_kind_pair_is_named():
  config = _module("smollm2").get_config()
  config.data.kind = "toy"
  with pytest.raises(ValueError, match="model.kind='pretrained' with data.kind='toy'"):
    train_setup.build(config)


# --- dataset-backed training data -----------------------------------------------------------------

def _pair(i: int, prompt, winner: str = "A") -> dict:
  return {"id": f"r{i}", "prompt": prompt, "response_a": f"a{i}", "response_b": f"b{i}",
          "winner": winner, "source": "fixture"}


def _fixture(tmp_path, n: int = 12) -> str:
  """n pairwise rows (text, single-turn chat, multi-turn chat prompts) and one best-of-n row."""
  rows = [_pair(i, f"Write {i} words.", "AB"[i % 2]) for i in range(n - 2)]
  rows.append(_pair(n - 2, [{"role": "user", "content": "Say hi."}]))
  rows.append(_pair(n - 1, [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": "Name a colour."},
                            {"role": "assistant", "content": "Red."},
                            {"role": "user", "content": "Another one."}], "B"))
  rows.append({"id": "bon", "prompt": "Pick one.", "candidates": ["x", "y", "z"], "preferred": 1,
               "source": "fixture"})
  src = tmp_path / "rows.jsonl"
  src.write_text("".join(json.dumps(r) + "\n" for r in rows))
  out = str(tmp_path / "data")
  report = build_dataset([str(src)], "canonical", out)
  assert report["rows_written"] == n + 1
  return out


def test_dataset_pairs_skip_and_count_best_of_n(tmp_path):
  pairs, best_of_n = train_data.read_pairs(_fixture(tmp_path))
  assert best_of_n == 1 and len(pairs) == 12
  by_instruction = {p.instruction: p for p in pairs}
  assert by_instruction["Write 1 words."].label == 1 and by_instruction["Write 2 words."].label == 0
  assert by_instruction["Say hi."].response_a == "a10"  # one user turn: its text
  assert by_instruction["System: Be brief.\n\nUser: Name a colour.\n\nAssistant: Red.\n\n"
                        "User: Another one."].label == 1  # a conversation: rendered whole


def test_dataset_limit_caps_pairs_in_storage_order(tmp_path):
  path = _fixture(tmp_path)
  everything, _ = train_data.read_pairs(path)
  first, _ = train_data.read_pairs(path, limit=5)
  assert first == everything[:5]


def test_held_out_split_is_a_deterministic_function_of_the_instruction(tmp_path):
  path = _fixture(tmp_path)
  split = train_data.load_split(path, held_out_fraction=0.4, seed=3)
  assert split.train and split.held_out and split.best_of_n_skipped == 1
  assert all(is_held_out(p.instruction, 0.4, 3) for p in split.held_out)
  assert not any(is_held_out(p.instruction, 0.4, 3) for p in split.train)
  again = train_data.load_split(path, held_out_fraction=0.4, seed=3)
  assert (again.train, again.held_out) == (split.train, split.held_out)
  pairs, _ = train_data.read_pairs(path)
  train, held = train_data.split_pairs(pairs[::-1], 0.4, 3)  # order does not matter
  assert (set(train), set(held)) == (set(split.train), set(split.held_out))


def test_empty_split_names_the_path(tmp_path):
  path = _fixture(tmp_path)
  with pytest.raises(ValueError, match=r"data\.path=.*data'.*held-out split is empty"):
    train_data.load_split(path, held_out_fraction=0.0, seed=0)
  with pytest.raises(ValueError, match="train split is empty"):
    train_data.load_split(path, held_out_fraction=1.0, seed=0)


def test_sft_jsonl_reads_roles_and_names_bad_lines(tmp_path):
  good = tmp_path / "sft.jsonl"
  good.write_text(json.dumps({"role": "judge", "prompt": "p", "target": "t"}) + "\n\n" +
                  json.dumps({"role": "generator", "prompt": "q", "target": "u"}) + "\n")
  sft = train_data.read_sft_jsonl(str(good))
  assert [(e.prompt, e.target) for e in sft["judge"]] == [("p", "t")]
  assert [(e.prompt, e.target) for e in sft["generator"]] == [("q", "u")]
  for line, match in (({"role": "critic", "prompt": "p", "target": "t"}, "field 'role'"),
                      ({"role": "judge", "prompt": "", "target": "t"}, "field 'prompt'"),
                      ({"role": "judge", "prompt": "p"}, "field 'target'")):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"role": "judge", "prompt": "p", "target": "t"}) + "\n" +
                   json.dumps(line) + "\n")
    with pytest.raises(ValueError, match=rf"bad\.jsonl:2: {match}"):
      train_data.read_sft_jsonl(str(bad))
  bad.write_text("{not json\n")
  with pytest.raises(ValueError, match=r"bad\.jsonl:1: not JSON"):
    train_data.read_sft_jsonl(str(bad))


def test_warm_start_steps_need_examples_for_both_policies(tmp_path):
  config = _module("smollm2").get_config()
  config.data.path = _fixture(tmp_path)
  config.data.held_out_fraction = 0.4
  config.warmstart.steps = 1
  with pytest.raises(ValueError, match="warmstart.path is empty"):
    train_setup.build(config)
  sft = tmp_path / "judge_only.jsonl"
  sft.write_text(json.dumps({"role": "judge", "prompt": "p", "target": "t"}) + "\n")
  config.warmstart.path = str(sft)
  with pytest.raises(ValueError, match=r"no examples for \['generator'\]"):
    train_setup.build(config)


def test_pretrained_build_starts_both_policies_from_one_checkpoint(tmp_path):
  try:
    gguf = assets.smollm2_gguf()
  except FileNotFoundError as err:
    pytest.skip(str(err))
  from arm_jax.tokenizer import load_tokenizer  # noqa: PLC0415
  config = _module("smollm2").get_config()
  # A tiny random model with SmolLM2's vocabulary: the build is the same for any one path.
  config.model.path = _tiny_hf_dir(tmp_path / "model", 0, load_tokenizer(gguf))
  config.data.path = _fixture(tmp_path)
  config.data.held_out_fraction = 0.4
  config.eval.max_pairs = 2
  setup = train_setup.build(config)
  assert setup.generator.model is setup.judge.model  # one compiled update serves both
  gen, judge = (jax.tree.leaves(p.params) for p in (setup.generator, setup.judge))
  assert all((g == j).all() for g, j in zip(gen, judge))  # one checkpoint
  # ... in separate buffers: the judge's update donates its params.
  pointer = lambda x: x.addressable_shards[0].data.unsafe_buffer_pointer()  # noqa: E731
  assert all(pointer(g) != pointer(j) and g.sharding == j.sharding for g, j in zip(gen, judge))
  assert (setup.generator.template.source, setup.judge.template.source) == (
      "rubric_generator", "judge")
  assert len(setup.train) + 2 <= 12 and len(setup.held_out) == 2
  assert setup.sft_examples == {"generator": [], "judge": []}
  assert setup.total_steps == 2  # no warm start; one judge step, one generator step


def _tiny_hf_dir(path, seed, tokenizer):
  """A random 1-layer Llama with SmolLM2's vocabulary, saved as an HF directory."""
  from arm_jax.models import init_params, save_pretrained  # noqa: PLC0415
  cfg = DecoderConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                      num_layers=1, num_heads=2, num_kv_heads=2, head_dim=32,
                      eos_token_ids=(tokenizer.eos_token_id,))
  model = Decoder(cfg)
  save_pretrained(model, init_params(model, jax.random.key(seed)), str(path), tokenizer)
  return str(path)


def test_two_checkpoints_start_the_two_policies_with_their_own_warm_start(tmp_path):
  """generator.path and judge.path: each policy gets its own directory's weights; warm-start
  settings per role fall back to the shared ones."""
  try:
    gguf = assets.smollm2_gguf()
  except FileNotFoundError as err:
    pytest.skip(str(err))
  from arm_jax.models import load_pretrained  # noqa: PLC0415
  from arm_jax.tokenizer import load_tokenizer  # noqa: PLC0415
  tokenizer = load_tokenizer(gguf)
  paths = {role: _tiny_hf_dir(tmp_path / role, seed, tokenizer)
           for role, seed in (("generator", 1), ("judge", 2))}
  config = _module("smollm2").get_config()
  config.data.path = _fixture(tmp_path)
  config.data.held_out_fraction = 0.4
  config.generator.path, config.judge.path = paths["generator"], paths["judge"]
  config.warmstart.update(learning_rate=5e-6, batch_size=64, max_length=6144,
                          generator_learning_rate=8e-6, generator_batch_size=128,
                          generator_max_length=3072)
  setup = train_setup.build(config)
  for role in ROLES:
    _, expected = load_pretrained(paths[role], dtype="float32")
    got = getattr(setup, role).params
    assert all(np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)))
  assert not np.array_equal(np.asarray(setup.generator.params["embedding"]),
                            np.asarray(setup.judge.params["embedding"]))
  w = config_sections.validate(config).warmstart
  assert train_setup.sft_settings(w, "generator") == train_setup.SFTSettings(8e-6, 128, 3072)
  assert train_setup.sft_settings(w, "judge") == train_setup.SFTSettings(5e-6, 64, 6144)
  assert train_setup.sft_optimizer_config(w, "generator").learning_rate == 8e-6


# --- evaluation configs -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["evaluate_smollm2", "evaluate_toy", "evaluate_qwen3_8b"])
def test_evaluate_configs_name_defined_systems_and_benchmarks(name):
  from arm_jax.evaluation.systems import system_specs  # pylint: disable=import-outside-toplevel
  config = _module(name).get_config()
  assert config.job == "evaluate"
  specs = system_specs(config)
  assert [s.name for s in specs] == list(config.systems)
  assert all(b in config.benchmark_specs for b in config.benchmarks)
  assert set(config.orders) == {"mixed", "ord1", "ord2"}  # position bias needs Ord-1 and Ord-2


@pytest.mark.parametrize("preset", PRESETS)
def test_evaluate_qwen3_8b_is_the_runs_two_pairs_on_the_ten_benchmarks(preset, tmp_path):
  """The run's starting pair (Rubric-RM) and its trained pair (Rubric-ARM, voting@5) on the
  paper's ten columns in the table's order, on the training preset's mesh, with §5's decoding."""
  from arm_jax.evaluate import benchmark_names  # pylint: disable=import-outside-toplevel
  from arm_jax.evaluation import systems  # pylint: disable=import-outside-toplevel
  from arm_jax.evaluation.benchmarks import PAPER_COLUMNS  # pylint: disable=import-outside-toplevel
  config = config_sections.validate(_module("evaluate_qwen3_8b").get_config(preset))
  train, _ = _qwen3_8b(preset)
  assert (config.mesh_shape, config.mesh_axes, config.rules) == (
      train.mesh_shape, train.mesh_axes, train.rules)
  assert [(s.name, s.generator, s.judge, s.votes) for s in systems.system_specs(config)] == [
      ("start", "base", "base", 1), ("trained", "trained", "trained", 5)]
  # model.path "" with a trained run: "base" is the run's starting weights (generator.path and
  # judge.path), not one shared model.
  assert (config.model.path, config.trained.workdir) == ("", "runs/qwen3_8b")
  assert config.benchmarks == tuple(n for n, _ in PAPER_COLUMNS) and len(config.benchmarks) == 10
  assert (config.judge.temperature, config.rubric.max_new_tokens,
          config.judge.max_new_tokens) == (1.0, 0, 0)  # sampled judge, the run's 1024 / 4096
  mesh = AbstractMesh(tuple(config.mesh_shape), tuple(config.mesh_axes))
  dp = math.prod(mesh.shape[a] for a in sharding.batch_axes(mesh, config.rules))
  assert config.batch_size % dp == 0
  # A missing IFBench dataset names the command that samples and verifies it.
  config.benchmarks = ("ifbench",)
  config.benchmark_specs.ifbench.path = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match=r"nowhere.*arm_jax\.data\.verified --benchmark "
                                              r"ifbench"):
    benchmark_names(config)


def test_evaluate_smollm2_is_prompted_and_direct_smollm2_on_ifeval_pairs(tmp_path):
  """Everything but the model load (covered by the pretrained build above and the e2e test)."""
  from arm_jax.evaluate import benchmark_names  # pylint: disable=import-outside-toplevel
  from arm_jax.evaluation import systems  # pylint: disable=import-outside-toplevel
  from arm_jax.prompts import load_template  # pylint: disable=import-outside-toplevel
  config = _module("evaluate_smollm2").get_config()
  specs = systems.system_specs(config)
  assert [(s.name, s.generator, s.judge, s.votes) for s in specs] == [
      ("prompted", "base", "base", 3), ("direct", "none", "base", 1)]
  assert (config.model.path, config.trained.workdir) == ("", "")  # the shipped SmolLM2
  assert config.judge.temperature > 0  # voting@3 needs sampled judgments
  assert {t: load_template(n or d).source for t, n, d in (
      ("rubric", config.templates.rubric, "rubric_generator"),
      ("judge", config.templates.judge, "judge"),
      ("direct", config.templates.direct, "judge_direct"))} == {
          "rubric": "rubric_generator_compact", "judge": "judge_compact",
          "direct": "judge_direct"}
  assert config.benchmarks == ("ifeval_verified",)
  assert config.benchmark_specs.ifeval_verified.path == "data/offline/ifeval_verified"
  config.benchmark_specs.ifeval_verified.path = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match=r"nowhere.*build_offline_data\.py --out"):
    benchmark_names(config)


def test_rate_schedules_follow_their_config_keys():
  """judge / generator / grpo.warmup_steps and warmstart.final_learning_rate_fraction reach the
  optimizers: linear warmup from 0 (hand values), a cosine warm start that ends at the fraction
  of its peak (optax's formula by hand), and a policy job whose first GRPO update is zero."""
  c = _module("toy").get_config()
  c.judge.update(learning_rate=1e-3, warmup_steps=4)
  c.generator.warmup_steps = 0
  c.warmstart.update(schedule="cosine", warmup_steps=10, final_learning_rate_fraction=0.25)
  c = config_sections.validate(c)
  tc = train_setup.trainer_config(c)
  judge = optim.learning_rate_schedule(tc.judge_optimizer)
  assert [float(judge(k)) for k in (0, 1, 2, 4, 50)] == pytest.approx(
      [0.0, 2.5e-4, 5e-4, 1e-3, 1e-3])
  generator = optim.learning_rate_schedule(tc.generator_optimizer)
  assert float(generator(0)) == pytest.approx(c.generator.learning_rate)
  sft = dataclasses.replace(train_setup.sft_optimizer_config(c.warmstart, "judge"),
                            total_steps=110)
  peak, end = c.warmstart.learning_rate, 0.25 * c.warmstart.learning_rate
  cosine = optim.learning_rate_schedule(sft)
  for step in (10, 35, 60, 110):
    want = end + (peak - end) * 0.5 * (1 + math.cos(math.pi * (step - 10) / 100))
    assert float(cosine(step)) == pytest.approx(want, rel=1e-5), step
  with pytest.raises(ValueError, match="final_fraction"):
    optim.learning_rate_schedule(dataclasses.replace(sft, final_fraction=1.5))
  with pytest.raises(ValueError, match="final_fraction=0.25 needs the cosine"):
    optim.learning_rate_schedule(dataclasses.replace(sft, schedule="constant"))
  with pytest.raises(ValueError, match="warmup_steps=-1"):
    optim.learning_rate_schedule(dataclasses.replace(tc.judge_optimizer, warmup_steps=-1))
  p = _module("policy_toy").get_config("grpo")
  p.grpo.warmup_steps = 3
  opt = policy_job.optimizer(config_sections.validate(p))
  params = {"w": np.ones((2, 3), np.float32)}
  updates, _ = opt.update({"w": np.full((2, 3), 0.5, np.float32)}, opt.init(params), params)
  assert not np.any(np.asarray(updates["w"]))
  p.grpo.warmup_steps = 0
  opt = policy_job.optimizer(config_sections.validate(p))
  updates, _ = opt.update({"w": np.full((2, 3), 0.5, np.float32)}, opt.init(params), params)
  assert np.all(np.asarray(updates["w"]) < 0)
