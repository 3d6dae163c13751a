"""The training job: run loop, setup, checkpoints and run directory, metrics."""
