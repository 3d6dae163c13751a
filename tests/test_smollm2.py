"""The shipped SmolLM2-135M-Instruct GGUF: logits and tokenizer against transformers."""

import copy
import os

import jax
import numpy as np
import pytest

from arm_jax import assets
from arm_jax.models import load_pretrained
from arm_jax.sampling import Sampler, SamplingParams
from arm_jax.tokenizer import load_tokenizer
from hf_reference import hf_greedy, hf_logits, left_pad

MESSAGES = [
    [{"role": "user", "content": "Write a haiku about the sea."}],
    [{"role": "system", "content": "Be brief."},
     {"role": "user", "content": "What is 12 + 30? Answer with a number."},
     {"role": "assistant", "content": "42"},
     {"role": "user", "content": "And 7 * 6?"}],
]
TEXTS = ["Hello world!  How are you?\n\n  x=1", "Café naïve — “quotes” 日本語 🙂",
         "<|im_start|>user\nhi<|im_end|>", "12345 and 2026-11-28", "   leading\ttabs\r\n"]


@pytest.fixture(scope="module")
def gguf_path():
  return assets.smollm2_gguf()


@pytest.fixture(scope="module")
def reference_tokenizer(gguf_path):
  from transformers import AutoTokenizer

  return AutoTokenizer.from_pretrained(os.path.dirname(gguf_path),
                                       gguf_file=os.path.basename(gguf_path))


@pytest.fixture(scope="module")
def tokenizer(gguf_path):
  return load_tokenizer(gguf_path)


@pytest.fixture(scope="module")
def hf_model(gguf_path):
  """transformers' own GGUF import (its dequantisation and q/k un-permutation), f32."""
  import torch
  import transformers

  return transformers.AutoModelForCausalLM.from_pretrained(
      os.path.dirname(gguf_path), gguf_file=os.path.basename(gguf_path),
      dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def ours(gguf_path):
  return load_pretrained(gguf_path)


def _chat_ids(tokenizer):
  return [tokenizer.apply_chat_template(m, add_generation_prompt=True)["input_ids"]
          for m in MESSAGES]


def test_gguf_tokenizer_matches_transformers(tokenizer, reference_tokenizer):
  for text in TEXTS:
    ids = tokenizer.encode(text)
    assert ids == reference_tokenizer.encode(text), text
    assert tokenizer.decode(ids) == text
  assert tokenizer.encode("2026") == [tokenizer.convert_tokens_to_ids(d) for d in "2026"]
  assert (tokenizer.bos_token, tokenizer.eos_token) == ("<|im_start|>", "<|im_end|>")


def test_chat_template_renders_like_transformers(tokenizer, reference_tokenizer):
  for messages in MESSAGES:
    for gen in (True, False):
      ours = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
      ref = reference_tokenizer.apply_chat_template(messages, tokenize=False,
                                                    add_generation_prompt=gen)
      assert ours == ref
  assert ours.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")


def test_tokenizer_save_and_load_hf_directory(tmp_path, tokenizer):
  tokenizer.save_pretrained(str(tmp_path))
  again = load_tokenizer(str(tmp_path))
  for text in TEXTS:
    assert again.encode(text) == tokenizer.encode(text)
  assert (again.apply_chat_template(MESSAGES[1], tokenize=False, add_generation_prompt=True) ==
          tokenizer.apply_chat_template(MESSAGES[1], tokenize=False, add_generation_prompt=True))


def test_gguf_logits_match_transformers(ours, hf_model, tokenizer):
  """Left-padded chat prompts through our GGUF import vs transformers' GGUF import.

  Over thirty f32 layers, summation order alone moves logits (|max| ~ 40) by ~1e-4: measured
  here, transformers' own f32 logits sit 6.6e-5 from its float64 logits on a 38-token prompt.
  So the truth is transformers in float64, each prompt run alone without padding, and our f32
  error may exceed transformers' f32 error by at most 1e-4.
  """
  import torch

  model, params = ours
  cfg = model.config
  assert (cfg.num_layers, cfg.num_heads, cfg.num_kv_heads, cfg.tie_word_embeddings) == (30, 9, 3, True)
  prompts = _chat_ids(tokenizer)
  ids, mask = left_pad(prompts)
  t = ids.shape[1]
  logits = np.asarray(model.apply({"params": params}, ids, attention_mask=mask))
  hf32 = [hf_logits(hf_model, np.asarray([p]))[0] for p in prompts]
  ref64 = copy.deepcopy(hf_model).to(torch.float64)
  for row, p in enumerate(prompts):
    truth = hf_logits(ref64, np.asarray([p]))[0]
    ours_err = np.abs(logits[row, t - len(p):] - truth).max()
    hf32_err = np.abs(hf32[row] - truth).max()
    print(f"prompt {row}: {len(p)} tokens, ours-f32 vs f64 {ours_err:.2e}, "
          f"transformers-f32 vs f64 {hf32_err:.2e}")
    assert ours_err <= hf32_err + 1e-4, (row, ours_err, hf32_err)


def test_greedy_chat_generation_equals_transformers(ours, hf_model, tokenizer):
  model, params = ours
  prompts = _chat_ids(tokenizer)
  eos = tokenizer.eos_token_id
  out = Sampler(model, stop_ids=[eos])(params, prompts, SamplingParams(40, greedy=True),
                                       jax.random.key(0))
  ref = hf_greedy(hf_model, prompts, 40, eos_token_id=eos, pad_id=tokenizer.pad_token_id)
  for row in range(len(prompts)):
    n = out.lengths[row]
    assert out.tokens[row][:n].tolist() == ref[row][:n].tolist()
    assert n == 40 or out.tokens[row][n - 1] == eos
