"""Decoder model family and checkpoint import/export."""

from arm_jax.models.config import DecoderConfig
from arm_jax.models.decoder import Decoder, KVCache
from arm_jax.models.checkpoint import load_pretrained, save_pretrained, init_params

__all__ = ["Decoder", "DecoderConfig", "KVCache", "load_pretrained", "save_pretrained",
           "init_params"]
