"""Checkpoint import/export: transformers round trip, GGUF, and errors that name the problem."""

import json
import os

import numpy as np
import pytest

from arm_jax.models import load_pretrained, save_pretrained
from arm_jax.models.tensor_sources import CheckpointError, unpermute_rope_rows
from hf_reference import hf_logits, make_hf_model

IDS = np.array([[5, 17, 33, 2, 9, 71], [0, 0, 4, 8, 15, 16]])
MASK = np.array([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])


@pytest.mark.parametrize("arch,tie", [("llama_bias", False), ("qwen2", True), ("qwen3", False)])
def test_save_pretrained_loads_in_transformers_with_same_logits(tmp_path, arch, tie):
  import transformers

  make_hf_model(tmp_path / "src", arch, tie=tie)
  model, params = load_pretrained(str(tmp_path / "src"))
  ours = np.asarray(model.apply({"params": params}, IDS, attention_mask=MASK))
  # A small shard limit forces the sharded layout with an index file.
  save_pretrained(model, params, str(tmp_path / "out"), max_shard_bytes=20_000)
  assert os.path.exists(tmp_path / "out" / "model.safetensors.index.json")
  reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "out")).eval()
  assert type(reloaded).__name__ == {"llama_bias": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                                     "qwen3": "Qwen3ForCausalLM"}[arch]
  ref = hf_logits(reloaded, IDS, MASK)
  real = MASK.astype(bool)
  assert np.abs(ours - ref)[real].max() <= 1e-4
  # And our own loader reads the export back to identical parameters.
  _, again = load_pretrained(str(tmp_path / "out"))
  import jax
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)):
    np.testing.assert_array_equal(a, b)


def test_truncated_safetensors_is_a_clear_error(tmp_path):
  make_hf_model(tmp_path, "llama")
  path = tmp_path / "model.safetensors"
  data = path.read_bytes()
  path.write_bytes(data[: len(data) - 1000])
  with pytest.raises(CheckpointError, match=r"model\.safetensors: truncated safetensors file"):
    load_pretrained(str(tmp_path))


def test_missing_tensor_is_named(tmp_path):
  from safetensors.numpy import load_file, save_file

  make_hf_model(tmp_path, "qwen3")
  path = str(tmp_path / "model.safetensors")
  tensors = load_file(path)
  del tensors["model.layers.1.self_attn.k_norm.weight"]
  save_file(tensors, path)
  with pytest.raises(CheckpointError, match=r"missing tensor 'model\.layers\.1\.self_attn\.k_norm"):
    load_pretrained(str(tmp_path))


def test_misshaped_tensor_is_named(tmp_path):
  from safetensors.numpy import load_file, save_file

  make_hf_model(tmp_path, "llama")
  path = str(tmp_path / "model.safetensors")
  tensors = load_file(path)
  tensors["model.layers.0.mlp.up_proj.weight"] = tensors["model.layers.0.mlp.up_proj.weight"][:-1]
  save_file(tensors, path)
  with pytest.raises(CheckpointError, match=r"'model\.layers\.0\.mlp\.up_proj\.weight' has shape "
                     r"\(79, 48\), config\.json implies \(80, 48\)"):
    load_pretrained(str(tmp_path))


def test_unread_tensor_is_an_error(tmp_path):
  from safetensors.numpy import load_file, save_file

  make_hf_model(tmp_path, "llama")
  path = str(tmp_path / "model.safetensors")
  tensors = load_file(path)
  tensors["model.layers.0.self_attn.o_proj.bias"] = np.zeros(48, np.float32)
  save_file(tensors, path)
  with pytest.raises(CheckpointError, match=r"o_proj\.bias"):
    load_pretrained(str(tmp_path))


@pytest.mark.parametrize("edit,message", [
    ({"architectures": ["MistralForCausalLM"], "model_type": "mistral"},
     r"unsupported architecture \['MistralForCausalLM'\]"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, r"unsupported rope_scaling type 'yarn'"),
    ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}},
     r"unsupported rope_parameters type 'llama3'"),
])
def test_unsupported_config_is_a_clear_error(tmp_path, edit, message):
  make_hf_model(tmp_path, "llama")
  cfg_path = tmp_path / "config.json"
  cfg = json.loads(cfg_path.read_text())
  cfg.update(edit)
  cfg_path.write_text(json.dumps(cfg))
  with pytest.raises(ValueError, match=message):
    load_pretrained(str(tmp_path))


def test_not_a_checkpoint(tmp_path):
  with pytest.raises(CheckpointError, match="no config.json"):
    load_pretrained(str(tmp_path))
  with pytest.raises(CheckpointError, match="no such file"):
    load_pretrained(str(tmp_path / "nope.gguf"))


def _llama_cpp_permute(w, n_head):
  """The permutation llama.cpp's convert_hf_to_gguf.py applies to q/k rows (reference)."""
  return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def test_unpermute_inverts_llama_cpp_permute():
  w = np.random.RandomState(0).randn(3 * 8, 5)
  np.testing.assert_array_equal(unpermute_rope_rows(_llama_cpp_permute(w, 3), 3), w)
  assert not np.array_equal(_llama_cpp_permute(w, 3), w)
