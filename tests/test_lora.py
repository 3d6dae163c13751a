"""LoRA (arm_jax.models.lora): the adapted model against transformers with the same low-rank
updates written into its weights (logits, and the adapters' gradients by torch autograd); fresh
adapters leave a loaded model equal to its base; the SFT update trains the adapters only; the
sampler decodes with merged weights; export writes a plain checkpoint; a LoRA training run keeps
only adapters in its checkpoints, restores them and resumes from them exactly after a crash.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arm_jax.models import lora
from arm_jax.models.checkpoint import load_pretrained, save_pretrained
from arm_jax.rl import optim
from arm_jax.rl.logprobs import SequenceBatch
from arm_jax.rl.sft import SFTConfig, make_sft_update
from arm_jax.sampling import Sampler, SamplingParams
from hf_reference import hf_logits, make_hf_model

RANK, ALPHA = 4, 8.0
SCALE = ALPHA / RANK


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("hf_llama"))
  model = make_hf_model(out, "llama")
  return out, model


def _random_adapters(params, seed=3):
  """Every adapter factor random (B too, so the update is not zero)."""
  keys = iter(jax.random.split(jax.random.key(seed), 64))
  return jax.tree_util.tree_map_with_path(
      lambda path, x: (0.3 * jax.random.normal(next(keys), x.shape, x.dtype)
                       if lora.is_adapter_path(path) else x), params)


def _torch_deltas(params, config):
  """{hf weight name: (torch delta builder)}: the low-rank update of each projection written in
  transformers' [out, in] layout from the adapters, by hand (not lora.merge)."""
  import torch
  a = {k: np.asarray(v) for k, v in params["layers"]["attn"].items() if "lora" in k}
  m = {k: np.asarray(v) for k, v in params["layers"]["mlp"].items() if "lora" in k}
  h, k, d, f, e = (config.num_heads, config.num_kv_heads, config.head_dim,
                   config.intermediate_size, config.hidden_size)
  leaves, out = {}, {}

  def leaf(name, array):
    leaves[name] = torch.tensor(array, dtype=torch.float32, requires_grad=True)
    return leaves[name]

  for i in range(config.num_layers):
    p = f"model.layers.{i}."
    qa, qb = leaf(f"{i}.q_a", a["q_lora_a"][i]), leaf(f"{i}.q_b", a["q_lora_b"][i])
    out[p + "self_attn.q_proj.weight"] = lambda qa=qa, qb=qb: (qa @ qb.reshape(RANK, h * d)).T
    kva, kvb = leaf(f"{i}.kv_a", a["kv_lora_a"][i]), leaf(f"{i}.kv_b", a["kv_lora_b"][i])
    out[p + "self_attn.k_proj.weight"] = lambda kva=kva, kvb=kvb: (
        kva @ kvb[:, 0].reshape(RANK, k * d)).T
    out[p + "self_attn.v_proj.weight"] = lambda kva=kva, kvb=kvb: (
        kva @ kvb[:, 1].reshape(RANK, k * d)).T
    oa, ob = leaf(f"{i}.o_a", a["o_lora_a"][i]), leaf(f"{i}.o_b", a["o_lora_b"][i])
    out[p + "self_attn.o_proj.weight"] = lambda oa=oa, ob=ob: (oa.reshape(h * d, RANK) @ ob).T
    ga, gb = leaf(f"{i}.gu_a", m["gate_up_lora_a"][i]), leaf(f"{i}.gu_b", m["gate_up_lora_b"][i])
    out[p + "mlp.gate_proj.weight"] = lambda ga=ga, gb=gb: (ga @ gb[:, 0]).T
    out[p + "mlp.up_proj.weight"] = lambda ga=ga, gb=gb: (ga @ gb[:, 1]).T
    da, db = leaf(f"{i}.down_a", m["down_lora_a"][i]), leaf(f"{i}.down_b", m["down_lora_b"][i])
    out[p + "mlp.down_proj.weight"] = lambda da=da, db=db: (da @ db).T
  return out, leaves


