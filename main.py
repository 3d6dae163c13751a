"""arm_jax entry point: `python main.py --config configs/<name>.py [--workdir DIR]`.

Without --config it runs the embedded default, configs/toy.py: the whole Rubric-ARM method on
the toy world, minutes on any CPU. Kept short on purpose: the config names the job and
arm_jax.jobs runs it.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from arm_jax import jobs, multihost, xla_options

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "toy.py")
config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "ml_collections config file",
                                lock_config=True)
flags.DEFINE_string("workdir", "workdir", "where outputs and checkpoints go")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  xla_options.configure_process()
  multihost.initialize()  # several processes (hosts) when the environment says so
  jobs.run(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
