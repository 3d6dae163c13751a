"""Readers that present a checkpoint as Hugging Face-named numpy tensors.

Both readers give tensors in transformers' layout ([out, in] weights), one at a time, so that
the converter in `checkpoint.py` holds at most one parameter on the host.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np

_ST_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2,
                   "I8": 1, "U8": 1, "BOOL": 1}


class CheckpointError(ValueError):
  """A checkpoint that cannot be loaded; the message names the file and tensor."""


def _check_safetensors_file(path: str) -> dict[str, Any]:
  """Validates the header and that the data section covers every tensor (truncation)."""
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    raw = f.read(8)
    if len(raw) < 8:
      raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes, no header)")
    (header_len,) = struct.unpack("<Q", raw)
    if 8 + header_len > size:
      raise CheckpointError(
          f"{path}: truncated safetensors file: header claims {header_len} bytes, file has {size}")
    try:
      header = json.loads(f.read(header_len))
    except json.JSONDecodeError as e:
      raise CheckpointError(f"{path}: corrupt safetensors header: {e}") from e
  data_len = size - 8 - header_len
  for name, info in header.items():
    if name == "__metadata__":
      continue
    start, end = info["data_offsets"]
    expected = int(np.prod(info["shape"], dtype=np.int64)) * _ST_DTYPE_BYTES.get(info["dtype"], 0)
    if end > data_len:
      raise CheckpointError(
          f"{path}: truncated safetensors file: tensor {name!r} ends at byte {end} of the data "
          f"section but only {data_len} bytes are present")
    if _ST_DTYPE_BYTES.get(info["dtype"]) and end - start != expected:
      raise CheckpointError(f"{path}: tensor {name!r} has {end - start} bytes, its shape "
                            f"{info['shape']} and dtype {info['dtype']} need {expected}")
  return header


class SafetensorsSource:
  """A Hugging Face directory: config.json plus model.safetensors or an index of shards."""

  def __init__(self, directory: str):
    self.directory = directory
    config_path = os.path.join(directory, "config.json")
    if not os.path.exists(config_path):
      raise CheckpointError(f"{directory}: no config.json")
    with open(config_path) as f:
      self.hf_config = json.load(f)
    index_path = os.path.join(directory, "model.safetensors.index.json")
    single = os.path.join(directory, "model.safetensors")
    if os.path.exists(index_path):
      with open(index_path) as f:
        weight_map = json.load(f)["weight_map"]
      files = sorted(set(weight_map.values()))
    elif os.path.exists(single):
      files = ["model.safetensors"]
      weight_map = None
    else:
      raise CheckpointError(
          f"{directory}: neither model.safetensors nor model.safetensors.index.json")
    self._where: dict[str, str] = {}
    self._shapes: dict[str, tuple[int, ...]] = {}
    for name in files:
      path = os.path.join(directory, name)
      if not os.path.exists(path):
        raise CheckpointError(f"{directory}: shard {name} named by the index is missing")
      header = _check_safetensors_file(path)
      for tensor, info in header.items():
        if tensor != "__metadata__":
          self._where[tensor] = path
          self._shapes[tensor] = tuple(info["shape"])
    if weight_map is not None:
      for tensor, name in weight_map.items():
        if tensor not in self._where:
          raise CheckpointError(f"{directory}: index maps {tensor!r} to {name}, which lacks it")

  def names(self) -> set[str]:
    return set(self._where)

  def shape(self, name: str) -> tuple[int, ...]:
    return self._shapes[name]

  def get(self, name: str) -> np.ndarray:
    from safetensors import safe_open  # pylint: disable=import-outside-toplevel

    with safe_open(self._where[name], framework="numpy") as f:
      return f.get_tensor(name)


# GGUF (llama.cpp) tensor names -> transformers names, per layer where {i} appears.
_GGUF_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "blk.{i}.attn_q.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "blk.{i}.attn_k.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "blk.{i}.attn_v.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "blk.{i}.attn_output.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "blk.{i}.ffn_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "blk.{i}.ffn_gate.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "blk.{i}.ffn_up.weight": "model.layers.{i}.mlp.up_proj.weight",
    "blk.{i}.ffn_down.weight": "model.layers.{i}.mlp.down_proj.weight",
}


def unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
  """Undoes llama.cpp's convert-time permutation of q/k rows (interleaved -> half-split RoPE)."""
  rows = w.shape[0]
  head_dim = rows // n_heads
  return (w.reshape(n_heads, head_dim // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


class GGUFSource:
  """A llama.cpp GGUF file of a Llama-family model; quantized tensors are dequantized to f32."""

  def __init__(self, path: str):
    import gguf  # pylint: disable=import-outside-toplevel

    self.path = path
    try:
      self._reader = gguf.GGUFReader(path)
    except Exception as e:  # the reader raises assorted errors on a damaged file
      raise CheckpointError(f"{path}: cannot read GGUF file: {e}") from e
    self.metadata = {k: _field_value(f) for k, f in self._reader.fields.items()
                     if not k.startswith("tokenizer.ggml.")}
    arch = self.metadata.get("general.architecture")
    if arch != "llama":
      raise CheckpointError(
          f"{path}: unsupported GGUF architecture {arch!r}; arm_jax reads 'llama' GGUF files "
          "(use a Hugging Face safetensors directory for Qwen2/Qwen3)")
    self._tensors = {t.name: t for t in self._reader.tensors}
    self.hf_config = self._hf_config()
    n_layers = self.hf_config["num_hidden_layers"]
    self._to_gguf: dict[str, str] = {}
    for gname, hname in _GGUF_NAMES.items():
      for i in range(n_layers) if "{i}" in gname else [None]:
        g, h = gname.format(i=i), hname.format(i=i)
        if g in self._tensors:
          self._to_gguf[h] = g

  def _hf_config(self) -> dict[str, Any]:
    m = self.metadata
    key = lambda k: m.get(f"llama.{k}")  # noqa: E731
    missing = [k for k in ("embedding_length", "block_count", "feed_forward_length",
                           "attention.head_count") if key(k) is None]
    if missing:
      raise CheckpointError(f"{self.path}: GGUF metadata lacks llama.{missing[0]}")
    n_heads = int(key("attention.head_count"))
    hidden = int(key("embedding_length"))
    vocab = key("vocab_size") or len(self._reader.fields["tokenizer.ggml.tokens"].data)
    tok = lambda k: _field_value(self._reader.fields[k]) if k in self._reader.fields else None  # noqa: E731
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": int(vocab),
        "hidden_size": hidden,
        "intermediate_size": int(key("feed_forward_length")),
        "num_hidden_layers": int(key("block_count")),
        "num_attention_heads": n_heads,
        "num_key_value_heads": int(key("attention.head_count_kv") or n_heads),
        "head_dim": int(key("rope.dimension_count") or hidden // n_heads),
        "rope_theta": float(key("rope.freq_base") or 10000.0),
        "rms_norm_eps": float(key("attention.layer_norm_rms_epsilon") or 1e-5),
        "max_position_embeddings": int(key("context_length") or 4096),
        "tie_word_embeddings": "output.weight" not in self._tensors,
        "bos_token_id": tok("tokenizer.ggml.bos_token_id"),
        "eos_token_id": tok("tokenizer.ggml.eos_token_id"),
        "pad_token_id": tok("tokenizer.ggml.padding_token_id"),
        "hidden_act": "silu",
    }

  def names(self) -> set[str]:
    return set(self._to_gguf)

  def shape(self, name: str) -> tuple[int, ...]:
    # GGUF lists dims fastest-first; transformers' layout is the reverse.
    return tuple(int(d) for d in reversed(self._tensors[self._to_gguf[name]].shape))

  def get(self, name: str) -> np.ndarray:
    import gguf  # pylint: disable=import-outside-toplevel

    t = self._tensors[self._to_gguf[name]]
    w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
    w = w.reshape(self.shape(name))
    if name.endswith("q_proj.weight"):
      w = unpermute_rope_rows(w, self.hf_config["num_attention_heads"])
    elif name.endswith("k_proj.weight"):
      w = unpermute_rope_rows(w, self.hf_config["num_key_value_heads"])
    return w


def _field_value(field) -> Any:
  try:
    return field.contents()
  except Exception:  # pylint: disable=broad-except
    return None


def open_source(path: str):
  """A SafetensorsSource for a directory, a GGUFSource for a .gguf file."""
  if os.path.isdir(path):
    return SafetensorsSource(path)
  if path.endswith(".gguf") and os.path.isfile(path):
    return GGUFSource(path)
  if not os.path.exists(path):
    raise CheckpointError(f"{path}: no such file or directory")
  raise CheckpointError(f"{path}: expected a Hugging Face directory or a .gguf file")