def test_adapted_logits_and_adapter_gradients_match_transformers_with_the_update_in_its_weights(
    hf_dir):
  import torch
  path, hf_model = hf_dir
  model, params = load_pretrained(path, lora_rank=RANK, lora_alpha=ALPHA)
  params = _random_adapters(params)
  ids = np.array([[5, 17, 3, 99, 42, 8, 61, 7], [0, 0, 12, 4, 77, 31, 2, 9]])
  mask = (ids != 0) | (np.arange(8) >= 2)[None]
  mask[1, :2] = False
  weights = np.random.default_rng(0).normal(size=(2, 8, 101)).astype(np.float32)

  deltas, leaves = _torch_deltas(params, model.config)
  names = dict(hf_model.named_parameters())
  call = {n: names[n] + SCALE * fn() if n in deltas else names[n] for n, fn in
          [(n, deltas.get(n)) for n in names]}
  t_ids = torch.as_tensor(ids)
  t_mask = torch.as_tensor(mask.astype(np.int64))
  positions = (t_mask.cumsum(-1) - 1).clamp(min=0)
  logits_t = torch.func.functional_call(hf_model, call, (), dict(
      input_ids=t_ids, attention_mask=t_mask, position_ids=positions)).logits
  real = torch.as_tensor(mask[..., None].astype(np.float32))
  (logits_t * torch.as_tensor(weights) * real).sum().backward()

  logits = model.apply({"params": params}, jnp.asarray(ids), attention_mask=jnp.asarray(mask))
  np.testing.assert_allclose(np.asarray(logits) * mask[..., None],
                             logits_t.detach().numpy() * mask[..., None], atol=2e-4, rtol=2e-4)
  assert not np.allclose(np.asarray(logits)[mask], hf_logits(hf_model, ids, mask)[mask],
                         atol=1e-2)  # the adapters do change the model

  grad_fn, train, _ = optim.value_and_grad(
      lambda p: ((model.apply({"params": p}, jnp.asarray(ids), attention_mask=jnp.asarray(mask))
                  * weights * mask[..., None]).sum(), None), params)
  _, grads = grad_fn(train)
  assert set(jax.tree.leaves(jax.tree.map(lambda x: x.shape, grads))) == set(
      jax.tree.leaves(jax.tree.map(lambda x: x.shape, lora.trainable(params))))
  g = grads["layers"]
  for i in range(model.config.num_layers):
    for ours, theirs in (("attn/q_lora_a", "q_a"), ("attn/q_lora_b", "q_b"),
                         ("attn/kv_lora_a", "kv_a"), ("attn/kv_lora_b", "kv_b"),
                         ("attn/o_lora_a", "o_a"), ("attn/o_lora_b", "o_b"),
                         ("mlp/gate_up_lora_a", "gu_a"), ("mlp/gate_up_lora_b", "gu_b"),
                         ("mlp/down_lora_a", "down_a"), ("mlp/down_lora_b", "down_b")):
      block, name = ours.split("/")
      np.testing.assert_allclose(np.asarray(g[block][name][i]),
                                 leaves[f"{i}.{theirs}"].grad.numpy(), rtol=2e-3, atol=2e-3,
                                 err_msg=f"layer {i} {ours}")


def test_fresh_adapters_leave_a_loaded_model_equal_to_its_base(hf_dir):
  path, _ = hf_dir
  base_model, base = load_pretrained(path)
  model, params = load_pretrained(path, lora_rank=RANK, lora_alpha=ALPHA,
                                  lora_targets=("q", "down"))
  assert not lora.has_adapters(base)
  trainable, frozen = lora.split(params)
  assert sorted(trainable["layers"]["attn"]) == ["q_lora_a", "q_lora_b"]
  assert sorted(trainable["layers"]["mlp"]) == ["down_lora_a", "down_lora_b"]
  assert jax.tree.structure(frozen) == jax.tree.structure(base)
  assert not np.any(np.asarray(trainable["layers"]["attn"]["q_lora_b"]))  # B starts at zero
  a = np.asarray(trainable["layers"]["attn"]["q_lora_a"])
  bound = 1 / np.sqrt(model.config.hidden_size)
  assert np.all(np.abs(a) <= bound) and a.std() > bound / 3  # PEFT's uniform A
  ids = jnp.asarray([[1, 7, 9, 33, 50]])
  np.testing.assert_array_equal(np.asarray(model.apply({"params": params}, ids)),
                                np.asarray(base_model.apply({"params": base}, ids)))
  # Without LoRA the split trains everything, as before.
  assert lora.split(base) == (base, {})


