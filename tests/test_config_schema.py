"""The config schema (arm_jax.config_sections): a bad config file fails when it is loaded, before
any model is built or loaded, with the key in the message; good configs come back completed."""

import os
import subprocess
import sys
import textwrap

import pytest

from arm_jax import config_sections, jobs
from arm_jax.models import config as model_config
from arm_jax.rewards import FORMAT_REWARDS
from arm_jax.rl import advantages, losses, schedule
from arm_jax.toy import model as toy_model
from arm_jax.training import setup as train_setup

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TOY_FILE = """
from arm_jax import config_sections


def get_config():
  c = config_sections.train_base()
  c.plugins = ("arm_jax.toy.setup",)
  c.model = config_sections.model("toy")
  c.data = config_sections.data("toy", num_instances=40)
  {change}
  return c
"""


def _write(tmp_path, change: str) -> str:
  path = tmp_path / "bad_config.py"
  path.write_text(textwrap.dedent(TOY_FILE).replace("{change}", change), encoding="utf-8")
  return str(path)


def _load(path: str):
  """The config as main.py loads it (ml_collections' config_flags reads get_config())."""
  import importlib.util  # noqa: PLC0415
  spec = importlib.util.spec_from_file_location("bad_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.fixture
def nothing_loads(monkeypatch):
  """Any job, build or model initialisation fails the test: validation must come first."""
  def fail(*args, **kwargs):
    raise AssertionError("a job started before the config was accepted")
  monkeypatch.setattr(jobs, "JOBS", {name: fail for name in jobs.JOBS})
  monkeypatch.setattr(train_setup, "build", fail)
  monkeypatch.setattr(toy_model, "init_model", fail)


def test_a_misspelt_key_fails_before_anything_loads(tmp_path, nothing_loads):
  config = _load(_write(tmp_path, "c.judge.learning_rat = 1e-4"))
  with pytest.raises(ValueError, match=r"config key 'judge\.learning_rat' is not a field \(did "
                                       r"you mean 'judge\.learning_rate'\?\)"):
    jobs.run(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_a_value_outside_the_allowed_ones_fails_before_anything_loads(tmp_path, nothing_loads):
  config = _load(_write(tmp_path, 'c.rewards.format_reward = "binay"'))
  with pytest.raises(ValueError, match=r"config key 'rewards\.format_reward'='binay' is not "
                                       r"allowed; allowed: 'binary', 'graded', 'none'"):
    jobs.run(config, str(tmp_path / "run"))


def test_main_py_reports_the_misspelt_key_and_writes_nothing(tmp_path):
  path = _write(tmp_path, "c.schedule.round = 3")
  proc = subprocess.run([sys.executable, "main.py", "--config", path, "--workdir",
                         str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode != 0
  assert "config key 'schedule.round' is not a field (did you mean 'schedule.rounds'?)" in (
      proc.stderr)
  assert not (tmp_path / "run").exists()


def test_a_value_of_the_wrong_type_names_its_key():
  config = config_sections.train_base()
  config.eval = dict(config.eval.to_dict(), samples="8")
  with pytest.raises(ValueError, match=r"config key 'eval\.samples'='8' has type str; expected "
                                       r"int"):
    config_sections.validate(config)


def test_an_evaluation_row_with_an_unknown_field_is_named():
  config = config_sections.evaluate_base()
  config.system_specs.prompted.vote = 3
  with pytest.raises(ValueError, match=r"'system_specs\.prompted\.vote' is not a field \(did you "
                                       r"mean 'system_specs\.prompted\.votes'\?\)"):
    config_sections.validate(config)


def test_missing_fields_are_completed_with_their_defaults():
  config = config_sections.train_base()
  del config.eval["samples"]
  config.checkpoint = dict(every_steps=5)
  done = config_sections.validate(config)
  assert done.eval.samples == 1
  assert done.checkpoint.to_dict() == dict(every_steps=5, max_to_keep=2, keep_rounds=True,
                                         kept_params_only=True, max_nonfinite_updates=10)
  assert "samples" not in config.eval  # the given config is left as it was


def test_the_shipped_configs_are_complete():
  import importlib.util  # noqa: PLC0415
  for name in ("toy", "smollm2", "qwen3_8b", "evaluate_toy", "evaluate_smollm2",
               "evaluate_qwen3_8b", "generate"):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs",
                                                                     f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    assert config_sections.validate(config).to_dict() == config.to_dict(), name


def test_allowed_values_are_the_librarys():
  """The schema's choices cannot drift from what the library accepts."""
  c = config_sections
  assert c._TRAIN_SECTIONS["rewards"]["format_reward"].choices == FORMAT_REWARDS  # pylint: disable=protected-access
  for role in ("judge", "generator"):
    policy = c._TRAIN_SECTIONS[role]  # pylint: disable=protected-access
    assert set(policy["advantage"].choices) == set(advantages.ADVANTAGES)
    assert set(policy["loss_aggregation"].choices) == set(losses.AGGREGATIONS)
  assert set(c._TRAIN_SECTIONS["schedule"]["order"].choices) == set(schedule.ORDERS)  # pylint: disable=protected-access
  assert set(c._MODELS["pretrained"]["remat_policy"].choices) == set(  # pylint: disable=protected-access
      model_config.REMAT_POLICIES)
