"""Test-session setup: 8 fake host devices so sharding tests run on one CPU."""

import os

# Must happen before jax initialises its backend.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from arm_jax import xla_options  # noqa: E402

xla_options.configure_process()  # as every entry point does


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: slow tier, skipped unless --runslow or -m slow")


def pytest_addoption(parser):
  parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
  if config.getoption("--runslow") or "slow" in (config.getoption("-m") or ""):
    return
  skip = pytest.mark.skip(reason="slow tier: pass --runslow")
  for item in items:
    if "slow" in item.keywords:
      item.add_marker(skip)