def _sft_batch(rng, n=4, t=16, vocab=101):
  tokens = rng.integers(3, vocab, size=(n, t))
  loss_mask = np.zeros((n, t), bool)
  loss_mask[:, t // 2:] = True
  return SequenceBatch(tokens=jnp.asarray(tokens), attention=jnp.ones((n, t), bool),
                       loss_mask=jnp.asarray(loss_mask))


def test_the_sft_update_trains_the_adapters_only_with_state_for_them_only(hf_dir):
  path, _ = hf_dir
  model, params = load_pretrained(path, lora_rank=RANK, lora_alpha=ALPHA)
  optimizer = optim.make_optimizer(optim.OptimizerConfig(learning_rate=1e-2))
  opt_state = optim.init_state(optimizer, params)
  n_adapter = lora.num_adapter_params(params)
  n_state = sum(x.size for x in jax.tree.leaves(opt_state) if x.ndim)
  assert n_state == 2 * n_adapter  # Adam's two moments of the adapters, nothing of the base
  before = jax.tree.map(np.asarray, params)
  update = make_sft_update(model, SFTConfig(), optimizer, donate=False)
  batch = _sft_batch(np.random.default_rng(0))
  losses = []
  for _ in range(6):
    params, opt_state, metrics = update(params, opt_state, batch)
    losses.append(float(metrics["loss"]))
  assert losses[-1] < losses[0] - 0.1
  changed = jax.tree_util.tree_map_with_path(
      lambda path, old, new: (lora.is_adapter_path(path), bool(np.any(old != np.asarray(new)))),
      before, params)
  flags = jax.tree.leaves(changed, is_leaf=lambda x: isinstance(x, tuple))
  assert all(is_adapter == moved for is_adapter, moved in flags)  # base bit-identical
  assert sum(a for a, _ in flags) == 10  # 5 projections x (A, B)


def test_the_sampler_decodes_with_merged_weights(hf_dir):
  path, _ = hf_dir
  model, params = load_pretrained(path, lora_rank=RANK, lora_alpha=ALPHA)
  params = _random_adapters(params, seed=5)
  plain_model, _ = load_pretrained(path)
  merged = lora.merge(params, model.config)
  assert not lora.has_adapters(merged)
  prompts = [[1, 5, 9, 14], [1, 22, 3]]
  greedy = SamplingParams(max_new_tokens=12, greedy=True)
  ours = Sampler(model, stop_ids=[2])
  assert not lora.has_adapters(ours.decode_params(params))
  out = ours(params, prompts, greedy, jax.random.key(0))
  ref = Sampler(plain_model, stop_ids=[2])(merged, prompts, greedy, jax.random.key(0))
  np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ref.tokens))
  # And the plain model with merged weights is the adapted model (not a tautology of merge:
  # the adapted model computes x.W + s.(x.A).B, merge writes W + s.A.B).
  ids = jnp.asarray([[1, 5, 9, 14, 30, 2]])
  np.testing.assert_allclose(np.asarray(model.apply({"params": params}, ids)),
                             np.asarray(plain_model.apply({"params": merged}, ids)),
                             atol=2e-5, rtol=2e-5)


