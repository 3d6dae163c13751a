"""Tiny random transformers models (torch) used as the independent reference in tests."""

from __future__ import annotations

import numpy as np

ARCH_KWARGS = {
    # head_dim 16 != hidden 48 / 6 heads; GQA 6 query heads over 2 kv heads.
    "llama": dict(attention_bias=False),
    "llama_bias": dict(attention_bias=True),
    "qwen2": dict(),
    "qwen3": dict(),
}


def make_hf_model(out_dir, arch: str = "llama", *, tie: bool = False, seed: int = 0,
                  vocab_size: int = 101, layers: int = 2, heads: int = 6, kv_heads: int = 2,
                  hidden: int = 48, head_dim: int = 16, intermediate: int = 80):
  """Builds, randomises (including norms and biases) and saves a tiny causal LM; returns it."""
  import torch
  import transformers

  cls_name = {"llama": "Llama", "llama_bias": "Llama", "qwen2": "Qwen2", "qwen3": "Qwen3"}[arch]
  config_cls = getattr(transformers, f"{cls_name}Config")
  model_cls = getattr(transformers, f"{cls_name}ForCausalLM")
  config = config_cls(
      vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate,
      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
      head_dim=head_dim, rms_norm_eps=1e-5, max_position_embeddings=256,
      tie_word_embeddings=tie, bos_token_id=1, eos_token_id=2, pad_token_id=0,
      rope_theta=5000.0, **ARCH_KWARGS[arch])
  torch.manual_seed(seed)
  model = model_cls(config).eval()
  gen = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "norm" in name:
        p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
      elif name.endswith("bias"):
        p.copy_(0.5 * torch.randn(p.shape, generator=gen))
      else:
        p.copy_(0.2 * torch.randn(p.shape, generator=gen))
  if out_dir is not None:
    model.save_pretrained(out_dir)
  return model


def hf_logits(model, input_ids: np.ndarray, attention_mask: np.ndarray | None = None) -> np.ndarray:
  """Logits from transformers with explicit left-padding position ids."""
  import torch

  ids = torch.as_tensor(np.asarray(input_ids), dtype=torch.long)
  if attention_mask is None:
    attention_mask = np.ones_like(input_ids)
  mask = torch.as_tensor(np.asarray(attention_mask), dtype=torch.long)
  positions = (mask.cumsum(-1) - 1).clamp(min=0)
  with torch.no_grad():
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions)
  return out.logits.float().numpy()


def left_pad(prompts, pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(ids, mask) [n, longest] with each prompt right-aligned, as decoders batch prompts."""
  t = max(map(len, prompts))
  ids = np.full((len(prompts), t), pad_id, np.int64)
  mask = np.zeros((len(prompts), t), np.int64)
  for row, p in enumerate(prompts):
    ids[row, t - len(p):] = p
    mask[row, t - len(p):] = 1
  return ids, mask


def hf_greedy(hf, prompts, max_new: int, eos_token_id, pad_id: int = 0) -> np.ndarray:
  """transformers' greedy `generate` on a left-padded batch; returns only the new tokens."""
  import torch

  ids, mask = left_pad(prompts, pad_id)
  out = hf.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                    max_new_tokens=max_new, do_sample=False, pad_token_id=pad_id,
                    eos_token_id=eos_token_id)
  return out[:, ids.shape[1]:].numpy()
