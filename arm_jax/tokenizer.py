"""Tokenizers for Hugging Face directories and GGUF files, without torch.

Both paths return a transformers fast tokenizer, so `encode`, `decode`, `apply_chat_template`
and `save_pretrained` behave exactly as users know them. For GGUF the tokenizer is rebuilt
from the file's metadata (vocabulary, merges, token types, pre-tokenizer type, chat template).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

# llama.cpp pre-tokenizer types -> the split the merges were learned with.
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_CONTROL, _USER_DEFINED = 3, 4


def load_tokenizer(path: str):
  """A transformers tokenizer for an HF directory or a .gguf file (the chat template included)."""
  if os.path.isdir(path):
    import transformers  # pylint: disable=import-outside-toplevel

    return transformers.AutoTokenizer.from_pretrained(path)
  if path.endswith(".gguf") and os.path.isfile(path):
    return tokenizer_from_gguf(path)
  raise ValueError(f"{path}: expected a Hugging Face directory or a .gguf file")


def _pre_tokenizer(pre_type: str | None, path: str):
  from tokenizers import Regex, pre_tokenizers  # pylint: disable=import-outside-toplevel

  byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  if pre_type in (None, "default", "gpt2"):
    return byte_level
  if pre_type == "smollm":  # digits one by one, then the GPT-2 split (llama.cpp's "smollm")
    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
  split = {"llama-bpe": _LLAMA3_SPLIT, "llama3": _LLAMA3_SPLIT, "qwen2": _QWEN2_SPLIT}.get(pre_type)
  if split is None:
    raise ValueError(f"{path}: unsupported GGUF pre-tokenizer type {pre_type!r}")
  return pre_tokenizers.Sequence([
      pre_tokenizers.Split(Regex(split), behavior="isolated"),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
  ])


def _field(reader, key: str, default: Any = None) -> Any:
  field = reader.fields.get(key)
  return default if field is None else field.contents()


def tokenizer_from_gguf(path: str):
  """Rebuilds a byte-level BPE tokenizer (model 'gpt2' in GGUF terms) from GGUF metadata."""
  import gguf  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  from tokenizers import AddedToken, Tokenizer, decoders, models, processors  # pylint: disable=import-outside-toplevel

  reader = gguf.GGUFReader(path)
  kind = _field(reader, "tokenizer.ggml.model")
  if kind != "gpt2":
    raise ValueError(f"{path}: unsupported GGUF tokenizer model {kind!r}; only byte-level BPE "
                     "('gpt2') is rebuilt from GGUF; use the model's HF directory instead")
  tokens: list[str] = _field(reader, "tokenizer.ggml.tokens")
  merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges", [])]
  types = np.asarray(_field(reader, "tokenizer.ggml.token_type", [1] * len(tokens)))
  backend = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                                 fuse_unk=False, byte_fallback=False))
  backend.pre_tokenizer = _pre_tokenizer(_field(reader, "tokenizer.ggml.pre"), path)
  backend.decoder = decoders.ByteLevel()
  backend.post_processor = processors.ByteLevel(trim_offsets=False)
  backend.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                              for i in np.flatnonzero(types == _CONTROL)])
  backend.add_tokens([AddedToken(tokens[i], special=False, normalized=False)
                      for i in np.flatnonzero(types == _USER_DEFINED)])

  def token(key):
    idx = _field(reader, f"tokenizer.ggml.{key}")
    return None if idx is None else tokens[int(idx)]

  if _field(reader, "tokenizer.ggml.add_bos_token", False) and token("bos_token_id"):
    bos = token("bos_token_id")
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 $B:1",
        special_tokens=[(bos, tokens.index(bos))])
  return transformers.PreTrainedTokenizerFast(
      tokenizer_object=backend,
      bos_token=token("bos_token_id"),
      eos_token=token("eos_token_id"),
      unk_token=token("unknown_token_id"),
      pad_token=token("padding_token_id"),
      chat_template=_field(reader, "tokenizer.chat_template"),
      clean_up_tokenization_spaces=False,
  )