def test_export_writes_a_plain_checkpoint_with_the_adapters_folded_in(hf_dir, tmp_path):
  import transformers
  path, _ = hf_dir
  model, params = load_pretrained(path, lora_rank=RANK, lora_alpha=ALPHA)
  params = _random_adapters(params, seed=7)
  save_pretrained(model, params, str(tmp_path))
  ids = np.array([[1, 5, 9, 14, 30, 2, 60]])
  exported = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path))
  np.testing.assert_allclose(hf_logits(exported, ids),
                             np.asarray(model.apply({"params": params}, jnp.asarray(ids))),
                             atol=2e-4, rtol=2e-4)


def test_a_lora_config_is_refused_with_the_field_named():
  from arm_jax.models.config import DecoderConfig
  base = dict(vocab_size=10, hidden_size=8, intermediate_size=16, num_layers=1, num_heads=2,
              num_kv_heads=2, head_dim=4)
  with pytest.raises(ValueError, match="lora_targets"):
    DecoderConfig(**base, lora_rank=2, lora_targets=("q", "lm_head"))
  with pytest.raises(ValueError, match="lora_rank"):
    DecoderConfig(**base, lora_rank=-1)


# --- a LoRA training run --------------------------------------------------------------------------

def _lora_toy(overrides=None):
  from test_train_resume import OVERRIDES, tiny_config
  return tiny_config({**OVERRIDES, "model.lora_rank": 4, "model.lora_alpha": 8.0,
                      "warmstart.steps": 10, "warmstart.generator_steps": 10,
                      **(overrides or {})})


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
  """(workdir, "done" record) of an uninterrupted tiny LoRA toy run."""
  from arm_jax.training.loop import run_train
  workdir = str(tmp_path_factory.mktemp("lora_run"))
  return workdir, run_train(_lora_toy(), workdir)


def test_a_lora_run_checkpoints_adapters_only_and_restores_them_onto_its_base(lora_run):
  from arm_jax.training import checkpoints, setup as train_setup
  from arm_jax.training.checkpoints import TrainCheckpointer
  workdir, done = lora_run
  assert done["phase"] == "done"
  fresh = train_setup.build(_lora_toy())
  like = {"generator": fresh.generator.params, "judge": fresh.judge.params}
  state, meta = checkpoints.restore_policies(workdir, like)
  ckpt = TrainCheckpointer(checkpoints.checkpoints_dir(workdir), create=False)
  try:
    saved = ckpt.restore_state(ckpt.latest_step(), None)
  finally:
    ckpt.close()
  for role in ("generator", "judge"):
    # What is saved is the adapters (and their optimizer state and KL reference): the base
    # (random init, seed-determined) is rebuilt.
    assert jax.tree.structure(saved[role]) == jax.tree.structure(lora.trainable(like[role]))
    if f"{role}_ref" in saved:
      assert jax.tree.structure(saved[f"{role}_ref"]) == jax.tree.structure(saved[role])
    trained_t, trained_f = lora.split(state[role])
    fresh_t, fresh_f = lora.split(like[role])
    jax.tree.map(np.testing.assert_array_equal, trained_f, fresh_f)
    assert any(np.any(np.asarray(a) != np.asarray(b)) for a, b in
               zip(jax.tree.leaves(trained_t), jax.tree.leaves(fresh_t)))
  assert meta["checkpoint_step"] == meta["global_step"]


def test_a_lora_run_resumes_exactly_after_a_crash(lora_run, tmp_path, monkeypatch):
  """Resumed, the KL reference gets its own copy of the base: sharing the policy's (which the
  update donates) crashed the process at the generator's first reference pass."""
  from test_train_resume import interrupt_at, trajectory
  from arm_jax.training.loop import run_train
  ref_dir, done = lora_run
  work = str(tmp_path / "crashed")

  def crash():
    raise RuntimeError("simulated crash")

  interrupt_at(monkeypatch, 22, crash)  # the first judge RL step after 20 warm-start steps
  with pytest.raises(RuntimeError, match="simulated crash"):
    run_train(_lora_toy(), work)
  monkeypatch.undo()
  assert run_train(_lora_toy(), work) == done
  assert trajectory(work) == trajectory(ref_dir)
