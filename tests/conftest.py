"""Test-session setup: 8 fake host devices so sharding tests run on one CPU."""

import os

# Must happen before jax initialises its backend.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The suite runs on host devices; with libtpu installed (the tpu extra, for arm_jax.plan) JAX
# would first look for a TPU.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

from arm_jax import xla_options  # noqa: E402

xla_options.configure_process()  # as every entry point does


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: slow tier, skipped unless --runslow or -m slow")


def pytest_xdist_auto_num_workers(config):
  """`-n auto`: one worker per core, at most 4. Each worker holds its own JAX client with 8 host
  devices, and the SmolLM2 parity tests a few GB each: more workers would contend for memory."""
  del config
  return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                    else os.cpu_count() or 1))


def pytest_addoption(parser):
  parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


# xdist (`--dist loadgroup`, pytest.ini) runs each group on one worker: a test file is a group,
# and files that share a session fixture one group, so that the fixture runs once.
_GROUPS = {"test_train_resume.py": "tiny_toy_run", "test_multihost.py": "tiny_toy_run"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
  for item in items:
    name = os.path.basename(str(item.path))
    item.add_marker(pytest.mark.xdist_group(_GROUPS.get(name, name)))
  if config.getoption("--runslow") or "slow" in (config.getoption("-m") or ""):
    return
  skip = pytest.mark.skip(reason="slow tier: pass --runslow")
  for item in items:
    if "slow" in item.keywords:
      item.add_marker(skip)


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_programs():
  """Drops JAX's compiled programs after each test module. XLA:CPU maps each program's code into
  its own memory regions, and the whole default tier in one process reached Linux's limit of
  65530 regions per process (vm.max_map_count): the next compilation segfaulted."""
  yield
  import jax  # noqa: PLC0415
  jax.clear_caches()


@pytest.fixture(scope="session")
def tiny_toy_run(tmp_path_factory):
  """(workdir, "done" record) of the tiny toy run (test_train_resume.OVERRIDES) on this process's
  8 devices, uninterrupted: the reference of the resume and the multi-host tests."""
  from test_train_resume import tiny_config  # noqa: PLC0415

  from arm_jax.training.loop import run_train  # noqa: PLC0415
  workdir = str(tmp_path_factory.mktemp("tiny_toy_run"))
  return workdir, run_train(tiny_config(), workdir)
